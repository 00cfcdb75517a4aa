"""The files people label with carry every point, blind and shuffled; labels read back."""

from __future__ import annotations

import csv
import itertools
import json
import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from core.errors import ConfigError, InputDataError
from inference.assess.ceo import CEO_PLOT_LIMIT, plot_file_parts
from inference.assess.design_file import read_design
from inference.assess.point_files import SAMPLE_COLUMNS, read_reference, write_design
from inference.assess.report import score
from tests.support.assess import CLASSES, synthetic_scene


@pytest.fixture
def written(tmp_path):
    scene = synthetic_scene(tmp_path)
    return write_design(str(scene.map_path), tmp_path / "design", n=80, seed=1, minimum=20,
                        asset_id="users/me/labels")


def _design_rows(written) -> dict[str, dict]:
    return {r["id"]: r for r in csv.DictReader(written.files["design_points"].open())}


def test_csv_geojson_kml_and_ceo_hold_the_same_points(written):
    design, files = written.design, written.files
    rows = list(csv.DictReader(files["csv"].open()))
    assert tuple(rows[0]) == SAMPLE_COLUMNS and len(rows) == 80
    assert all(r["reference"] == "" for r in rows)
    drawn = _design_rows(written)
    assert [r["id"] for r in rows] == list(drawn)  # the same ids, the same order
    order = design.order
    lon = np.array([float(r["lon"]) for r in rows])
    assert np.allclose(lon, design.lon[order], atol=1e-6)
    assert np.allclose([float(r["x"]) for r in rows], design.x[order], atol=0.01)
    gj = json.loads(files["geojson"].read_text())
    assert [f["geometry"]["coordinates"][0] for f in gj["features"]] == pytest.approx(lon)
    kml = ET.parse(files["kml"]).getroot()
    ns = {"k": "http://www.opengis.net/kml/2.2"}
    marks = kml.findall(".//k:Placemark", ns)
    assert len(marks) == 80 and marks[0].find("k:name", ns).text == rows[0]["id"]
    lon0, lat0, _ = marks[0].find(".//k:coordinates", ns).text.split(",")
    assert (float(lon0), float(lat0)) == pytest.approx((lon[0], float(rows[0]["lat"])))
    ceo = list(csv.DictReader(files["ceo"].open()))
    assert tuple(ceo[0]) == ("PLOTID", "LON", "LAT", "STRATA_ID", "DESIGN_ID") and len(ceo) == 80
    assert {r["DESIGN_ID"] for r in ceo} == {r["design_id"] for r in rows}  # one, the same
    assert [int(r["PLOTID"]) for r in ceo] == list(range(1, 81))
    assert float(ceo[5]["LAT"]) == pytest.approx(design.lat[order[5]], abs=1e-6)
    record = json.loads(files["json"].read_text())
    assert record["seed"] == 1 and record["n"] == 80 and record["classes"] == list(CLASSES)
    assert record["interpretation"] == "blind"


def test_interpreter_files_are_blind_and_in_a_seeded_random_order(written, tmp_path):
    """No map class, stratum or map value where the interpreter looks; order from the seed."""
    files = written.files
    forbidden = re.compile(r"stratum|map_class|inclusion|\b(pervious|impervious)\b", re.I)
    for key in ("csv", "geojson", "kml", "ceo"):
        assert not forbidden.search(files[key].read_text()), key
    app = files["app"].read_text()
    points = re.search(r"var pointList = (\{.*\})\.features;", app).group(1)
    assert not forbidden.search(points)  # the class names appear only as the buttons
    assert [f["properties"]["id"] for f in json.loads(points)["features"]] == \
        [r["id"] for r in csv.DictReader(files["csv"].open())]
    # the scorer's file has what the interpreter's lack, for the same ids
    drawn = _design_rows(written)
    assert {r["stratum"] for r in drawn.values()} == set(CLASSES)
    assert all(r["map_class"] == r["stratum"] for r in drawn.values())
    alloc = dict(zip(CLASSES, written.design.allocation, strict=True))
    pixels = dict(zip(CLASSES, written.design.strata.pixels, strict=True))
    assert all(float(r["inclusion_probability"]) == pytest.approx(
        alloc[r["stratum"]] / pixels[r["stratum"]], rel=1e-5) for r in drawn.values())
    # shuffled: the strata are not listed in blocks, and the shuffle is the seed's
    strata = [r["stratum"] for r in drawn.values()]
    runs = 1 + sum(a != b for a, b in itertools.pairwise(strata))
    assert runs > 10
    again = write_design(str(tmp_path / "map_class.tif"), tmp_path / "again", n=80, seed=1,
                         minimum=20, asset_id="users/me/labels")
    assert again.files["csv"].read_text() == files["csv"].read_text()
    other = write_design(str(tmp_path / "map_class.tif"), tmp_path / "other", n=80, seed=2,
                         minimum=20)
    assert other.files["csv"].read_text() != files["csv"].read_text()


def test_sample_json_and_the_kml_name_the_design_and_an_edited_design_is_refused(written,
                                                                                tmp_path):
    """sample.json did not record the design_id every sample file's rows carry, and a
    labeller's KML named no design: neither could say which design it was."""
    files = written.files
    drawn = {r["design_id"] for r in csv.DictReader(files["csv"].open())}
    assert len(drawn) == 1
    design = drawn.pop()
    assert json.loads(files["json"].read_text())["design_id"] == design
    assert read_design(files["json"].parent).design_id == design
    ns = {"k": "http://www.opengis.net/kml/2.2"}
    document = ET.parse(files["kml"]).getroot().find("k:Document", ns)
    assert document.find("k:description", ns).text == f"sample design_id {design}"
    data = document.find("k:ExtendedData/k:Data[@name='design_id']/k:value", ns)
    assert data.text == design
    for mark in document.findall("k:Placemark", ns):  # no balloon but the id
        assert [child.tag.split("}")[1] for child in mark] == ["name", "Point"]
    # design_points.csv edited after the design was written (re-sorted in a spreadsheet)
    points = files["design_points"].read_text().splitlines()
    files["design_points"].write_text("\n".join([points[0], *sorted(points[1:])[::-1]]) + "\n")
    with pytest.raises(ConfigError, match=f"records design_id {design} but .* the design "
                       "folder was edited .* draw it again") as refused:
        read_design(files["json"].parent)
    assert "\n" not in str(refused.value)
    # an earlier isamap's sample.json, without design_id: read, and the same design completes
    old = write_design(str(tmp_path / "map_class.tif"), tmp_path / "old", n=80, seed=1,
                       minimum=20, asset_id="users/me/labels")
    record = json.loads(old.files["json"].read_text())
    del record["design_id"]
    old.files["json"].write_text(json.dumps(record, indent=1))
    assert read_design(tmp_path / "old").design_id == design
    old.files["kml"].unlink()  # a killed run's rest
    write_design(str(tmp_path / "map_class.tif"), tmp_path / "old", n=80, seed=1, minimum=20,
                 asset_id="users/me/labels")
    assert "design_id" not in json.loads(old.files["json"].read_text())  # rewritten: never
    assert old.files["kml"].read_text() == files["kml"].read_text()


def test_show_map_class_is_an_opt_in_recorded_in_the_design(tmp_path):
    scene = synthetic_scene(tmp_path)
    shown = write_design(str(scene.map_path), tmp_path / "train", n=40, seed=1, minimum=10,
                         show_map_class=True)
    rows = list(csv.DictReader(shown.files["csv"].open()))
    assert "map_class" in rows[0] and {r["map_class"] for r in rows} <= set(CLASSES)
    record = json.loads(shown.files["json"].read_text())
    assert record["interpretation"].startswith("map class shown")
    for row in rows:  # labels made with the map's answer in view
        row["reference"] = row["map_class"]
    labelled = tmp_path / "labelled.csv"
    _write(labelled, rows, list(rows[0]))
    report = score(str(scene.map_path), str(labelled), tmp_path / "s", design=tmp_path / "train")
    assert report.report["interpretation"].startswith("map class shown")
    assert "Interpretation: map class shown" in report.markdown.read_text()
    # scored without --design the file itself tells (it read "not recorded")
    alone = score(str(scene.map_path), str(labelled), tmp_path / "a")
    assert alone.report["interpretation"].startswith("map class shown")
    assert "Interpretation: map class shown" in alone.markdown.read_text()


def test_ceo_plot_files_hold_at_most_5000_plots():
    assert [len(p) for p in plot_file_parts(4999)] == [4999]
    parts = plot_file_parts(6000)
    assert [len(p) for p in parts] == [3000, 3000] and max(map(len, parts)) <= CEO_PLOT_LIMIT
    assert [p.start for p in plot_file_parts(12001)] == [0, 4001, 8002]
    assert all(len(p) <= CEO_PLOT_LIMIT for p in plot_file_parts(12001))


def test_a_6000_point_design_is_written_as_ceo_files_of_at_most_5000(tmp_path):
    scene = synthetic_scene(tmp_path, size=120)
    big = write_design(str(scene.map_path), tmp_path / "big", n=6000, seed=0, minimum=50)
    ceo = sorted(k for k in big.files if k.startswith("ceo"))
    assert ceo == ["ceo_1", "ceo_2"] and "ceo" not in big.files
    plots = [list(csv.DictReader(big.files[k].open())) for k in ceo]
    assert all(len(p) <= CEO_PLOT_LIMIT for p in plots)
    ids = [int(r["PLOTID"]) for p in plots for r in p]
    assert ids == list(range(1, 6001))  # plot ids run on across the files


def test_the_same_design_keeps_a_labelled_csv_and_another_is_refused(written, tmp_path):
    path = written.files["csv"]
    labelled = path.read_text().replace(",\n", ",impervious\n")
    path.write_text(labelled)
    again = write_design(str(tmp_path / "map_class.tif"), tmp_path / "design", n=80, seed=1,
                         minimum=20, asset_id="users/me/labels")
    assert again.files["csv"].read_text() == labelled
    with pytest.raises(ConfigError, match="another sample design"):
        write_design(str(tmp_path / "map_class.tif"), tmp_path / "design", n=80, seed=2,
                     minimum=20)


def _write(path, rows, columns):
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def test_reference_file_reads_names_or_codes_and_warns_of_gaps(written, tmp_path, caplog):
    rows = list(csv.DictReader(written.files["csv"].open()))
    for i, row in enumerate(rows):
        row["reference"] = "Impervious" if i % 2 else "0"
    path = tmp_path / "labelled.csv"
    _write(path, rows, SAMPLE_COLUMNS)
    ref = read_reference(path, CLASSES)
    assert ref.reference.tolist() == [i % 2 for i in range(80)]
    rows[3]["reference"] = ""
    _write(path, rows, SAMPLE_COLUMNS)
    ref = read_reference(path, CLASSES)  # scored without the gap, saying what that assumes
    assert ref.unlabelled == 1 and ref.reference.size == 79
    assert "1 of 80 points have no reference" in caplog.text
    assert "missing at random within their stratum" in caplog.text
    rows[3]["reference"] = "water"
    _write(path, rows, SAMPLE_COLUMNS)
    with pytest.raises(InputDataError, match="water"):
        read_reference(path, CLASSES)
    with pytest.raises(InputDataError, match="--reference-column"):
        read_reference(path, CLASSES, column="Land cover")


def test_a_ceo_plot_takes_the_answer_most_samples_got_ties_to_the_centre_sample():
    from inference.assess.ceo import plot_records

    def sample(plot, answer, lon, lat):
        return {"plotid": str(plot), "sampleid": "1", "lon": str(lon), "lat": str(lat),
                "land cover": answer}

    rows = [sample(7, "impervious", 0.0, 0.0), sample(7, "Pervious", 1.0, 0.0),
            sample(7, "pervious", 0.0, 1.0),
            # a tie: the sample nearest the plot's centre (0.5, 0.5) decides
            sample(8, "impervious", 0.4, 0.5), sample(8, "pervious", 0.0, 0.0),
            sample(8, "impervious", 1.0, 1.0), sample(8, "pervious", 1.0, 0.0),
            sample(9, "", 0.0, 0.0)]
    records = {r["id"]: r for r in plot_records(rows, "land cover", "export.csv")}
    assert records["p00007"]["reference"] == "pervious"
    assert records["p00008"]["reference"] == "impervious"
    assert records["p00009"]["reference"] == ""  # unanswered: refused later, as any gap
    assert records["p00007"]["lon"] == pytest.approx(1 / 3)


def test_a_reference_of_255_is_told_that_nodata_marks_an_unlabelled_point(tmp_path):
    """A walk: a point labelled 255 (the rasters' nodata) was refused without saying that
    ``nodata`` is how a point that could not be labelled is marked."""
    path = tmp_path / "ref.csv"
    path.write_text("id,lon,lat,reference\n1,114.3,30.5,1\n2,114.31,30.51,255\n")
    with pytest.raises(InputDataError) as refused:
        read_reference(path, CLASSES)
    assert "references ['255'] are not among the classes" in str(refused.value)
    assert str(refused.value).endswith("(cloud, a gap in the imagery) is marked nodata, which "
                                       "leaves it out")
    path.write_text("id,lon,lat,reference\n1,114.3,30.5,1\n2,114.31,30.51,nodata\n")
    assert list(read_reference(path, CLASSES, warn=False).reference) == [1]  # as it says
