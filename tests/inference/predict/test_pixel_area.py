"""Areas are ground areas whatever the map's CRS or geotransform.

The same class map in UTM, reprojected to Web Mercator and to lon/lat, and written with a
rotated geotransform, must report the same km² (Web Mercator inflated them by 1/cos²(lat),
a rotation lost cos²θ); a design on a lon/lat map outlines its pixels in metres.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.warp import Resampling, calculate_default_transform, reproject

from inference.assess.point_files import write_design
from inference.assess.strata import read_strata
from inference.predict.pixel_area import pixel_area_km2
from inference.predict.stats import raster_area_km2
from tests.support.assess import class_cog, synthetic_scene


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
    rotated = north_up * Affine.rotation(30)
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
