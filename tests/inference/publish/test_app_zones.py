"""The series app embeds zones up to a stated size: a large zones file keeps its clicks under
Earth Engine's 10 MB request limit (the app sent 20.6 MB for a 12.3 MB zones file)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cli.map import main
from inference.publish.app_zones import EMBED_LIMIT_BYTES, app_zones, geojson_bytes
from tests.support.mapping import model_file, write_month_stack
from tests.support.rasters import smooth_stack

REQUEST_LIMIT = 10 * 2**20  # Earth Engine refuses larger requests


def _large_zones(count: int = 100, vertices: int = 3300) -> dict:
    """``count`` ragged districts around (-7.44, 52.64) with ``vertices`` points each."""
    rng = np.random.default_rng(0)
    features = []
    for k in range(count):
        cx, cy = -7.6 + 0.03 * (k % 10), 52.5 + 0.03 * (k // 10)
        angle = np.linspace(0, 2 * np.pi, vertices, endpoint=False)
        radius = 0.012 * (1 + 0.15 * rng.standard_normal(vertices).cumsum() / vertices ** 0.5)
        ring = np.c_[cx + radius * np.cos(angle), cy + radius * np.sin(angle)].tolist()
        features.append({"type": "Feature", "properties": {"name": f"district {k}"},
                         "geometry": {"type": "Polygon", "coordinates": [ring + ring[:1]]}})
    return {"type": "FeatureCollection", "features": features}


def _click_request_bytes(ee, zones: dict) -> int:
    """The request a map click sends: the embedded zones filtered by the clicked point."""
    click = ee.FeatureCollection(zones).filterBounds(ee.Geometry.Point([-7.44, 52.64])).limit(1)
    return len(json.dumps(ee.serializer.encode(click, for_cloud_api=True)))


@pytest.mark.slow
def test_large_zones_are_simplified_to_keep_a_click_under_the_request_limit(ee_offline):
    zones = _large_zones()
    assert geojson_bytes(zones) > 12e6
    embedded = app_zones(zones)
    assert embedded is not None and embedded.zones is not None
    assert embedded.embedded_bytes <= EMBED_LIMIT_BYTES and embedded.tolerance_m > 0
    assert [f["properties"]["name"] for f in embedded.zones["features"]] == [
        f["properties"]["name"] for f in zones["features"]]
    for given, kept in zip(zones["features"], embedded.zones["features"], strict=True):
        ring, simple = (np.asarray(f["geometry"]["coordinates"][0])
                        for f in (given, kept))
        assert len(simple) >= 4 and (simple[0] == simple[-1]).all()
        assert np.abs(simple.mean(axis=0) - ring.mean(axis=0)).max() < 0.002  # same place
    assert _click_request_bytes(ee_offline, embedded.zones) < REQUEST_LIMIT
    small = {"type": "FeatureCollection", "features": zones["features"][:2]}
    small["features"] = [{**f, "geometry": {"type": "Polygon", "coordinates": [
        [*f["geometry"]["coordinates"][0][::100], f["geometry"]["coordinates"][0][0]]]}}
        for f in small["features"]]
    as_given = app_zones(small)
    assert as_given.zones == small and as_given.tolerance_m == 0.0  # under the limit: as is
    assert "embedded as given (limit 1 MB)" in as_given.describe()


def test_the_map_plan_states_the_zones_limit_and_writes_nothing(tmp_path, capsys):
    folder = tmp_path / "model"
    model = model_file(folder / "unet.pt", write_month_stack(folder, smooth_stack(40, 40)).grid)
    zones = tmp_path / "districts.geojson"
    zones.write_text(json.dumps(_large_zones(count=12)))
    assert main(["--bbox", "-7.45,52.50,-7.43,52.52", "--months", "2019-06", "--model",
                 str(model), "--out", str(tmp_path / "maps"), "--zones", str(zones),
                 "--publish", "projects/my-proj/assets/isa", "--dry-run", "--tile", "128",
                 "--overlap", "16", "--precision", "fp32", "-q"]) == 0
    out = capsys.readouterr().out
    line = next(s for s in out.splitlines() if s.startswith("  app zones"))
    assert "12 zones" in line and "simplified to" in line and "limit 1 MB" in line
    app = out[out.index("var zones = "):].splitlines()[0]
    assert len(app) <= EMBED_LIMIT_BYTES + 100
    # the dry run printed the manifests and the app, and wrote nothing (docs/mapping.md)
    assert "isa_2019_06" in out and "ui.Slider" in out
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == [
        "districts.geojson", "stack_2019-06.tif", "unet.pt"]
