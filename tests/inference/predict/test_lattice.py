"""The tile lattice: anchored to the CRS grid, cores partition a grid, old records still read."""

from __future__ import annotations

import numpy as np
import pytest
from affine import Affine

from core.errors import ConfigError
from inference.predict.lattice import (
    Lattice,
    axis_tiles,
    batches,
    check_same,
    from_record,
    grid_offset,
)


@pytest.mark.parametrize(("height", "width", "tile", "overlap", "offset"),
                         [(150, 170, 64, 16, (0, 0)), (40, 50, 64, 16, (-5, 7)),
                          (1000, 333, 128, 32, (-340000, 50000)), (129, 128, 128, 0, (3, 3))])
@pytest.mark.parametrize("blend", ["core", "cosine"])
def test_cores_own_every_pixel_once_and_lie_inside_their_tile(height, width, tile, overlap,
                                                              offset, blend):
    owned = np.zeros((height, width), int)
    for t in Lattice(tile, overlap, blend).tiles(height, width, offset):
        owned[t.core.to_rasterio().toslices()] += 1
        assert t.window.row_off <= t.core.row_off and t.window.col_off <= t.core.col_off
        assert t.core.row_off + t.core.height <= t.window.row_off + t.window.height
        assert t.core.col_off + t.core.width <= t.window.col_off + t.window.width
        # tile corners lie on the lattice: multiples of the stride from the CRS origin
        assert (t.window.row_off + offset[0]) % (tile - overlap) == 0
        assert (t.window.col_off + offset[1]) % (tile - overlap) == 0
    assert (owned == 1).all()


@pytest.mark.parametrize("blend", ["core", "cosine"])
def test_nested_windows_cut_the_same_tiles_over_their_common_pixels(blend):
    """A city inside its province: every tile the city needs is one of the province's."""
    tile, overlap = 64, 16
    province = axis_tiles(1000, 700, tile, overlap, blend)
    for offset, extent in ((1000, 700), (1123, 50), (1300, 400), (1001, 1), (1699, 1)):
        city = axis_tiles(offset, extent, tile, overlap, blend)
        theirs = {t.index: t for t in province}
        for t in city:
            assert t.start + offset == theirs[t.index].start + 1000
        # each of the city's pixels has the same owner in both
        owner = {offset + x: t.index for t in city for x in range(*t.core)}
        assert owner == {1000 + x: t.index for t in province for x in range(*t.core)
                         if offset <= 1000 + x < offset + extent}
    # a pixel under two tiles in the cosine blend gets both (the tapers sum to one there)
    if blend == "cosine":
        one = axis_tiles(1060, 1, tile, overlap, blend)  # tiles 21 (1008..) and 22 (1056..)
        assert [t.index for t in one] == [21, 22]


def test_a_core_keeps_half_the_overlap_of_context_towards_each_neighbour():
    tiles = Lattice(64, 16, "core").tiles(64 * 5, 64)
    for t in tiles:
        assert t.core.row_off - t.window.row_off >= 8
        assert t.window.row_off + 64 - (t.core.row_off + t.core.height) >= 8


def test_the_offset_of_a_grid_counts_pixels_from_the_crs_origin():
    assert grid_offset(Affine(10, 0, 500000, 0, -10, 3400000)) == (-340000, 50000)
    assert grid_offset(Affine(10, 0, 500010, 0, -10, 3399990)) == (-339999, 50001)
    with pytest.raises(ConfigError, match="rotated"):
        grid_offset(Affine(10, 1, 500000, 0, -10, 3400000))


def test_batches_are_the_streaming_predictors_runs_of_a_tile_row():
    tiles = Lattice(64, 16, "core").tiles(140, 230, (8, 8))  # 3 rows x 5 columns
    assert (tiles[-1].row, tiles[-1].col) == (2, 4)
    groups = batches(tiles, 2)
    assert [[(t.row, t.col) for t in g] for g in groups[:3]] == [
        [(0, 0), (0, 1)], [(0, 2), (0, 3)], [(0, 4)]]
    assert sum(len(g) for g in groups) == len(tiles) and len(groups) == 9
    with pytest.raises(ConfigError, match="--batch-size must be >= 1, got 0"):
        batches(tiles, 0)


def test_the_record_round_trips_and_another_lattice_is_refused():
    lattice = Lattice(512, 64, "core")
    origin = (500190.0, 3399810.0)
    assert from_record(lattice.record(origin)) == (lattice, origin)
    assert from_record(lattice.tags(origin)) == (lattice, origin)
    assert lattice.tags(origin)["lattice"] == "grid"
    check_same(lattice, origin, lattice.tags(origin), "the series")
    # on the grid lattice another corner of the grid cuts the same tiles
    check_same(lattice, (500200.0, 3399810.0), lattice.record(origin), "the series")
    with pytest.raises(ConfigError, match=r"--tile 512 --overlap 64 .* --tile 256"):
        check_same(Lattice(256, 64, "core"), origin, lattice.record(origin), "the series")
    with pytest.raises(ConfigError, match="anchored at"):
        check_same(lattice, origin, {**lattice.tags(origin), "lattice_anchor": "5.0,0.0"},
                   "the series")
    with pytest.raises(ConfigError, match="blend must be"):
        Lattice(512, 64, "max")
    with pytest.raises(ConfigError, match="overlap"):
        axis_tiles(0, 100, 64, 40)
    with pytest.raises(ConfigError, match="--tile must be at least 8"):
        axis_tiles(0, 100, 4, 0)


def test_an_old_maps_record_is_read_and_a_series_of_them_refuses_the_grid_lattice():
    old_tags = {"tile": "512", "overlap": "64", "blend": "core",
                "lattice_origin": "500190.0,3399810.0"}
    old, origin = from_record(old_tags)
    assert old.placement == "even" and origin == (500190.0, 3399810.0)
    assert from_record({"tile": 512, "overlap": 64, "blend": "core",
                        "origin": [500190.0, 3399810.0]})[0] == old
    with pytest.raises(ConfigError, match="earlier placement"):
        check_same(Lattice(512, 64, "core"), origin, old_tags, "the series in out/")
    with pytest.raises(ConfigError, match="grid lattice only"):
        old.tiles(100, 100)
    with pytest.raises(ConfigError, match="newer isamap"):
        from_record({**old_tags, "lattice": "hexagonal"})


def test_a_python_caller_is_told_the_overlap_to_give_too():
    """``PredictConfig(tile=64)`` keeps the API's 64 px overlap; the refusal spoke only of
    leaving ``--overlap`` out, which a Python caller cannot do."""
    from inference.predict.config import PredictConfig

    with pytest.raises(ConfigError) as err:
        PredictConfig(tile=64)
    assert str(err.value).endswith("(leave --overlap out on the command line, or give "
                                   "overlap=32 from Python, to get 32)")
    assert PredictConfig(tile=64, overlap=32).overlap == 32  # what it says works
