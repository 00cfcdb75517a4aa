"""The report scores the map and products on the same points, keys as documented."""

from __future__ import annotations

import csv
import hashlib
import json

import numpy as np
import pytest
import rasterio

from contract.quicklook import title_note
from core.errors import ConfigError, InputDataError
from inference.assess.intervals import NO_INTERVAL_NOTE
from inference.assess.point_files import write_design
from inference.assess.report import (
    clipped_errors,
    markdown,
    plot_report,
    score,
)
from testing.fake_server import PointTransport
from tests.support.assess import synthetic_scene
from tests.support.mapping import session_for
from tests.support.rasters import write_band


def label_with_truth(sample_csv, truth_path, out):
    """The interpreter's stand-in: the truth raster's class under each point."""
    rows = list(csv.DictReader(sample_csv.open()))
    with rasterio.open(truth_path) as ds:
        data = ds.read(1)
        for row in rows:
            r, c = ds.index(float(row["x"]), float(row["y"]))
            row["reference"] = ("pervious", "impervious")[data[r, c]]
    with out.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return out


def test_report_keys_and_a_worse_product_scores_worse(tmp_path, ee_offline):
    scene = synthetic_scene(tmp_path)
    design = write_design(str(scene.map_path), tmp_path / "d", n=300, seed=2, minimum=100)
    labelled = label_with_truth(design.files["csv"], scene.truth_path, tmp_path / "ref.csv")
    wc = write_band(tmp_path / "wc.tif", np.where(scene.truth == 1, 50, 30).astype(np.uint8),
                    nodata=0)
    session = session_for(PointTransport({"ESA/WorldCover/v200/2021": str(wc)}))
    result = score(str(scene.map_path), str(labelled), tmp_path / "score",
                   compare=[f"worse={scene.worse_path}", "wc=worldcover"],
                   session_factory=lambda: session)
    report = json.loads(result.json.read_text())
    assert report == result.report  # what was returned is what was written
    assert report["n"] == 300 and set(report["strata"]["classes"]) == {"pervious", "impervious"}
    assert list(report["products"]) == ["map", "worse", "wc"]
    for product in report["products"].values():
        assert 0 <= product["overall_accuracy"] <= 1 and product["overall_accuracy_ci95"] >= 0
        for name in ("pervious", "impervious"):
            pc = product["per_class"][name]
            assert set(pc) == {"user_accuracy", "user_accuracy_ci95", "producer_accuracy",
                               "producer_accuracy_ci95", "f1", "f1_ci95"}
            assert set(product["area"][name]) >= {"estimate_km2", "ci95_km2"}
    m, w, t = (report["products"][k] for k in ("map", "worse", "wc"))
    assert w["per_class"]["impervious"]["f1"] < m["per_class"]["impervious"]["f1"] < 1.0
    assert w["overall_accuracy"] < m["overall_accuracy"]
    assert t["overall_accuracy"] == 1.0  # WorldCover stands for the truth here
    true_km2 = float((scene.truth == 1).sum()) * 100 / 1e6
    area = m["area"]["impervious"]
    assert abs(area["estimate_km2"] - true_km2) <= area["ci95_km2"]
    assert result.plot.stat().st_size > 1000
    text = result.markdown.read_text()
    assert "| worse |" in text and "impervious F1 %" in text
    # what was scored: each local file with its SHA-256, a product on Earth Engine as named
    def sha(path):
        return hashlib.sha256(path.read_bytes()).hexdigest()

    inputs = report["inputs"]
    assert inputs["map"] == {"name": "map_class.tif", "sha256": sha(scene.map_path)}
    assert inputs["compare"] == [
        {"name": "worse", "source": "worse_class.tif", "sha256": sha(scene.worse_path)},
        {"name": "wc", "source": "ESA/WorldCover/v200/2021", "sha256": None}]
    assert str(tmp_path) not in result.json.read_text()  # shared: no local folder


def test_a_change_map_is_scored_on_its_change_strata(tmp_path):
    from tests.support.assess import class_cog

    rng = np.random.default_rng(0)
    truth = np.zeros((120, 120), np.uint8)
    truth[:40] = 1
    truth[40:55] = 2  # gain; no true loss
    mapped = truth.copy()
    flicker = rng.random(truth.shape) < 0.03
    mapped[flicker & (truth == 1)] = 3  # false loss where stable impervious flickered
    change = class_cog(tmp_path / "change.tif", mapped, kind="change")
    truth_path = class_cog(tmp_path / "truth.tif", truth, kind="change")
    design = write_design(str(change), tmp_path / "d", n=200, seed=0, minimum=30)
    assert design.design.strata.classes[3] == "loss" and design.design.allocation[3] == 30
    rows = list(csv.DictReader(design.files["csv"].open()))
    with rasterio.open(truth_path) as ds:
        data = ds.read(1)
        for row in rows:
            r, c = ds.index(float(row["x"]), float(row["y"]))
            row["reference"] = str(int(data[r, c]))
    ref = tmp_path / "ref.csv"
    with ref.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    report = score(str(change), str(ref), tmp_path / "s").report
    m = report["products"]["map"]
    assert report["isa_class"] == "gain"
    assert m["per_class"]["loss"]["user_accuracy"] == 0.0  # every mapped loss is false
    assert m["area"]["loss"]["estimate_km2"] == 0.0  # and the estimate says there is none
    gain_km2 = 15 * 120 * 100 / 1e6
    assert abs(m["area"]["gain"]["estimate_km2"] - gain_km2) <= m["area"]["gain"]["ci95_km2"] + 1e-9


CEO_BASE = ("plotid", "sampleid", "lon", "lat", "email", "flagged", "collection_time",
            "analysis_duration", "imagery_title", "imagery_attributions", "sample_geom")
QUESTION = "What covers the point?"


def ceo_export(labelled_csv, out, samples_per_plot=1, disagree=()):
    """A CEO sample export as CEO writes it: a BOM, its base columns, the question's text as
    the answers' column, one row per sample (``samples_per_plot`` around each plot centre;
    the plots in ``disagree`` get one sample answered otherwise, a minority)."""
    rows = list(csv.DictReader(labelled_csv.open()))
    other = {"pervious": "impervious", "impervious": "pervious"}
    lines = []
    for row in rows:
        plot = int(row["id"].lstrip("p"))
        for s in range(samples_per_plot):
            dx = 0.00002 * (s % 2 - 0.5) if samples_per_plot > 1 else 0.0
            dy = 0.00002 * (s // 2 - 0.5) if samples_per_plot > 1 else 0.0
            lon, lat = float(row["lon"]) + dx, float(row["lat"]) + dy
            answer = other[row["reference"]] if plot in disagree and s == 0 else row["reference"]
            lines.append({"plotid": plot, "sampleid": s + 1, "lon": lon, "lat": lat,
                          "email": "interpreter@example.org", "flagged": "false",
                          "collection_time": "2026-01-05 10:12", "analysis_duration": "7.5 secs",
                          "imagery_title": "Mapbox Satellite", "imagery_attributions": "",
                          "sample_geom": f"POINT({lon} {lat})", QUESTION: answer})
    with out.open("w", newline="", encoding="utf-8-sig") as fh:
        writer = csv.DictWriter(fh, fieldnames=[*CEO_BASE, QUESTION])
        writer.writeheader()
        writer.writerows(lines)
    return out


@pytest.mark.slow
def test_design_file_ceo_exports_and_csv_score_alike(tmp_path, caplog):
    """The design file reproduces the raster's strata; a CEO export scores like the CSV."""
    scene = synthetic_scene(tmp_path)
    design = write_design(str(scene.map_path), tmp_path / "d", n=200, seed=5, minimum=60)
    labelled = label_with_truth(design.files["csv"], scene.truth_path, tmp_path / "ref.csv")
    by_raster = score(str(scene.map_path), str(labelled), tmp_path / "s0").report
    by_design = score(str(scene.map_path), str(labelled), tmp_path / "s1",
                      design=tmp_path / "d").report
    assert by_design["products"] == by_raster["products"]
    assert by_design["interpretation"] == "blind"
    assert "Interpretation: blind" in (tmp_path / "s1" / "report.md").read_text()
    center = ceo_export(labelled, tmp_path / "ceo-center.csv")
    by_ceo = score(str(scene.map_path), str(center), tmp_path / "s2", design=tmp_path / "d",
                   reference_column=QUESTION).report
    assert by_ceo["products"] == by_raster["products"]
    # the plot file itself with a reference column: PLOTID names the point
    truth = {r["id"]: r["reference"] for r in csv.DictReader(labelled.open())}
    plots = list(csv.DictReader(design.files["ceo"].open()))
    for row in plots:
        row["reference"] = truth[f"p{int(row['PLOTID']):05d}"]
    plot_file = tmp_path / "plots-labelled.csv"
    with plot_file.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(plots[0]))
        writer.writeheader()
        writer.writerows(plots)
    by_plots = score(str(scene.map_path), str(plot_file), tmp_path / "s6",
                     design=tmp_path / "d").report
    assert by_plots["products"] == by_raster["products"]
    # four samples per plot: the plot's answer is the one most samples got
    gridded = ceo_export(labelled, tmp_path / "ceo-grid.csv", samples_per_plot=4,
                         disagree={1, 2, 3})
    by_grid = score(str(scene.map_path), str(gridded), tmp_path / "s3", design=tmp_path / "d",
                    reference_column=QUESTION.upper()).report
    assert by_grid["products"] == by_raster["products"]
    # a design split in two CEO projects: both exports together
    rows = center.read_text(encoding="utf-8-sig").splitlines()
    half = len(rows) // 2
    first, second = tmp_path / "ceo-1.csv", tmp_path / "ceo-2.csv"
    first.write_text("\n".join(rows[:half]) + "\n", encoding="utf-8-sig")
    second.write_text("\n".join(rows[:1] + rows[half:]) + "\n", encoding="utf-8-sig")
    both = score(str(scene.map_path), [str(first), str(second)], tmp_path / "s4",
                 design=tmp_path / "d", reference_column=QUESTION).report
    assert both["products"] == by_raster["products"]
    # two sittings' exports: every point in each, each labelling its half (a new user's walk:
    # the report said every point was left out, and each file warned of its other half)
    table = list(csv.DictReader(labelled.open()))
    sittings = []
    for k in range(2):
        sitting = tmp_path / f"sitting{k}.csv"
        with sitting.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(table[0]))
            writer.writeheader()
            writer.writerows({**r, "reference": r["reference"] if i % 2 == k else ""}
                             for i, r in enumerate(table))
        sittings.append(str(sitting))
    with caplog.at_level("WARNING"):
        for design_folder in (tmp_path / "d", None):
            joined = score(str(scene.map_path), sittings, tmp_path / f"s7{design_folder is None}",
                           design=design_folder).report
            assert joined["unlabelled_points_left_out"] == 0
            assert joined["products"] == by_raster["products"]
    assert "left out" not in caplog.text
    half = {**table[0], "reference": ""}  # a point no sitting labelled is left out once
    with open(sittings[0], "a", newline="") as fh:
        csv.DictWriter(fh, fieldnames=list(table[0])).writerow({**half, "id": "extra"})
    with open(sittings[1], "a", newline="") as fh:
        csv.DictWriter(fh, fieldnames=list(table[0])).writerow({**half, "id": "extra"})
    assert score(str(scene.map_path), sittings, tmp_path / "s8").report[
        "unlabelled_points_left_out"] == 1
    assert "1 of 201 points have no reference (first: extra)" in caplog.text
    # ids sorted apart from their rows (a one-column sort): the file's own positions tell
    shuffled = [dict(r) for r in table]
    ids = [r["id"] for r in shuffled]
    for r, new in zip(shuffled, ids[1:] + ids[:1], strict=True):
        r["id"] = new
    moved = tmp_path / "shuffled.csv"
    with moved.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(shuffled)
    with pytest.raises(InputDataError, match=f"{len(table)} of {len(table)} points lie away "
                       "from where the design drew their ids"):
        score(str(scene.map_path), str(moved), tmp_path / "s9", design=tmp_path / "d")
    assert not (tmp_path / "s9").exists()
    with pytest.raises(InputDataError, match="more than one --reference"):
        score(str(scene.map_path), [str(first), str(center)], tmp_path / "s5",
              design=tmp_path / "d", reference_column=QUESTION)
    with pytest.raises(InputDataError, match="have no label"):  # one project's export only
        score(str(scene.map_path), str(first), tmp_path / "s5", design=tmp_path / "d",
              reference_column=QUESTION)


def _report(f1: float, f1_ci: float, n_scored: dict[str, int]) -> dict:
    """A two-class report as score() writes it, with the given impervious F1 and counts."""
    def product(n: int) -> dict:
        cls = {"user_accuracy": 1.0, "user_accuracy_ci95": 0.0, "producer_accuracy": 0.9,
               "producer_accuracy_ci95": 0.04, "f1": f1, "f1_ci95": f1_ci}
        area = {"estimate_km2": 2.0, "ci95_km2": 2.5, "mapped_km2": 1.8}
        return {"n": n, "source": "m.tif", "classes": ["pervious", "impervious"],
                "overall_accuracy": 0.95, "overall_accuracy_ci95": 0.0004,
                "per_class": {"pervious": cls, "impervious": cls},
                "area": {"pervious": area, "impervious": area},
                "sample_confusion": {"counts": [[90, 0], [3, 80]]},
                "error_matrix": {"proportions": [[0.5, 0.0], [0.02, 0.48]]}}

    return {"n": 180, "estimator": "Olofsson", "isa_class": "impervious",
            "strata": {"raster": "m.tif", "classes": ["pervious", "impervious"],
                       "points": {"pervious": 90, "impervious": 90},
                       "area_km2": {"pervious": 3.0, "impervious": 2.0}},
            "products": {name: product(n) for name, n in n_scored.items()}}


def _drawn(monkeypatch, report, png):
    """The figure plot_report draws (kept when it is closed)."""
    import matplotlib.pyplot as plt

    figures, close = [], plt.close
    monkeypatch.setattr(plt, "close", lambda fig: (figures.append(fig), close(fig)))
    plot_report(report, png)
    return figures[0]


def _bar_ends(ax) -> list[float]:
    """Both ends of every interval drawn on ``ax``."""
    from matplotlib.container import ErrorbarContainer

    bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    return [float(y) for c in bars for seg in c.lines[2][0].get_segments() for y in seg[:, 1]]


def test_report_md_shows_its_picture_and_no_zero_width_interval_as_a_number():
    text = markdown(_report(0.97, 0.05, {"map": 173}))
    assert "![impervious F1 and area of each product, with 95 % intervals](report.png)" in text
    assert "± 0.0 " not in text and "± 0.0|" not in text and "± 0.000 " not in text
    assert "100.0 (n.i.)" in text and text.rstrip().endswith(NO_INTERVAL_NOTE)
    assert "95.0 ± <0.1" in text  # a tiny interval is not shown as none
    assert "2.000 ± 2.500" in text
    assert text.count(NO_INTERVAL_NOTE) == 1


def test_report_png_clips_intervals_and_counts_the_points_each_product_scored(
        tmp_path, monkeypatch):
    fig = _drawn(monkeypatch, _report(0.97, 0.05, {"map": 173, "wc": 170}), tmp_path / "r.png")
    left, right = fig.axes
    assert max(_bar_ends(left)) == pytest.approx(1.0)  # 0.97 + 0.05 drawn to 1, not 1.02
    assert min(_bar_ends(right)) == pytest.approx(0.0)  # 2.0 - 2.5 km² drawn to 0, not -0.5
    assert [t.get_text() for t in left.get_xticklabels()] == ["map\n173 points",
                                                              "wc\n170 points"]
    assert "180" not in left.get_title()
    with title_note("SYNTHETIC"):
        one = _drawn(monkeypatch, _report(0.97, 0.05, {"map": 173}), tmp_path / "one.png")
    assert one.axes[0].get_title() == "impervious F1 on 173 scored points"
    assert one._suptitle.get_text().startswith("SYNTHETIC · Accuracy and area")
    assert clipped_errors([0.5], [0.2], 0.0, 1.0) == pytest.approx(np.array([[0.2], [0.2]]))


def test_a_ceo_tie_is_never_decided_by_the_order_of_the_rows(tmp_path):
    """Gridded samples lie equally far from the plot's centre, so the tie rule "the sample
    nearest the centre" picked the first row: the same labels scored differently with the rows
    reversed. A 2-2 tie on a 2 x 2 grid is now refused in either order; a tie that a nearer
    ring of samples decides (a 3 x 3 grid's centre) scores the same in either order."""
    scene = synthetic_scene(tmp_path)
    write_design(str(scene.map_path), tmp_path / "d", n=120, seed=3, minimum=40)
    labelled = label_with_truth(tmp_path / "d" / "sample.csv", scene.truth_path,
                                tmp_path / "ref.csv")
    gridded = ceo_export(labelled, tmp_path / "grid.csv", samples_per_plot=4)
    rows = list(csv.DictReader(gridded.open(encoding="utf-8-sig")))
    other = {"pervious": "impervious", "impervious": "pervious"}
    for row in rows:  # plots 1-30: two of their four samples answered otherwise, 2-2
        if int(row["plotid"]) <= 30 and int(row["sampleid"]) in (1, 4):
            row[QUESTION] = other[row[QUESTION]]

    def written(name, ordered):
        path = tmp_path / name
        with path.open("w", newline="", encoding="utf-8-sig") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(ordered)
        return path

    for name, ordered in (("forward.csv", rows), ("reversed.csv", rows[::-1])):
        with pytest.raises(InputDataError) as err:
            score(str(scene.map_path), str(written(name, ordered)), tmp_path / name,
                  design=tmp_path / "d", reference_column=QUESTION)
        assert "30 of 120 plots (first: plot 1, impervious 2, pervious 2) have their samples " \
               "split evenly between answers at every distance" in str(err.value)
        assert "'Center' sample design" in str(err.value)
    # a 3 x 3 grid split 4-4 with one blank answer: its centre sample (the nearest ring) decides
    from inference.assess.ceo import _Sample, plot_answer

    grid = [(dx, dy) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    answers = ["a", "b", "a", "b", "b", "a", "", "b", "a"]  # centre (0, 0): "b"
    samples = [_Sample(a, 100 + 1e-5 * dx, 40 + 1e-5 * dy)
               for a, (dx, dy) in zip(answers, grid, strict=True)]
    assert plot_answer(samples, 100, 40) == plot_answer(samples[::-1], 100, 40) == "b"


def test_a_map_that_is_no_raster_or_a_design_with_strata_is_refused_in_one_line(tmp_path):
    """A new user's walk gave the labelled CSV as --map (exit 1, GDAL's own words) and both
    --design and --strata (the strata raster ignored without a word)."""
    scene = synthetic_scene(tmp_path)
    write_design(str(scene.map_path), tmp_path / "d", n=60, seed=1, minimum=20)
    labelled = label_with_truth(tmp_path / "d" / "sample.csv", scene.truth_path,
                                tmp_path / "ref.csv")
    with pytest.raises(InputDataError, match=r"--map .*ref.csv cannot be read \(.*\): it is not "
                                             "a raster; give a class or change COG written by "
                                             "isamap"):
        score(str(labelled), str(labelled), tmp_path / "s0")
    with pytest.raises(ConfigError, match=r"gives the strata that drew the points; give "
                                          r"--design or --strata .*, not both"):
        score(str(scene.map_path), str(labelled), tmp_path / "s1", design=tmp_path / "d",
              strata_path=str(scene.map_path))
    assert not (tmp_path / "s0").exists() and not (tmp_path / "s1").exists()


def test_a_compared_raster_reports_its_own_pixels_as_mapped_area(tmp_path, ee_offline):
    """A compared product's "mapped km²" was the stratum-weighted share of points it maps
    (18.208 km² for 18.039 of pixels, a new user's walk). A raster now reports its pixels
    over the map's valid pixels, read nearest on the map's grid (a 20 m product too); an
    Earth Engine product, known at the points only, an estimate named as one."""
    scene = synthetic_scene(tmp_path)
    design = write_design(str(scene.map_path), tmp_path / "d", n=300, seed=2, minimum=100)
    labelled = label_with_truth(design.files["csv"], scene.truth_path, tmp_path / "ref.csv")
    with rasterio.open(scene.worse_path) as ds:
        worse = ds.read(1)
    coarse = np.where(worse[::2, ::2] == 1, 50, 30).astype(np.uint8)  # 20 m, WorldCover codes
    coarse_path = write_band(tmp_path / "coarse.tif", coarse, res=20.0, nodata=None)
    wc = write_band(tmp_path / "wc.tif", np.where(scene.truth == 1, 50, 30).astype(np.uint8),
                    nodata=0)
    session = session_for(PointTransport({"ESA/WorldCover/v200/2021": str(wc)}))
    result = score(str(scene.map_path), str(labelled), tmp_path / "score",
                   design=design.files["json"].parent,
                   compare=[f"worse={scene.worse_path}", f"coarse={coarse_path}:50",
                            "wc=worldcover"], session_factory=lambda: session)
    areas = {name: p["area"]["impervious"] for name, p in result.report["products"].items()}
    pixel_km2 = 10 * 10 / 1e6
    valid = np.ones(worse.shape, bool)
    valid[:3, :3] = False  # the map's nodata corner is outside the assessed region
    with rasterio.open(scene.map_path) as ds:
        assert areas["map"]["mapped_km2"] == pytest.approx((ds.read(1) == 1).sum() * pixel_km2)
    assert areas["worse"]["mapped_km2"] == pytest.approx(
        ((worse == 1) & valid).sum() * pixel_km2)
    coarse_on_map = np.kron(coarse, np.ones((2, 2), np.uint8)) == 50
    assert areas["coarse"]["mapped_km2"] == pytest.approx(
        (coarse_on_map & valid).sum() * pixel_km2)
    assert "points_mapped_km2" not in areas["worse"]
    assert areas["wc"]["mapped_km2"] is None and areas["wc"]["points_mapped_km2"] > 0
    text = result.markdown.read_text()
    row = next(line for line in text.splitlines() if line.startswith("| wc |"))
    assert row.endswith(f"| {areas['wc']['points_mapped_km2']:.3f} (from the points) |")
    assert "not a count of its pixels" in text
