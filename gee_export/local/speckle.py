"""Sentinel-1 speckle filters in numpy: boxcar, Lee, Gamma-MAP, refined Lee and Lee sigma.

All filters take sigma0 in *linear power* (never dB: the speckle model is multiplicative in
power, and averaging dB values biases the mean low) and return float32 in the same unit. NaN
marks nodata: it never enters a statistic and stays NaN in the output.

The formulas follow the papers, with the same defaults as the Earth Engine side of isamap
(kernel 7, ENL 4.4), and deliberately *not* the known defects of the popular gee_s1_ard port:
Lee sigma's range test is a real AND of both bounds, its bright-pixel test counts the bright
pixels (not distinct values) in the 3x3 window, and Gamma-MAP uses Lopes' quadratic.

Every filter runs over blocks with a halo (``filter_blocks``), so a 10,980 x 10,980 band is
filtered in bounded extra memory, and image borders are mirrored ("reflect" in scipy terms),
which is what ``scipy.ndimage.generic_filter(mode='reflect')`` does; that makes the slow
reference implementation ``refined_lee_generic`` comparable pixel for pixel.

Longer than most modules (~430 lines) on purpose: the six filters mirror
:mod:`gee_export.ee.speckle` one to one (the backend-parity tests compare them formula by
formula), and reviewing the two side by side is easier with one file per backend.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache

import numpy as np
from scipy import ndimage, optimize, special

from contract.composite import SPECKLE_FILTERS, SpeckleFilter
from core.errors import ConfigError

DEFAULT_ENL = 4.4  # ESA's figure for IW GRDH, as on the Earth Engine side (gee_s1_ard uses 5).
DEFAULT_KERNEL = 7
DEFAULT_BLOCK = 512  # small blocks keep the working set of float64 temporaries in cache.
REFINED_LEE_HALO = 3  # fixed 7x7 window

# The nine 3x3 sub-windows of the 7x7 refined-Lee window, centred at (-2|0|2, -2|0|2):
# index k = 3 * (dy // 2 + 1) + (dx // 2 + 1); 4 is the centre.
_SUB_OFFSETS = tuple((dy, dx) for dy in (-2, 0, 2) for dx in (-2, 0, 2))
# Lee (1981) gradient masks over the 3x3 array of sub-window means, one per edge direction
# (vertical, main diagonal, horizontal, anti-diagonal): |sum of the first three - sum of the
# last three|. The same tables as the Earth Engine side (gee_export/ee/speckle.py).
_GRADIENTS = ((2, 5, 8, 0, 3, 6), (1, 2, 5, 3, 6, 7), (0, 1, 2, 6, 7, 8), (0, 1, 3, 5, 7, 8))
# Per direction, the sub-window on each side of the edge: (side A, side B). The centre belongs
# to side B when sub-window B's mean is strictly closer to the centre's mean.
_SIDES = ((5, 3), (2, 6), (1, 7), (0, 8))
# The eight 7x7 half-windows (28 px, centre line included), index 2 * direction + side, as
# per-row inclusive column ranges for row offsets -3..3 (None = row not in the window):
# right, left, upper-right (x >= y), lower-left (x <= y), top, bottom, upper-left
# (x + y <= 0), lower-right (x + y >= 0).
_R = range(-3, 4)
_HALF_WINDOWS: tuple[tuple[tuple[int, int] | None, ...], ...] = (
    tuple((0, 3) for _ in _R),
    tuple((-3, 0) for _ in _R),
    tuple((y, 3) for y in _R),
    tuple((-3, y) for y in _R),
    tuple((-3, 3) if y <= 0 else None for y in _R),
    tuple((-3, 3) if y >= 0 else None for y in _R),
    tuple((-3, -y) for y in _R),
    tuple((-y, 3) for y in _R),
)


# --------------------------------------------------------------------------- formulas
def lee_weight(mean: np.ndarray, var: np.ndarray, enl: float) -> np.ndarray:
    """Lee (1980) MMSE weight b = var_x / var_z, clipped to [0, 1].

    With multiplicative noise of unit mean and variance Cu^2 = 1/ENL, the signal variance is
    var_x = (var_z - mean^2 Cu^2) / (1 + Cu^2). In homogeneous areas var_x <= 0 and b = 0 (the
    estimate is the local mean); on strong texture b -> 1 (the pixel is kept).
    """
    cu2 = 1.0 / enl
    var_x = (var - mean * mean * cu2) / (1.0 + cu2)
    with np.errstate(divide="ignore", invalid="ignore"):
        b = np.where(var > 0, var_x / var, 0.0)
    return np.clip(b, 0.0, 1.0)


def gamma_map_estimate(z: np.ndarray, mean: np.ndarray, ci: np.ndarray,
                       enl: float) -> np.ndarray:
    """Gamma-MAP estimate of Lopes et al. (1990) from the pixel, local mean and local CV.

    Regimes: Ci <= Cu (homogeneous) -> the local mean; Ci >= Cmax = sqrt(2) Cu (point target
    or edge) -> the pixel; otherwise the MAP estimate. With a Gamma prior of order
    alpha = (1 + Cu^2) / (Ci^2 - Cu^2) and mean ``mean``, and L-look Gamma speckle, setting the
    derivative of the log posterior to zero gives
    ``alpha x^2 - mean (alpha - L - 1) x - L mean z = 0``, whose positive root is
    ``x = (mean (alpha - L - 1) + sqrt(mean^2 (alpha - L - 1)^2 + 4 alpha L mean z)) / (2 alpha)``.
    """
    cu = 1.0 / math.sqrt(enl)
    cmax = math.sqrt(2.0) * cu
    with np.errstate(divide="ignore", invalid="ignore"):
        alpha = (1.0 + cu * cu) / (ci * ci - cu * cu)
        t = alpha - enl - 1.0
        disc = mean * mean * t * t + 4.0 * alpha * enl * mean * z
        x_map = (mean * t + np.sqrt(np.maximum(disc, 0.0))) / (2.0 * alpha)
    return np.where(ci <= cu, mean, np.where(ci >= cmax, z, x_map))


@lru_cache(maxsize=64)
def sigma_range(enl: float, sigma: float = 0.9) -> tuple[float, float, float]:
    """Lee et al. (2009) sigma range ``(I1, I2)`` and revised speckle std ``eta_v``.

    For L-look intensity speckle v ~ Gamma(L, 1/L), [I1, I2] holds probability ``sigma`` and
    the speckle restricted to it still has mean 1 (so the filter is unbiased); eta_v is the
    std of that restricted speckle. Solved numerically for any (non-integer) ENL instead of
    a look-up table, using v p_L(v) = p_{L+1}(v) and v^2 p_L(v) = (L+1)/L p_{L+2}(v).
    """
    if not (0.0 < sigma < 1.0) or enl <= 0:
        raise ConfigError(f"sigma must be in (0, 1) and ENL > 0, got sigma={sigma}, ENL={enl}")
    L = float(enl)

    def cdf(order: float, v: float) -> float:
        return float(special.gammainc(order, L * v))

    def upper_for(lower: float) -> float:
        target = cdf(L, lower) + sigma
        return optimize.brentq(lambda b: cdf(L, b) - target, lower, 100.0, xtol=1e-12)

    def mean_gap(lower: float) -> float:
        return cdf(L + 1, upper_for(lower)) - cdf(L + 1, lower) - sigma

    lo_max = optimize.brentq(lambda a: cdf(L, a) - (1.0 - sigma), 0.0, 100.0) - 1e-9
    lower = optimize.brentq(mean_gap, 1e-12, lo_max, xtol=1e-12)
    upper = upper_for(lower)
    second = (L + 1.0) / L * (cdf(L + 2, upper) - cdf(L + 2, lower)) / sigma
    return lower, upper, math.sqrt(max(second - 1.0, 0.0))


def sigma_range_mask(values: np.ndarray, prior: np.ndarray, lower: float,
                     upper: float) -> np.ndarray:
    """Pixels inside the sigma range of a prior: ``lower*prior <= v AND v <= upper*prior``.

    gee_s1_ard writes ``gte(I1).or(lt(I2))``, which is true for every pixel; both bounds must hold.
    """
    return (values >= lower * prior) & (values <= upper * prior)


# --------------------------------------------------------------------------- helpers
def _check(size: int, enl: float) -> None:
    if size < 3 or size % 2 == 0:
        raise ConfigError(f"speckle kernel size must be odd and >= 3, got {size}")
    if enl <= 0:
        raise ConfigError(f"the equivalent number of looks must be > 0, got {enl}")


def _masked_stats(img: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Local mean and (population) variance over the finite pixels of a size x size window."""
    valid = np.isfinite(img)
    x = np.where(valid, img, 0.0).astype(np.float64)
    n = ndimage.uniform_filter(valid.astype(np.float64), size, mode="reflect")
    s = ndimage.uniform_filter(x, size, mode="reflect")
    s2 = ndimage.uniform_filter(x * x, size, mode="reflect")
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.where(n > 1e-9, s / n, np.nan)
        var = np.maximum(np.where(n > 1e-9, s2 / n, np.nan) - mean * mean, 0.0)
    return mean, var


def _fill_nodata(img: np.ndarray, size: int) -> np.ndarray:
    """Replace NaN by the local mean of valid pixels (so window statistics stay defined)."""
    if np.isfinite(img).all():
        return img.astype(np.float64)
    mean, _ = _masked_stats(img, size)
    out = np.where(np.isfinite(img), img, mean)
    if not np.isfinite(out).all():
        fallback = np.nanmean(img) if np.isfinite(img).any() else 0.0
        out = np.where(np.isfinite(out), out, fallback)
    return out.astype(np.float64)


def filter_blocks(img: np.ndarray, fn: Callable[[np.ndarray], np.ndarray], halo: int,
                  block: int = DEFAULT_BLOCK) -> np.ndarray:
    """Apply ``fn`` (padded block -> block of the padded size) block by block with a halo.

    Each block is read with ``halo`` real neighbours (mirrored at the image border), filtered,
    and only its interior kept, so the result equals filtering the whole image at once while
    temporaries stay the size of one block.
    """
    if img.ndim != 2:
        raise ConfigError(f"speckle filters take one 2-D band, got shape {img.shape}")
    out = np.empty(img.shape, dtype=np.float32)
    h, w = img.shape
    padded = None
    if h <= block and w <= block:
        padded = np.pad(img, halo, mode="symmetric")
        return fn(padded)[halo:halo + h, halo:halo + w].astype(np.float32)
    for r0 in range(0, h, block):
        for c0 in range(0, w, block):
            r1, c1 = min(r0 + block, h), min(c0 + block, w)
            pr0, pc0 = max(r0 - halo, 0), max(c0 - halo, 0)
            pr1, pc1 = min(r1 + halo, h), min(c1 + halo, w)
            chunk = img[pr0:pr1, pc0:pc1]
            pads = ((halo - (r0 - pr0), halo - (pr1 - r1)), (halo - (c0 - pc0), halo - (pc1 - c1)))
            if any(p for pair in pads for p in pair):
                chunk = np.pad(chunk, pads, mode="symmetric")
            res = fn(chunk)
            out[r0:r1, c0:c1] = res[halo:halo + (r1 - r0), halo:halo + (c1 - c0)]
    return out


def _keep_nodata(img: np.ndarray, out: np.ndarray) -> np.ndarray:
    out = out.astype(np.float32, copy=False)
    out[~np.isfinite(img)] = np.nan
    return out


# --------------------------------------------------------------------------- filters
def boxcar(img: np.ndarray, size: int = DEFAULT_KERNEL, block: int = DEFAULT_BLOCK) -> np.ndarray:
    """Mean of the finite pixels in a size x size window."""
    _check(size, DEFAULT_ENL)
    out = filter_blocks(img, lambda a: _masked_stats(a, size)[0], size // 2, block)
    return _keep_nodata(img, out)


def lee(img: np.ndarray, size: int = DEFAULT_KERNEL, enl: float = DEFAULT_ENL,
        block: int = DEFAULT_BLOCK) -> np.ndarray:
    """Lee (1980): local mean + b (pixel - local mean), b from :func:`lee_weight`."""
    _check(size, enl)

    def run(a: np.ndarray) -> np.ndarray:
        mean, var = _masked_stats(a, size)
        return mean + lee_weight(mean, var, enl) * (a - mean)

    return _keep_nodata(img, filter_blocks(img, run, size // 2, block))


def gamma_map(img: np.ndarray, size: int = DEFAULT_KERNEL, enl: float = DEFAULT_ENL,
              block: int = DEFAULT_BLOCK) -> np.ndarray:
    """Gamma-MAP (Lopes et al. 1990) with the three regimes of :func:`gamma_map_estimate`."""
    _check(size, enl)

    def run(a: np.ndarray) -> np.ndarray:
        mean, var = _masked_stats(a, size)
        with np.errstate(divide="ignore", invalid="ignore"):
            ci = np.sqrt(var) / mean
        return gamma_map_estimate(a, mean, ci, enl)

    return _keep_nodata(img, filter_blocks(img, run, size // 2, block))


def _row_window_sums(prefix: np.ndarray, rows: tuple[tuple[int, int] | None, ...],
                     h: int, w: int) -> np.ndarray:
    """Sum over a 7x7 half-window for every centre, from a row prefix sum of the padded block."""
    total = np.zeros((h, w), dtype=np.float64)
    for r, span in zip(_R, rows, strict=True):
        if span is None:
            continue
        lo, hi = span
        row = prefix[3 + r:3 + r + h]
        total += row[:, 3 + hi + 1:3 + hi + 1 + w] - row[:, 3 + lo:3 + lo + w]
    return total


def _refined_lee_padded(padded: np.ndarray) -> np.ndarray:
    """Refined Lee on a block padded by 3 on every side; returns the block at padded size."""
    a = _fill_nodata(padded, 7)
    hp, wp = a.shape
    h, w = hp - 6, wp - 6
    m3 = ndimage.uniform_filter(a, 3, mode="nearest")
    v3 = np.maximum(ndimage.uniform_filter(a * a, 3, mode="nearest") - m3 * m3, 0.0)
    means = [m3[3 + dy:3 + dy + h, 3 + dx:3 + dx + w] for dy, dx in _SUB_OFFSETS]
    # Edge direction: the largest Lee gradient; strict '>' keeps the first maximum on ties,
    # as on Earth Engine. (np.where chains beat stacking + argmax on big blocks.)
    best = None
    direction = np.zeros((h, w), dtype=np.int8)
    for d, g in enumerate(_GRADIENTS):
        grad = np.abs(means[g[0]] + means[g[1]] + means[g[2]]
                      - means[g[3]] - means[g[4]] - means[g[5]])
        if best is None:
            best = grad
        else:
            direction = np.where(grad > best, np.int8(d), direction)
            best = np.maximum(best, grad)
    # Side: B when sub-window B's mean is strictly closer to the centre's than A's.
    centre = means[4]
    window = np.zeros((h, w), dtype=np.int8)
    for d, (sa, sb) in enumerate(_SIDES):
        side_b = np.abs(means[sb] - centre) < np.abs(means[sa] - centre)
        window = np.where(direction == d, (2 * d + side_b).astype(np.int8), window)
    # Noise CV^2: mean of the five most homogeneous of the nine sub-windows, selected with a
    # min/max sorting network (np.sort along a 9-long first axis is several times slower).
    with np.errstate(divide="ignore", invalid="ignore"):
        cv2 = [np.nan_to_num(v3[3 + dy:3 + dy + h, 3 + dx:3 + dx + w] / (m * m), nan=0.0,
                             posinf=0.0)
               for (dy, dx), m in zip(_SUB_OFFSETS, means, strict=True)]
    for step in range(9):
        for i in range(step % 2, 8, 2):
            cv2[i], cv2[i + 1] = np.minimum(cv2[i], cv2[i + 1]), np.maximum(cv2[i], cv2[i + 1])
    sigma_v = (cv2[0] + cv2[1] + cv2[2] + cv2[3] + cv2[4]) / 5.0
    # Mean and variance of the chosen directional half-window (28 pixels).
    zeros = np.zeros((hp, 1))
    prefix = np.concatenate([zeros, np.cumsum(a, axis=1)], axis=1)
    prefix2 = np.concatenate([zeros, np.cumsum(a * a, axis=1)], axis=1)
    d_mean = np.zeros((h, w))
    d_var = np.zeros((h, w))
    for k, rows in enumerate(_HALF_WINDOWS):
        sel = window == k
        if not sel.any():
            continue
        n = sum(hi - lo + 1 for span in rows if span is not None for lo, hi in [span])
        mean = _row_window_sums(prefix, rows, h, w) / n
        var = _row_window_sums(prefix2, rows, h, w) / n - mean * mean
        d_mean = np.where(sel, mean, d_mean)
        d_var = np.where(sel, np.maximum(var, 0.0), d_var)
    var_x = (d_var - d_mean * d_mean * sigma_v) / (1.0 + sigma_v)
    with np.errstate(divide="ignore", invalid="ignore"):
        b = np.clip(np.where(d_var > 0, var_x / d_var, 0.0), 0.0, 1.0)
    out = np.zeros((hp, wp))
    out[3:3 + h, 3:3 + w] = d_mean + b * (a[3:3 + h, 3:3 + w] - d_mean)
    return out


def refined_lee(img: np.ndarray, block: int = DEFAULT_BLOCK) -> np.ndarray:
    """Refined Lee (Lee 1981; as used by Lee et al. 2009): edge-aligned MMSE in a 7x7 window.

    Per pixel: 3x3 means at the nine sub-window positions of the 7x7 window; the edge direction
    (of four) with the largest Lee gradient over those means; of its two 7x7 half-windows
    (28 px, rectangular or triangular) the one on the side whose sub-window resembles the
    centre; the noise CV^2 from the five most homogeneous sub-windows; then Lee's MMSE with the
    half-window's mean and variance. Fully vectorised; only the chosen statistics are kept.
    """
    out = filter_blocks(img, _refined_lee_padded, REFINED_LEE_HALO, block)
    return _keep_nodata(img, out)


def _refined_lee_pixel(values: np.ndarray) -> float:
    """The refined Lee for one 7x7 window (row-major 49 values): the reference per pixel."""
    win = values.reshape(7, 7)
    subs = [win[3 + dy - 1:3 + dy + 2, 3 + dx - 1:3 + dx + 2] for dy, dx in _SUB_OFFSETS]
    means = [s.mean() for s in subs]
    grads = [abs(sum(means[i] for i in g[:3]) - sum(means[i] for i in g[3:])) for g in _GRADIENTS]
    d = int(np.argmax(grads))
    sa, sb = _SIDES[d]
    side_b = abs(means[sb] - means[4]) < abs(means[sa] - means[4])
    rows = _HALF_WINDOWS[2 * d + int(side_b)]
    pix = np.concatenate([win[3 + r, 3 + lo:3 + hi + 1] for r, span in zip(_R, rows, strict=True)
                          if span is not None for lo, hi in [span]])
    cv2 = sorted((s.var() / m**2) if m != 0 else 0.0 for s, m in zip(subs, means, strict=True))
    sigma_v = float(np.mean(cv2[:5]))
    mean, var = pix.mean(), pix.var()
    var_x = (var - mean * mean * sigma_v) / (1.0 + sigma_v)
    b = min(max(var_x / var, 0.0), 1.0) if var > 0 else 0.0
    return float(mean + b * (win[3, 3] - mean))


def refined_lee_generic(img: np.ndarray) -> np.ndarray:
    """Straightforward ``scipy.ndimage.generic_filter`` refined Lee: reference and baseline.

    Same algorithm as :func:`refined_lee`, one Python call per pixel; used by the tests to check
    the vectorised filter and by ``benchmarks/bench_speckle.py`` as the speed baseline. No NaN
    handling: pass finite data.
    """
    return ndimage.generic_filter(img.astype(np.float64), _refined_lee_pixel, size=7,
                                  mode="reflect").astype(np.float32)


def lee_sigma(img: np.ndarray, size: int = DEFAULT_KERNEL, enl: float = DEFAULT_ENL,
              sigma: float = 0.9, bright_count: int = 5, bright_percentile: float = 98.0,
              block: int = DEFAULT_BLOCK) -> np.ndarray:
    """Improved Lee sigma filter (Lee et al. 2009).

    1. Point targets: pixels >= the image's 98th percentile with at least ``bright_count``
       such pixels in their 3x3 window are kept unfiltered.
    2. A priori mean x~: Lee MMSE over 3x3.
    3. Neighbours of the ``size`` x ``size`` window inside [I1 x~, I2 x~] (both bounds, from
       :func:`sigma_range`) form the sample; MMSE with the revised speckle std eta_v.
    """
    _check(size, enl)
    lower, upper, eta_v = sigma_range(enl, sigma)
    finite = img[np.isfinite(img)]
    z98 = float(np.percentile(finite, bright_percentile)) if finite.size else np.inf
    half = size // 2
    cu2 = eta_v * eta_v

    def run(a: np.ndarray) -> np.ndarray:
        valid = np.isfinite(a)
        x = np.where(valid, a, 0.0).astype(np.float64)
        bright = (x >= z98) & valid
        count = np.rint(ndimage.uniform_filter(bright.astype(np.float64), 3, mode="reflect") * 9)
        retain = bright & (count >= bright_count)
        m3, v3 = _masked_stats(a, 3)
        prior = m3 + lee_weight(m3, v3, enl) * (x - m3)
        hp, wp = a.shape
        n = np.zeros((hp, wp))
        s = np.zeros((hp, wp))
        s2 = np.zeros((hp, wp))
        padded = np.pad(np.where(valid, x, np.nan), half, mode="symmetric")
        for dy in range(-half, half + 1):
            for dx in range(-half, half + 1):
                v = padded[half + dy:half + dy + hp, half + dx:half + dx + wp]
                sel = sigma_range_mask(v, prior, lower, upper)  # False where v is NaN
                n += sel
                s += np.where(sel, v, 0.0)
                s2 += np.where(sel, v * v, 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = np.where(n > 0, s / n, prior)
            var = np.where(n > 0, np.maximum(s2 / n - mean * mean, 0.0), 0.0)
            var_x = (var - mean * mean * cu2) / (1.0 + cu2)
            b = np.clip(np.where(var > 0, var_x / var, 0.0), 0.0, 1.0)
        out = mean + b * (x - mean)
        return np.where(retain, x, out)

    return _keep_nodata(img, filter_blocks(img, run, half + 1, block))


def despeckle(img: np.ndarray, method: SpeckleFilter = "refined_lee", *,
              size: int = DEFAULT_KERNEL, enl: float = DEFAULT_ENL,
              block: int = DEFAULT_BLOCK) -> np.ndarray:
    """Filter one band of linear-power sigma0 with the named filter (``'none'`` copies)."""
    img = np.asarray(img, dtype=np.float32)
    if method == "none":
        return img.copy()
    if method == "boxcar":
        return boxcar(img, size, block)
    if method == "lee":
        return lee(img, size, enl, block)
    if method == "gamma_map":
        return gamma_map(img, size, enl, block)
    if method == "refined_lee":
        return refined_lee(img, block)
    if method == "lee_sigma":
        return lee_sigma(img, size, enl, block=block)
    raise ConfigError(
        f"unknown speckle filter {method!r}; choose one of {', '.join(SPECKLE_FILTERS)}"
    )


def halo_for(method: SpeckleFilter, size: int = DEFAULT_KERNEL) -> int:
    """Pixels of context a filter needs on each side (for windowed reads of big scenes)."""
    if method == "none":
        return 0
    if method == "refined_lee":
        return REFINED_LEE_HALO
    return size // 2 + (1 if method == "lee_sigma" else 0)
