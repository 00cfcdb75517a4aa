"""Blocks normalised once for the tiles that share them: the same bits, kept a few at a time."""

import numpy as np
import torch

from inference.predict.direct_read import BlockRows
from inference.predict.normalised_blocks import KEEP, NormalisedBlocks

SHIFT = np.array([0.5, -1.0, 2.0], np.float32)
SCALE = np.array([0.25, 3.0, 1.5], np.float32)


def _blocks() -> NormalisedBlocks:
    shift, scale = torch.from_numpy(SHIFT), torch.from_numpy(SCALE)
    return NormalisedBlocks([shift[c] for c in range(3)], [scale[c] for c in range(3)])


def _rows(key: int, shape=(3, 20, 32), seed=0) -> BlockRows:
    data = np.random.default_rng(seed).normal(size=shape).astype(np.float32) * 100
    data[0, 3, 4] = np.nan
    return BlockRows(data, (0, key, -1, 0, shape[1]))


def test_a_block_is_the_whole_tile_pass_bit_for_bit_in_the_batch_layout():
    rows = _rows(1)
    got = _blocks().get(rows, slice(0, 3))
    want = torch.addcmul(torch.from_numpy(SHIFT).view(3, 1, 1), torch.from_numpy(rows.array),
                         torch.from_numpy(SCALE).view(3, 1, 1))
    assert got.shape == (3, 20, 32)
    assert got.permute(1, 2, 0).is_contiguous()  # channels last, as the batch
    np.testing.assert_array_equal(got.numpy().view(np.uint32), want.numpy().view(np.uint32))


def test_one_band_of_a_block_uses_that_bands_normalisation():
    rows = BlockRows(_rows(1).array[1:2], (0, 1, 1, 0, 20))
    got = _blocks().get(rows, slice(1, 2))
    want = torch.addcmul(torch.tensor(SHIFT[1]), torch.from_numpy(rows.array[0]),
                         torch.tensor(SCALE[1]))
    np.testing.assert_array_equal(got[0].numpy(), want.numpy())


def test_a_kept_block_is_not_normalised_again_and_only_a_few_are_kept():
    blocks = _blocks()
    rows = _rows(1)
    first = blocks.get(rows, slice(0, 3)).clone()
    rows.array[:] = 0  # the same key: the kept result comes back
    np.testing.assert_array_equal(blocks.get(rows, slice(0, 3)).numpy(), first.numpy())
    for key in range(2, KEEP + 3):
        blocks.get(_rows(key, seed=key), slice(0, 3))
    assert len(blocks) == KEEP
    # block 1 was dropped long ago: normalised again, from what its pixels are now
    again = blocks.get(rows, slice(0, 3)).numpy()
    np.testing.assert_array_equal(again, np.broadcast_to(SHIFT[:, None, None], again.shape))


def test_buffers_are_reused_and_a_smaller_block_fits_a_larger_ones():
    blocks = _blocks()
    big = [blocks.get(_rows(k, (3, 20, 32), seed=k), slice(0, 3)) for k in range(KEEP)]
    small = _rows(99, (3, 4, 32), seed=99)
    got = blocks.get(small, slice(0, 3))  # takes the oldest block's buffer
    assert got.untyped_storage().data_ptr() == big[0].untyped_storage().data_ptr()
    np.testing.assert_allclose(
        got.numpy(), small.array * SCALE[:, None, None] + SHIFT[:, None, None], rtol=1e-6)


def test_only_blocks_at_most_twice_as_wide_as_the_tile_are_used():
    blocks = _blocks()
    assert blocks.usable(_rows(1, (3, 4, 64)), tile_cols=32)
    assert not blocks.usable(_rows(1, (3, 4, 65)), tile_cols=32)
