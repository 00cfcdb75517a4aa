"""The SYNTHETIC scene's town on its fine grid: the class map the satellites' pixels mix.

A road grid, building blocks, parks, a river and a lake, vegetation and bare fields, drawn from a
seed on ``grid.scaled(fine_scale)`` (:func:`draw_class_map`), grown for a later date
(:func:`grow_built_up`), and what follows from it on the 10 m grid: each pixel's class
fractions (:func:`class_fractions`), the impervious label (:func:`labels_from`) and a linear mix
of per-class values (:func:`mix`). :mod:`gee_export.local.synthetic` simulates the scenes from it.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import numpy as np

from contract.bands import LABEL_NODATA
from contract.grid import Grid

ROAD, BUILDING, VEGETATION, WATER, BARE_SOIL = 1, 2, 3, 4, 5
CLASS_NAMES: dict[int, str] = {ROAD: "road", BUILDING: "building", VEGETATION: "vegetation",
                               WATER: "water", BARE_SOIL: "bare soil"}
ISA_CLASSES: tuple[int, ...] = (ROAD, BUILDING)


def _draw_band(cls: np.ndarray, centres: np.ndarray, half_width: np.ndarray, value: int,
               axis: int) -> None:
    """Paint, along ``axis``, a band of ``value`` around ``centres`` (one per line)."""
    n = cls.shape[1 - axis] if axis == 0 else cls.shape[0]
    limit = cls.shape[axis]
    for i in range(n):
        lo = int(max(0, centres[i] - half_width[i]))
        hi = int(min(limit, centres[i] + half_width[i] + 1))
        if hi > lo:
            if axis == 1:
                cls[i, lo:hi] = value
            else:
                cls[lo:hi, i] = value


def draw_class_map(grid: Grid, fine_scale: int, seed: int) -> np.ndarray:
    """Draw the scene's classes on ``grid.scaled(fine_scale)``; sizes are in metres.

    Pure function of its arguments: the same seed gives the same town on any machine.
    """
    rng = np.random.default_rng(seed)
    px = grid.resolution / fine_scale  # metres per fine pixel
    h, w = grid.height * fine_scale, grid.width * fine_scale
    cls = np.full((h, w), VEGETATION, dtype=np.uint8)

    def m(metres: float) -> int:
        return max(1, round(metres / px))

    # Bare fields and construction sites in the countryside.
    for _ in range(max(2, int(grid.area_km2 * 1.5))):
        fh, fw = m(rng.uniform(80, 300)), m(rng.uniform(80, 300))
        r0, c0 = int(rng.integers(0, max(1, h - fh))), int(rng.integers(0, max(1, w - fw)))
        cls[r0:r0 + fh, c0:c0 + fw] = BARE_SOIL

    # The town: west 60 % of the scene, a grid of streets with building blocks between them.
    town_w, top, bottom = int(w * 0.6), int(h * 0.08), int(h * 0.92)
    street_rows = [top]
    while street_rows[-1] < bottom:
        street_rows.append(street_rows[-1] + m(rng.uniform(150, 260)))
    street_cols = [m(rng.uniform(20, 60))]
    while street_cols[-1] < town_w:
        street_cols.append(street_cols[-1] + m(rng.uniform(150, 260)))
    for r0, r1 in itertools.pairwise(street_rows):
        for c0, c1 in itertools.pairwise(street_cols):
            kind = rng.uniform()
            inner = (slice(r0 + m(8), min(r1, bottom) - m(8)),
                     slice(c0 + m(8), min(c1, town_w) - m(8)))
            if kind < 0.12:
                continue  # park
            if kind < 0.20:
                cls[inner] = BARE_SOIL  # construction site
                continue
            if kind < 0.32:  # a factory or mall: one large roof filling most of the block
                gap = m(rng.uniform(10, 25))
                cls[inner[0].start + gap:inner[0].stop - gap,
                    inner[1].start + gap:inner[1].stop - gap] = BUILDING
                continue
            _draw_buildings(cls, inner, rng, m)
    for r in street_rows:
        cls[max(0, r - m(6)):r + m(6), :town_w] = ROAD
    for c in street_cols:
        cls[top:bottom, max(0, c - m(6)):min(c + m(6), town_w)] = ROAD

    # Villages east of the town: a few houses along a lane.
    for _ in range(max(1, int(grid.area_km2 * 0.4))):
        vr, vc = int(rng.integers(0, h - m(160))), int(rng.integers(town_w, max(town_w + 1,
                                                                                w - m(160))))
        cls[vr + m(70):vr + m(76), vc:vc + m(160)] = ROAD
        for _ in range(int(rng.integers(4, 9))):
            r0 = vr + int(rng.choice([m(40), m(82)])) + int(rng.integers(0, m(10)))
            c0 = vc + int(rng.integers(0, m(140)))
            cls[r0:r0 + m(rng.uniform(10, 22)), c0:c0 + m(rng.uniform(10, 22))] = BUILDING

    # A river meandering north-south in the east, and a lake in the south-east.
    rows = np.arange(h)
    centre = w * 0.8 + w * 0.06 * np.sin(2 * np.pi * rows / (h * 0.9) + rng.uniform(0, np.pi))
    half = np.full(h, m(rng.uniform(70, 110)))
    _draw_band(cls, centre, half, WATER, axis=1)
    cy, cx, ry, rx = h * 0.82, w * 0.62, m(rng.uniform(200, 320)), m(rng.uniform(300, 450))
    r0, r1 = int(max(0, cy - ry)), int(min(h, cy + ry + 1))
    c0, c1 = int(max(0, cx - rx)), int(min(w, cx + rx + 1))
    yy, xx = np.ogrid[r0:r1, c0:c1]
    lake = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
    cls[r0:r1, c0:c1][lake] = WATER

    # A highway crossing everything (bridges over the river), drawn last.
    cols = np.arange(w)
    slope = rng.uniform(-0.3, 0.3)
    _draw_band(cls, h * 0.45 + slope * (cols - w / 2), np.full(w, m(12)), ROAD, axis=0)
    return cls


def grow_built_up(cls: np.ndarray, grid: Grid, fine_scale: int, seed: int, blocks: int,
                  size_m: tuple[float, float] = (80.0, 140.0)
                  ) -> tuple[np.ndarray, list[tuple[slice, slice]]]:
    """``cls`` with ``blocks`` new built-up blocks on open land (a later date of the scene).

    Each block is a roof on ground that was vegetation or bare soil, so the change between
    two dates of the same seed is known exactly: these blocks are the gain, nothing is lost.
    Returns the class map and the blocks' slices on the fine grid.
    """
    if blocks <= 0:
        return cls, []
    rng = np.random.default_rng(seed + 7919)
    px = grid.resolution / fine_scale
    h, w = cls.shape
    placed: list[tuple[slice, slice]] = []
    for _ in range(200 * blocks):
        if len(placed) == blocks:
            break
        bh, bw = (max(2, round(rng.uniform(*size_m) / px)) for _ in range(2))
        r, c = int(rng.integers(0, max(1, h - bh))), int(rng.integers(0, max(1, w - bw)))
        block = (slice(r, r + bh), slice(c, c + bw))
        if np.isin(cls[block], (VEGETATION, BARE_SOIL)).all():
            cls[block] = BUILDING
            placed.append(block)
    return cls, placed


def _draw_buildings(cls: np.ndarray, block: tuple[slice, slice], rng: np.random.Generator,
                    m) -> None:
    """Fill a city block with a few rectangular buildings separated by yards."""
    r0, r1, c0, c1 = block[0].start, block[0].stop, block[1].start, block[1].stop
    if r1 - r0 < m(20) or c1 - c0 < m(20):
        return
    ny, nx = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    ys = np.linspace(r0, r1, ny + 1).astype(int)
    xs = np.linspace(c0, c1, nx + 1).astype(int)
    for i in range(ny):
        for j in range(nx):
            gap = m(rng.uniform(4, 12))
            cls[ys[i] + gap:ys[i + 1] - gap, xs[j] + gap:xs[j + 1] - gap] = BUILDING


def class_fractions(class_map_fine: np.ndarray, fine_scale: int) -> np.ndarray:
    """Share of every class code in each coarse pixel, ``(6, H, W)`` float32 (index = code)."""
    h, w = class_map_fine.shape[0] // fine_scale, class_map_fine.shape[1] // fine_scale
    out = np.zeros((6, h, w), dtype=np.float32)
    for code in CLASS_NAMES:
        hit = (class_map_fine == code).reshape(h, fine_scale, w, fine_scale)
        out[code] = hit.mean(axis=(1, 3), dtype=np.float32)
    return out


def labels_from(class_map_fine: np.ndarray, grid: Grid, fine_scale: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """10 m label (ISA if at least half the pixel is impervious) and the fine label."""
    fine = np.isin(class_map_fine, ISA_CLASSES).astype(np.uint8)
    frac = fine.reshape(grid.height, fine_scale, grid.width, fine_scale).mean(axis=(1, 3))
    coarse = (frac >= 0.5).astype(np.uint8)
    # a corner left unlabelled (255), as real reference data has gaps
    rows, cols = slice(0, max(1, grid.height // 5)), slice(0, max(1, grid.width // 5))
    coarse[rows, cols] = LABEL_NODATA
    fine[rows.start * fine_scale:rows.stop * fine_scale,
         cols.start * fine_scale:cols.stop * fine_scale] = LABEL_NODATA
    return coarse, fine


def mix(fractions: np.ndarray, per_class: Mapping[int, Sequence[float]]) -> np.ndarray:
    """Linear mixture ``(n_values, H, W)`` of per-class values by class fraction."""
    n = len(next(iter(per_class.values())))
    out = np.zeros((n, *fractions.shape[1:]), dtype=np.float32)
    for code, values in per_class.items():
        out += np.asarray(values, dtype=np.float32)[:, None, None] * fractions[code]
    return out
