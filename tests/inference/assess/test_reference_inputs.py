"""``isamap-assess`` on the sample files people really send back: other CRSs, swapped axes,
other encodings, float products with NaN, partly labelled samples, change strata, bad seeds.

Each bad file is one line on stderr, exit 2 and no report; each file that can be read right
(a GeoJSON naming its CRS, UTF-16 from Excel) is scored like the plain CSV.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import rasterio
from rasterio.transform import Affine
from rasterio.warp import transform as warp_transform

from cli.assess import main
from core.errors import ConfigError
from inference.assess.design import design_sample
from inference.cog.maps import NODATA, write_cog
from tests.support.assess import CLASSES, class_cog, synthetic_scene

#: the module-scoped fixtures below are built once: their tests run on one worker
pytestmark = pytest.mark.xdist_group("inference.assess.test_reference_inputs")


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """A scene, its 100-point design labelled as the map says, and the rows of that CSV."""
    folder = tmp_path_factory.mktemp("reference_inputs")
    scene = synthetic_scene(folder)
    assert main(["design", "--map", str(scene.map_path), "--n", "100", "--min-per-stratum",
                 "30", "--out", str(folder / "d"), "-q"]) == 0
    rows = list(csv.DictReader((folder / "d" / "sample.csv").open()))
    mapped = {r["id"]: r["map_class"] for r in csv.DictReader(
        (folder / "d" / "design_points.csv").open())}
    for row in rows:  # an interpreter who agrees with the map everywhere
        row["reference"] = mapped[row["id"]]
    return scene, rows


def _csv(path, rows, encoding="utf-8", delimiter=","):
    with path.open("w", newline="", encoding=encoding) as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]), delimiter=delimiter)
        writer.writeheader()
        writer.writerows(rows)
    return path


def _geojson(path, rows, xy, crs=None):
    doc = {"type": "FeatureCollection",
           "features": [{"type": "Feature", "geometry": {"type": "Point", "coordinates": [x, y]},
                         "properties": {"id": r["id"], "reference": r["reference"]}}
                        for r, x, y in zip(rows, *xy, strict=True)]}
    if crs:
        doc["crs"] = {"type": "name", "properties": {"name": crs}}
    path.write_text(json.dumps(doc))
    return path


def _score(scene, reference, out, *extra):
    return main(["score", "--map", str(scene.map_path), "--reference", str(reference),
                 "--out", str(out), "-q", *extra])


def _refused(capsys, status, out, *words):
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and "Traceback" not in err[0], err
    for word in words:
        assert word in err[0], err
    assert not out.exists() or not any(out.iterdir())  # nothing written
    return err[0]


def _change_design(tmp_path):
    """A class map and its change COG, and a design drawn on the change strata in ``d/``."""
    codes = np.zeros((120, 120), np.uint8)
    codes[:40], codes[40:55], codes[55:60] = 1, 2, 3
    change = class_cog(tmp_path / "change.tif", codes, kind="change")
    classes = class_cog(tmp_path / "class.tif", (codes % 2 == 1).astype(np.uint8) | (codes == 2))
    assert main(["design", "--map", str(classes), "--strata", str(change), "--n", "120",
                 "--min-per-stratum", "20", "--out", str(tmp_path / "d"), "-q"]) == 0
    return classes, change


def _oa(out):
    return json.loads((out / "report.json").read_text())["products"]["map"]["overall_accuracy"]


def test_geojson_crs_is_honoured_and_projected_or_swapped_points_are_refused(labelled, tmp_path,
                                                                             capsys):
    scene, rows = labelled
    lon = [float(r["lon"]) for r in rows]
    lat = [float(r["lat"]) for r in rows]
    with rasterio.open(scene.map_path) as ds:
        crs = ds.crs.to_string()
    xs, ys = warp_transform("EPSG:4326", crs, lon, lat)
    urn = "urn:ogc:def:crs:" + crs.replace(":", "::")  # as QGIS and GDAL name it
    utm = _geojson(tmp_path / "utm.geojson", rows, (xs, ys), urn)
    assert _score(scene, utm, tmp_path / "s_utm") == 0 and _oa(tmp_path / "s_utm") == 1.0
    capsys.readouterr()
    bare = _geojson(tmp_path / "bare.geojson", rows, (xs, ys))  # UTM metres, no crs member
    _refused(capsys, _score(scene, bare, tmp_path / "s_bare"), tmp_path / "s_bare",
             "not lon/lat degrees", "save it in lon/lat (EPSG:4326")
    # a point east of 90° swapped has a latitude beyond ±90: swapped by range
    far = _geojson(tmp_path / "far.geojson", rows, ([30.0] * len(rows), [114.0] * len(rows)))
    _refused(capsys, _score(scene, far, tmp_path / "s_far"), tmp_path / "s_far",
             "longitude and latitude are swapped", "write longitude first")
    # within ±90° both ways: swapped by where the points fall on the map
    swapped = _geojson(tmp_path / "swapped.geojson", rows, (lat, lon))
    _refused(capsys, _score(scene, swapped, tmp_path / "s_sw"), tmp_path / "s_sw",
             "look swapped", "write longitude first")
    unknown = _geojson(tmp_path / "unknown.geojson", rows, (xs, ys), "EPSG:999999")
    _refused(capsys, _score(scene, unknown, tmp_path / "s_unk"), tmp_path / "s_unk",
             "names the CRS 'EPSG:999999', which is not known")


def test_utf16_csv_is_read_and_other_encodings_are_refused(labelled, tmp_path, capsys):
    scene, rows = labelled
    excel = _csv(tmp_path / "unicode.txt", rows, "utf-16", "\t")  # Excel's "Unicode text"
    assert _score(scene, excel, tmp_path / "s16") == 0 and _oa(tmp_path / "s16") == 1.0
    capsys.readouterr()
    named = [dict(r, note="café") for r in rows]
    latin = _csv(tmp_path / "latin.csv", named, "cp1252")
    _refused(capsys, _score(scene, latin, tmp_path / "s_latin"), tmp_path / "s_latin",
             "is not UTF-8 text", "save it as 'CSV UTF-8'")


def test_the_designs_kml_given_as_the_reference_is_named_as_kml(labelled, tmp_path, capsys):
    """A walk: sample.kml given to score was read as a CSV and refused as lacking the
    columns ['lon', 'lat', 'reference']."""
    scene, rows = labelled
    kml = scene.map_path.parent / "d" / "sample.kml"  # as the design wrote it
    assert f"<description>sample design_id {rows[0]['design_id']}</description>" in \
        kml.read_text()  # it names the design, and is still no reference
    _refused(capsys, _score(scene, kml, tmp_path / "s"), tmp_path / "s",
             "is KML, which is not read as labelled points", "give the labelled sample.csv")


def test_rows_of_bare_separators_after_the_data_are_skipped(labelled, tmp_path, capsys):
    """A walk: Excel saved rows of bare separators (;;;;;;) after the data, and the file was
    refused with "the lon of point  is '', not a number" (no id, no row)."""
    scene, rows = labelled
    excel = _csv(tmp_path / "excel.csv", rows, "utf-8-sig", ";")
    with open(excel, "a", encoding="utf-8", newline="") as fh:
        fh.write(";" * (len(rows[0]) - 1) + "\r\n" + " ;" * (len(rows[0]) - 1) + "\r\n")
    assert _score(scene, excel, tmp_path / "s") == 0 and _oa(tmp_path / "s") == 1.0
    capsys.readouterr()


def test_a_float_product_with_nan_is_scored_where_it_has_data(labelled, tmp_path, capsys):
    scene, rows = labelled
    reference = _csv(tmp_path / "labelled.csv", rows)
    with rasterio.open(scene.map_path) as ds:
        data, profile = ds.read(1).astype("float32"), ds.profile
    data[data == 255] = np.nan
    data[100:140] = np.nan
    profile.update(driver="GTiff", dtype="float32", nodata=None)
    with rasterio.open(tmp_path / "float.tif", "w", **profile) as ds:
        ds.write(data, 1)
    assert _score(scene, reference, tmp_path / "s", "--compare",
                  f"f={tmp_path / 'float.tif'}") == 0
    report = json.loads((tmp_path / "s" / "report.json").read_text())
    f = report["products"]["f"]
    assert 0 < f["n"] < report["n"] and f["overall_accuracy"] == 1.0
    assert "no data at" in capsys.readouterr().err


def test_a_product_without_data_in_a_stratum_is_refused_by_its_name(labelled, tmp_path,
                                                                     capsys):
    """A compared product with no data over most of the sample failed the run after its
    area was counted, with "every stratum needs at least 2 sample points for a variance;
    points per stratum: [0, 0]", naming no product. It is now named as it is read."""
    scene, rows = labelled
    reference = _csv(tmp_path / "labelled.csv", rows)
    with rasterio.open(scene.map_path) as ds:
        data = ds.read(1)
    data[:] = NODATA
    product = class_cog(tmp_path / "empty.tif", data)
    capsys.readouterr()
    status = _score(scene, reference, tmp_path / "s", "--compare", f"other={product}")
    _refused(capsys, status, tmp_path / "s", f"--compare other ({product}) has data at 0 of "
             f"{len(rows)} points", "too few to score it", "leave it out")


def test_a_product_of_other_codes_off_the_points_is_refused_by_its_pixels(labelled, tmp_path,
                                                                         capsys):
    """A change COG compared as a class map (codes 0-3) was scored at 100 % with exit 0 where
    no point fell on a gain or loss, and its mapped area dropped those pixels; its pixels
    are read for that area anyway, and now tell."""
    scene, rows = labelled
    reference = _csv(tmp_path / "labelled.csv", rows)
    with rasterio.open(scene.map_path) as ds:
        data = ds.read(1)
        at = {ds.index(float(r["x"]), float(r["y"])) for r in rows}
    other = np.where(data == 1, 3, 2).astype(np.uint8)  # codes 2 and 3 off the points
    for row, col in at:
        other[row, col] = data[row, col]
    product = class_cog(tmp_path / "codes.tif", other)
    capsys.readouterr()
    status = _score(scene, reference, tmp_path / "s", "--compare", f"chg={product}")
    _refused(capsys, status, tmp_path / "s", f"--compare chg ({product}) holds codes [2, 3] "
             "beyond the 2 classes", "give a map of these classes, or PATH:CODE,...")
    assert _score(scene, reference, tmp_path / "s", "--compare", f"chg={product}:1,3") == 0


def test_a_partly_labelled_sample_is_scored_saying_what_is_assumed(labelled, tmp_path, capsys):
    scene, rows = labelled
    partial = [dict(r, reference="" if i < 7 else r["reference"]) for i, r in enumerate(rows)]
    assert _score(scene, _csv(tmp_path / "part.csv", partial), tmp_path / "s") == 0
    err = capsys.readouterr().err
    assert f"7 of {len(rows)} points have no reference" in err
    assert "missing at random within their stratum" in err
    report = json.loads((tmp_path / "s" / "report.json").read_text())
    assert report["n"] == len(rows) - 7 and report["unlabelled_points_left_out"] == 7
    assert "7 points of the sample had no reference" in (tmp_path / "s" / "report.md").read_text()


def test_a_design_on_change_strata_is_not_scored_on_the_class_map(tmp_path, capsys):
    classes, change = _change_design(tmp_path)
    rows = list(csv.DictReader((tmp_path / "d" / "sample.csv").open()))
    for row in rows:
        row["reference"] = "pervious"
    reference = _csv(tmp_path / "d" / "labelled.csv", rows)  # labelled beside its design
    capsys.readouterr()
    status = main(["score", "--map", str(classes), "--reference", str(reference),
                   "--out", str(tmp_path / "s"), "-q"])
    _refused(capsys, status, tmp_path / "s", "was drawn on the strata", "--design")
    assert main(["score", "--map", str(classes), "--strata", str(change), "--reference",
                 str(reference), "--out", str(tmp_path / "s2"), "-q"]) == 0
    assert main(["score", "--map", str(classes), "--design", str(tmp_path / "d"),
                 "--reference", str(reference), "--out", str(tmp_path / "s3"), "-q"]) == 0


def test_a_negative_seed_is_refused(labelled, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:  # the seed's type refuses it as it is parsed
        main(["design", "--map", str(labelled[0].map_path), "--n", "20", "--seed", "-5",
              "--out", str(tmp_path / "d")])
    assert stop.value.code == 2 and not (tmp_path / "d").exists()
    assert capsys.readouterr().err.splitlines()[0] == (
        "isamap-assess design: error: argument --seed: must be a whole number from 0 to "
        "4294967295, got -5")
    with pytest.raises(ConfigError, match="--seed must be a whole number from 0 to"):
        design_sample(str(labelled[0].map_path), n=20, seed=2**32)  # a library caller too


def test_a_killed_design_leaves_nothing_a_new_design_mixes_with(labelled, tmp_path,
                                                                 monkeypatch, capsys):
    import inference.assess.point_files as point_files

    scene, _ = labelled
    out = tmp_path / "d"

    written = point_files._text

    def killed(path, text):
        if path.name == "sample.kml":
            raise KeyboardInterrupt  # the run is killed while it writes the files
        return written(path, text)

    monkeypatch.setattr(point_files, "_text", killed)
    with pytest.raises(KeyboardInterrupt):
        point_files.write_design(str(scene.map_path), out, n=600, minimum=30, seed=1)
    monkeypatch.undo()
    assert (out / "sample.json").exists() and (out / "sample.csv").exists()
    status = main(["design", "--map", str(scene.map_path), "--n", "100", "--min-per-stratum",
                   "30", "--out", str(out)])  # another design into the killed one's folder
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and "holds another sample design" in err[0]
    assert len((out / "sample.csv").read_text().splitlines()) == 601  # untouched
    assert main(["design", "--map", str(scene.map_path), "--n", "600", "--min-per-stratum",
                 "30", "--seed", "1", "--out", str(out), "-q"]) == 0  # the same one completes
    assert (out / "sample.kml").exists() and (out / "labelling_app.js").exists()
    (out / "sample.json").unlink()  # files whose design is unknown are not mixed with either
    capsys.readouterr()
    assert main(["design", "--map", str(scene.map_path), "--n", "100", "--min-per-stratum",
                 "30", "--out", str(out)]) == 2
    assert "but no sample.json" in capsys.readouterr().err


def test_a_labelled_file_away_from_its_design_names_the_strata_that_drew_it(tmp_path, capsys):
    """Labelled away from its design folder, a change design's sample was scored on the class
    map's strata without a word (OA 39.9 % against 38.7 %, area 5.95 against 4.38 km² on the
    real tile): nothing in the file told. Its rows now carry the strata's ``strata_id``."""
    classes, change = _change_design(tmp_path)
    rows = list(csv.DictReader((tmp_path / "d" / "sample.csv").open()))
    assert len({row["strata_id"] for row in rows}) == 1 and len(rows[0]["strata_id"]) == 12
    for row in rows:
        row["reference"] = "pervious"
    (tmp_path / "elsewhere").mkdir()
    reference = _csv(tmp_path / "elsewhere" / "labelled.csv", rows)  # away from sample.json
    capsys.readouterr()
    status = main(["score", "--map", str(classes), "--reference", str(reference),
                   "--out", str(tmp_path / "s"), "-q"])
    line = _refused(capsys, status, tmp_path / "s", "was drawn on other strata (strata_id "
                    f"{rows[0]['strata_id']}) than the strata raster", "--design")
    assert line.startswith("isamap-assess score: error: ")
    for extra in (["--strata", str(change)], ["--design", str(tmp_path / "d")]):
        assert main(["score", "--map", str(classes), "--reference", str(reference),
                     "--out", str(tmp_path / f"s{len(extra[1])}"), "-q", *extra]) == 0
    # points of two designs in one score: refused, each design is scored on its own
    other = [dict(r, id=f"q{i}", strata_id="0123456789ab") for i, r in enumerate(rows)]
    mixed = _csv(tmp_path / "elsewhere" / "other.csv", other)
    capsys.readouterr()
    status = main(["score", "--map", str(classes), "--strata", str(change), "--reference",
                   str(reference), "--reference", str(mixed), "--out", str(tmp_path / "m"), "-q"])
    _refused(capsys, status, tmp_path / "m", "the points come from 2 sample designs")


def test_a_ceo_export_away_from_its_design_names_the_strata_that_drew_it(tmp_path, capsys):
    """The CEO plot file carries the design's strata as an extra plot column, which CEO's
    export returns as ``pl_strata_id``: a change design's points labelled in CEO and scored
    without ``--design`` are refused on the class map's strata, scored on the change COG's."""
    classes, change = _change_design(tmp_path)
    plots = list(csv.DictReader((tmp_path / "d" / "ceo_plots.csv").open()))
    drawn = {row["strata_id"] for row in csv.DictReader((tmp_path / "d" / "sample.csv").open())}
    assert {row["STRATA_ID"] for row in plots} == drawn and len(drawn) == 1
    question = "What covers the point?"
    export = [{"plotid": row["PLOTID"], "sampleid": 1, "lon": row["LON"], "lat": row["LAT"],
               "pl_strata_id": row["STRATA_ID"], question: "pervious"} for row in plots]
    (tmp_path / "elsewhere").mkdir()
    reference = _csv(tmp_path / "elsewhere" / "ceo-export.csv", export)
    capsys.readouterr()
    status = main(["score", "--map", str(classes), "--reference", str(reference),
                   "--reference-column", question, "--out", str(tmp_path / "s"), "-q"])
    _refused(capsys, status, tmp_path / "s", f"was drawn on other strata (strata_id "
             f"{next(iter(drawn))})", "--design")
    assert main(["score", "--map", str(classes), "--strata", str(change), "--reference",
                 str(reference), "--reference-column", question, "--out", str(tmp_path / "t"),
                 "-q"]) == 0


def _app_export(path, rows, with_positions):
    """The labelling app's Drive export as Earth Engine writes it: the selectors' columns."""
    columns = ["id", "lon", "lat", "reference", "reference_code"] if with_positions else \
        ["id", "reference", "reference_code"]
    codes = {"pervious": 0, "impervious": 1, "nodata": -2, "": -1}
    return _csv(path, [{k: v for k, v in {**r, "reference_code": codes[r["reference"]]}.items()
                        if k in columns} for r in rows])


@pytest.mark.slow
def test_points_nobody_can_label_are_recorded_as_nodata_and_counted(tmp_path, capsys):
    """A cloud or a gap left no way to record a point: with --design the score refused the
    sample (60 of 500 points on a real tile), without it the report never said points were
    missing. ``nodata`` is now a reference value: left out, counted, its assumption stated.
    The labelling app's own export (ids and labels, no positions) is scored with --design."""
    scene = synthetic_scene(tmp_path)
    assert main(["design", "--map", str(scene.map_path), "--n", "100", "--min-per-stratum",
                 "30", "--out", str(tmp_path / "d"), "-q"]) == 0
    rows = list(csv.DictReader((tmp_path / "d" / "sample.csv").open()))
    with rasterio.open(scene.truth_path) as ds:
        truth = ds.read(1)
        for i, row in enumerate(rows):
            r, c = ds.index(float(row["x"]), float(row["y"]))
            row["reference"] = "nodata" if i < 12 else ("pervious", "impervious")[truth[r, c]]
    labelled = _csv(tmp_path / "labelled.csv", rows)
    new_app = _app_export(tmp_path / "app.csv", rows, with_positions=True)
    old_app = _app_export(tmp_path / "app-old.csv", rows, with_positions=False)
    capsys.readouterr()
    for name, reference, extra in (("plain", labelled, []), ("design", labelled, ["--design"]),
                                   ("app", new_app, []), ("app-design", new_app, ["--design"]),
                                   ("old-app-design", old_app, ["--design"])):
        args = [*extra, str(tmp_path / "d")] if extra else []
        assert main(["score", "--map", str(scene.map_path), "--reference", str(reference),
                     "--out", str(tmp_path / name), "-q", *args]) == 0, name
        err = capsys.readouterr().err
        assert "12 of 100 points are nodata (first: p00001): they could not be labelled" in err
        report = json.loads((tmp_path / name / "report.json").read_text())
        assert report["n"] == 88 and report["no_data_points_left_out"] == 12, name
        assert "12 points could not be labelled (reference `nodata`" in \
            (tmp_path / name / "report.md").read_text()
    # the old app's export without --design: its points have no positions
    status = main(["score", "--map", str(scene.map_path), "--reference", str(old_app),
                   "--out", str(tmp_path / "nowhere"), "-q"])
    _refused(capsys, status, tmp_path / "nowhere", "lacks the columns ['lon', 'lat']",
             "is scored with --design")


def _coarser(path, out, factor=2):
    """``path``'s class map at ``factor`` times its pixel size (its top-left pixel of each)."""
    with rasterio.open(path) as ds:
        data, transform, crs = ds.read(1)[::factor, ::factor], ds.transform, ds.crs
    raw = out.with_suffix(".raw.tif")
    with rasterio.open(raw, "w", driver="GTiff", width=data.shape[1], height=data.shape[0],
                       count=1, dtype="uint8", nodata=NODATA, crs=crs,
                       transform=transform @ Affine.scale(factor)) as dst:
        dst.write(data, 1)
    write_cog(raw, out, "class", {"classes": "pervious,impervious", "model": "test"})
    return out


@pytest.mark.slow
def test_points_sharing_a_pixel_are_never_weighted_by_a_raster_that_did_not_draw_them(
        tmp_path, capsys):
    """Scored without --design away from their design folder, a sample whose points share a
    pixel of the strata raster was weighted by that raster's strata without a word: a point
    listed twice (a copied row, two sittings merged under other ids) counted its label twice,
    and a sample drawn on a 10 m map scored on a 20 m one (the labelling app's export, which
    carried no strata_id) took the coarser map's strata. A design draws each pixel once, so
    both are refused; with the right --design (or without the extra row) they score."""
    scene = synthetic_scene(tmp_path)
    assert main(["design", "--map", str(scene.map_path), "--n", "600", "--min-per-stratum",
                 "30", "--out", str(tmp_path / "d"), "-q"]) == 0
    rows = list(csv.DictReader((tmp_path / "d" / "sample.csv").open()))
    with rasterio.open(scene.truth_path) as ds:
        truth = ds.read(1)
        for row in rows:
            r, c = ds.index(float(row["x"]), float(row["y"]))
            row["reference"] = ("pervious", "impervious")[truth[r, c]]
    (tmp_path / "elsewhere").mkdir()
    extra = f"p{len(rows) + 1:05d}"
    twice = _csv(tmp_path / "elsewhere" / "twice.csv",
                 [*rows, dict(rows[5], id=extra)])  # p00006 again, under another id
    capsys.readouterr()
    status = main(["score", "--map", str(scene.map_path), "--reference", str(twice),
                   "--out", str(tmp_path / "s1"), "-q"])
    _refused(capsys, status, tmp_path / "s1", "1 point falls on a pixel of the strata raster",
             f"first: {extra} on the pixel of p00006", "--design")
    status = main(["score", "--map", str(scene.map_path), "--reference", str(twice),
                   "--design", str(tmp_path / "d"), "--out", str(tmp_path / "s2"), "-q"])
    _refused(capsys, status, tmp_path / "s2", "not in the design")
    once = _csv(tmp_path / "elsewhere" / "once.csv", rows)
    assert main(["score", "--map", str(scene.map_path), "--reference", str(once),
                 "--out", str(tmp_path / "s3"), "-q"]) == 0
    # drawn on the 10 m map, scored on a 20 m version of it from a file without strata_id
    coarse = _coarser(scene.map_path, tmp_path / "coarse_class.tif")
    blind = _csv(tmp_path / "elsewhere" / "export.csv",
                 [{k: v for k, v in r.items() if k != "strata_id"} for r in rows])
    capsys.readouterr()
    status = main(["score", "--map", str(coarse), "--reference", str(blind),
                   "--out", str(tmp_path / "s4"), "-q"])
    line = _refused(capsys, status, tmp_path / "s4", "points fall on a pixel of the strata "
                    "raster", "drawn on another raster (a finer map)")
    assert line.startswith("isamap-assess score: error: ")
    assert main(["score", "--map", str(coarse), "--reference", str(blind), "--design",
                 str(tmp_path / "d"), "--out", str(tmp_path / "s5"), "-q"]) == 0


def test_the_labelling_apps_export_names_the_strata_that_drew_its_points(tmp_path, capsys):
    """The app's Drive export (id, lon, lat, reference) carried nothing that could tell the
    strata that drew it, and it is always labelled away from the design folder: a change
    design's export scored on the class map was weighted by the class map's strata. Its
    points now carry the sample's strata_id and its export writes it."""
    classes, change = _change_design(tmp_path)
    rows = list(csv.DictReader((tmp_path / "d" / "sample.csv").open()))
    app = (tmp_path / "d" / "labelling_app.js").read_text()
    shared = json.loads(app.split("var sampleIds = ", 1)[1].split(";", 1)[0])
    assert shared["strata_id"] == rows[0]["strata_id"]  # set on every exported row
    assert "f.set(sampleIds)" in app
    selectors = app.split("selectors: [", 1)[1].split("]", 1)[0]
    exported = [name.strip(" '\n") for name in selectors.split(",")]
    assert exported == ["id", "lon", "lat", "strata_id", "design_id", "reference",
                        "reference_code"]
    for row in rows:
        row["reference"] = "pervious"
    export = _csv(tmp_path / "isamap_reference_202601011200.csv",
                  [{k: row[k] for k in exported if k in row} | {"reference_code": 0}
                   for row in rows])  # as Earth Engine writes the selectors
    capsys.readouterr()
    status = main(["score", "--map", str(classes), "--reference", str(export),
                   "--out", str(tmp_path / "s"), "-q"])
    _refused(capsys, status, tmp_path / "s", "was drawn on other strata", "--design")
    assert main(["score", "--map", str(classes), "--strata", str(change), "--reference",
                 str(export), "--out", str(tmp_path / "s2"), "-q"]) == 0


def test_a_point_off_the_map_is_named_by_its_id():
    """Named by its row number before ("point 167"), which the user's file does not show."""
    import numpy as np

    from core.errors import ConfigError
    from inference.assess.strata import check_codes

    with pytest.raises(ConfigError, match=r"1 points fall on nodata or outside the map m\.tif "
                                          r"\(first: point zz1\)"):
        check_codes(np.array([0, 1, 255]), ["pervious", "impervious"], "the map m.tif",
                    ("a1", "a2", "zz1"))


def test_labels_made_on_another_design_of_the_same_map_are_never_scored_as_this_ones(
        tmp_path, capsys):
    """Two designs on one map (another seed) share the ids p00001... and the strata: an
    id-only labelled file of one, scored with ``--design`` the other, exited 0 with its labels
    at the other design's points. Every sample file now carries ``design_id``."""
    scene = synthetic_scene(tmp_path)
    for name, seed in (("a", "0"), ("b", "1")):
        assert main(["design", "--map", str(scene.map_path), "--n", "100", "--min-per-stratum",
                     "30", "--seed", seed, "--out", str(tmp_path / name), "-q"]) == 0
    drawn = {name: {r["id"]: r for r in csv.DictReader((tmp_path / name / "sample.csv").open())}
             for name in "ab"}
    assert set(drawn["a"]) == set(drawn["b"])  # the same ids...
    ids_of = {name: {r["design_id"] for r in rows.values()} for name, rows in drawn.items()}
    assert all(len(v) == 1 for v in ids_of.values()) and ids_of["a"] != ids_of["b"]  # ...not this
    mapped = {r["id"]: r["map_class"] for r in csv.DictReader(
        (tmp_path / "b" / "design_points.csv").open())}
    labels = [{"id": pid, "design_id": row["design_id"], "reference": mapped[pid]}
              for pid, row in drawn["b"].items()]
    reference = _csv(tmp_path / "b_labels.csv", labels)  # ids and labels alone
    capsys.readouterr()
    status = main(["score", "--map", str(scene.map_path), "--reference", str(reference),
                   "--design", str(tmp_path / "a"), "--out", str(tmp_path / "s"), "-q"])
    _refused(capsys, status, tmp_path / "s", "another sample design (design_id "
             f"{next(iter(ids_of['b']))})", f"(design_id {next(iter(ids_of['a']))})")
    assert main(["score", "--map", str(scene.map_path), "--reference", str(reference),
                 "--design", str(tmp_path / "b"), "--out", str(tmp_path / "t"), "-q"]) == 0
    assert json.loads((tmp_path / "t" / "report.json").read_text())["products"]["map"][
        "overall_accuracy"] == pytest.approx(1.0)  # each label at its own point
    # a CEO export carries it back as pl_design_id
    plots = list(csv.DictReader((tmp_path / "b" / "ceo_plots.csv").open()))
    export = [{"plotid": p["PLOTID"], "sampleid": 1, "pl_strata_id": p["STRATA_ID"],
               "pl_design_id": p["DESIGN_ID"], "lon": p["LON"], "lat": p["LAT"],
               "reference": mapped[f"p{int(p['PLOTID']):05d}"]} for p in plots]
    ceo = _csv(tmp_path / "ceo.csv", export)
    capsys.readouterr()
    status = main(["score", "--map", str(scene.map_path), "--reference", str(ceo),
                   "--design", str(tmp_path / "a"), "--out", str(tmp_path / "c"), "-q"])
    _refused(capsys, status, tmp_path / "c", "another sample design")
    # a file that names no design and gives no positions cannot be checked: said, then scored
    bare = _csv(tmp_path / "bare.csv", [{k: r[k] for k in ("id", "reference")} for r in labels])
    assert main(["score", "--map", str(scene.map_path), "--reference", str(bare),
                 "--design", str(tmp_path / "b"), "--out", str(tmp_path / "u")]) == 0
    assert "neither positions nor a design_id" in capsys.readouterr().err


def test_the_report_records_its_inputs_and_says_when_another_report_is_replaced(
        labelled, tmp_path, capsys):
    """A score into a folder holding a report made from other references replaced it without
    a word, and report.json did not say which references made it."""
    import hashlib

    scene, rows = labelled
    first = _csv(tmp_path / "first.csv", rows)
    second = _csv(tmp_path / "second.csv",
                  [dict(r, reference="impervious" if i < 5 else r["reference"])
                   for i, r in enumerate(rows)])
    out = tmp_path / "s"
    assert main(["score", "--map", str(scene.map_path), "--reference", str(first),
                 "--out", str(out)]) == 0
    inputs = json.loads((out / "report.json").read_text())["inputs"]
    assert inputs["references"] == {"first.csv": hashlib.sha256(
        first.read_bytes()).hexdigest()}  # named by file name: the report is shared
    assert inputs["map"] == {"name": scene.map_path.name, "sha256": hashlib.sha256(
        scene.map_path.read_bytes()).hexdigest()} and inputs["design"] is None
    capsys.readouterr()
    assert main(["score", "--map", str(scene.map_path), "--reference", str(first),
                 "--out", str(out)]) == 0  # the same inputs: nothing to say
    assert "made from other inputs" not in capsys.readouterr().err
    assert main(["score", "--map", str(scene.map_path), "--reference", str(second),
                 "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"{out / 'report.json'} holds a report made from other inputs (references: " \
        "first.csv recorded only there; second.csv only now): it is replaced by this one" in err
    assert list(json.loads((out / "report.json").read_text())["inputs"]["references"]) == \
        ["second.csv"]


@pytest.mark.slow
def test_a_map_changed_under_its_name_is_told_when_its_report_is_replaced(labelled, tmp_path,
                                                                         capsys):
    """report.json named the map by name alone: a map whose pixels changed under the same
    name was scored again over its report without a word, and a reader could not tell
    whether the map they held was the one scored."""
    import hashlib
    import shutil

    scene, rows = labelled
    reference = _csv(tmp_path / "labels.csv", rows)
    map_path = shutil.copy(scene.map_path, tmp_path / "map_class.tif")
    worse = shutil.copy(scene.worse_path, tmp_path / "worse_class.tif")
    out = tmp_path / "s"
    args = ["score", "--map", str(map_path), "--reference", str(reference), "--out", str(out),
            "--design", str(scene.map_path.parent / "d"),  # a map made again, on its design
            "--compare", f"worse={worse}"]
    assert main(args) == 0
    before = hashlib.sha256(map_path.read_bytes()).hexdigest()
    assert json.loads((out / "report.json").read_text())["inputs"]["map"] == {
        "name": "map_class.tif", "sha256": before}
    with rasterio.open(map_path) as ds:
        codes = ds.read(1)
    codes[100:110, 100:110] = np.where(codes[100:110, 100:110] == 1, 0, 1)  # other pixels
    class_cog(map_path, codes)
    after = hashlib.sha256(map_path.read_bytes()).hexdigest()
    capsys.readouterr()
    assert main(args) == 0
    assert f"{out / 'report.json'} holds a report made from other inputs (map.map_class.tif: " \
        f"{before[:36]} ... there, {after[:36]} ... now): it is replaced by this one" \
        in capsys.readouterr().err
    assert json.loads((out / "report.json").read_text())["inputs"]["map"]["sha256"] == after
    was = hashlib.sha256(worse.read_bytes()).hexdigest()
    class_cog(worse, codes)  # a compared product changed under its name
    now = hashlib.sha256(worse.read_bytes()).hexdigest()
    assert main(args) == 0
    assert f"(compare.worse.sha256: {was[:36]} ... there, {now[:36]} ... now)" in \
        capsys.readouterr().err
    # a report of an earlier isamap named the map alone: its shape is told, then replaced
    report = json.loads((out / "report.json").read_text())
    report["inputs"]["map"] = "map_class.tif"
    (out / "report.json").write_text(json.dumps(report))
    assert main(args) == 0
    assert f"(map.map_class.tif: none there, {after[:36]} ... now)" in capsys.readouterr().err
    assert json.loads((out / "report.json").read_text())["inputs"]["map"]["sha256"] == after


def test_a_design_folder_edited_after_it_was_drawn_is_refused_in_one_line(labelled, tmp_path,
                                                                           capsys):
    """sample.json did not record its design_id, so a design_points.csv edited afterwards
    (a point moved) was scored as the design."""
    import shutil

    scene, rows = labelled
    design = shutil.copytree(scene.map_path.parent / "d", tmp_path / "d")
    drawn = json.loads((design / "sample.json").read_text())["design_id"]
    assert {r["design_id"] for r in rows} == {drawn}  # the id every sample row carries
    points = list(csv.DictReader((design / "design_points.csv").open()))
    points[3]["lon"] = f"{float(points[3]['lon']) + 1e-5:.7f}"
    _csv(design / "design_points.csv", points)
    reference = _csv(tmp_path / "labels.csv", rows)
    _refused(capsys, _score(scene, reference, tmp_path / "s", "--design", str(design)),
             tmp_path / "s", f"sample.json records design_id {drawn} but the points of "
             "design_points.csv are design_id ", "the design folder was edited",
             "draw it again with isamap-assess design")


def test_another_dates_map_scored_with_the_design_counts_its_area_from_its_pixels(
        tmp_path, capsys, monkeypatch):
    """A design drawn on one date's map of a series, another date's map scored with it: the
    strata raster (recorded by file name) was not found, and the map's mapped area became an
    estimate from the points with a warning. It is looked for beside the map's date folder
    and chosen by its pixels."""
    import shutil

    scene = synthetic_scene(tmp_path)
    maps = tmp_path / "maps"
    for month, source in (("2019-06", scene.map_path), ("2021-06", scene.worse_path)):
        (maps / month).mkdir(parents=True)
        shutil.copy(source, maps / month / f"isa_{month}_class.tif")
    first, later = maps / "2019-06" / "isa_2019-06_class.tif", maps / "2021-06" / \
        "isa_2021-06_class.tif"
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # the name alone finds nothing here
    assert main(["design", "--map", str(first), "--n", "100", "--min-per-stratum", "30",
                 "--out", str(tmp_path / "d"), "-q"]) == 0
    rows = list(csv.DictReader((tmp_path / "d" / "sample.csv").open()))
    with rasterio.open(later) as ds:
        rc = [ds.index(float(r["x"]), float(r["y"])) for r in rows]
        codes = ds.read(1)
    reference = _csv(tmp_path / "labels.csv", [
        dict(r, reference=CLASSES[scene.truth[i, j]]) for r, (i, j) in zip(rows, rc,
                                                                         strict=True)])
    capsys.readouterr()
    assert main(["score", "--map", str(later), "--reference", str(reference), "--design",
                 str(tmp_path / "d"), "--out", str(tmp_path / "s")]) == 0
    assert "not at hand" not in capsys.readouterr().err
    area = json.loads((tmp_path / "s" / "report.json").read_text())["products"]["map"]["area"]
    share = area["impervious"]["mapped_km2"] / sum(a["mapped_km2"] for a in area.values())
    classed = codes[codes != NODATA]
    assert share == pytest.approx(float((classed == 1).mean()), abs=2e-3)  # its pixels
