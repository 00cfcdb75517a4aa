"""Sentinel-1 speckle filters in numpy: boxcar, Lee, Gamma-MAP, refined Lee and Lee sigma.

All filters take sigma0 in *linear power* (never dB: the speckle model is multiplicative in
power, and averaging dB values biases the mean low) and return float32 in the same unit. NaN
marks nodata: it never enters a statistic and stays NaN in the output.

The formulas follow the papers, with the same defaults as the Earth Engine side of isamap
(kernel 7, ENL 4.4), and deliberately *not* the known defects of the popular gee_s1_ard port:
Lee sigma's range test is a real AND of both bounds, its bright-pixel test counts the bright
pixels (not distinct values) in the 3x3 window, and Gamma-MAP uses Lopes' quadratic.

Every filter runs over blocks with a halo (:mod:`gee_export.local.filter_blocks`), so a
10,980 x 10,980 band is filtered in bounded extra memory, and image borders are mirrored
("reflect" in scipy terms), which is what ``scipy.ndimage.generic_filter(mode='reflect')`` does;
that makes the slow reference implementation of refined Lee comparable pixel for pixel. The
filters mirror :mod:`gee_export.ee.speckle` one to one (the backend-parity tests compare them
formula by formula); refined Lee, the longest, is :mod:`gee_export.local.refined_lee`.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from scipy import ndimage, optimize, special

from contract.composite import SPECKLE_FILTERS, SpeckleFilter
from core.errors import ConfigError
from gee_export.local.filter_blocks import (
    DEFAULT_BLOCK,
    check_window,
    filter_blocks,
    keep_nodata,
    masked_stats,
)
from gee_export.local.refined_lee import REFINED_LEE_HALO, refined_lee

__all__ = ["DEFAULT_BLOCK", "DEFAULT_ENL", "DEFAULT_KERNEL", "REFINED_LEE_HALO",
           "SpeckleFilter", "boxcar", "despeckle", "filter_blocks", "gamma_map",
           "gamma_map_estimate", "halo_for", "lee", "lee_sigma", "lee_weight", "refined_lee",
           "sigma_range", "sigma_range_mask"]

DEFAULT_ENL = 4.4  # ESA's figure for IW GRDH, as on the Earth Engine side (gee_s1_ard uses 5).
DEFAULT_KERNEL = 7

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


# --------------------------------------------------------------------------- filters
def boxcar(img: np.ndarray, size: int = DEFAULT_KERNEL) -> np.ndarray:
    """Mean of the finite pixels in a size x size window."""
    check_window(size, DEFAULT_ENL)
    out = filter_blocks(img, lambda a: masked_stats(a, size)[0], size // 2, DEFAULT_BLOCK)
    return keep_nodata(img, out)


def lee(img: np.ndarray, size: int = DEFAULT_KERNEL, enl: float = DEFAULT_ENL) -> np.ndarray:
    """Lee (1980): local mean + b (pixel - local mean), b from :func:`lee_weight`."""
    check_window(size, enl)

    def run(a: np.ndarray) -> np.ndarray:
        mean, var = masked_stats(a, size)
        return mean + lee_weight(mean, var, enl) * (a - mean)

    return keep_nodata(img, filter_blocks(img, run, size // 2, DEFAULT_BLOCK))


def gamma_map(img: np.ndarray, size: int = DEFAULT_KERNEL, enl: float = DEFAULT_ENL) -> np.ndarray:
    """Gamma-MAP (Lopes et al. 1990) with the three regimes of :func:`gamma_map_estimate`."""
    check_window(size, enl)

    def run(a: np.ndarray) -> np.ndarray:
        mean, var = masked_stats(a, size)
        with np.errstate(divide="ignore", invalid="ignore"):
            ci = np.sqrt(var) / mean
        return gamma_map_estimate(a, mean, ci, enl)

    return keep_nodata(img, filter_blocks(img, run, size // 2, DEFAULT_BLOCK))


def lee_sigma(img: np.ndarray, size: int = DEFAULT_KERNEL, enl: float = DEFAULT_ENL,
              sigma: float = 0.9) -> np.ndarray:
    """Improved Lee sigma filter (Lee et al. 2009).

    1. Point targets: pixels >= the image's 98th percentile with at least 5
       such pixels in their 3x3 window are kept unfiltered.
    2. A priori mean x~: Lee MMSE over 3x3.
    3. Neighbours of the ``size`` x ``size`` window inside [I1 x~, I2 x~] (both bounds, from
       :func:`sigma_range`) form the sample; MMSE with the revised speckle std eta_v.
    """
    check_window(size, enl)
    lower, upper, eta_v = sigma_range(enl, sigma)
    finite = img[np.isfinite(img)]
    z98 = float(np.percentile(finite, 98.0)) if finite.size else np.inf
    half = size // 2
    cu2 = eta_v * eta_v

    def run(a: np.ndarray) -> np.ndarray:
        valid = np.isfinite(a)
        x = np.where(valid, a, 0.0).astype(np.float64)
        bright = (x >= z98) & valid
        count = np.rint(ndimage.uniform_filter(bright.astype(np.float64), 3, mode="reflect") * 9)
        retain = bright & (count >= 5)
        m3, v3 = masked_stats(a, 3)
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

    return keep_nodata(img, filter_blocks(img, run, half + 1, DEFAULT_BLOCK))


def despeckle(img: np.ndarray, method: SpeckleFilter = "refined_lee", *,
              size: int = DEFAULT_KERNEL, enl: float = DEFAULT_ENL) -> np.ndarray:
    """Filter one band of linear-power sigma0 with the named filter (``'none'`` copies)."""
    img = np.asarray(img, dtype=np.float32)
    if method == "none":
        return img.copy()
    if method == "boxcar":
        return boxcar(img, size)
    if method == "lee":
        return lee(img, size, enl)
    if method == "gamma_map":
        return gamma_map(img, size, enl)
    if method == "refined_lee":
        return refined_lee(img)
    if method == "lee_sigma":
        return lee_sigma(img, size, enl)
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
