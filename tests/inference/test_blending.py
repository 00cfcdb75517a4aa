import numpy as np
import pytest

from gee_export.core.errors import ConfigError
from inference.blending import strip_bounds, taper, tile_starts, tile_weights


@pytest.mark.parametrize("extent", [1, 64, 100, 129, 500, 1000, 1021])
@pytest.mark.parametrize(("tile", "overlap"), [(64, 0), (64, 16), (128, 32), (100, 50)])
def test_tiles_cover_the_axis_with_at_least_the_overlap(extent, tile, overlap):
    starts = tile_starts(extent, tile, overlap)
    assert starts[0] == 0
    if extent <= tile:
        assert starts == [0]
        return
    assert starts[-1] == extent - tile
    gaps = np.diff(starts)
    assert (gaps > 0).all() and (gaps <= tile - overlap).all()


def test_cosine_flanks_sum_to_one_where_tiles_overlap_by_the_flank():
    tile, flank = 64, 16
    a = taper(tile, flank, left=False, right=True)
    b = taper(tile, flank, left=True, right=False)
    np.testing.assert_allclose(a[-flank:] + b[:flank], 1.0, atol=1e-6)
    assert (a > 0).all() and a[0] == 1.0 and b[-1] == 1.0


def test_weights_are_tapered_only_towards_neighbours():
    w = tile_weights(32, 8, top=False, bottom=True, left=True, right=False)
    assert w[0, -1] == 1.0 and w[-1, 0] < 0.01 and w[-1, -1] < 0.1
    assert not w.flags.writeable
    uniform = tile_weights(32, 8, top=True, bottom=True, left=True, right=True, blend="uniform")
    assert (uniform == 1).all()


def test_bad_tiling_is_refused_with_a_reason():
    with pytest.raises(ConfigError, match="overlap"):
        tile_starts(100, 64, 40)
    with pytest.raises(ConfigError, match="tile size"):
        tile_starts(100, 4, 0)


def test_strips_partition_the_rows():
    assert strip_bounds(1100, 512) == [(0, 512), (512, 1024), (1024, 1100)]
