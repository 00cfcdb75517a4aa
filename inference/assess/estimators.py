"""Accuracy and area from a stratified random sample of reference points, with 95 % intervals.

A map's pixel counts are biased by its errors; a sample of points whose true class a person
interpreted gives unbiased estimates of accuracy and of every class's area, with confidence
intervals. The design is stratified random sampling: the strata (a map's classes, or a change
map's classes) are known for every pixel, points are drawn at random within each.

The estimators are those of Olofsson et al. (2014) written in the general form of Stehman
(2014), where the strata need not be the classes of the map being assessed: each quantity is a
stratified mean (overall accuracy, a class's area proportion, a cell of the error matrix) or a
ratio of two stratified totals (user's and producer's accuracy, F1), with the variance of the
stratified mean or the linearised ratio variance. When the map being assessed is the one that
drew the sample they reduce to the formulas of Olofsson et al. (2014), eqs. 2-11 (their Table 8
is reproduced by the tests), so the map and any other product scored on the same points are
estimated correctly and comparably. The finite population correction is left out, as in
Olofsson et al. (a sample is a negligible fraction of a map's pixels).

Sample sizes follow Olofsson et al. (2014), eq. 13: ``n = (sum_h W_h S_h / S)^2`` for a target
standard error ``S`` of overall accuracy (``S_h`` from the expected user's accuracies) or of a
class's area proportion, then allocated with at least a minimum per stratum and the rest in
proportion to the strata's areas.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

from contract.bands import LABEL_NODATA
from core.errors import ConfigError
from core.jsonsafe import json_safe
from training.metrics import confusion_matrix

Numbers = Sequence[float] | np.ndarray
"""Per-stratum numbers (weights, pixel counts, user's accuracies): a sequence or a 1-D array."""

Z95 = 1.96  # the rounded normal quantile Olofsson et al. (2014) use for 95 % intervals


# ------------------------------------------------------------------ drawing points from arrays
def sample_points(map_: np.ndarray, n: int, seed: int = 0,
                  design: Literal["random", "stratified"] = "stratified",
                  num_classes: int | None = None) -> tuple[np.ndarray, ...]:
    """Indices (one array per axis) of ``n`` sample points over the valid pixels of a class map.

    ``random``: simple random sampling. ``stratified``: the map classes are the strata and
    ``n`` is split equally between them (all pixels of a small class when it has fewer),
    the design the estimators below assume. The points are drawn by :func:`draw_ranks`.
    """
    flat = np.asarray(map_).ravel()
    valid = np.flatnonzero(flat != LABEL_NODATA)
    if valid.size == 0:
        raise ConfigError("the map has no valid pixel to sample")
    if design == "random":
        members = [valid]
        alloc = [min(n, valid.size)]
    elif design == "stratified":
        classes = np.unique(flat[valid]) if num_classes is None else np.arange(num_classes)
        per = max(n // max(len(classes), 1), 1)
        members = [valid[flat[valid] == c] for c in classes]
        alloc = [min(per, m.size) for m in members]
    else:
        raise ConfigError(f"design must be 'random' or 'stratified', got {design!r}")
    ranks = draw_ranks([m.size for m in members], alloc, seed)
    pick = np.concatenate([m[r] for m, r in zip(members, ranks, strict=True)])
    return np.unravel_index(np.sort(pick), np.asarray(map_).shape)


def point_confusion(map_: np.ndarray, reference: np.ndarray, index: tuple[np.ndarray, ...],
                    num_classes: int) -> np.ndarray:
    """Confusion matrix ``[ref, pred]`` of the map against the reference at sample points."""
    return confusion_matrix(np.asarray(map_)[index], np.asarray(reference)[index], num_classes)


# ------------------------------------------------------------------ sample size and allocation
def sample_size_oa(weights: Numbers, expected_ua: Numbers,
                   target_se: float) -> int:
    """Olofsson et al. (2014), eq. 13: points for a standard error ``target_se`` of OA.

    ``weights``: the strata's area proportions; ``expected_ua``: the user's accuracy expected
    in each stratum (its standard deviation is ``sqrt(U (1 - U))``).
    """
    w, ua = _check_weights(weights), np.asarray(expected_ua, dtype=np.float64)
    if ua.shape != w.shape or ((ua <= 0) | (ua >= 1)).any():
        raise ConfigError(f"give one expected user's accuracy in (0, 1) per stratum "
                          f"({w.size}), got {list(expected_ua)}")
    return _size(float((w * np.sqrt(ua * (1 - ua))).sum()), target_se)


def sample_size_area(weights: Numbers, expected_ua: Numbers, target: int,
                     target_se: float) -> int:
    """Points for a standard error ``target_se`` of class ``target``'s area proportion.

    The same form as eq. 13 with the standard deviation of "reference is ``target``" in each
    stratum: ``U (1 - U)`` in the stratum of the class itself, and in another stratum the
    share of its errors that are ``target`` (its ``1 - U`` spread evenly over the other
    classes: an assumption, stated so that a user with better knowledge can give ``--n``).
    """
    w = _check_weights(weights)
    return _size(float((w * area_sd(w, expected_ua, target)).sum()), target_se)


def area_sd(weights: Numbers, expected_ua: Numbers, target: int) -> np.ndarray:
    """Per stratum, the expected standard deviation of "the reference is class ``target``".

    The ``S_h`` of :func:`sample_size_area`. Eq. 13 is the size of a Neyman allocation, so a
    sample sized with it reaches its target standard error when it is allocated in proportion
    to ``W_h S_h`` (:func:`allocate` with these products as weights).
    """
    w, ua = _check_weights(weights), np.asarray(expected_ua, dtype=np.float64)
    if ua.shape != w.shape or not 0 <= target < w.size:
        raise ConfigError(f"give one expected user's accuracy per stratum ({w.size}) and a "
                          "target class among them")
    share = np.where(np.arange(w.size) == target, ua, (1 - ua) / max(w.size - 1, 1))
    return np.sqrt(share * (1 - share))


def _size(sum_ws: float, target_se: float) -> int:
    if not target_se > 0:
        raise ConfigError(f"the target standard error must be positive, got {target_se}")
    return max(1, math.ceil((sum_ws / target_se) ** 2))


def _check_weights(weights: Numbers) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 1 or w.size == 0 or (w < 0).any() or w.sum() <= 0:
        raise ConfigError(f"strata weights must be non-negative with a positive sum: {weights}")
    return w / w.sum()


def allocate(n: int, weights: Numbers, minimum: int,
             available: Sequence[int] | np.ndarray | None = None) -> tuple[int, ...]:
    """Points per stratum: at least ``minimum`` each, the rest proportional to the weights.

    Olofsson et al. (2014) recommend this compromise: proportional allocation serves overall
    accuracy and the large classes, the minimum gives a rare class (gain, loss) enough points
    for its user's accuracy. Strata smaller than their share get all their pixels
    (``available``); the total can exceed ``n`` when ``n`` is below ``minimum`` x strata.
    """
    w = _check_weights(weights)
    cap = (np.asarray(available, dtype=np.int64) if available is not None
           else np.full(w.size, np.iinfo(np.int64).max))
    cap = np.where(w > 0, cap, 0)
    alloc = np.zeros(w.size, dtype=np.int64)
    fixed = np.zeros(w.size, dtype=bool) | (cap == 0)
    while True:  # a stratum below its minimum or cap gets that and leaves the proportional rest
        free = ~fixed
        left = n - alloc[fixed].sum()
        share = np.zeros(w.size)
        if free.any() and w[free].sum() > 0:
            share[free] = max(left, 0) * w[free] / w[free].sum()
        low = free & ((share < minimum) | (share > cap))
        if not low.any():
            break
        alloc[low] = np.minimum(np.where(share[low] > cap[low], cap[low], minimum), cap[low])
        fixed |= low
    base = np.floor(share).astype(np.int64)
    rest = round(float(share[~fixed].sum())) - int(base[~fixed].sum())
    order = np.argsort(-(share - base) * (~fixed))
    base[order[:max(rest, 0)]] += 1
    alloc[~fixed] = np.minimum(base[~fixed], cap[~fixed])
    return tuple(int(a) for a in alloc)


def draw_ranks(pixels: Sequence[int] | np.ndarray, alloc: Sequence[int],
               seed: int) -> list[np.ndarray]:
    """The sorted ranks of each stratum's points among its ``N_h`` pixels in reading order.

    The one random draw of every design: ``alloc[h]`` distinct ranks out of ``pixels[h]``,
    stratum after stratum from one generator seeded with ``seed``.
    """
    rng = np.random.default_rng(seed)
    return [np.sort(rng.choice(n_h, a, replace=False)) if a else np.zeros(0, np.int64)
            for n_h, a in zip(pixels, alloc, strict=True)]


# ------------------------------------------------------------------ estimators
@dataclass(frozen=True)
class AreaAccuracy:
    """Stratified estimates; every ``*_ci`` is a 95 % half-width (1.96 x SE).

    ``error_matrix[i][j]`` is the estimated area proportion mapped ``i`` whose reference is
    ``j`` (rows = map, as Olofsson et al. print it); ``area`` in the unit of the strata sizes.
    """

    class_names: tuple[str, ...]
    n: int
    oa: float
    oa_ci: float
    ua: tuple[float, ...]
    ua_ci: tuple[float, ...]
    pa: tuple[float, ...]
    pa_ci: tuple[float, ...]
    f1: tuple[float, ...]
    f1_ci: tuple[float, ...]
    proportion: tuple[float, ...]
    area: tuple[float, ...]
    area_ci: tuple[float, ...]
    mapped_area: tuple[float, ...]
    error_matrix: tuple[tuple[float, ...], ...]

    def to_dict(self) -> dict:
        return json_safe(asdict(self))


def stratified_estimates(stratum: np.ndarray, stratum_size: Numbers,
                         predicted: np.ndarray, reference: np.ndarray,
                         class_names: Sequence[str],
                         stratum_units: Sequence[int] | None = None) -> AreaAccuracy:
    """Accuracy and area of a product from a stratified sample (strata need not be its classes).

    Args:
        stratum: the stratum of each point, ``0 .. len(stratum_size) - 1``.
        stratum_size: the size of each stratum (pixels, km², ha: the unit of ``area``).
        predicted: the product's class at each point (``0 .. K - 1``).
        reference: the interpreted class at each point.
        class_names: the ``K`` class names.
        stratum_units: the sampling units (pixels) of each stratum, where known: a stratum
            whose every unit is a point is a census (:func:`short_strata`).

    Raises:
        ConfigError: a stratum with area but fewer than 2 points (no variance) that is not a
            census, codes out of range, or arrays of different lengths.
    """
    h = np.asarray(stratum, dtype=np.int64).ravel()
    p = np.asarray(predicted, dtype=np.int64).ravel()
    r = np.asarray(reference, dtype=np.int64).ravel()
    size = np.asarray(stratum_size, dtype=np.float64)
    k = len(class_names)
    if not (h.size == p.size == r.size):
        raise ConfigError("stratum, predicted and reference need one value per point")
    if ((h < 0) | (h >= size.size)).any() or ((p < 0) | (p >= k) | (r < 0) | (r >= k)).any():
        raise ConfigError(f"codes out of range: strata 0..{size.size - 1}, classes 0..{k - 1}")
    if (size < 0).any() or size.sum() <= 0:
        raise ConfigError("strata sizes must be non-negative with a positive sum")
    counts = np.bincount(h, minlength=size.size)
    if short_strata(counts, size, stratum_units).any():
        raise ConfigError("every stratum needs at least 2 sample points for a variance; "
                          f"points per stratum: {counts.tolist()}")
    stats = _StratumStats(h, counts, size)
    eye = np.arange(k)
    pk = (p[:, None] == eye).astype(np.float64)  # (n, K): mapped k
    rk = (r[:, None] == eye).astype(np.float64)  # reference k
    hit = pk * rk
    oa, oa_var = stats.mean((p == r).astype(np.float64)[:, None])
    prop, prop_var = stats.mean(rk)
    mapped, _ = stats.mean(pk, variance=False)
    ua, ua_var = stats.ratio(hit, pk)
    pa, pa_var = stats.ratio(hit, rk)
    f1, f1_var = stats.ratio(2 * hit, pk + rk)
    cells, _ = stats.mean((pk[:, :, None] * rk[:, None, :]).reshape(p.size, k * k), False)
    total = float(size.sum())

    def ci(var: np.ndarray) -> tuple[float, ...]:
        return tuple(float(Z95 * math.sqrt(v)) if np.isfinite(v) else math.nan for v in var)

    return AreaAccuracy(
        class_names=tuple(class_names), n=int(h.size), oa=float(oa[0]),
        oa_ci=ci(oa_var)[0], ua=_floats(ua), ua_ci=ci(ua_var), pa=_floats(pa), pa_ci=ci(pa_var),
        f1=_floats(f1), f1_ci=ci(f1_var), proportion=_floats(prop),
        area=_floats(prop * total), area_ci=tuple(c * total for c in ci(prop_var)),
        mapped_area=_floats(mapped * total),
        error_matrix=tuple(_floats(row) for row in cells.reshape(k, k)))


def short_strata(counts: np.ndarray, size: np.ndarray,
                 units: Sequence[int] | None = None) -> np.ndarray:
    """Which strata have area but too few points for a variance (fewer than 2).

    A stratum whose every sampling unit is a point (a 1-pixel stratum with its one point: the
    map's one "loss" pixel) is a census, not a sample: its mean is known exactly, its variance
    is 0 (the finite population correction ``1 - n/N``), and it is not short.
    """
    short = (counts < 2) & (np.asarray(size) > 0)
    if units is not None:
        short &= counts < np.asarray(units)
    return short


class _StratumStats:
    """Stratified means and ratios of point variables (columns), with their variances."""

    def __init__(self, stratum: np.ndarray, counts: np.ndarray, size: np.ndarray) -> None:
        self.h, self.n = stratum, counts.astype(np.float64)
        self.w = size / size.sum()
        self.used = counts > 0
        self.members = (stratum[None, :] == np.arange(counts.size)[:, None]).astype(np.float64)

    def _sums(self, y: np.ndarray) -> np.ndarray:
        return self.members @ y  # (strata, columns)

    def _means(self, y: np.ndarray) -> np.ndarray:
        return self._sums(y) / np.maximum(self.n, 1)[:, None]

    def _cov(self, y: np.ndarray, x: np.ndarray, my: np.ndarray, mx: np.ndarray) -> np.ndarray:
        """Per-stratum sample covariance (ddof 1) of two variables, column by column."""
        # sum (y - my)(x - mx) = sum yx - n my mx within each stratum
        cross = self._sums(y * x) - self.n[:, None] * my * mx
        return cross / np.maximum(self.n - 1, 1)[:, None]

    def mean(self, y: np.ndarray, variance: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """The population mean of ``y`` (per column) and its variance (NaN unless asked)."""
        m = self._means(y)
        if not variance:
            return (self.w[:, None] * m).sum(0), np.full(y.shape[1], np.nan)
        var = self._cov(y, y, m, m)
        weight = np.where(self.used, self.w**2 / np.maximum(self.n, 1), 0.0)[:, None]
        return (self.w[:, None] * m).sum(0), (weight * var).sum(0)

    def ratio(self, y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``R = total(y) / total(x)`` per column and its linearised variance (Stehman 2014)."""
        my, mx = self._means(y), self._means(x)
        ty, tx = (self.w[:, None] * my).sum(0), (self.w[:, None] * mx).sum(0)
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.where(tx > 0, ty / np.where(tx > 0, tx, 1), np.nan)
        rr = np.nan_to_num(r)
        s = (self._cov(y, y, my, my) + rr**2 * self._cov(x, x, mx, mx)
             - 2 * rr * self._cov(y, x, my, mx))
        weight = np.where(self.used, self.w**2 / np.maximum(self.n, 1), 0.0)[:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            var = np.where(tx > 0, (weight * s).sum(0) / np.where(tx > 0, tx, 1) ** 2, np.nan)
        return r, var


@dataclass(frozen=True)
class ChangeArea:
    """Gain, loss and net change (gain - loss) of a class, in the unit of the strata sizes.

    Each ``*_ci`` is a 95 % half-width. The net change is the stratified mean of
    ``[reference is gain] - [reference is loss]`` per point, so its interval accounts for the
    two areas being estimated from the same points.
    """

    gain: float
    gain_ci: float
    loss: float
    loss_ci: float
    net: float
    net_ci: float


def change_area(stratum: np.ndarray, stratum_size: Sequence[float], reference: np.ndarray,
                gain: int, loss: int, stratum_units: Sequence[int] | None = None) -> ChangeArea:
    """Gain, loss and net change areas with 95 % intervals from a stratified sample.

    ``reference`` holds each point's interpreted change class; ``gain`` and ``loss`` are the
    codes of the two change classes. Raises like :func:`stratified_estimates` (and takes its
    ``stratum_units``).
    """
    h = np.asarray(stratum, dtype=np.int64).ravel()
    r = np.asarray(reference, dtype=np.int64).ravel()
    size = np.asarray(stratum_size, dtype=np.float64)
    counts = np.bincount(h, minlength=size.size)
    if h.size != r.size or short_strata(counts, size, stratum_units).any():
        raise ConfigError("every stratum needs at least 2 sample points for a variance, and "
                          f"every point a reference; points per stratum: {counts.tolist()}")
    stats = _StratumStats(h, counts, size)
    g, lo = (r == gain).astype(np.float64), (r == loss).astype(np.float64)
    mean, var = stats.mean(np.stack([g, lo, g - lo], axis=1))
    total = float(size.sum())
    est = mean * total
    ci = Z95 * np.sqrt(np.maximum(var, 0.0)) * total
    return ChangeArea(float(est[0]), float(ci[0]), float(est[1]), float(ci[1]), float(est[2]),
                      float(ci[2]))


def _floats(values: np.ndarray) -> tuple[float, ...]:
    return tuple(float(v) for v in np.asarray(values).ravel())


def stratified_area_accuracy(matrix: np.ndarray, mapped_pixels: Numbers,
                             pixel_area: float = 1.0,
                             class_names: Sequence[str] | None = None) -> AreaAccuracy:
    """Area-weighted accuracy and area from a confusion matrix of a map-stratified sample.

    Args:
        matrix: sample counts ``[ref, pred]`` (strata = predicted/map classes).
        mapped_pixels: number of map pixels of each class (the strata sizes).
        pixel_area: area of one pixel in the unit wanted for the areas (e.g. 0.01 ha).
        class_names: names for the report.

    The counts are expanded to their points and estimated by :func:`stratified_estimates`
    with the map as strata: Olofsson et al. (2014), eqs. 2-11.
    """
    counts = np.asarray(matrix, dtype=np.int64)
    k = counts.shape[0]
    mapped = np.asarray(mapped_pixels, dtype=np.float64)
    if counts.shape != (k, k) or mapped.shape != (k,):
        raise ConfigError(f"a {k}x{k} matrix needs {k} mapped pixel counts")
    ref, pred = np.nonzero(counts)
    reps = counts[ref, pred]
    reference, predicted = np.repeat(ref, reps), np.repeat(pred, reps)
    names = tuple(class_names) if class_names else tuple(f"class_{i}" for i in range(k))
    return stratified_estimates(predicted, mapped * pixel_area, predicted, reference, names)
