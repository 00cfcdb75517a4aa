import csv
import json
import math

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.warp import Resampling, calculate_default_transform, reproject, transform_geom

from contract.geotiff import write_geotiff
from core.errors import InputDataError
from core.storage import TEMP_MARK
from inference.assess.point_files import write_design
from inference.assess.strata import read_strata
from inference.cog.maps import cog_report
from inference.predict.pixel_area import pixel_area_km2, raster_area_km2
from inference.predict.stats import (
    change_area,
    change_map,
    isa_area,
    load_zones,
    write_table,
)
from tests.support.assess import class_cog, synthetic_scene
from tests.support.rasters import assert_valid_cog

UTM = "EPSG:32650"
T = Affine(10, 0, 500000, 0, -10, 3400000)


def write_u8(path, data, transform=T, crs=UTM):
    return str(write_geotiff(path, data.astype("uint8"), transform, crs, 255))


def square(col0, col1, row0, row1, name):
    """A polygon over pixel rows/cols (edges 2 m inside), as WGS 84 GeoJSON."""
    x0, x1 = 500000 + col0 * 10 + 2, 500000 + col1 * 10 - 2
    y0, y1 = 3400000 - row0 * 10 - 2, 3400000 - row1 * 10 + 2
    ring = [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
    geometry = transform_geom(UTM, "EPSG:4326", {"type": "Polygon", "coordinates": [ring]})
    return {"type": "Feature", "properties": {"name": name}, "geometry": geometry}


@pytest.fixture
def maps(tmp_path):
    classes = np.zeros((600, 700), np.uint8)
    classes[:100, :] = 1            # 70,000 ISA pixels
    classes[500:, 600:] = 255       # 10,000 nodata pixels
    prob = np.where(classes == 1, 200, 50).astype(np.uint8)
    prob[classes == 255] = 255
    return write_u8(tmp_path / "c.tif", classes), write_u8(tmp_path / "p.tif", prob)


def test_whole_raster_area(maps):
    (row,) = isa_area(maps[0], load_zones(None, UTM), maps[1])
    assert row.zone == "all"
    assert row.isa_km2 == pytest.approx(70000 * 100 / 1e6)
    assert row.nodata_km2 == pytest.approx(10000 * 100 / 1e6)
    assert row.valid_km2 == pytest.approx((420000 - 10000) * 100 / 1e6)
    soft = (70000 * 0.8 + (410000 - 70000) * 0.2) * 100 / 1e6
    assert row.isa_probability_km2 == pytest.approx(soft)
    assert row.isa_fraction == pytest.approx(70000 / 410000, abs=1e-6)


def test_area_per_polygon_of_a_geojson(maps, tmp_path):
    zones_file = tmp_path / "zones.geojson"
    zones_file.write_text(json.dumps({"type": "FeatureCollection", "features": [
        square(0, 20, 90, 110, "straddles"), square(600, 700, 500, 600, "hole"),
        square(300, 310, 300, 310, "rural")]}))
    rows = {r.zone: r for r in isa_area(maps[0], load_zones(zones_file, UTM))}
    assert rows["straddles"].isa_km2 == pytest.approx(20 * 10 * 100 / 1e6)
    assert rows["straddles"].valid_km2 == pytest.approx(20 * 20 * 100 / 1e6)
    assert rows["hole"].valid_km2 == 0 and rows["hole"].nodata_km2 == pytest.approx(1.0)
    assert rows["rural"].isa_km2 == 0 and rows["rural"].valid_km2 == pytest.approx(0.01)
    table = write_table(list(rows.values()), tmp_path / "a.json", tmp_path / "a.csv")
    assert "straddles" in table and "isa_km2" in table.splitlines()[0]
    assert len(json.loads((tmp_path / "a.json").read_text())) == 3
    with open(tmp_path / "a.csv") as fh:
        assert {r["zone"] for r in csv.DictReader(fh)} == set(rows)


def test_geographic_pixels_shrink_with_latitude():
    t = Affine(0.001, 0, 10, 0, -0.001, 60.0005)
    at_60 = pixel_area_km2(t, rasterio.crs.CRS.from_epsg(4326), 0, 1)[0, 0]
    side = 6371.0088 * np.radians(0.001)
    assert at_60 == pytest.approx(side * side * np.cos(np.radians(60)), rel=1e-4)


def test_change_map_and_area(tmp_path):
    a = np.zeros((300, 300), np.uint8)
    b = np.zeros((300, 300), np.uint8)
    a[:100] = 1
    b[:50] = 1                      # rows 50-99 lost
    b[200:] = 1                     # rows 200-299 gained
    a[150:160, :10] = 255
    out = change_map(write_u8(tmp_path / "a.tif", a), write_u8(tmp_path / "b.tif", b),
                     str(tmp_path / "change.tif"))
    with rasterio.open(out) as ds:
        code = ds.read(1)
    assert (code[:50] == 1).all() and (code[50:100] == 3).all() and (code[200:] == 2).all()
    assert (code[150:160, :10] == 255).all() and (code[100:150] == 0).all()
    assert_valid_cog(out)
    assert cog_report(out)["tags"]["band_id"] == "isa_change"
    (row,) = change_area(out, load_zones(None, UTM))
    assert row.gain_km2 == pytest.approx(30000 * 1e-4) and row.loss_km2 == pytest.approx(1.5)
    assert row.net_change_km2 == pytest.approx(1.5) and row.stable_isa_km2 == pytest.approx(1.5)
    assert not [p for p in tmp_path.iterdir() if TEMP_MARK in p.name]


def test_change_needs_one_grid_and_zones_need_polygons(tmp_path):
    a = write_u8(tmp_path / "a.tif", np.zeros((10, 10), np.uint8))
    shifted = Affine(10, 0, 500010, 0, -10, 3400000)
    b = write_u8(tmp_path / "b.tif", np.zeros((10, 10), np.uint8), transform=shifted)
    with pytest.raises(InputDataError, match="same grid"):
        change_map(a, b, str(tmp_path / "c.tif"))
    with pytest.raises(InputDataError, match="Polygon"):
        load_zones({"type": "Point", "coordinates": [0, 0]}, UTM)


# Areas are ground areas whatever the map's CRS or geotransform.
#
# The same class map in UTM, reprojected to Web Mercator and to lon/lat, and written with a
# rotated geotransform, must report the same km² (Web Mercator inflated them by 1/cos²(lat),
# a rotation lost cos²θ); a design on a lon/lat map outlines its pixels in metres.


def _reprojected(source, target, crs: str):
    with rasterio.open(source) as src:
        transform, width, height = calculate_default_transform(
            src.crs, crs, src.width, src.height, *src.bounds)
        out = np.full((height, width), 255, np.uint8)
        reproject(rasterio.band(src, 1), out, dst_transform=transform, dst_crs=crs,
                  resampling=Resampling.nearest, dst_nodata=255)
        profile = src.profile | {"crs": crs, "transform": transform, "width": width,
                                 "height": height, "driver": "GTiff", "nodata": 255}
        tags = src.tags()
    raw = target.with_suffix(".raw.tif")
    with rasterio.open(raw, "w", **{k: v for k, v in profile.items()
                                    if k not in ("blockxsize", "blockysize", "tiled")}) as dst:
        dst.write(out, 1)
        dst.update_tags(**tags)
    return raw


@pytest.mark.parametrize("crs", ["EPSG:3857", "EPSG:4326"])
def test_a_reprojected_map_reports_the_same_ground_area(crs, tmp_path):
    scene = synthetic_scene(tmp_path)  # at 45° N: Web Mercator doubles areas there
    utm = read_strata(str(scene.map_path))
    other = read_strata(str(_reprojected(scene.map_path, tmp_path / "other.tif", crs)))
    for a, b in zip(utm.area_km2, other.area_km2, strict=True):
        assert b == pytest.approx(a, rel=0.02)  # nearest resampling moves a few edge pixels
    assert other.resolution == pytest.approx(10.0, rel=0.05)  # metres, not degrees


def test_web_mercator_pixels_shrink_by_the_projections_scale():
    transform = Affine(10, 0, 1_669_792.0, 0, -10, 3_503_549.0)  # 15° E, 30° N
    area = pixel_area_km2(transform, CRS.from_epsg(3857), 0, 4, 0, 4)
    assert np.ravel(area)[0] * 1e6 == pytest.approx(100 * math.cos(math.radians(30)) ** 2,
                                                    rel=1e-3)
    utm = pixel_area_km2(Affine(10, 0, 5e5, 0, -10, 3.4e6), CRS.from_epsg(32650), 0, 4, 0, 4)
    assert utm.shape == (4, 1) and np.all(utm == 1e-4)  # within its zone UTM is taken as true


@pytest.mark.parametrize("crs, size", [("EPSG:32650", 10.0), ("EPSG:4326", 9e-5)])
def test_a_rotated_geotransform_keeps_its_pixels_area(crs, size):
    theta = math.radians(30)
    north_up = Affine(size, 0, 114.0 if crs == "EPSG:4326" else 5e5, 0, -size,
                      30.0 if crs == "EPSG:4326" else 3.4e6)
    rotated = north_up @ Affine.rotation(30)
    assert rotated.b == pytest.approx(-size * math.sin(theta))
    plain = raster_area_km2(north_up, CRS.from_user_input(crs), 200, 200)
    turned = raster_area_km2(rotated, CRS.from_user_input(crs), 200, 200)
    assert turned == pytest.approx(plain, rel=2e-3)


def test_a_design_on_a_lon_lat_map_outlines_pixels_in_metres(tmp_path):
    codes = np.zeros((100, 100), np.uint8)
    codes[:30] = 1
    utm = class_cog(tmp_path / "utm.tif", codes)
    lonlat = _reprojected(utm, tmp_path / "ll.tif", "EPSG:4326")
    written = write_design(str(lonlat), tmp_path / "d", n=40, minimum=10)
    assert written.design.strata.resolution == pytest.approx(10.0, rel=0.05)
    script = written.files["app"].read_text()
    line = next(x for x in script.splitlines() if x.startswith("var pixelSize"))
    assert 9.5 < float(line.split("=")[1].split(";")[0]) < 10.5, line


def _corrupt_last_block(path: str) -> None:
    """Overwrite the compressed bytes of the raster's last block: reading it fails."""
    with rasterio.open(path) as ds:
        row, col = max(ij for ij, _ in ds.block_windows(1))
        offset = int(ds.get_tag_item(f"BLOCK_OFFSET_{col}_{row}", "TIFF", bidx=1))
        size = int(ds.get_tag_item(f"BLOCK_SIZE_{col}_{row}", "TIFF", bidx=1))
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(b"\xff" * size)


def test_a_change_map_failing_midway_leaves_no_work_folder(tmp_path):
    """A map unreadable in its last block fails after the first blocks were written; the
    unfinished map's folder goes with the failure, and no change map is left."""
    a = write_u8(tmp_path / "a.tif", np.zeros((512, 512), np.uint8))
    b = write_u8(tmp_path / "b.tif", np.ones((512, 512), np.uint8))
    _corrupt_last_block(b)
    out = tmp_path / "change" / "c.tif"
    with pytest.raises(rasterio.errors.RasterioIOError):
        change_map(a, b, str(out))
    assert (tmp_path / "change").is_dir() and not list((tmp_path / "change").iterdir())
