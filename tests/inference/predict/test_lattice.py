"""The tile lattice: cores partition the grid, batches follow the streaming predictor's rows."""

from __future__ import annotations

import numpy as np
import pytest

from gee_export.core.errors import ConfigError
from inference.predict.blending import Lattice, batches, check_same, from_record, tile_starts


@pytest.mark.parametrize(("height", "width", "tile", "overlap"),
                         [(150, 170, 64, 16), (40, 50, 64, 16), (1000, 333, 128, 32),
                          (129, 128, 128, 0)])
def test_cores_own_every_pixel_once_and_lie_inside_their_tile(height, width, tile, overlap):
    owned = np.zeros((height, width), int)
    for t in Lattice(tile, overlap, "core").tiles(height, width):
        owned[t.core.to_slices()] += 1
        assert t.window.row_off <= t.core.row_off and t.window.col_off <= t.core.col_off
        assert t.core.row_off + t.core.height <= t.window.row_off + t.window.height
        assert t.core.col_off + t.core.width <= t.window.col_off + t.window.width
    assert (owned == 1).all()


def test_a_core_keeps_half_the_overlap_of_context_towards_each_neighbour():
    lattice = Lattice(64, 16, "core")
    tiles = lattice.tiles(64 * 5, 64)
    starts = tile_starts(64 * 5, 64, 16)
    for t in tiles[1:-1]:
        assert t.core.row_off - t.window.row_off >= 8
        assert t.window.row_off + 64 - (t.core.row_off + t.core.height) >= 8
    assert [t.window.row_off for t in tiles] == starts


def test_batches_are_the_streaming_predictors_runs_of_a_tile_row():
    tiles = Lattice(64, 16, "core").tiles(150, 250)  # 3 rows x 5 columns
    groups = batches(tiles, 2)
    assert [[(t.row, t.col) for t in g] for g in groups[:3]] == [
        [(0, 0), (0, 1)], [(0, 2), (0, 3)], [(0, 4)]]
    assert sum(len(g) for g in groups) == len(tiles) and len(groups) == 9
    with pytest.raises(ConfigError, match="batch size"):
        batches(tiles, 0)


def test_the_record_round_trips_and_another_lattice_is_refused():
    lattice = Lattice(512, 64, "core")
    origin = (500190.0, 3399810.0)
    assert from_record(lattice.record(origin)) == (lattice, origin)
    assert from_record(lattice.tags(origin)) == (lattice, origin)
    check_same(lattice, origin, lattice.tags(origin), "the series")
    with pytest.raises(ConfigError, match=r"--tile 512 --overlap 64 .* --tile 256"):
        check_same(Lattice(256, 64, "core"), origin, lattice.record(origin), "the series")
    with pytest.raises(ConfigError, match="anchored at"):
        check_same(lattice, (500200.0, 3399810.0), lattice.record(origin), "the series")
    with pytest.raises(ConfigError, match="blend must be"):
        Lattice(512, 64, "max")
