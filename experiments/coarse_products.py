"""Synthetic coarse land-cover products made from a fine reference, for the 1 m experiment.

Three products, at coarse cells shown at 1 m (nearest up-sampling):

- :func:`mode_product`: the mode of the true classes per cell. Its only errors are the
  boundaries inside cells: the hardest product to beat, with none of the thematic confusion a
  real product has.
- :func:`confusion_product`: the mode product with **spatially correlated class confusion**
  drawn from the confusion matrix of the 10 m product in the land-cover paper (seed 003,
  Table 2: FROM-GLC10 against 1940 reference points in China, 81.24 % OA). The map is cut into
  regions (Voronoi cells of random points, ``region`` px apart on average); in each region each
  true class is either kept or replaced, as a whole, by one class drawn from the paper's
  confusion of that class. A real product errs the same way: a whole field or a whole hillside
  is called the wrong class, not scattered pixels. The strength of the confusion is calibrated
  (bisection on one factor over every class's off-diagonal share, with fixed random draws) so
  that the product's overall accuracy against the reference lands on ``target_oa``.
- :func:`developed_product`: NLCD's rule for developed land (a cell at least 20 %
  impervious is impervious), the mode of the other classes elsewhere.

Pure functions of arrays; the random draws come from one seed, so a product is reproducible.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from contract.bands import LABEL_NODATA
from contract.label_schemes import LANDCOVER_CLASSES

K = len(LANDCOVER_CLASSES)

#: Seed 003, Table 2 (lines 376-400): rows the 10 m product's class, columns the reference's,
#: both in ``LANDCOVER_CLASSES`` order (cropland, woodland, grassland, water, impervious,
#: bare land, snow/ice).
PAPER_TABLE2 = np.array([
    [263, 34, 32, 3, 36, 1, 0],
    [27, 373, 30, 0, 2, 0, 0],
    [32, 17, 188, 1, 12, 32, 0],
    [0, 3, 1, 89, 1, 3, 2],
    [9, 1, 2, 2, 132, 1, 0],
    [5, 9, 49, 2, 8, 526, 3],
    [0, 0, 1, 0, 0, 3, 5],
])


def mode_product(classes: np.ndarray, cell: int) -> np.ndarray:
    """The mode of the valid classes over ``cell x cell`` blocks, nearest-upsampled back.

    Edge blocks may be partial. A block without a valid pixel is nodata; ties go to the
    lower class index (``argmax`` of the counts).
    """
    return _upsample(_mode_cells(classes, cell), cell, classes.shape)


def developed_product(classes: np.ndarray, cell: int, share: float) -> np.ndarray:
    """NLCD's definition of developed land applied to a fine reference, nearest-upsampled.

    A cell whose valid pixels are at least ``share`` impervious is impervious (NLCD's
    developed low to high intensity: ``share`` 0.2); any other cell takes the mode of its
    other classes (nodata when it has none). The product's impervious class is then exactly
    what NLCD's means, cell by cell, with none of a real product's other errors.
    """
    imp = LANDCOVER_CLASSES.index("impervious")
    valid = classes != LABEL_NODATA
    h, w = classes.shape
    rows, cols = -(-h // cell), -(-w // cell)

    def cell_sum(mask: np.ndarray) -> np.ndarray:
        padded = np.zeros((rows * cell, cols * cell), np.int64)
        padded[:h, :w] = mask
        return padded.reshape(rows, cell, cols, cell).sum((1, 3))

    labelled = cell_sum(valid)
    developed = (labelled > 0) & (cell_sum(classes == imp) >= share * labelled)
    rest = _mode_cells(np.where(classes == imp, LABEL_NODATA, classes).astype(np.uint8), cell)
    return _upsample(np.where(developed, imp, rest).astype(np.uint8), cell, classes.shape)


def _mode_cells(classes: np.ndarray, cell: int) -> np.ndarray:
    h, w = classes.shape
    rows, cols = -(-h // cell), -(-w // cell)
    padded = np.full((rows * cell, cols * cell), LABEL_NODATA, dtype=np.uint8)
    padded[:h, :w] = classes
    blocks = padded.reshape(rows, cell, cols, cell).transpose(0, 2, 1, 3).reshape(
        rows, cols, -1)
    counts = np.stack([(blocks == k).sum(-1) for k in range(K)], axis=-1)
    return np.where(counts.sum(-1) > 0, counts.argmax(-1), LABEL_NODATA).astype(np.uint8)


def _upsample(cells: np.ndarray, cell: int, shape: tuple[int, int]) -> np.ndarray:
    return np.repeat(np.repeat(cells, cell, axis=0), cell, axis=1)[:shape[0], :shape[1]]


def confusion_given_truth(matrix: np.ndarray = PAPER_TABLE2) -> np.ndarray:
    """``P[k, j]``: probability that the product says ``j`` where the truth is ``k``.

    ``matrix`` has the product's classes in rows and the reference's in columns (Table 2's
    layout); a reference class without any sample keeps its class.
    """
    m = np.asarray(matrix, dtype=np.float64).T
    totals = m.sum(1, keepdims=True)
    return np.where(totals > 0, m / np.where(totals > 0, totals, 1), np.eye(len(m)))


@dataclass(frozen=True)
class ConfusionProduct:
    """A calibrated product: the maps, the strength reached and its OA against the truth."""

    maps: tuple[np.ndarray, ...]
    strength: float
    oa: float


@dataclass(frozen=True)
class _Draws:
    """Fixed random draws of one map: its region per cell and each region's two uniforms."""

    base: np.ndarray  # (rows, cols) mode classes per cell
    region: np.ndarray  # (rows, cols) region index per cell
    swap_u: np.ndarray  # (regions, K): swap when below the class's swap probability
    pick_u: np.ndarray  # (regions, K): which other class


def _draws(classes: np.ndarray, cell: int, region: float, rng: np.random.Generator) -> _Draws:
    base = _mode_cells(classes, cell)
    rows, cols = base.shape
    n = max(1, round(rows * cols * (cell / region) ** 2))
    points = rng.uniform((0, 0), (rows, cols), size=(n, 2))
    rr, cc = np.mgrid[0:rows, 0:cols]
    centres = np.stack([rr.ravel() + 0.5, cc.ravel() + 0.5], axis=1)
    nearest = ((centres[:, None, :] - points[None]) ** 2).sum(-1).argmin(1)
    return _Draws(base, nearest.reshape(rows, cols), rng.random((n, K)), rng.random((n, K)))


def _apply(d: _Draws, p: np.ndarray, strength: float) -> np.ndarray:
    """The cell classes of one map at ``strength`` (0: the mode product)."""
    off = 1.0 - np.diag(p)
    swap_p = np.minimum(strength * off, 1.0)  # (K,)
    others = p * (1 - np.eye(K))
    others = np.where(off[:, None] > 0, others / np.where(off[:, None] > 0, off[:, None], 1), 0)
    cum = np.cumsum(others, axis=1)  # (K, K): row k's distribution over the other classes
    replace = np.minimum((d.pick_u[:, :, None] > cum[None]).sum(-1), K - 1)  # (regions, K)
    swapped = d.swap_u < swap_p[None, :]
    valid = d.base != LABEL_NODATA
    k = np.where(valid, d.base, 0).astype(np.int64)
    out = np.where(swapped[d.region, k], replace[d.region, k], d.base)
    return np.where(valid, out, LABEL_NODATA).astype(np.uint8)


def _oa(products: Sequence[np.ndarray], truths: Sequence[np.ndarray]) -> float:
    right = total = 0
    for prod, truth in zip(products, truths, strict=True):
        ok = (truth != LABEL_NODATA) & (prod != LABEL_NODATA)
        right += int((prod[ok] == truth[ok]).sum())
        total += int((truth != LABEL_NODATA).sum())
    return right / total if total else float("nan")


def confusion_product(truths: Sequence[np.ndarray], target_oa: float, cell: int = 10,
                      region: float = 60.0, seed: int = 0,
                      matrix: np.ndarray = PAPER_TABLE2) -> ConfusionProduct:
    """Products of every map of ``truths`` with correlated confusion, pooled OA ``target_oa``.

    Args:
        truths: fine class maps (255 = no data).
        target_oa: the pooled overall accuracy wanted (reachable between the OA of every region
            swapped and the mode product's; the closest reachable value is returned).
        cell: the product's cell in fine pixels (10: a 10 m product on a 1 m grid).
        region: mean distance in fine pixels between the region centres (the size of a
            wrongly labelled patch).
        seed: the random draws (regions and swaps).
        matrix: the confusion to draw from, product classes in rows (Table 2's layout).
    """
    rng = np.random.default_rng(seed)
    draws = [_draws(t, cell, region, rng) for t in truths]
    p = confusion_given_truth(matrix)

    def maps(s: float) -> list[np.ndarray]:
        return [_upsample(_apply(d, p, s), cell, t.shape) for d, t in zip(draws, truths,
                                                                            strict=True)]

    lo, hi = 0.0, 1.0 / max(float((1 - np.diag(p))[(1 - np.diag(p)) > 0].min()), 1e-9)
    for _ in range(40):  # OA falls as the strength grows (the draws are fixed)
        mid = (lo + hi) / 2
        if _oa(maps(mid), truths) > target_oa:
            lo = mid
        else:
            hi = mid
    best = min((lo, hi), key=lambda s: abs(_oa(maps(s), truths) - target_oa))
    final = maps(best)
    return ConfusionProduct(tuple(final), best, _oa(final, truths))
