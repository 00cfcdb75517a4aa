"""Windows past a source's edges: nodata there, or the larger source's pixels for a window of it."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

from core.errors import InputDataError
from inference.predict.lattice import axis_tiles
from inference.predict.sliding_window import column_blocks
from inference.predict.sources import WindowSource, read_padded
from tests.support.rasters import smooth_stack, write_stack


def test_pixels_past_a_files_edges_are_nodata_and_a_window_reads_its_stacks_pixels(tmp_path):
    data = smooth_stack(40, 50, seed=1)
    with rasterio.open(write_stack(tmp_path / "s.tif", data)) as src:
        inside = read_padded(src, [1, 2], 5, 6, 10, 12)
        np.testing.assert_array_equal(inside, data[:2, 5:15, 6:18])
        over = read_padded(src, [3], -4, 44, 10, 12)  # over the top and the right edge
        assert np.isnan(over[:, :4]).all() and np.isnan(over[:, :, 6:]).all()
        np.testing.assert_array_equal(over[:, 4:, :6], data[2:3, 0:6, 44:50])
        assert np.isnan(read_padded(src, [1], 60, 70, 3, 3)).all()  # wholly outside
        window = WindowSource(src, 10, 20, 20, 25)
        assert (window.height, window.width) == (20, 25)
        assert window.transform == src.transform @ src.transform.translation(20, 10)
        # past the window's edges: the stack's pixels; past the stack's: nodata
        got = read_padded(window, [1, 2, 3], -15, -25, 50, 60)
        np.testing.assert_array_equal(got, read_padded(src, [1, 2, 3], -5, -5, 50, 60))
        with pytest.raises(InputDataError, match="not inside"):
            WindowSource(src, 30, 0, 20, 10)


def test_column_blocks_hold_whole_batches_about_the_block_width():
    cols = axis_tiles(50000, 8192, 512, 32)
    blocks = column_blocks(cols, 4, 480, 4096)
    assert [len(b) for b in blocks[:-1]] == [8] * (len(blocks) - 1)  # 2 batches of 4
    assert [t for b in blocks for t in b] == cols
    assert column_blocks(cols, 4, 480, None) == [cols]  # a whole row (fetched sources)
    assert column_blocks(cols, 16, 480, 4096) == [cols[:16], cols[16:]]  # never part of a batch
