"""Two-date ISA change as arrays: relative radiometric normalisation, change with a margin.

Change between two dates is read from two predictions, and two things make those disagree on
ground that did not change:

- **the dates' radiometry**: another sun angle, haze, season or processing moves every band of
  one date by a gain and an offset; a model that reads absolute reflectance then maps the
  same roofs with another probability. :func:`fit_relative_normalisation` finds, per band,
  the linear map ``later * gain + offset`` that brings the later date onto the earlier one,
  fitted on *pseudo-invariant* pixels (those whose change between the dates is smallest), and
  the later date is read through it before it is predicted
  (:class:`inference.predict.change.inputs.LinearSource`). The fit is a
  plain iteration in the spirit of IR-MAD (Canty and Nielsen): start from every pixel,
  standardise each band's difference by its median and MAD (so a scene-wide shift is not
  "change"), keep the ``invariant_share`` of pixels with the smallest standardised change,
  fit each band by least squares on them, and repeat on the normalised date. A network that
  standardises each window itself (``unet-s2-window``'s ``input_norm: patch``) is unmoved
  by any per-band linear map of a whole window, and one on each scene's statistics
  (``unet-s2``) by one of a whole scene, so for them the normalisation changes nothing; it
  matters for models on fixed band statistics.
- **probabilities near 0.5**: two per-date class maps differenced call "change" wherever a
  probability crosses 0.5 by a hair. :func:`margin_change` calls gain only where the earlier
  probability is below ``0.5 - margin`` and the later one above ``0.5 + margin`` (loss the
  other way round); every other pixel is stable, impervious when the mean of its two
  probabilities is at least 0.5. Margin 0 is the per-date class maps differenced.
- **a model that transfers poorly**: a model trained on one region and radiometry (L2A) maps
  another (L1C, another landscape) with probabilities that rank change but rarely clear a
  margin. :func:`spectral_change` lets the two *stacks* decide whether the ground changed and
  the model only which way: a pixel changed where its bands' difference is an outlier
  (:func:`spectral_magnitude`, the root mean square of each band's robust z-score of the
  difference, against a :class:`SpectralFit` of the scene's own differences: change vector
  analysis), and it is gain where the impervious probability rose from below 0.5, loss where
  it fell from 0.5 or above. On real Sentinel-2 pairs with implanted gain this finds far more
  of it than the margin rule or an NDBI gain rule, and flags less stable ground than NDBI gain
  but more than a margin of 0.2 (docs/real-data.md).

Everything here is a pure function of arrays (no files): the product's change maps
(:mod:`inference.predict.workflow`) and the experiments call the same code.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: codes of a change map (as :data:`inference.predict.stats.CHANGE_CODES`), 255 nodata
STABLE_PERVIOUS, STABLE_ISA, GAIN, LOSS, NODATA = 0, 1, 2, 3, 255
#: what a change map made by :func:`margin_change` records as its rule
DEFAULT_CHANGE_MARGIN = 0.2
"""The margin change is decided with unless told (docs/real-data.md: on real Sentinel-2 pairs
it removes most false change on stable ground, at a cost in the change it finds)."""
RULE = "gain where p_from < 0.5 - margin and p_to > 0.5 + margin; loss the other way round"
DEFAULT_SPECTRAL_THRESHOLD = 4.0
"""Robust z-score (root mean square over the bands) above which a pixel's bands changed. Of the
two cuts docs/real-data.md scores, 3 and 4, four robust standard deviations flags about half
as much stable ground for a little less of the implanted gain: where true change is rare, as
between two dates it is, false change is what decides a map's gain area."""
SPECTRAL_RULE = ("gain where the bands changed (RMS robust z of the difference > threshold) and "
                 "p_to > p_from with p_from < 0.5; loss where they changed and p_to < p_from "
                 "with p_from >= 0.5")
DEFAULT_INVARIANT_SHARE = 0.3
DEFAULT_ITERATIONS = 3
#: the smallest spread a band's difference is divided by (differences of rounding size are 0)
MIN_SPREAD = 1e-6
MIN_RELATIVE_SPREAD = 0.01
"""The smallest spread of a band's difference in a :class:`SpectralFit`, as a share of the band's
typical magnitude (median absolute value at the earlier date): a scene whose dates are
identical on most pixels (a gap filled from one shared scene, a synthetic pair) has a median
absolute deviation of 0, and without a floor any difference, however small, would be change.
Real Sentinel-2 pairs have spreads several times this (docs/real-data.md's pairs: 2-14 %)."""


@dataclass(frozen=True)
class RadiometricFit:
    """Per-band ``gain`` and ``offset`` mapping one date onto another, and what it rests on.

    Attributes:
        gain / offset: ``normalised = source * gain + offset``, one per band.
        invariant_pixels: pixels the last fit used (pseudo-invariant).
        valid_pixels: pixels finite in every band of both dates.
        iterations: fits made (the first from the raw dates).
    """

    gain: tuple[float, ...]
    offset: tuple[float, ...]
    invariant_pixels: int
    valid_pixels: int
    iterations: int

    def to_dict(self) -> dict:
        """The fit as JSON-ready values (recorded beside a change map)."""
        return {"gain": [round(g, 6) for g in self.gain],
                "offset": [round(o, 6) for o in self.offset],
                "invariant_pixels": self.invariant_pixels, "valid_pixels": self.valid_pixels,
                "iterations": self.iterations}


def _pixels(stack: np.ndarray) -> np.ndarray:
    """``(C, H, W)`` or ``(C, N)`` as ``(C, N)`` float64."""
    array = np.asarray(stack, dtype=np.float64)
    if array.ndim < 2:
        raise ValueError(f"a stack is (bands, rows, cols) or (bands, pixels), got {array.shape}")
    return array.reshape(array.shape[0], -1)


@dataclass(frozen=True)
class SpectralFit:
    """Per band, the centre and spread of ``source - reference`` over a scene's pixels.

    The centre is the median difference (a shift every pixel shares is no change) and the
    spread 1.4826 x the median absolute deviation (a standard deviation for normal data, blind
    to the changed pixels), at least :data:`MIN_RELATIVE_SPREAD` of the band's median absolute
    value at the reference date (and :data:`MIN_SPREAD`), so a difference within the bands'
    precision is not change. Fitted once on a sample of the scene, it scores every tile alike
    (:func:`spectral_magnitude`).
    """

    centre: tuple[float, ...]
    spread: tuple[float, ...]
    pixels: int

    def to_dict(self) -> dict:
        """The fit as JSON-ready values (recorded beside a change map)."""
        return {"centre": [round(c, 6) for c in self.centre],
                "spread": [round(s, 6) for s in self.spread], "pixels": self.pixels}


def _differences(source: np.ndarray, reference: np.ndarray) -> np.ndarray:
    a, b = _pixels(source), _pixels(reference)
    if a.shape != b.shape:
        raise ValueError(f"the two dates differ in shape: {np.shape(source)} and "
                         f"{np.shape(reference)}")
    return a - b


def fit_spectral_change(source: np.ndarray, reference: np.ndarray) -> SpectralFit:
    """The :class:`SpectralFit` of ``source - reference`` (``(C, ...)``, same band order).

    Raises:
        ValueError: the shapes differ or no pixel is finite in every band at both dates.
    """
    diff = _differences(source, reference)
    valid = np.isfinite(diff).all(axis=0)
    d = diff[:, valid]
    if not d.shape[1]:
        raise ValueError("no pixel is finite in every band at both dates; nothing to fit")
    centre = np.median(d, axis=1)
    level = np.median(np.abs(_pixels(reference)[:, valid]), axis=1)
    spread = np.maximum(1.4826 * np.median(np.abs(d - centre[:, None]), axis=1),
                        np.maximum(MIN_RELATIVE_SPREAD * level, MIN_SPREAD))
    return SpectralFit(tuple(float(c) for c in centre), tuple(float(s) for s in spread),
                       int(d.shape[1]))


def spectral_magnitude(source: np.ndarray, reference: np.ndarray,
                       fit: SpectralFit) -> np.ndarray:
    """Per pixel, the root mean square over the bands of ``(difference - centre) / spread``.

    NaN where a band is not finite at either date. Shapes ``(C, ...)``; returns ``(...)``.

    Raises:
        ValueError: the shapes differ or the fit has another number of bands.
    """
    diff = _differences(source, reference)
    if diff.shape[0] != len(fit.centre):
        raise ValueError(f"the stacks have {diff.shape[0]} bands, the fit {len(fit.centre)}")
    z = (diff - np.asarray(fit.centre)[:, None]) / np.asarray(fit.spread)[:, None]
    return np.sqrt(np.mean(z ** 2, axis=0)).reshape(np.shape(source)[1:])


def change_magnitude(source: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """:func:`spectral_magnitude` against the fit of these two dates themselves.

    All NaN when no pixel is finite at both dates.
    """
    if not np.isfinite(_differences(source, reference)).all(axis=0).any():
        return np.full(np.shape(source)[1:], np.nan)
    return spectral_magnitude(source, reference, fit_spectral_change(source, reference))


def fit_relative_normalisation(source: np.ndarray, reference: np.ndarray, *,
                               invariant_share: float = DEFAULT_INVARIANT_SHARE,
                               iterations: int = DEFAULT_ITERATIONS) -> RadiometricFit:
    """The per-band linear map of ``source`` onto ``reference`` (module docstring).

    Args:
        source: the date to normalise, ``(C, H, W)`` or ``(C, N)``.
        reference: the date it is brought onto, same shape and band order.
        invariant_share: share of the valid pixels kept as pseudo-invariant at each fit
            (the smallest standardised change); 0 < share <= 1.
        iterations: fits made; each after the first selects its pixels on the date the
            previous fit normalised.

    Raises:
        ValueError: the shapes differ, the share or iterations are out of range, or fewer
            than 2 pixels per band are valid at both dates.
    """
    if not 0 < invariant_share <= 1:
        raise ValueError(f"invariant_share must be in (0, 1], got {invariant_share}")
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    a, b = _pixels(source), _pixels(reference)
    if a.shape != b.shape:
        raise ValueError(f"the two dates differ in shape: {np.shape(source)} and "
                         f"{np.shape(reference)}")
    usable = np.isfinite(a).all(axis=0) & np.isfinite(b).all(axis=0)
    a, b = a[:, usable], b[:, usable]
    n = a.shape[1]
    keep = max(2, round(invariant_share * n))
    if n < 2:
        raise ValueError(f"{n} pixel(s) are valid at both dates; a fit needs at least 2")
    gain, offset = np.ones(a.shape[0]), np.zeros(a.shape[0])
    chosen = np.arange(n)
    for _ in range(iterations):
        magnitude = change_magnitude(a * gain[:, None] + offset[:, None], b)
        chosen = np.argsort(magnitude, kind="stable")[:keep]
        gain, offset = _least_squares(a[:, chosen], b[:, chosen])
    return RadiometricFit(tuple(float(g) for g in gain), tuple(float(o) for o in offset),
                          int(chosen.size), int(n), int(iterations))


def _least_squares(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per band, ``y ~ x * gain + offset``; a band without spread keeps gain 1 (offset only)."""
    mx, my = x.mean(axis=1), y.mean(axis=1)
    var = ((x - mx[:, None]) ** 2).mean(axis=1)
    cov = ((x - mx[:, None]) * (y - my[:, None])).mean(axis=1)
    gain = np.where(var > 0, cov / np.where(var > 0, var, 1.0), 1.0)
    return gain, my - gain * mx


def margin_change(p_from: np.ndarray, p_to: np.ndarray, margin: float = 0.0) -> np.ndarray:
    """Change codes from two dates' impervious probabilities (module docstring).

    Gain (2) where ``p_from < 0.5 - margin`` and ``p_to > 0.5 + margin``; loss (3) where
    ``p_from > 0.5 + margin`` and ``p_to < 0.5 - margin``; otherwise stable impervious (1)
    when ``(p_from + p_to) / 2 >= 0.5``, else stable pervious (0); 255 where either is NaN.

    Raises:
        ValueError: the margin is outside [0, 0.5) or the arrays differ in shape.
    """
    if not 0 <= margin < 0.5:
        raise ValueError(f"the change margin must be in [0, 0.5), got {margin}")
    a, b = _probabilities(p_from, p_to)
    low, high = 0.5 - margin, 0.5 + margin
    return _codes(a, b, (a < low) & (b > high), (a > high) & (b < low),
                  np.isfinite(a) & np.isfinite(b))


def spectral_change(p_from: np.ndarray, p_to: np.ndarray, magnitude: np.ndarray,
                    threshold: float = DEFAULT_SPECTRAL_THRESHOLD) -> np.ndarray:
    """Change codes where the bands changed, in the direction the probability moved.

    Gain (2) where ``magnitude > threshold``, ``p_to > p_from`` and ``p_from < 0.5``; loss (3)
    where ``magnitude > threshold``, ``p_to < p_from`` and ``p_from >= 0.5``; otherwise stable
    as :func:`margin_change` codes it; 255 where a probability or the magnitude is NaN.
    ``magnitude`` is :func:`spectral_magnitude` of the later date's bands against the earlier.

    Raises:
        ValueError: the threshold is not positive or the arrays differ in shape.
    """
    if not threshold > 0:
        raise ValueError(f"the spectral change threshold must be > 0, got {threshold}")
    a, b = _probabilities(p_from, p_to)
    m = np.asarray(magnitude, np.float64)
    if m.shape != a.shape:
        raise ValueError(f"the change magnitude is {m.shape}, the probability maps {a.shape}")
    changed = m > threshold
    return _codes(a, b, changed & (b > a) & (a < 0.5), changed & (b < a) & (a >= 0.5),
                  np.isfinite(a) & np.isfinite(b) & np.isfinite(m))


def spectral_changed(magnitude: np.ndarray, threshold: float) -> np.ndarray:
    """Where the bands changed: :func:`spectral_magnitude` above ``threshold``, or unknown (NaN).

    What :mod:`inference.predict.change.stretches` cuts a pixel's dates at; :func:`spectral_change`
    codes an unknown magnitude as nodata instead.
    """
    return ~(np.asarray(magnitude, np.float64) <= threshold)


def _probabilities(p_from: np.ndarray, p_to: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(p_from, np.float64), np.asarray(p_to, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"the two probability maps differ in shape: {a.shape} and {b.shape}")
    return a, b


def _codes(a: np.ndarray, b: np.ndarray, gain: np.ndarray, loss: np.ndarray,
           valid: np.ndarray) -> np.ndarray:
    """Stable codes from the mean probability, then gain, loss and nodata on top."""
    code = np.where((a + b) / 2 >= 0.5, STABLE_ISA, STABLE_PERVIOUS).astype(np.uint8)
    code[gain] = GAIN
    code[loss] = LOSS
    code[~valid] = NODATA
    return code
