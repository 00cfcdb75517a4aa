"""Sentinel-1 speckle filters as Earth Engine graphs, written from the original papers.

Every filter takes a one-band image of sigma0 in *linear power* (never dB: the multiplicative
speckle model the filters assume only holds there) and returns the filtered band under the same
name. The pixel-wise formulas are kept as Earth Engine expression strings in module constants:
the graph carries them verbatim (``Image.parseExpression``), and the tests evaluate the very same
strings with numpy against the papers' equations.

References:
    Lee, J.-S. (1980) Digital image enhancement and noise filtering by use of local statistics.
    Lee, J.-S. (1981) Refined filtering of image noise using local statistics.
    Lopes, A., Touzi, R., Nezry, E. (1990) Adaptive speckle filters and scene heterogeneity.
    Lee, J.-S., Wen, J.-H., Ainsworth, T., et al. (2009) Improved sigma filter for speckle
    filtering of SAR imagery.

Differences from the widely copied gee_s1_ard code (on purpose): the Lee-sigma range test is
``z >= I1*x AND z <= I2*x`` (not Or, which is always true) and compares the 7x7 neighbours with
the *centre's* range; the bright-pixel count is a sum of a 0/1 image (countDistinctNonNull of a
boolean image never exceeds 2); the Gamma-MAP estimate is Lopes' positive root with discriminant
``m^2 (alpha-L-1)^2 + 4 alpha L z m``.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

from contract.composite import SPECKLE_FILTERS
from core.errors import ConfigError

# ---------------------------------------------------------------- formulas (shared with tests)
# Lee (1980) MMSE weight: b = var_x / var_z with var_x = (var_z - m^2 cu2) / (1 + cu2),
# clipped at 0 (a window less variable than pure speckle is treated as homogeneous).
LEE_WEIGHT = "max(var - m * m * cu2, 0) / (max(var, 1e-30) * (1 + cu2))"
LEE_ESTIMATE = "m + b * (z - m)"
# Lopes et al. (1990): alpha = (1 + Cu^2) / (Ci^2 - Cu^2); the MAP estimate is the positive root
# of alpha*x^2 - (alpha - L - 1)*m*x - L*z*m = 0.
GAMMA_MAP_ALPHA = "(1 + cu2) / max(ci2 - cu2, 1e-30)"
GAMMA_MAP_ESTIMATE = ("((alpha - L - 1) * m + sqrt(m * m * (alpha - L - 1) * (alpha - L - 1)"
                      " + 4 * alpha * L * z * m)) / (2 * alpha)")
COEF_VAR2 = "var / max(m * m, 1e-30)"


def _ee():
    import ee

    return ee


def _expr(formula: str, **variables: Any):
    """An expression image whose variables are images or numbers."""
    ee = _ee()
    return ee.Image().expression(formula, {
        k: (v if isinstance(v, ee.Image) else ee.Image.constant(v)) for k, v in variables.items()
    })


def _stats(z, kernel):
    """Local mean and variance of a one-band image over ``kernel`` (weights allowed)."""
    ee = _ee()
    reducer = ee.Reducer.mean().combine(ee.Reducer.variance(), sharedInputs=True)
    stats = z.reduceNeighborhood(reducer, kernel)
    return stats.select(0), stats.select(1)


def _square(size: int):
    return _ee().Kernel.square(size // 2, "pixels")


# ---------------------------------------------------------------- simple filters
def boxcar(z, size: int = 7):
    """Mean over a size x size window: the reference for speckle reduction, blurs edges."""
    name = z.bandNames().get(0)
    return z.reduceNeighborhood(_ee().Reducer.mean(), _square(size)).rename([name])


def _lee_mmse(z, m, var, cu2):
    b = _expr(LEE_WEIGHT, m=m, var=var, cu2=cu2)
    return _expr(LEE_ESTIMATE, m=m, b=b, z=z)


def lee(z, size: int = 7, enl: float = 4.4):
    """Lee (1980) local-statistics MMSE filter with noise variation Cu^2 = 1/ENL."""
    name = z.bandNames().get(0)
    m, var = _stats(z, _square(size))
    return _lee_mmse(z, m, var, 1.0 / enl).rename([name])


def gamma_map(z, size: int = 7, enl: float = 4.4):
    """Lopes et al. (1990) Gamma-MAP filter with its three heterogeneity regimes.

    Ci <= Cu (homogeneous): the local mean; Ci >= Cmax = sqrt(2) Cu (point target or strong
    texture): the pixel unchanged; otherwise the MAP estimate for a Gamma-distributed scene.
    """
    name = z.bandNames().get(0)
    cu2 = 1.0 / enl
    m, var = _stats(z, _square(size))
    ci2 = _expr(COEF_VAR2, m=m, var=var)
    alpha = _expr(GAMMA_MAP_ALPHA, cu2=cu2, ci2=ci2)
    est = _expr(GAMMA_MAP_ESTIMATE, alpha=alpha, L=float(enl), m=m, z=z)
    out = est.where(ci2.lte(cu2), m).where(ci2.gte(2.0 * cu2), z)
    return out.rename([name])


# ---------------------------------------------------------------- refined Lee
# Nine 3x3 sub-windows of the 7x7 window, centred every 2 pixels, numbered row-major:
#   0 1 2 / 3 4 5 / 6 7 8. Gradient masks of Lee (1981) over their means, one per direction:
# (vertical edge, main-diagonal edge, horizontal edge, anti-diagonal edge).
_GRADIENTS = ((2, 5, 8, 0, 3, 6), (1, 2, 5, 3, 6, 7), (0, 1, 2, 6, 7, 8), (0, 1, 3, 5, 7, 8))
# Per direction, the sub-window on each side of the edge that decides which half the centre
# belongs to: (side A, side B).
_SIDES = ((5, 3), (2, 6), (1, 7), (0, 8))


def directional_weights(direction: int, side: int) -> list[list[int]]:
    """0/1 weights of one of the eight 7x7 edge-aligned half windows (centre included).

    ``direction`` indexes ``_GRADIENTS``; ``side`` 0 is side A of ``_SIDES`` (right, upper-right,
    top, upper-left), 1 the opposite half. Rows go down (y), columns right (x), both -3..3.
    """
    def keep(x: int, y: int) -> bool:
        test = ((x >= 0, x <= 0), (x >= y, x <= y), (y <= 0, y >= 0), (x + y <= 0, x + y >= 0))
        return test[direction][side]

    return [[int(keep(x, y)) for x in range(-3, 4)] for y in range(-3, 4)]


def refined_lee(z):
    """Lee's refined filter (1981; as restated in Lee et al. 2009), 7x7 window.

    Steps: 3x3 means at nine sub-window positions; the strongest of four gradients picks the
    edge direction; the sub-window closer to the centre's mean picks the side; local mean and
    variance are taken in that one of eight directional half-windows; the noise variation is
    the mean squared coefficient of variation of the five most homogeneous sub-windows.
    """
    ee = _ee()
    name = z.bandNames().get(0)
    mean3, var3 = _stats(z, _square(3))
    sample = ee.Kernel.fixed(5, 5, [[1 if r % 2 == 0 and c % 2 == 0 else 0 for c in range(5)]
                                    for r in range(5)], -1, -1, False)
    means = mean3.neighborhoodToBands(sample)  # 9 bands, row-major sub-window means
    cv2 = _expr(COEF_VAR2, m=mean3, var=var3).neighborhoodToBands(sample)
    sigma_v2 = (cv2.toArray().arraySort().arraySlice(0, 0, 5)
                .arrayReduce(ee.Reducer.mean(), [0]).arrayGet([0]))

    grads = [means.select(list(g[:3])).reduce(ee.Reducer.sum())
             .subtract(means.select(list(g[3:])).reduce(ee.Reducer.sum())).abs()
             for g in _GRADIENTS]
    gmax = ee.Image.cat(grads).reduce(ee.Reducer.max())
    direction = ee.Image.constant(3)
    for i in (2, 1, 0):  # the lowest-numbered direction reaching the maximum wins ties
        direction = direction.where(grads[i].eq(gmax), i)
    centre = means.select([4])
    window = ee.Image.constant(0)
    for d, (a, b) in enumerate(_SIDES):
        side_b = (means.select([b]).subtract(centre).abs()
                  .lt(means.select([a]).subtract(centre).abs()))
        window = window.where(direction.eq(d), side_b.add(2 * d))  # index 2*d + side
    m = ee.Image.constant(0)
    var = ee.Image.constant(0)
    for d in range(4):
        for s in (0, 1):
            kernel = ee.Kernel.fixed(7, 7, directional_weights(d, s), -1, -1, False)
            dm, dv = _stats(z, kernel)
            m = m.where(window.eq(2 * d + s), dm)
            var = var.where(window.eq(2 * d + s), dv)
    return _lee_mmse(z, m, var, sigma_v2).rename([name])


# ---------------------------------------------------------------- improved Lee sigma
@lru_cache(maxsize=64)
def sigma_range(enl: float, xi: float = 0.9) -> tuple[float, float, float]:
    """Lee et al. (2009) sigma range ``(I1, I2, eta_v)`` for unit-mean L-look intensity.

    Speckle intensity is Gamma(L, 1/L). The improved filter's range holds probability ``xi``
    *and* keeps the truncated distribution's mean at 1, so averaging inside the range is
    unbiased (the original sigma filter's symmetric range was not). ``eta_v`` is the coefficient
    of variation of speckle truncated to the range; it replaces 1/sqrt(L) in the MMSE step.
    Derived numerically from those two conditions instead of copying the paper's table, so any
    ENL works (L=4: xi=0.5 gives I1=0.694, I2=1.385, eta_v=0.192; xi=0.9 gives 0.377, 2.089,
    0.399, within about 0.01 of the published 4-look table).
    """
    from scipy import optimize, stats

    if not (0.0 < xi < 1.0) or enl < 1.0:
        raise ConfigError(f"sigma range needs 0 < xi < 1 and ENL >= 1, got xi={xi}, ENL={enl}")
    g = stats.gamma(a=enl, scale=1.0 / enl)
    g1 = stats.gamma(a=enl + 1.0, scale=1.0 / enl)  # x*pdf_L(x) = pdf_{L+1}(x) when mean is 1
    g2 = stats.gamma(a=enl + 2.0, scale=1.0 / enl)  # x^2*pdf_L(x) = (L+1)/L * pdf_{L+2}(x)

    def upper(i1: float) -> float:
        return float(g.ppf(min(g.cdf(i1) + xi, 1.0 - 1e-15)))

    def bias(i1: float) -> float:
        return g1.cdf(upper(i1)) - g1.cdf(i1) - xi

    i1 = optimize.brentq(bias, 0.0, float(g.ppf(1.0 - xi)) * (1 - 1e-12), xtol=1e-12)
    i2 = upper(i1)
    second = (enl + 1.0) / enl * (g2.cdf(i2) - g2.cdf(i1)) / xi
    return float(i1), float(i2), float(math.sqrt(max(second - 1.0, 0.0)))


def lee_sigma(z, region, enl: float = 4.4, xi: float = 0.9):
    """Improved sigma filter (Lee et al. 2009).

    1. Point targets: pixels above the scene's 98th percentile with at least 5
       such pixels in their 3x3 window are kept unfiltered.
    2. A priori mean x: Lee MMSE over 3x3 with the original noise variation 1/ENL.
    3. Neighbours of the 7x7 window inside the centre's range [I1*x, I2*x] are
       selected (And, per centre pixel, via neighbourhood arrays).
    4. MMSE over the selected pixels with the truncated noise variation eta_v.
    """
    ee = _ee()
    name = z.bandNames().get(0)
    i1, i2, eta_v = sigma_range(enl, xi)
    z98 = ee.Number(z.reduceRegion(ee.Reducer.percentile([98]), region, 100.0,
                                   bestEffort=True, maxPixels=1e8).values().get(0))
    bright = z.gte(ee.Image.constant(z98))
    count = bright.reduceNeighborhood(ee.Reducer.sum(), _square(3))  # 0..9, a real count
    point = bright.And(count.gte(5))

    m3, var3 = _stats(z, _square(3))
    prior = _lee_mmse(z, m3, var3, 1.0 / enl)
    lo, hi = prior.multiply(i1), prior.multiply(i2)
    neigh = z.neighborhoodToArray(_square(7))  # a 2-D (rows x columns) array
    inside = neigh.gte(lo).And(neigh.lte(hi))  # broadcast: neighbours vs the centre's range

    def total(array):  # sum over both axes leaves a 1 x 1 array: index it with two coordinates
        return array.arrayReduce(ee.Reducer.sum(), [0, 1]).arrayGet([0, 0])

    n = total(inside)
    s1 = total(neigh.multiply(inside))
    s2 = total(neigh.multiply(neigh).multiply(inside))
    m = s1.divide(n.max(1))
    var = s2.divide(n.max(1)).subtract(m.multiply(m)).max(0)
    filtered = _lee_mmse(z, m, var, eta_v * eta_v).where(n.eq(0), prior)
    return filtered.where(point, z).rename([name])


def apply(z, method: str, *, region=None, enl: float = 4.4, size: int = 7, xi: float = 0.9):
    """Filter a one-band linear-power image with the named method."""
    if method == "none":
        return z
    if method == "boxcar":
        return boxcar(z, size)
    if method == "lee":
        return lee(z, size, enl)
    if method == "gamma_map":
        return gamma_map(z, size, enl)
    if method == "refined_lee":
        return refined_lee(z)
    if method == "lee_sigma":
        if region is None:
            raise ConfigError("lee_sigma needs the region for its 98th-percentile threshold")
        return lee_sigma(z, region, enl, xi)
    raise ConfigError(f"unknown speckle filter {method!r}; choose one of {SPECKLE_FILTERS}")
