"""Spatially blocked splits: no leakage between splits, ratios honoured, deterministic."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contract.grid import Grid
from contract.splits import (
    SPLITS,
    assign_splits,
    drop_overlaps,
    normalise_ratios,
    split_advice,
    split_counts,
)
from core.errors import ConfigError


def grid_with(rows: int, cols: int, patch: int = 128, stride: int = 80) -> Grid:
    return Grid("EPSG:32650", 0.0, 0.0, patch + stride * (cols - 1), patch + stride * (rows - 1),
                patch_size=patch, stride=stride)


def share_pixels(grid: Grid, a: tuple[int, int], b: tuple[int, int]) -> bool:
    """Whether two patches share a pixel, from their pixel windows' row and column ranges.

    Computed here rather than with the splitter's own arithmetic, which is code under test: a
    bug shared by the two would otherwise hide every leak.
    """
    wa, wb = grid.patch_window(*a), grid.patch_window(*b)
    rows = wa.row_off < wb.row_off + wb.height and wb.row_off < wa.row_off + wa.height
    cols = wa.col_off < wb.col_off + wb.width and wb.col_off < wa.col_off + wa.width
    return rows and cols


def leaks(grid: Grid, splits: dict) -> list:
    items = list(splits.items())
    return [(a, b) for i, (a, sa) in enumerate(items) for b, sb in items[i + 1:]
            if sa != sb and share_pixels(grid, a, b)]


@settings(max_examples=60, deadline=None)
@given(rows=st.integers(1, 14), cols=st.integers(1, 14), stride=st.sampled_from([32, 64, 80, 128]),
       block=st.integers(1, 5), seed=st.integers(0, 10_000),
       ratios=st.tuples(st.floats(0, 1), st.floats(0, 1), st.floats(0, 1)).filter(
           lambda r: sum(r) > 0.05))
def test_no_two_overlapping_patches_in_different_splits(rows, cols, stride, block, seed, ratios):
    grid = grid_with(rows, cols, stride=stride)
    splits = assign_splits(grid, None, ratios, seed, block)
    assert set(splits) <= set(grid.iter_patches())
    assert set(splits.values()) <= set(SPLITS)
    assert leaks(grid, splits) == []


@settings(max_examples=40, deadline=None)
@given(proposed=st.dictionaries(st.tuples(st.integers(0, 9), st.integers(0, 9)),
                                st.sampled_from(SPLITS), max_size=60),
       stride=st.sampled_from([40, 64, 80]))
def test_only_patches_that_would_leak_are_dropped(proposed, stride):
    grid = grid_with(10, 10, stride=stride)
    kept = drop_overlaps(grid, proposed)
    assert leaks(grid, kept) == []
    assert all(proposed[p] == s for p, s in kept.items())
    for p in set(proposed) - set(kept):
        assert any(s != proposed[p] and share_pixels(grid, p, q) for q, s in kept.items()), \
            f"{p} was dropped without overlapping a kept patch of another split"


def test_ratios_are_roughly_honoured_on_a_big_grid():
    grid = grid_with(120, 120)
    splits = assign_splits(grid, seed=3)
    counts = split_counts(splits)
    total = sum(counts.values())
    assert total > 0.85 * grid.patch_count  # the overlap drop costs little with 8x8 blocks
    assert counts["train"] / total == pytest.approx(0.8, abs=0.04)
    assert counts["val"] / total == pytest.approx(0.1, abs=0.03)
    assert counts["test"] / total == pytest.approx(0.1, abs=0.03)


def test_deterministic_with_seed_and_varies_across_seeds():
    grid = grid_with(40, 40)
    assert assign_splits(grid, seed=7) == assign_splits(grid, seed=7)
    assert assign_splits(grid, seed=7) != assign_splits(grid, seed=8)


def test_positions_subset_and_zero_ratios():
    grid = grid_with(30, 30)
    only_train = assign_splits(grid, ratios=(1, 0, 0))
    assert set(only_train.values()) == {"train"} and len(only_train) == grid.patch_count
    subset = [(r, c) for r, c in grid.iter_patches() if (r + c) % 3 == 0]
    assert set(assign_splits(grid, subset, seed=1)) <= set(subset)
    assert assign_splits(grid, [], seed=1) == {}


@pytest.mark.parametrize("ratios", [(0.8, 0.2), (1, -1, 1), (0, 0, 0), (float("nan"), 1, 1)])
def test_bad_ratios_are_refused(ratios):
    with pytest.raises(ConfigError, match="ratios"):
        normalise_ratios(ratios)


def test_bad_block_is_refused():
    with pytest.raises(ConfigError, match="block"):
        assign_splits(grid_with(3, 3), block=0)


def test_split_advice_counts_only_the_positions_holding_data():
    grid = Grid("EPSG:32650", 0.0, 0.0, 16 * 32, 16 * 32, patch_size=32, stride=32)
    corner = [(r, c) for r in range(2) for c in range(2)]  # 4 of 256 positions hold data
    counts = split_counts({p: s for p, s in assign_splits(grid, block=8).items() if p in corner})
    assert "use --split-block" in split_advice(grid, split_counts(assign_splits(grid, block=16)),
                                               block=16)  # every position: blocks help
    advice = split_advice(grid, counts, block=8, counted=corner)
    assert advice is not None and "use --split-block" not in advice
    assert "only 4 of the 256 positions hold patches" in advice
