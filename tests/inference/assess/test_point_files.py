"""The files people label with carry every point, right, and the reference file reads back."""

from __future__ import annotations

import csv
import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from gee_export.core.errors import ConfigError, InputDataError
from inference.assess.point_files import SAMPLE_COLUMNS, read_reference, write_design
from tests.support.assess import CLASSES, synthetic_scene


@pytest.fixture
def written(tmp_path):
    scene = synthetic_scene(tmp_path)
    return write_design(str(scene.map_path), tmp_path / "design", n=80, seed=1, minimum=20,
                        asset_id="users/me/labels")


def test_csv_geojson_kml_and_ceo_hold_the_same_points(written):
    design, files = written.design, written.files
    rows = list(csv.DictReader(files["csv"].open()))
    assert tuple(rows[0]) == SAMPLE_COLUMNS and len(rows) == 80
    assert all(r["reference"] == "" and r["stratum"] in CLASSES for r in rows)
    lon = np.array([float(r["lon"]) for r in rows])
    assert np.allclose(lon, design.lon, atol=1e-6)
    assert np.allclose([float(r["x"]) for r in rows], design.x, atol=0.01)
    gj = json.loads(files["geojson"].read_text())
    assert [f["geometry"]["coordinates"][0] for f in gj["features"]] == pytest.approx(lon)
    kml = ET.parse(files["kml"]).getroot()
    ns = {"k": "http://www.opengis.net/kml/2.2"}
    marks = kml.findall(".//k:Placemark", ns)
    assert len(marks) == 80 and marks[0].find("k:name", ns).text == rows[0]["id"]
    lon0, lat0, _ = marks[0].find(".//k:coordinates", ns).text.split(",")
    assert (float(lon0), float(lat0)) == pytest.approx((lon[0], float(rows[0]["lat"])))
    ceo = list(csv.DictReader(files["ceo"].open()))
    assert tuple(ceo[0]) == ("PLOTID", "LON", "LAT") and len(ceo) == 80
    assert [int(r["PLOTID"]) for r in ceo] == list(range(1, 81))
    assert float(ceo[5]["LAT"]) == pytest.approx(design.lat[5], abs=1e-6)
    record = json.loads(files["json"].read_text())
    assert record["seed"] == 1 and record["n"] == 80 and record["classes"] == list(CLASSES)


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


def test_reference_file_reads_names_or_codes_and_refuses_gaps(written, tmp_path):
    rows = list(csv.DictReader(written.files["csv"].open()))
    for i, row in enumerate(rows):
        row["reference"] = "Impervious" if i % 2 else "0"
    path = tmp_path / "labelled.csv"
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=SAMPLE_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    ref = read_reference(path, CLASSES)
    assert ref.reference.tolist() == [i % 2 for i in range(80)]
    rows[3]["reference"] = ""
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=SAMPLE_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    with pytest.raises(InputDataError, match="1 of 80 points have no reference"):
        read_reference(path, CLASSES)
    rows[3]["reference"] = "water"
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=SAMPLE_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    with pytest.raises(InputDataError, match="water"):
        read_reference(path, CLASSES)
