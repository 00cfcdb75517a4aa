"""Spatial blocks and the folds dealt from them (training/points/blocks.py)."""

from __future__ import annotations

import numpy as np
import pytest

from training.points.blocks import block_folds, block_ids


def test_blocks_are_squares_and_never_span_two_inputs():
    x = np.array([0.0, 999.0, 1000.0, 0.0, 0.0])
    y = np.array([0.0, 10.0, 0.0, -1.0, 0.0])
    group = np.array([0, 0, 0, 0, 1])
    ids = block_ids(x, y, group, 1000.0)
    assert ids[0] == ids[1]  # same square
    assert len({ids[0], ids[2], ids[3], ids[4]}) == 4  # east, south, another input
    assert sorted(set(ids)) == list(range(4))
    with pytest.raises(ValueError):
        block_ids(x, y, group, 0.0)


def test_folds_take_whole_blocks_evenly_and_follow_the_seed():
    rng = np.random.default_rng(1)
    blocks = rng.integers(0, 23, 500)
    folds = block_folds(blocks, 5, seed=0)
    for b in np.unique(blocks):
        assert len(set(folds[blocks == b])) == 1  # a block lies in one fold
    sizes = np.bincount(folds, minlength=5)
    assert sizes.min() > 0 and sizes.max() - sizes.min() <= np.bincount(blocks).max()
    assert np.array_equal(folds, block_folds(blocks, 5, seed=0))
    with pytest.raises(ValueError, match="3 blocks cannot make 5 folds"):
        block_folds(np.array([0, 1, 2, 2]), 5)
