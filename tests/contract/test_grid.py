import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contract.grid import Grid, Window, metre_crs_problem, patch_id, utm_epsg
from core.errors import GridError

coord = st.floats(-500_000, 900_000, allow_nan=False, allow_infinity=False)
size = st.floats(1.0, 50_000.0, allow_nan=False)
res = st.sampled_from([10.0, 20.0, 30.0, 1.0, 2.5])


@settings(max_examples=200, deadline=None)
@given(west=coord, south=coord, w=size, h=size, resolution=res)
def test_from_bounds_snaps_to_whole_pixels_and_covers(west, south, w, h, resolution):
    bounds = (west, south, west + w, south + h)
    grid = Grid.from_bounds(bounds, "EPSG:32650", resolution)
    assert math.isclose(grid.x0 / resolution, round(grid.x0 / resolution), abs_tol=1e-6)
    assert math.isclose(grid.y0 / resolution, round(grid.y0 / resolution), abs_tol=1e-6)
    gw, gs, ge, gn = grid.bounds
    tol = 1e-6 * max(1.0, abs(west), abs(south))
    assert gw <= west + tol and gs <= south + tol and ge >= west + w - tol and gn >= south + h - tol
    # minimal: shrinking by one pixel on either side would no longer cover the bounds
    assert gw > west - resolution - tol and gn < south + h + resolution + tol
    assert ge - (west + w) < resolution + tol and south - gs < resolution + tol


@settings(max_examples=200, deadline=None)
@given(width=st.integers(1, 2000), height=st.integers(1, 2000),
       patch=st.integers(8, 256), data=st.data())
def test_patches_lie_inside_grid_and_bounds_match_windows(width, height, patch, data):
    stride = data.draw(st.integers(1, patch))
    grid = Grid("EPSG:32650", 500_000.0, 3_400_000.0, width, height, 10.0, patch, stride)
    assert grid.patch_rows == (0 if height < patch else 1 + (height - patch) // stride)
    if grid.patch_count == 0:
        return
    row = data.draw(st.integers(0, grid.patch_rows - 1))
    col = data.draw(st.integers(0, grid.patch_cols - 1))
    win = grid.patch_window(row, col)
    assert grid.clip(win) == win
    west, south, east, north = grid.patch_bounds(row, col)
    assert math.isclose(east - west, patch * 10.0) and math.isclose(north - south, patch * 10.0)
    assert math.isclose(west, grid.x0 + col * stride * 10.0)
    assert math.isclose(north, grid.y0 - row * stride * 10.0)
    t = grid.patch_transform(row, col)
    assert (t.c, t.f) == (west, north)
    # one more patch in either direction would leave the grid
    assert (grid.patch_rows * stride + patch - stride) <= height < grid.patch_rows * stride + patch


def test_patch_id_names_row_then_column():
    assert patch_id(3, 17) == "r3_c17"


def test_scaled_grid_keeps_origin_and_patch_ground():
    grid = Grid("EPSG:32650", 1000.0, 5000.0, 300, 200)
    fine = grid.scaled(10)
    assert fine.transform.c == grid.transform.c and fine.transform.f == grid.transform.f
    assert fine.resolution == 1.0 and fine.shape == (2000, 3000)
    assert fine.patch_bounds(0, 2) == grid.patch_bounds(0, 2)
    with pytest.raises(GridError):
        grid.scaled(0)


def test_crs_transform_is_earth_engine_order():
    grid = Grid("EPSG:32650", 100.0, 200.0, 10, 10)
    assert grid.crs_transform == [10.0, 0.0, 100.0, 0.0, -10.0, 200.0]


def test_to_from_dict_round_trip_and_missing_fields():
    grid = Grid("EPSG:32650", 100.0, 200.0, 10, 20, 10.0, 8, 4)
    assert Grid.from_dict(grid.to_dict()) == grid
    with pytest.raises(GridError, match="lacks"):
        Grid.from_dict({"crs": "EPSG:4326"})


@pytest.mark.parametrize("kwargs", [dict(width=0), dict(resolution=-1.0), dict(stride=200),
                                    dict(crs="")])
def test_invalid_grids_are_refused(kwargs):
    base = dict(crs="EPSG:32650", x0=0.0, y0=0.0, width=10, height=10)
    base.update(kwargs)
    with pytest.raises(GridError):
        Grid(**base)


def test_utm_zone_from_centroid():
    assert utm_epsg(114.4, 30.7) == 32650  # Wuhan
    assert utm_epsg(-3.7, -10.0) == 32730
    assert utm_epsg(180.0, 0.0) == 32660
    with pytest.raises(GridError):
        utm_epsg(200.0, 0.0)


def test_from_lonlat_bounds_wuhan_is_utm50():
    grid = Grid.from_lonlat_bounds((113.683, 29.967, 115.083, 31.367))
    assert grid.crs == "EPSG:32650"
    assert 13_000 < grid.width < 14_500 and 15_000 < grid.height < 16_000
    assert grid.x0 % 10 == 0 and grid.y0 % 10 == 0


def test_window_helpers():
    a = Window(row_off=0, col_off=0, height=10, width=10)
    assert a.intersection(Window(row_off=5, col_off=5, height=10, width=10)) == Window(
        row_off=5, col_off=5, height=5, width=5)
    with pytest.raises(TypeError):
        Window(0, 0, 10, 10)  # positional order differs from rasterio's: refused
    assert a.intersection(Window(row_off=10, col_off=0, height=5, width=5)) is None
    assert a.padded(2) == Window(row_off=-2, col_off=-2, height=14, width=14)
    rows, cols = Window(row_off=1, col_off=2, height=3, width=4).to_rasterio().toslices()
    assert (rows, cols) == (slice(1, 4), slice(2, 6))
    assert Window(row_off=1, col_off=2, height=3, width=4).to_rasterio().col_off == 2


@pytest.mark.parametrize("crs, problem", [
    ("EPSG:26918+6360", None),  # UTM 18N with NAVD88 heights in US feet: pixels in metres
    ("EPSG:32650+5773", None),
    ("EPSG:32650", None),
    ("EPSG:2263", "is not a projected CRS in metres"),  # New York State Plane, US feet
    ("EPSG:4326", "is not a projected CRS in metres"),
    ("EPSG:4326+5773", "is not a projected CRS in metres"),
])
def test_only_the_horizontal_axes_decide_a_grid_crs(crs, problem):
    """A compound CRS whose vertical axis is in feet was refused as 'not in metres'."""
    assert metre_crs_problem(crs) == problem
