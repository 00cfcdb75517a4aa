"""What a band's values must look like for its name: the physical rules of the data contract.

A band is named by a person or a tool (a file's band descriptions, ``--bands``), and a wrong
name or order runs through every later step without an error. The values themselves tell the
quantities apart, whatever the file says:

- sigma0 in dB (``VV``, ``VH``) has a negative scene median (about -25 to -5); linear power
  is never negative and has a median far below 1 (about 0.01-0.3); positive values with a
  median above 1 are uncalibrated digital numbers or amplitudes; a median below
  :data:`DB_MEDIAN_MIN` is dB multiplied by 100 (int16 exports); a negative median with values
  all within :data:`DB_ABS_P99_MIN` of 0 dB is dB scaled down (a scale meant for reflectance).
- surface reflectance (``B2`` ... ``B12``) has a median between 0 and 1 and hardly anything above
  2 (:data:`REFLECTANCE_MEDIAN_RANGE`, :data:`REFLECTANCE_P99_MAX`); a larger median is a
  scaled integer (reflectance x 10000); a median below :data:`REFLECTANCE_MEDIAN_MIN_ANY` is no
  reflectance at all (a dB band under a reflectance name).
- real surface reflectance is never all near 0 (:func:`reflectance_too_small`): the darkest
  band medians of the real L2A tiles of the test data are 0.026-0.13 (B01, hazy water included),
  and even clear water's SWIR, the darkest a real band gets, is a few thousandths; reflectance
  divided by 10000 once more (0-1 values given a scale of 0.0001) has a median of at most 1e-4
  (1e-5 to 3e-5 on real tiles). A band whose median (of its non-zero values: zero fill is told
  elsewhere) is below :data:`REFLECTANCE_MEDIAN_MIN` and 99th percentile below
  :data:`REFLECTANCE_P99_MIN` is that.
- vegetation reflects near infrared (``B8``) far more than red (``B4``); bright red pixels with a
  dark near infrared (:func:`red_nir_swapped`) mean the two bands are swapped.
- cross-polarised backscatter (``VH``) is lower than co-polarised (``VV``) almost everywhere
  (by about 5-7 dB; at most 6 % of the pixels of the real scenes in the test data have VH above
  VV): a stack where most pixels have "VH" above "VV" holds the two swapped
  (:func:`sigma0_swapped`).
- every scene has dark objects (water, shadow, dark roofs) whose surface reflectance is near 0
  (the 0.1th percentile of B2, B3, B4 and B8 is 0.002-0.09 in the real L2A tiles of the test
  data, hazy ones included); when none of the reflectance bands goes below
  :data:`DARK_OBJECT_MIN`, the +0.1 BOA offset (1000 DN) was left in (:func:`offset_left_in`).
  Haze or full snow cover can look the same, so this is the one rule with an override.
- a pixel that is exactly 0 in every band (0 dB and 0 reflectance at once) is no observation:
  it is fill without a nodata tag (:func:`contract.input_check.fill_value`).

- Sentinel-2 bands of one spectral region correlate over a scene, and the spectra show no
  swapped pair (:func:`s2_band_name_problem`, the band-order rules).

The judgements are pure functions of value samples (NaN = nodata). The local backend applies
them to its source scenes (``gee_export.local.plausibility``), ``isamap-import-patches`` to the
images it imports (``gee_export.imported.patches``), inference to the stack it is given
(``inference.predict.sources``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from contract.bands import find_band, months_of
from contract.input_facts import BAND_ORDER_KINDS, findings, input_facts

log = logging.getLogger(__name__)

LINEAR_MEDIAN_MAX = 1.0  # linear sigma0 scene medians are ~0.01-0.3; 1.0 leaves a wide margin
DB_MEDIAN_MIN = -60.0  # dB medians are ~-25 to -5; dB x 100 gives ~-2500 to -500
# 99th percentile of |dB| below which a sample is no sigma0 in dB: over every 64 px window
# (stride 32) of the real S1 of the test data (terramesh_s1s2, sen12ms_patch_p30,
# sen1floods11_spain, bigearthnet_examples; VV and VH) it is 11.6 dB or more (window medians
# -27 to -6.7, IQRs >= 1.9 dB); dB x 0.0001 gives <= 0.004, and any scale <= 1/12 falls below 1.
DB_ABS_P99_MIN = 1.0
REFLECTANCE_MEDIAN_RANGE = (-0.02, 1.0)  # a scene's median reflectance (offset checks)
REFLECTANCE_P99_MAX = 2.0
REFLECTANCE_MEDIAN_MIN_ANY = -1.0  # below: not reflectance at all, whatever the offset
REFLECTANCE_MEDIAN_MIN = 5e-4  # real band medians >= ~0.003 (clear water SWIR); 0-1 x 1e-4 <= 1e-4
REFLECTANCE_P99_MIN = 2e-3  # real 99th percentiles >= 0.06 in the test tiles; 0-1 x 1e-4 <= 2e-4
RED_BRIGHT = 0.15  # reflectance from which a red pixel is bright
SWAPPED_SHARE = 0.25  # share of bright-red, dark-NIR pixels that only swapped bands show
VH_ABOVE_VV_MAX = 0.5  # share of pixels with VH > VV; real scenes: 0.2-6 %
DARK_OBJECT_MIN = 0.098  # 0.1th percentile reflectance: real tiles 0.002-0.095, +0.1 offset >= 0.1
DARK_PERCENTILE = 0.1


@dataclass(frozen=True)
class UnitEvidence:
    """What the values of a sigma0 band show.

    Attributes:
        unit: ``"dB"``, ``"linear"``, ``"uncalibrated"`` (positive with a median above 1:
            digital numbers or amplitude) or None (no finite value, or mixed signs with a
            non-negative median, which no unit explains well).
        median: median of the finite values.
        negative: share of negative values.
    """

    unit: str | None
    median: float
    negative: float

    def describe(self) -> str:
        return f"median {self.median:.3g}, {100 * self.negative:.0f} % negative"


def finite_values(values: np.ndarray) -> np.ndarray:
    """The finite values of a sample, as float64, flattened."""
    flat = np.asarray(values, dtype=np.float64).ravel()
    return flat[np.isfinite(flat)]


def s1_unit_evidence(values: np.ndarray) -> UnitEvidence:
    """The unit a sample of sigma0 values shows (see :class:`UnitEvidence`)."""
    finite = finite_values(values)
    if not finite.size:
        return UnitEvidence(None, float("nan"), 0.0)
    median = float(np.median(finite))
    negative = float((finite < 0).mean())
    if median < 0:
        unit: str | None = "dB"
    elif negative == 0.0:
        unit = "linear" if median <= LINEAR_MEDIAN_MAX else "uncalibrated"
    else:
        unit = None
    return UnitEvidence(unit, median, negative)


def reflectance_scaled(median: float, p99: float) -> bool:
    """Whether values with this median and 99th percentile are on another scale than 0-1."""
    return median > REFLECTANCE_MEDIAN_RANGE[1] or p99 > REFLECTANCE_P99_MAX


def reflectance_too_small(finite: np.ndarray) -> tuple[float, float] | None:
    """The ``(median, p99)`` of finite reflectance values that are all near 0, else None.

    Such values are reflectance scaled down a second time (0-1 values multiplied by 0.0001).
    The median is taken of the non-zero values, so that zero fill without a nodata tag is not
    taken for it; fewer than 16 non-zero values are not judged.
    """
    lit = np.abs(finite[finite != 0])
    if lit.size < 16:
        return None
    median, p99 = float(np.median(lit)), float(np.percentile(lit, 99))
    return (median, p99) if median < REFLECTANCE_MEDIAN_MIN and p99 < REFLECTANCE_P99_MIN \
        else None


def red_nir_swapped(red: np.ndarray, nir: np.ndarray) -> bool:
    """Whether a red and a near-infrared reflectance sample look swapped.

    Pixels bright in red (>= :data:`RED_BRIGHT`) reflect at least as much near infrared
    (vegetation, soil, roofs, clouds, snow); red twice as bright as NIR is rare (water is dark in
    both). When :data:`SWAPPED_SHARE` of all valid pixels are bright in "red" and dark in
    "NIR", the bands hold vegetation the wrong way round. Judged only on reflectance (values
    between -0.05 and 1.5); pixels NaN in either sample are left out.
    """
    red, nir = np.asarray(red, np.float64).ravel(), np.asarray(nir, np.float64).ravel()
    ok = np.isfinite(red) & np.isfinite(nir)
    red, nir = red[ok], nir[ok]
    if red.size < 64:
        return False
    for band in (red, nir):
        low, high = np.percentile(band, (1, 99))
        if low < -0.05 or high > 1.5:
            return False
    suspicious = (red >= RED_BRIGHT) & (nir < 0.6 * red)
    return float(suspicious.mean()) >= SWAPPED_SHARE


def band_value_problem(name: str, values: np.ndarray) -> str | None:
    """Why a sample cannot be the band ``name`` (None: it can, or the name has no rule).

    The rules tell quantities apart (reflectance, dB, linear power, scaled integers); they
    are wide enough never to refuse a real band of its kind.
    """
    spec = find_band(name)  # B4_m2 (an earlier month of a series) is judged as B4
    finite = finite_values(values)
    if spec is None or finite.size < 16:
        return None
    median, p99 = float(np.median(finite)), float(np.percentile(finite, 99))
    if spec.unit == "dB":
        shown = s1_unit_evidence(finite)
        if shown.unit in ("linear", "uncalibrated"):
            return (f"{name} holds no negative value ({shown.describe()}): not sigma0 in dB "
                    f"but linear power, reflectance or digital numbers")
        if median < DB_MEDIAN_MIN:
            return (f"{name} has a median of {median:.4g}, far below sigma0 in dB (about -25 "
                    "to -5): dB x 100 (an integer export)?")
        spread = float(np.percentile(np.abs(finite), 99))
        if shown.unit == "dB" and spread < DB_ABS_P99_MIN:  # negative: dB, but near 0
            return (f"{name} has a median of {median:.3g} and 99 % of its values within "
                    f"{spread:.2g} of 0, where real sigma0 in dB spreads from about -25 to -5: "
                    "dB scaled down (multiplied by a scale meant for reflectance)?")
    elif spec.unit == "reflectance":
        if reflectance_scaled(median, p99):
            return (f"{name} has a median of {median:.4g} (99th percentile {p99:.4g}), but "
                    "reflectance is 0-1: reflectance x 10000 (an integer export)?")
        if median < REFLECTANCE_MEDIAN_MIN_ANY:
            return (f"{name} has a median of {median:.4g}, which no reflectance has (0-1): it "
                    "looks like sigma0 in dB")
        if small := reflectance_too_small(finite):
            return (f"{name} has a median of {small[0]:.2g} (99th percentile {small[1]:.2g}), "
                    "far below any surface reflectance (band medians of real scenes are "
                    "about 0.003-0.5): reflectance scaled down a second time (0-1 values "
                    "multiplied by 0.0001)?")
    return None


def band_value_problems(samples: Mapping[str, np.ndarray]) -> list[str]:
    """Every rule the named samples break (each band by its name, then red against NIR)."""
    problems = [p for name, v in samples.items() if (p := band_value_problem(name, v))]
    for named in months_of(samples).values():  # a series: red against NIR of each month
        if "B4" in named and "B8" in named and \
                red_nir_swapped(samples[named["B4"]], samples[named["B8"]]):
            problems.append(f"{named['B4']} (red) is often twice as bright as {named['B8']} "
                            "(near infrared), which only happens when the two are swapped")
    return problems


def sigma0_unit_of_range(percentiles: tuple[float, ...]) -> str | None:
    """The sigma0 unit a recorded ``(p1, p50, p99)`` range shows (None: neither clearly)."""
    p1, p50, _ = percentiles[:3]
    if p50 < 0:
        return "dB"
    return "linear" if p1 >= 0 and p50 <= LINEAR_MEDIAN_MAX else None


def sigma0_swapped(vv: np.ndarray, vh: np.ndarray) -> str | None:
    """Why ``VV`` and ``VH`` look swapped (most pixels with VH above VV), or None."""
    vv, vh = np.asarray(vv, np.float64).ravel(), np.asarray(vh, np.float64).ravel()
    ok = np.isfinite(vv) & np.isfinite(vh)
    if ok.sum() < 64:
        return None
    share = float((vh[ok] > vv[ok]).mean())
    if share < VH_ABOVE_VV_MAX:
        return None
    return (f"the band named VH is above the band named VV in {100 * share:.0f} % of the "
            "pixels, where real cross-polarised backscatter is below co-polarised almost "
            "everywhere: VV and VH are swapped")


def offset_left_in(samples: Mapping[str, np.ndarray]) -> str | None:
    """Why the reflectance bands look like they still carry the +0.1 BOA offset, or None."""
    darkest = {}
    for name, values in samples.items():
        spec = find_band(name)
        finite = finite_values(values)
        if spec is None or spec.unit != "reflectance" or finite.size < 1000 or \
                reflectance_scaled(float(np.median(finite)), float(np.percentile(finite, 99))):
            continue  # a scaled integer is refused for its scale first
        darkest[name] = float(np.percentile(finite, DARK_PERCENTILE))
    if len(darkest) < 2 or min(darkest.values()) < DARK_OBJECT_MIN:
        return None
    shown = ", ".join(f"{k} {v:.3f}" for k, v in darkest.items())
    return (f"no pixel is dark in any reflectance band (the darkest {DARK_PERCENTILE:g} %: "
            f"{shown}), where water and shadows are near 0: the +0.1 BOA offset (1000 DN of "
            "processing baseline 04.00 and later) was left in (subtract it), or the scene is "
            "top-of-atmosphere Level-1C over bright ground (give its Level-2A product)")


# ---------------------------------------------------------------------- S2 band names
# Pairs of bands whose reflectances move together in any scene (the NIR plateau, the two
# SWIR bands, the visible bands), with the lowest pixel correlation accepted. On the seven
# real L2A tiles of the test data (Java, Ghana, Brazil, Tanzania, Chile, Hudson Bay snow) the
# right names give at least 0.98, 0.90, 0.95 and 0.91 (tests/gee_export/local/
# test_band_names.py); reversed, rotated or swapped orders fall below. B8 and B8A are not
# paired: a 10 m and a resampled 20 m band correlate at only 0.85 over a Chilean town.
# B3 and B4 of a correctly named real cell fall to 0.80 (a TerraMesh cell), and to 0.62 over
# some 64-128 px windows of the seven tiles, while every wrong order above keeps them at a
# median of 0.87-0.97 (visible bands stay visible): the pair caught no order the others miss,
# so it refuses only below 0.6.
BAND_PAIR_MIN_CORRELATION: tuple[tuple[str, str, float], ...] = (
    ("B7", "B8A", 0.95), ("B11", "B12", 0.85), ("B2", "B3", 0.85), ("B3", "B4", 0.6))
VEGETATION_MIN_SHARE = 0.02  # pixels with a rising red edge needed to judge NIR vs red
NIR_RED_MIN_RATIO = 1.5  # median NIR / red over those pixels (right names: 2.4 or more)
MIN_PIXELS = 100
# Patches pooled (an import's sample) are not a scene: over 20 draws per tile of the seven L2A
# tiles, one 64 px window put a correctly named pair below its threshold in 9 of 140 draws, four
# pooled windows (16,384 px) in 2, eight (32,768 px) and sixteen in none. Pooled patches are
# judged by the pairs from sixteen 64 px patches' worth of pixels on.
POOLED_PAIR_MIN_PIXELS = 16 * 64 * 64


def _correlation(a: np.ndarray, b: np.ndarray, least: int = MIN_PIXELS) -> float | None:
    both = np.isfinite(a) & np.isfinite(b)
    if both.sum() < least or a[both].std() == 0 or b[both].std() == 0:
        return None
    return float(np.corrcoef(a[both], b[both])[0, 1])


def s2_band_name_problem(samples: Mapping[str, np.ndarray], *,
                         pair_min_pixels: int = MIN_PIXELS) -> str | None:
    """Why the reflectances contradict their Sentinel-2 band names, else None.

    The one owner of the band-order rules, for the local export's scenes
    (``gee_export.local.plausibility.check_s2_band_names``) and imported patches
    (``gee_export.imported.patches``). Three physical facts are checked where the named bands
    are present: bands of one spectral region correlate over the scene
    (:data:`BAND_PAIR_MIN_CORRELATION`); the spectra show no B2/B4 or B3/B8 swap
    (:mod:`contract.input_facts`); and over vegetation (pixels whose red edge rises,
    B5 < B6 < B7 with B7 > 1.5 B5) the NIR band B8 is well above the red band B4.

    Args:
        samples: band name (``B2``, ``B8A``...) -> reflectance sample, all the same shape.
        pair_min_pixels: the pairs' correlation is judged on at least this many pixels.
    """
    for low, high, least in BAND_PAIR_MIN_CORRELATION:
        if low in samples and high in samples:
            r = _correlation(samples[low].ravel(), samples[high].ravel(), pair_min_pixels)
            if r is not None and r < least:
                return (f"the bands named {low} and {high} correlate at r = {r:.2f} over the "
                        f"scene, where real {low} and {high} show {least} or more")
    order = [f for f in findings(input_facts(samples))
             if f.kind in BAND_ORDER_KINDS]
    if order:
        return order[0].text
    if not all(b in samples for b in ("B4", "B5", "B6", "B7", "B8")):
        return None
    b5, b6, b7 = (samples[b].ravel() for b in ("B5", "B6", "B7"))
    with np.errstate(invalid="ignore"):
        vegetation = (b5 < b6) & (b6 < b7) & (b7 > 1.5 * b5)
    if vegetation.mean() < VEGETATION_MIN_SHARE:
        return None
    red, nir = samples["B4"].ravel()[vegetation], samples["B8"].ravel()[vegetation]
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = float(np.nanmedian(nir / red))
    if ratio < NIR_RED_MIN_RATIO:
        return (f"over vegetation (a rising red edge in {100 * vegetation.mean():.0f} % of the "
                f"pixels) the band named B8 (NIR) is {ratio:.2f} x the band named B4 (red); "
                f"vegetation reflects NIR at least {NIR_RED_MIN_RATIO} x red")
    return None


def pooled_s2_band_name_problem(samples: Mapping[str, np.ndarray]) -> str | None:
    """:func:`s2_band_name_problem` of patches pooled from many places (an import), not a scene.

    The band pairs' correlations are judged only on :data:`POOLED_PAIR_MIN_PIXELS` pixels or
    more (fewer refused correctly named real patches); a warning says when they are not. The
    months of a series (``B4_m1``) are judged each by itself, by their base band names.
    """
    for k, named in sorted(months_of(samples).items()):
        month = {base: samples[name] for base, name in named.items()}
        pixels = min((int(np.isfinite(v).sum()) for v in month.values()), default=0)
        pairs = [f"{named[a]}/{named[b]}" for a, b, _ in BAND_PAIR_MIN_CORRELATION
                 if a in month and b in month]
        if pairs and pixels < POOLED_PAIR_MIN_PIXELS:
            log.warning("the band order was not checked by the correlation of bands %s: the "
                        "images sampled hold %d valid pixels, too few (%d needed, sixteen 64 px "
                        "patches); check --bands yourself (gdalinfo lists the bands)",
                        ", ".join(pairs), pixels, POOLED_PAIR_MIN_PIXELS)
        problem = s2_band_name_problem(month, pair_min_pixels=POOLED_PAIR_MIN_PIXELS)
        if problem:
            return problem if k == 0 else f"{problem} (the bands _m{k}, {k} month(s) before)"
    return None
