"""``isamap-map --vectors --zones-name``: a local map's polygons and its districts' names."""

from __future__ import annotations

import csv
import json

import pytest

from cli.map import main
from tests.support.mapping import model_file

pyogrio = pytest.importorskip("pyogrio")
pytest.importorskip("shapely")


def test_a_local_map_writes_each_dates_polygons_and_names_its_districts(tmp_path, capsys):
    from gee_export.local.synthetic import generate_scene

    scene = generate_scene(tmp_path / "scenes" / "a", width=96, height=96, progress=False,
                           month="2019-06")
    model = model_file(tmp_path / "m.pt", scene.grid, name="test-threshold", backend="local",
                       module="tests.support.models", threshold=0.12)
    g = scene.grid
    half = g.x0 + g.width * g.resolution / 2
    south, north = g.y0 - g.height * g.resolution, g.y0

    def district(west: float, east: float, name: str) -> dict:
        ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
        return {"type": "Feature", "properties": {"NAME_0": "China", "NAME_1": "Hubei",
                                                  "NAME_2": name},
                "geometry": {"type": "Polygon", "coordinates": [ring]}}

    zones = tmp_path / "gadm.geojson"
    zones.write_text(json.dumps({
        "type": "FeatureCollection", "crs": {"type": "name", "properties": {"name": g.crs}},
        "features": [district(g.x0, half, "Hongshan"), district(half, g.x0 + g.width * 10.0,
                                                                "Wuchang")]}))
    out = tmp_path / "out"
    assert main(["--backend", "local", "--scenes", str(tmp_path / "scenes"), "--months",
                 "2019-06", "--model", str(model), "--out", str(out), "--tile", "64",
                 "--overlap", "16", "--no-progress", "--precision", "fp32", "--channels-last",
                 "off", "-q", "--zones", str(zones), "--vectors",
                 "--vector-min-area", "0"]) == 0
    capsys.readouterr()
    with open(out / "series_area.csv") as fh:
        rows = {r["zone"]: r for r in csv.DictReader(fh)}
    assert set(rows) == {"Hongshan", "Wuchang"}
    gpkg = out / "2019-06" / "isa_2019-06_builtup.gpkg"
    _, _, _, (area, _, _) = pyogrio.raw.read(str(gpkg), layer="builtup")
    total = sum(float(r["isa_km2"]) for r in rows.values())
    assert total > 0 and area.sum() / 1e6 == pytest.approx(total, abs=1e-5)
