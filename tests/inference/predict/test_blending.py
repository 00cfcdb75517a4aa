import numpy as np
import pytest

from core.errors import ConfigError
from inference.predict.blending import (
    Accumulator,
    all_finite,
    check_window,
    encode,
    invalid_mask,
    strip_bounds,
    taper,
    tile_weights,
    weight_sums,
)
from inference.predict.lattice import axis_tiles


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


def test_strips_partition_the_rows():
    assert strip_bounds(1100, 512) == [(0, 512), (512, 1024), (1024, 1100)]


def test_invalid_pixels_are_nan_infinite_or_the_nodata_value():
    block = np.ones((2, 2, 3), np.float32)
    block[0, 0, 0], block[1, 0, 1], block[1, 1, 2], block[0, 1, 1] = np.nan, np.inf, -9, -np.inf
    np.testing.assert_array_equal(invalid_mask(block, [None, -9.0]),
                                  [[True, True, False], [False, True, True]])
    assert not all_finite(block)
    np.testing.assert_array_equal(invalid_mask(block, [None, -9.0], finite=False),
                                  invalid_mask(block, [None, -9.0]))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_one_non_finite_value_anywhere_is_found_by_the_summing_pass(bad):
    block = np.random.default_rng(0).normal(size=(3, 40, 50)).astype(np.float32)
    assert all_finite(block)
    for at in ((0, 0, 0), (2, 39, 49), (1, 17, 3)):
        spoilt = block.copy()
        spoilt[at] = bad
        assert not all_finite(spoilt)
        np.testing.assert_array_equal(invalid_mask(spoilt, [None] * 3),
                                      ~np.isfinite(spoilt).all(axis=0))
    # values whose sum overflows are finite: the exact test then finds nothing
    huge = np.full((2, 4, 4), 3e38, np.float32)
    assert not all_finite(huge) and not invalid_mask(huge, [None, None]).any()
    # finite, with a nodata value: only that value is invalid
    block[1, 5, 6] = -9.0
    mask = invalid_mask(block, [None, -9.0, None], finite=True)
    assert mask.sum() == 1 and mask[5, 6]


def test_accumulator_ring_takes_rows_as_a_whole_array_blend_would():
    # capacity 40 with takes of 16 rows: tiles and takes wrap around the ring's end
    rng = np.random.default_rng(3)
    height, width, tile = 96, 20, 24
    lattice = axis_tiles(0, height, tile, 8)  # from -16 (over the top edge) to past the end
    starts = [t.start for t in lattice]
    assert starts[0] < 0 and starts[-1] + tile > height
    acc = Accumulator(2, 40, width, 0, weight_sums(height, lattice, tile, 8))
    sums, weights = np.zeros((2, height, width)), np.zeros((height, width))
    taken, row = [], 0
    for k, y in enumerate(starts):
        top, n = max(-y, 0), min(tile, height - y)  # the tile's rows inside the raster
        probs = rng.random((2, n - top, width)).astype(np.float32)
        wt = tile_weights(tile, 8, top=True, bottom=True, left=False, right=False)[top:n, :width]
        acc.add(probs, wt, y + top, 0)
        sums[:, y + top:y + n] += probs * wt
        weights[y + top:y + n] += wt
        final = max(starts[k + 1], 0) if k + 1 < len(starts) else height
        while row + 16 <= final:
            taken.append(acc.take_probs(16))
            row += 16
    probs = np.concatenate([p for p, _ in taken], axis=1)
    np.testing.assert_allclose(probs, sums / weights, rtol=1e-5)
    assert not np.concatenate([b for _, b in taken]).any() and acc.row0 == height
    with pytest.raises(RuntimeError, match="overflow"):
        acc.add(np.ones((2, 41, width), np.float32), np.ones((41, width), np.float32),
                height, 0)


@pytest.mark.parametrize("blend", ["cosine", "uniform", "core"])
@pytest.mark.parametrize(("height", "width", "scale", "offset"),
                         [(100, 130, 1, (0, 0)), (70, 45, 2, (-7, 13)), (20, 90, 1, (5, 1001))])
def test_row_and_column_sums_weigh_pixels_as_the_summed_weight_map(blend, height, width, scale,
                                                                   offset):
    # every tile of a lattice added with its own weights, tapered on all sides and cut at
    # the raster's edges: the per-pixel weight the accumulator divides by is the product of
    # the two axes' sums, and the tapers of the tiles over a pixel sum to one
    tile, overlap = 32, 8
    ys = axis_tiles(offset[0], height, tile, overlap, blend)
    xs = axis_tiles(offset[1], width, tile, overlap, blend)
    pad = tile * scale
    weights = np.zeros(((height + 2 * tile) * scale, (width + 2 * tile) * scale))
    w = tile_weights(tile * scale, overlap * scale, top=True, bottom=True, left=True,
                     right=True, blend=blend)
    for y in ys:
        for x in xs:
            weights[pad + y.start * scale:pad + (y.start + tile) * scale,
                    pad + x.start * scale:pad + (x.start + tile) * scale] += w
    weights = weights[pad:pad + height * scale, pad:pad + width * scale]
    if blend == "core":
        weights[:] = 1.0
    rows_w = weight_sums(height, ys, tile, overlap, scale, blend)
    cols_w = weight_sums(width, xs, tile, overlap, scale, blend)
    assert rows_w.shape == (height * scale,) and cols_w.shape == (width * scale,)
    np.testing.assert_allclose(np.outer(rows_w, cols_w), weights, rtol=1e-6)
    if blend == "cosine":
        np.testing.assert_allclose(weights, 1.0, atol=1e-6)  # a partition of unity


def test_a_pixel_no_tile_weighs_is_nodata():
    acc = Accumulator(1, 8, 4, 0, np.array([1, 1, 0, 2, 1, 1, 1, 1], np.float32),
                      np.array([1, 0, 1, 1], np.float32))
    acc.add(np.full((1, 8, 4), 0.5, np.float32), None, 0, 0)
    probs, bad = acc.take_probs(4)
    assert bad[2].all() and bad[:, 1].all() and bad.sum() == 4 + 3
    assert probs[0, 3, 0] == 0.25 and probs[0, 0, 0] == 0.5
    with pytest.raises(ValueError, match="column weights"):
        Accumulator(1, 8, 5, 0, None, np.ones(4, np.float32))


def test_taking_into_reused_arrays_gives_the_same_strips():
    rng = np.random.default_rng(4)
    fresh, reused = Accumulator(2, 40, 20, 0), Accumulator(2, 40, 20, 0)
    out = (np.full((2, 24, 20), np.nan, np.float32), np.ones((24, 20), bool))
    for k, rows in enumerate((16, 24, 8)):
        probs = rng.random((2, 24, 20)).astype(np.float32)
        invalid = rng.random((24, 20)) < 0.1
        for acc in (fresh, reused):
            acc.add(probs, np.full((24, 20), 0.5, np.float32), 24 * k, 0)
            acc.mark_invalid(invalid, 24 * k)
        want, got = fresh.take_probs(rows), reused.take_probs(rows, out)
        assert np.shares_memory(got[0], out[0]) and np.shares_memory(got[1], out[1])
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])


def test_encoding_over_the_probabilities_gives_the_same_maps():
    probs = np.random.default_rng(5).random((1, 30, 40)).astype(np.float32)
    probs[0, 0, :4] = (0.0, 0.5, 1.0, 0.502)  # a tie and rounding boundaries
    bad = np.zeros((30, 40), bool)
    bad[3, 5:9] = True
    want = encode(probs.copy(), bad, 1)
    scratch = probs.copy()
    got = encode(scratch, bad, 1, overwrite=True)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(scratch, probs)  # the probabilities held the scaled values


def test_a_recorded_window_admits_its_own_tile_only():
    check_window(None, 64)  # a model whose output does not depend on the window: any tile
    check_window(512, 512, "unet-s2-window")
    with pytest.raises(ConfigError, match=r"this unet-s2-window model standardises each window .* "
                                          r"made on 512 px tiles; --tile 256 would make"):
        check_window(512, 256, "unet-s2-window")
