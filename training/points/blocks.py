"""Spatial blocks and the folds of a cross-validation drawn by block.

Points close together look alike (spatial autocorrelation): a fold that tests on a point
whose neighbour trained scores what the classifier remembers, not what it maps. The points
are grouped into square blocks of ``block_m`` metres on the input's grid (blocks never span
two inputs), and whole blocks are dealt to the folds, largest first, each to the fold with
the fewest points so far; ties are broken by a seeded shuffle, so the folds depend on the
points and the seed alone.
"""

from __future__ import annotations

import numpy as np


def block_ids(x: np.ndarray, y: np.ndarray, group: np.ndarray, block_m: float) -> np.ndarray:
    """The block of each point: ``(group, floor(x / block_m), floor(y / block_m))`` numbered.

    Args:
        x: projected x in metres (each point in its own input's CRS).
        y: projected y in metres.
        group: which input each point lies in (blocks never span two).
        block_m: the block side in metres.

    Returns:
        ``(n,)`` int64 block numbers, 0 .. number of blocks - 1, in sorted key order.
    """
    if not block_m > 0:
        raise ValueError(f"block side must be positive, got {block_m}")
    keys = np.stack([np.asarray(group, np.int64),
                     np.floor(np.asarray(x, np.float64) / block_m).astype(np.int64),
                     np.floor(np.asarray(y, np.float64) / block_m).astype(np.int64)], axis=1)
    _, ids = np.unique(keys, axis=0, return_inverse=True)
    return ids.reshape(-1).astype(np.int64)


def block_folds(blocks: np.ndarray, folds: int, seed: int = 0) -> np.ndarray:
    """The fold (0 .. ``folds`` - 1) of each point, whole blocks per fold.

    Blocks are dealt largest first (ties in a seeded random order) to the fold holding the
    fewest points so far, so folds are about equal in size however uneven the blocks are.

    Raises:
        ValueError: fewer blocks than folds.
    """
    blocks = np.asarray(blocks, np.int64)
    count = int(blocks.max()) + 1 if blocks.size else 0
    if count < folds:
        raise ValueError(f"{count} blocks cannot make {folds} folds")
    sizes = np.bincount(blocks, minlength=count)
    order = np.random.default_rng(seed).permutation(count)
    order = order[np.argsort(-sizes[order], kind="stable")]
    load = np.zeros(folds, np.int64)
    fold_of_block = np.empty(count, np.int64)
    for b in order:
        f = int(np.argmin(load))
        fold_of_block[b] = f
        load[f] += sizes[b]
    return fold_of_block[blocks]
