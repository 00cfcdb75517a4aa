"""The batch normalised on the CPU: exactly ``x * (1/std)`` then ``+ (-mean/std)``, each rounded.

numpy's float32 multiply and add are the oracle: the same bits, whatever the layout, the
array's strides or the SIMD width torch runs with (no fused multiply-add anywhere).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inference.predict.normalise import BatchNormaliser, normalise_into

FORMATS = [torch.contiguous_format, torch.channels_last]
TILE = 96


def _coefficients(bands):
    rng = np.random.default_rng(bands)
    mean, std = rng.normal(100, 30, bands), rng.uniform(5, 50, bands)
    return (-mean / std).astype(np.float32), (1 / std).astype(np.float32)


def _raw(bands, height, width, seed=0):
    return np.random.default_rng(seed).normal(100, 40, (bands, height, width)).astype(np.float32)


def _expected(raw, bands):
    """numpy's two rounded float32 operations, NaN and infinities as 0 (bits to compare)."""
    shift, scale = _coefficients(bands)
    raw = np.asarray(raw, np.float32)
    product = raw * scale[:, None, None]
    return np.nan_to_num(product + shift[:, None, None], nan=0.0, posinf=0.0, neginf=0.0)


def _same_bits(x: torch.Tensor, want: np.ndarray) -> None:
    got = np.ascontiguousarray(x.numpy())
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("bands", [1, 6, 20])
@pytest.mark.parametrize("width", [TILE, 37])  # whole vectors, and a remainder
def test_views_of_a_row_give_numpys_bits(fmt, bands, width):
    row = _raw(bands, TILE, 5 * TILE)
    tiles = [row[:, :, x:x + width] for x in (0, 70, 201, 5 * TILE - width)]
    x, clean = BatchNormaliser(*_coefficients(bands))(tiles, fmt)
    assert x.is_contiguous(memory_format=fmt) and clean
    for j, tile in enumerate(tiles):
        _same_bits(x[j], _expected(tile, bands))


@pytest.mark.parametrize("fmt", FORMATS)
def test_odd_arrays_give_numpys_bits(fmt):
    """A whole batch array, a float64 one (rounded to float32 first), pixels with a stride."""
    wide = _raw(4, TILE, 2 * TILE)
    batch = wide.reshape(4, TILE, 2, TILE).transpose(2, 0, 1, 3).copy()
    for tiles in (batch, batch.astype(np.float64), [wide[:, :, ::2], wide[:, :, TILE:]]):
        x, _ = BatchNormaliser(*_coefficients(4))(tiles, fmt)
        for j in range(len(tiles)):
            _same_bits(x[j], _expected(tiles[j], 4))


def test_both_layouts_and_the_device_path_write_the_same_bits():
    """Channels-first, channels-last and :func:`normalise_into` on a stacked batch (the GPU
    path's arithmetic, run here on the CPU) are one computation."""
    shift, scale = _coefficients(6)
    tiles = [_raw(6, TILE, TILE, seed=s) for s in range(3)]
    norm = BatchNormaliser(shift, scale)
    first = norm(tiles, torch.contiguous_format)[0].clone()
    last = norm(tiles, torch.channels_last)[0].clone()
    stacked = torch.empty((3, 6, TILE, TILE))
    normalise_into(torch.from_numpy(np.stack(tiles)), torch.from_numpy(shift).view(1, -1, 1, 1),
                   torch.from_numpy(scale).view(1, -1, 1, 1), stacked)
    for other in (last, stacked):
        np.testing.assert_array_equal(np.ascontiguousarray(other.numpy()).view(np.uint32),
                                      first.numpy().view(np.uint32))


@pytest.mark.parametrize("bands", [3, 6])
def test_nan_and_infinities_become_the_mean(bands):
    tiles = [_raw(bands, TILE, TILE - 1, seed=s) for s in range(3)]
    tiles[1][0, 5, 7], tiles[1][2, 50, 60], tiles[2][1, 0, 0] = np.nan, np.inf, -np.inf
    norm = BatchNormaliser(*_coefficients(bands))
    x, clean = norm(tiles, torch.channels_last)
    assert not clean and bool(torch.isfinite(x).all())
    assert x[1, 0, 5, 7] == 0 and x[1, 2, 50, 60] == 0 and x[2, 1, 0, 0] == 0
    for j in range(3):
        _same_bits(x[j], _expected(tiles[j], bands))
    x, clean = norm(tiles[:1], torch.channels_last)
    assert clean  # a batch without any
    x, clean = norm(tiles, torch.channels_last, finite=False)  # replaced without a check
    assert not clean and bool(torch.isfinite(x).all())
    x, clean = norm(tiles[:1], torch.channels_last, finite=True)  # the caller checked
    assert clean


def test_the_batch_is_reused():
    norm = BatchNormaliser(*_coefficients(6))
    tiles = [_raw(6, TILE, TILE, seed=s) for s in range(2)]
    first = norm(tiles, torch.channels_last)[0].data_ptr()
    assert norm(tiles, torch.channels_last)[0].data_ptr() == first


def test_tiles_of_another_shape_are_refused():
    """The batch's slots are shaped by the first tile: torch would resize its view of a slot
    and leave the slot stale."""
    norm = BatchNormaliser(*_coefficients(6))
    for other in (_raw(6, TILE + 8, TILE), _raw(7, TILE, TILE), _raw(6, TILE, TILE - 4)):
        with pytest.raises(ValueError, match="differ in shape"):
            norm([_raw(6, TILE, TILE), other], torch.channels_last)
    x, clean = norm([_raw(6, TILE, TILE)] * 2, torch.channels_last)  # still usable
    assert clean and x.shape == (2, 6, TILE, TILE)
