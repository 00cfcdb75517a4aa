"""Spatially blocked train/val/test splits with no pixel shared between splits.

Patches cut with a stride smaller than their size overlap their neighbours (128 px every 80 px
in the CroFuseNet recipe), so a random per-patch split would put the same pixels in training and
in evaluation and inflate every metric. Instead, patch positions are grouped into square blocks,
whole blocks are dealt to the splits in the requested ratio, and where two blocks of different
splits meet, the patches of the lower-priority split that overlap the other are dropped.

Splits are a pure function of the grid, the positions, the ratios, the seed and the block size.
Callers should pass *every* position of the grid (not only the valid ones of one month) so the
same ground falls in the same split for every month of a dataset, and so the Earth Engine export
can decide which patches to fetch before fetching anything.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import numpy as np

from contract.grid import Grid
from core.errors import ConfigError

Split = Literal["train", "val", "test"]
SPLITS: tuple[Split, ...] = ("train", "val", "test")
DEFAULT_RATIOS: tuple[float, float, float] = (0.8, 0.1, 0.1)
DEFAULT_BLOCK = 8
MAX_POSITIONS = 10_000_000
"""Patch positions the split of a whole grid takes at most: it is held in memory (the
documented Yangtze River Economic Belt plan, 6.1 million positions, peaks at 2.7 GB), and as
many patches are weeks of requests. A larger area is exported in parts; a near-global box
grew past 18 GB before a word."""
"""Blocks of 8 x 8 patch positions: 640 m squares at stride 80, big enough that the band of
dropped patches along block edges (one patch wide for 128/80) costs little."""

# Conflicts are settled in favour of the rarer splits: test keeps all its patches, val loses
# those touching test, train loses those touching val or test. Evaluation sets stay whole.
_PRIORITY: tuple[Split, ...] = ("test", "val", "train")


def normalise_ratios(ratios: Iterable[float]) -> tuple[float, float, float]:
    """Check ``(train, val, test)`` ratios and scale them to sum to 1."""
    values = tuple(float(r) for r in ratios)
    if len(values) != 3:
        raise ConfigError(f"split ratios need three values (train, val, test), got {values}")
    if any(not math.isfinite(v) or v < 0 for v in values) or sum(values) <= 0:
        raise ConfigError(
            f"split ratios must be non-negative with a positive sum, got {values}; e.g. 0.8,0.1,0.1"
        )
    total = sum(values)
    return (values[0] / total, values[1] / total, values[2] / total)


def assign_splits(
    grid: Grid,
    positions: Iterable[tuple[int, int]] | None = None,
    ratios: Iterable[float] = DEFAULT_RATIOS,
    seed: int = 0,
    block: int = DEFAULT_BLOCK,
) -> dict[tuple[int, int], Split]:
    """Assign each patch position to a split; positions that would leak are left out.

    Args:
        grid: the grid whose patch layout (size, stride) defines overlap.
        positions: ``(row, col)`` patch positions to split; every position of the grid when None.
        ratios: train, val, test proportions (normalised), honoured in patch counts before the
            overlap drop.
        seed: blocks are dealt in an order shuffled with this seed.
        block: block side in patch positions.

    Returns:
        ``{(row, col): split}`` for the kept positions. No two kept positions in different
        splits overlap (share a pixel).
    """
    if not isinstance(block, int) or block < 1:
        raise ConfigError(f"split block size must be a positive integer, got {block!r}")
    shares = normalise_ratios(ratios)
    if positions is None and grid.patch_count > MAX_POSITIONS:
        raise ConfigError(
            f"the area holds {grid.patch_count:,} patch positions ({grid.area_km2:,.0f} km² at "
            f"{grid.patch_size} px every {grid.stride} px); one dataset holds at most "
            f"{MAX_POSITIONS:,}: export it in parts (smaller --bbox, each with its own --out), "
            "or with a larger --stride")
    pos = sorted(set(grid.iter_patches() if positions is None else
                     ((int(r), int(c)) for r, c in positions)))
    if not pos:
        return {}
    blocks: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for r, c in pos:
        blocks.setdefault((r // block, c // block), []).append((r, c))
    keys = sorted(blocks)
    order = np.random.default_rng(seed).permutation(len(keys))

    # Deal blocks one by one to the split that is furthest below its target share; this
    # honours the ratios in patch counts even though blocks at the grid edge are smaller.
    counts = [0, 0, 0]
    block_split: dict[tuple[int, int], Split] = {}
    for index in order:
        key = keys[int(index)]
        size = len(blocks[key])
        total = sum(counts) + size
        deficits = [shares[i] * total - counts[i] if shares[i] > 0 else -math.inf
                    for i in range(3)]
        chosen = int(np.argmax(deficits))
        counts[chosen] += size
        block_split[key] = SPLITS[chosen]

    proposed = {p: block_split[(p[0] // block, p[1] // block)] for p in pos}
    return drop_overlaps(grid, proposed)


def drop_overlaps(grid: Grid,
                  proposed: dict[tuple[int, int], Split]) -> dict[tuple[int, int], Split]:
    """Remove positions overlapping a kept position of a higher-priority split.

    Splits are settled in priority order (test, then val, then train): a position is kept when
    no already-kept position of another split overlaps it. Checking the neighbourhood of
    ``ceil(patch_size / stride) - 1`` positions is enough because patches further apart cannot
    overlap.
    """
    reach = math.ceil(grid.patch_size / grid.stride) - 1
    kept: dict[tuple[int, int], Split] = {}
    for split in _PRIORITY:
        for (r, c), s in proposed.items():
            if s != split:
                continue
            leaks = any(
                kept.get((r + dr, c + dc), split) != split
                for dr in range(-reach, reach + 1)
                for dc in range(-reach, reach + 1)
            )
            if not leaks:
                kept[(r, c)] = split
    return dict(sorted(kept.items()))


def split_counts(splits: Mapping[tuple[int, int], str] | Iterable[str]) -> dict[str, int]:
    """How many positions (or patches) each split has, every split present, zeros included.

    The one per-split counter: pass an :func:`assign_splits` result, or the ``split`` of each
    index record (``split_counts(r["split"] for r in records)``).
    """
    values = splits.values() if isinstance(splits, Mapping) else splits
    out: dict[str, int] = dict.fromkeys(SPLITS, 0)
    for split in values:
        out[split] += 1
    return out


def empty_splits(counts: Mapping[str, int],
                 ratios: Iterable[float] = DEFAULT_RATIOS) -> list[str]:
    """The splits asked for (positive share) that got nothing, in SPLITS order."""
    shares = normalise_ratios(ratios)
    return [s for s, share in zip(SPLITS, shares, strict=True) if share > 0 and not counts.get(s)]


def split_advice(grid: Grid, counts: Mapping[str, int], ratios: Iterable[float] = DEFAULT_RATIOS,
                 seed: int = 0, block: int = DEFAULT_BLOCK, *, max_tries: int = 64,
                 counted: Iterable[tuple[int, int]] | None = None, unread: int = 0,
                 larger: str = "(--bbox, --region) or a smaller --stride") -> str | None:
    """None when every split asked for has patches; else one line saying how to get them.

    A small area holds few split blocks, so whole splits can come out empty (training then
    stops for want of validation patches). The advice names the largest smaller block side
    that gives every split positions on this grid (what ``--split-block`` sets), or asks for a
    larger area when no block size does.

    Args:
        grid: the dataset's grid.
        counts: its patches per split.
        ratios: the split's train, val, test shares.
        seed: the split's seed.
        block: the split's block side in patch positions.
        max_tries: smaller block sides tried at most.
        counted: the positions of the patches ``counts`` counts, one per patch (an imported
            dataset's pairs, a written index's records): a block side is advised when it
            gives each split some of these; every position of the grid when None, and the
            line says it counts positions, not patches (whether they hold data is unknown).
        unread: positions besides ``counted`` whose data are unknown (an Earth Engine export's
            positions dropped at split borders, never fetched): the counts are then a lower
            bound, said as "at least", and a lack of patches is not final.
        larger: how to get a larger area, said when no block side does.
    """
    missing = empty_splits(counts, ratios)
    if not missing:
        return None
    have = ", ".join(f"{s} {counts.get(s, 0)}" for s in SPLITS)
    text = (f"the dataset gets no {' and no '.join(missing)} patches ({have}; split blocks of "
            f"{block} x {block} patch positions over {grid.patch_rows} x {grid.patch_cols} "
            "positions)")
    patches = None if counted is None else list(counted)
    unknown = (f"; {unread} positions this run dropped at split borders were not read, so "
               "whether they hold data is unknown" if unread and patches is not None else "")
    for smaller in range(block - 1, 0, -1)[:max_tries]:
        splits = assign_splits(grid, None, ratios, seed, smaller)
        trial = split_counts(splits if patches is None else
                             [splits[p] for p in patches if p in splits])
        if not empty_splits(trial, ratios):
            gives = ", ".join(f"{s} {trial[s]}" for s in SPLITS)
            if patches is None:
                return (f"{text}: use --split-block {smaller} (gives {gives} positions) or a "
                        "larger area; these are grid positions, not patches: a position "
                        "without data gives none")
            return (f"{text}: use --split-block {smaller} (gives {'at least ' if unknown else ''}"
                    f"{gives} patches{unknown}) or a larger area")
    if patches is not None and len(set(patches)) < grid.patch_count:
        held = "are known to hold" if unknown else "hold"
        return (f"{text}: only {len(set(patches))} of the {grid.patch_count} positions {held} "
                "patches (the data cover part of the area), too few for a train/val/test "
                f"split at any --split-block{unknown}; give an area the data cover more of")
    return (f"{text}: the area is too small for a train/val/test split; use a larger area "
            f"{larger}")

def missing_split_advice(manifest: Mapping[str, Any], records: Iterable[Mapping[str, Any]],
                         split: str | None) -> str:
    """What to do about a written dataset that has no ``split`` patches, in one line.

    Where the split was asked for (a positive share) and the dataset is one grid's (not a
    merge of several), :func:`split_advice` on the manifest's grid and split and the index's
    patches names the block side that gives every split patches; the dataset has to be made
    again with it, since a folder keeps the split it was made with.

    Args:
        manifest: the dataset's ``manifest.json``.
        records: every record of its ``index.jsonl``.
        split: the split asked for (None: every patch).
    """
    records = list(records)
    counts = split_counts(r["split"] for r in records)
    have = ", ".join(f"{s} {counts[s]}" for s in SPLITS)
    params = manifest.get("split") or {}
    again = ("; make the dataset again into another --out folder (isamap-export or "
             "isamap-import-patches)")
    if split is None or not records:
        return "it lists no patch" + again
    if counts.get(split):
        return f"all {counts[split]} of its {split} patches are left out ({have})"
    if "grid" not in manifest or "merged_from" in manifest or \
            not isinstance(params.get("block"), int):
        return f"it has {have}{again}"
    ratios = params.get("ratios", DEFAULT_RATIOS)
    if split not in empty_splits(counts, ratios):
        return f"it was made without a {split} split (split ratios {list(ratios)}){again}"
    advice = split_advice(Grid.from_dict(dict(manifest["grid"])), counts, ratios,
                          int(params.get("seed", 0)), params["block"],
                          counted=[(int(r["row"]), int(r["col"])) for r in records],
                          larger="(--bbox, --region, or more patches to import)")
    return f"{advice}{again}"
