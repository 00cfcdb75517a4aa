"""One input check for every door: is a stack what its names say, and what a model learned?

Every command that takes a stack (``isamap-export``'s local backend, ``isamap-import-patches``,
``isamap-train``, ``isamap-fit``, ``isamap-predict``) judges it here, from its pixels, by one
function (:func:`judge_stack`):

1. **fill values** (:func:`fill_value`): a constant (-9999, -32768, 0, 65535 ...) that every
   band of a pixel holds at once, or every band of one sensor (the Sentinel-2 bands zero in a
   strip while Sentinel-1 is valid), is no observation: no real pixel is the same number in
   four reflectances or in dB and reflectance at once. Left untagged it would be taken for
   land and shift every statistic; it is refused, naming the value and how to tag it
   (``--nodata``), whatever else the stack shows.
2. **the training data's fingerprint** (:class:`Fingerprint`): a model file records one of its
   training split at training time, a dataset's manifest one of its patches at export or
   import. Each band's quantiles and the band-to-band correlation tell the band order (a
   transposition of two bands of one unit that fits the fingerprint far better than the
   names do: B2/B4 swapped, B4,B3,B2 under the names B2,B3,B4, VV/VH swapped), the scale (every
   band of a unit spread several times more or less), an offset (every reflectance band's
   whole distribution lifted alike: +0.1 left in), and the sensor calibration (the floors
   lifted most in the blue: top-of-atmosphere path radiance; sigma0 raised alike in VV and VH)
   apart from the differences between real scenes (:func:`fingerprint_problems`).
3. **the physical rules** of the data contract (:mod:`contract.band_values`,
   :mod:`contract.input_facts`), which hold in every real scene: they judge a stack the
   fingerprint cannot (one unlike the training data, where a transposition or an offset does
   not stand out from the scenes' differences), and all of a stack where there is no
   fingerprint (model files of older versions, a command without a model: an import, an
   export). The fingerprint catches what their thresholds, drawn from real tiles, let through
   (a B2/B4 swap of a hazy scene, whose red and blue are alike).

Doubts (2, 3) are refused in one line naming the likely cause and ``--allow-implausible``; with
the flag the command proceeds and the returned notes (why) go into its output's metadata.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from contract.band_values import offset_left_in, sigma0_swapped
from contract.bands import SERIES_SENSORS, find_band
from contract.input_facts import BAND_ORDER_KINDS, findings, input_facts
from core.errors import InputDataError

log = logging.getLogger(__name__)

#: the option that proceeds with a stack the rules doubt, the reason recorded
OVERRIDE = "--allow-implausible"
QUANTILES = (1.0, 5.0, 25.0, 50.0, 75.0, 95.0, 99.0)
MIN_PIXELS = 256
#: a constant held by every band (of all, or of one sensor) in more than this share of the
#: pixels is fill: no real observation repeats one number across bands (the zero-fill rule's
#: share, 0.1 %)
FILL_MIN_SHARE = 0.001
#: the units whose bands are compared with each other (transpositions, shared shifts)
_UNITS = ("reflectance", "dB")
#: the smallest spread (5th-95th percentile) a band's differences are measured in
_SPREAD_FLOOR = {"reflectance": 0.01, "dB": 1.0}
#: a transposition is the likely cause when it brings the stack this much closer
SWAP_RATIO = 0.5
SWAP_MARGIN = 0.15
#: every band of a unit spread this many times more (or less) than in the training data: real
#: scenes differ up to 15 x (snow against a savanna); reflectance x 10000, dB x 100 far more
SCALE_RATIO = 50.0
#: an offset or path radiance moves a band's distribution, not its spread: the 5th-95th
#: percentile spread within this factor of the training data's, and the median moved as the
#: floor within :data:`SHIFT_TOLERANCE` (plus a quarter of the shift)
SPREAD_KEPT = 1.33
SHIFT_TOLERANCE = 0.02
#: reflectance floors (1st, 5th percentiles) lifted alike by at least this: an offset left in
OFFSET_MIN = 0.06
#: path radiance: the blue floor lifted at least this and this much more than the NIR one
TOA_BLUE_MIN, TOA_BLUE_OVER_NIR = 0.025, 0.015
#: sigma0 raised in VV and VH alike by at least this many dB over every quantile
S1_SHIFT_MIN_DB = 2.0
S1_SHIFT_SPREAD_DB = 1.5


def unit_of(name: str) -> str | None:
    """The unit a band's values are in, for the groups compared (None: not compared)."""
    spec = find_band(name)
    return spec.unit if spec is not None and spec.unit in _UNITS else None


@dataclass(frozen=True)
class Fingerprint:
    """What the training data's pixels looked like: per-band quantiles, band-to-band correlation.

    Attributes:
        bands: the band names, in the order of ``correlation``'s rows.
        quantiles: band -> its :data:`QUANTILES` over the pixels valid in every band.
        correlation: the bands' Pearson correlation over those pixels.
    """

    bands: tuple[str, ...]
    quantiles: Mapping[str, tuple[float, ...]]
    correlation: tuple[tuple[float, ...], ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: a model file's ``extra["pixel_fingerprint"]``, a manifest's entry."""
        return {"bands": list(self.bands), "percentiles": list(QUANTILES),
                "quantiles": {b: list(q) for b, q in self.quantiles.items()},
                "correlation": [list(r) for r in self.correlation]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Fingerprint | None:
        """The record written by :meth:`to_dict`; None for none or another layout."""
        if not isinstance(data, Mapping) or list(data.get("percentiles", ())) != list(QUANTILES):
            return None
        bands = tuple(data["bands"])
        return cls(bands, {b: tuple(float(v) for v in data["quantiles"][b]) for b in bands},
                   tuple(tuple(float(v) for v in row) for row in data["correlation"]))


def _valid_pixels(samples: Mapping[str, np.ndarray], bands: Sequence[str]) -> np.ndarray:
    """``(len(bands), n)`` float64 of the pixels finite in every band."""
    rows = np.stack([np.asarray(samples[b], np.float64).ravel() for b in bands])
    valid: np.ndarray = rows[:, np.isfinite(rows).all(axis=0)]
    return valid


def _correlation(rows: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.corrcoef(rows)
    out: np.ndarray = np.nan_to_num(np.atleast_2d(corr), nan=0.0)
    return out


def fingerprint_of(samples: Mapping[str, np.ndarray]) -> Fingerprint | None:
    """The fingerprint of band samples of equal shape (NaN = nodata); None: too few pixels.

    Only bands of a compared unit (reflectance, sigma0 in dB) are recorded.
    """
    bands = tuple(b for b in samples if unit_of(b))
    if not bands:
        return None
    rows = _valid_pixels(samples, bands)
    if rows.shape[1] < MIN_PIXELS:
        return None
    quantiles = {b: tuple(round(float(q), 6) for q in np.percentile(r, QUANTILES))
                 for b, r in zip(bands, rows, strict=True)}
    corr = _correlation(rows)
    return Fingerprint(bands, quantiles,
                       tuple(tuple(round(float(v), 4) for v in row) for row in corr))


def pixel_sample(read_image: Callable[[int], np.ndarray], count: int, channels: int,
                 max_patches: int = 64, per_patch: int = 4096) -> np.ndarray:
    """The same pixels of every band over a sample of patches, ``(channels, n)`` float32.

    The one sampler of patches (a dataset's recorded fingerprint, a model file's, the value
    ranges): at most ``max_patches`` patches evenly spread over ``0..count-1``
    (``read_image(i)``: patch ``i``'s image ``(channels, h, w)``, NaN = nodata), at most
    ``per_patch`` pixels of each (a regular subsample). NaN is kept, so that the bands stay
    aligned pixel by pixel (the fill values and the band-to-band correlation).
    """
    picks = np.unique(np.linspace(0, count - 1, min(count, max_patches)).round().astype(int)) \
        if count > 0 else np.empty(0, int)
    chunks = [np.empty((channels, 0), np.float32)]
    for i in picks:
        image = np.asarray(read_image(int(i)), dtype=np.float32)
        flat = image.reshape(image.shape[0], -1)
        chunks.append(flat[:, ::max(1, flat.shape[1] // per_patch)])
    return np.concatenate(chunks, axis=1)


# ---------------------------------------------------------------------- fill values
def fill_value(stack: np.ndarray, bands: Sequence[str]) -> tuple[float, float, str] | None:
    """A constant that fills pixels of every band, or of one sensor's bands, untagged.

    Args:
        stack: ``(bands, rows, cols)`` or ``(bands, n)`` values as stored (NaN = tagged nodata).
        bands: the band names, in ``stack``'s order.

    Returns:
        ``(value, share of the pixels, which bands)`` of the most common such constant over
        :data:`FILL_MIN_SHARE`, else None.
    """
    stack = np.asarray(stack).reshape(len(bands), -1)
    groups: list[tuple[str, list[int]]] = [("every band", list(range(len(bands))))]
    for sensor in SERIES_SENSORS:  # the Sentinel sensors, each a block of bands
        idx = [i for i, b in enumerate(bands)
               if (spec := find_band(b)) is not None and spec.sensor == sensor]
        if 2 <= len(idx) < len(bands):
            groups.append((f"every {sensor} band ({', '.join(bands[i] for i in idx)})", idx))
    for words, idx in groups:
        if len(idx) < 2:  # one band repeats its values: only bands agreeing tell fill
            continue
        part = stack[idx]
        same = np.isfinite(part[0]) & (part == part[0]).all(axis=0)
        if same.mean() <= FILL_MIN_SHARE:
            continue
        values, counts = np.unique(part[0][same], return_counts=True)
        k = int(np.argmax(counts))
        share = float(counts[k]) / part.shape[1]
        if share > FILL_MIN_SHARE:
            return float(values[k]), share, words
    return None


def refuse_fill(what: str, stack: np.ndarray, bands: Sequence[str]) -> None:
    """Refuse a stack holding untagged fill (:func:`fill_value`), naming the value.

    Raises:
        InputDataError: the fill, and how to tag it.
    """
    found = fill_value(stack, bands)
    if found is not None:
        value, share, words = found
        raise InputDataError(
            f"{what}: {100 * share:.1f} % of its pixels are {value:g} in {words}, which no "
            "observation is: fill without a nodata tag, which would be counted as ground in "
            f"every statistic and area; tag it: rio edit-info --nodata {value:g} FILE")


# ---------------------------------------------------------------------- fingerprint
def _distance(stack_q: Mapping[str, np.ndarray], stack_corr: np.ndarray,
              order: Sequence[str], fp: Fingerprint, names: Sequence[str],
              judged: Sequence[str]) -> float:
    """How far the bands ``judged`` are from ``fp``, the stack's band ``order[i]`` read as names[i].

    Their quantiles' mean difference in their training spreads (5th-95th percentile), plus the
    mean difference of their correlations with every band.
    """
    pos = {b: i for i, b in enumerate(names)}
    at = {b: i for i, b in enumerate(fp.bands)}
    fp_corr = np.asarray(fp.correlation)
    q, c = [], []
    for b in judged:
        spread = max(fp.quantiles[b][5] - fp.quantiles[b][1], _SPREAD_FLOOR[unit_of(b) or "dB"])
        q.append(float(np.mean(np.abs(stack_q[order[pos[b]]] - np.asarray(fp.quantiles[b]))))
                 / spread)
        c += [abs(stack_corr[pos[order[pos[b]]], pos[order[pos[o]]]] - fp_corr[at[b], at[o]])
              for o in names if o != b]
    return float(np.mean(q)) + (float(np.mean(c)) if c else 0.0)


def fingerprint_problems(samples: Mapping[str, np.ndarray], fp: Fingerprint) -> list[str]:
    """What sets a stack far from the training data's fingerprint, each ``cause; fix``.

    The rules judge the shape of the difference, not its size, so that another scene than the
    training data's (another season, region, land cover) passes: a transposition must fit
    far better than the names (:data:`SWAP_RATIO`), a scale must hold for every band of a
    unit, an offset must lift every reflectance band's floor alike, a calibration shift every
    sigma0 quantile alike.
    """
    names = [b for b in fp.bands if b in samples]
    if len(names) < 1:
        return []
    rows = _valid_pixels(samples, names)
    if rows.shape[1] < MIN_PIXELS:
        return []
    stack_q = {b: np.asarray(np.percentile(r, QUANTILES), dtype=np.float64)
               for b, r in zip(names, rows, strict=True)}
    corr = _correlation(rows)
    found: list[str] = []
    best: tuple[float, float, str, str] | None = None
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            if unit_of(a) != unit_of(b):
                continue
            order = [b if n == a else a if n == b else n for n in names]
            same = _distance(stack_q, corr, names, fp, names, (a, b))
            d = _distance(stack_q, corr, order, fp, names, (a, b))
            if same - d > SWAP_MARGIN and d < SWAP_RATIO * same and \
                    (best is None or same - d > best[1] - best[0]):
                best = (d, same, a, b)
    if best is not None:
        d, same, a, b = best
        found.append(
            f"the bands named {a} and {b} fit the training data's fingerprint (each band's "
            f"quantiles, the band-to-band correlation) far better swapped (distance "
            f"{d:.2f} against {same:.2f} as named): {a} and {b} are swapped; put the bands in "
            "the order their names say")
    for unit in _UNITS:
        group = [b for b in names if unit_of(b) == unit]
        if not group:
            continue
        ratios = [(stack_q[b][5] - stack_q[b][1]) /
                  max(fp.quantiles[b][5] - fp.quantiles[b][1], 1e-9) for b in group]
        ratio = float(np.median(ratios))
        if min(ratios) > SCALE_RATIO or max(ratios) < 1 / SCALE_RATIO:
            found.append(
                f"every {unit} band spreads {ratio:.3g} x as much as in the training data "
                f"({', '.join(group)}): the values are on another scale; give them as the "
                "training data was (reflectance 0-1, sigma0 in dB)")
    found += _shift_problems(stack_q, fp, names)
    return found


def _shift_problems(stack_q: Mapping[str, np.ndarray], fp: Fingerprint,
                    names: Sequence[str]) -> list[str]:
    """An offset or a calibration: the whole distribution of a unit's bands moved alike."""
    found = []
    refl = [b for b in names if unit_of(b) == "reflectance"]
    if len(refl) >= 2:
        floor = {b: float(np.mean(stack_q[b][:2] - np.asarray(fp.quantiles[b][:2])))
                 for b in refl}
        middle = {b: float(stack_q[b][3] - fp.quantiles[b][3]) for b in refl}
        kept = all(1 / SPREAD_KEPT <= (stack_q[b][5] - stack_q[b][1]) /
                   max(fp.quantiles[b][5] - fp.quantiles[b][1], 1e-9) <= SPREAD_KEPT and
                   abs(middle[b] - floor[b]) <= SHIFT_TOLERANCE + 0.25 * abs(floor[b])
                   for b in refl)
        low, high = min(floor.values()), max(floor.values())
        shown = ", ".join(f"{b} {v:+.3f}" for b, v in floor.items())
        blue, nir = floor.get("B2"), floor.get("B8", floor.get("B8A"))
        if not kept:
            pass  # another scene: its distribution changed shape, not only place
        elif low >= OFFSET_MIN and high <= 1.6 * low:
            found.append(
                f"every reflectance band is lifted alike against the training data (its "
                f"darkest pixels: {shown}): an offset of about "
                f"{float(np.median(list(floor.values()))):+.2f} is in the values (the +0.1 "
                "BOA offset, 1000 DN, left in?); subtract it")
        elif blue is not None and nir is not None and blue >= TOA_BLUE_MIN and \
                blue - nir >= TOA_BLUE_OVER_NIR and low >= -0.005 and _bluer_more(floor):
            found.append(
                f"the darkest pixels are lifted most in the blue against the training data "
                f"({shown}), as the atmosphere's path radiance lifts them: top-of-atmosphere "
                "(Level-1C-like) reflectance where the model learned surface reflectance; give "
                "the Level-2A product of the scene")
    radar = [b for b in names if unit_of(b) == "dB"]
    if radar:
        shifts = {b: stack_q[b][1:6] - np.asarray(fp.quantiles[b][1:6]) for b in radar}
        means = {b: float(np.mean(s)) for b, s in shifts.items()}
        alike = all(float(np.ptp(s)) <= S1_SHIFT_SPREAD_DB for s in shifts.values())
        if alike and (min(means.values()) >= S1_SHIFT_MIN_DB
                      or max(means.values()) <= -S1_SHIFT_MIN_DB) \
                and np.ptp(list(means.values())) <= S1_SHIFT_SPREAD_DB:
            shown = ", ".join(f"{b} {v:+.1f} dB" for b, v in means.items())
            found.append(
                f"sigma0 is shifted alike over its whole range against the training data "
                f"({shown}): another calibration (gamma0 for sigma0, another processor, dB "
                "offset); give sigma0 in dB as the training data was calibrated")
    return found


def _bluer_more(shift: Mapping[str, float], slack: float = 0.005) -> bool:
    """Whether the shifts fall with wavelength (B2, B3, B4, B8), as path radiance does."""
    seq = [shift[b] for b in ("B2", "B3", "B4", "B8") if b in shift]
    return all(a >= b - slack for a, b in itertools.pairwise(seq))


# ---------------------------------------------------------------------- the one check
def physics_doubts(samples: Mapping[str, np.ndarray], *, level: str | None = None,
                   dark_rule: bool = True, names_trusted: bool = False) -> list[str]:
    """The physical rules' doubts about a stack (``cause; fix``), most certain first.

    Args:
        samples: band name -> values (reflectance 0-1, sigma0).
        level: ``"L1C"`` when the stack is known to be top of atmosphere.
        dark_rule: apply the absolute dark-object rule for an offset left in.
        names_trusted: the user vouched for the band names (``--trust-band-names``): the
            rules on their order (:data:`~contract.input_facts.BAND_ORDER_KINDS`) say nothing.
    """
    facts = input_facts(samples)
    doubts = [f"{f.text}; {f.fix}" for f in findings(facts, level=level)
              if not (names_trusted and f.kind in BAND_ORDER_KINDS)]
    if "VV" in samples and "VH" in samples:
        swapped = sigma0_swapped(samples["VV"], samples["VH"])
        if swapped:
            doubts.append(f"{swapped}; put the bands in the order their names say")
    if dark_rule and level != "L1C":
        offset = offset_left_in(samples)
        if offset:
            doubts.append(offset)
    return doubts


def judge_stack(what: str, samples: Mapping[str, np.ndarray], *,
                fingerprint: Fingerprint | None = None, allow_implausible: bool = False,
                recorded_in: str = "the output's metadata", level: str | None = None,
                dark_rule: bool = True, first: Iterable[str] = (), done: str = "accepted",
                physics: bool = True, names_trusted: bool = False) -> tuple[str, ...]:
    """Refuse a stack whose pixels are not what its names and the training data say.

    The one input check of every door (see the module's description): untagged fill is
    refused outright; the fingerprint's doubts and the physical rules' are refused unless
    ``allow_implausible``, and returned as notes to record.

    Args:
        what: the stack in words (``--input stack.tif``), the message's start.
        samples: band name -> values of equal shape, as the model reads them (NaN = nodata).
        fingerprint: the training data's (a model file's, a dataset's); None: the physical
            rules alone (an older model file, a command without a model).
        allow_implausible: proceed with doubts (``--allow-implausible``).
        recorded_in: where the notes go, for the refusal's advice.
        level: ``"L1C"`` when the stack is known to be top of atmosphere.
        dark_rule: apply the absolute dark-object rule (where the training data had dark
            objects; see :func:`physics_doubts`).
        first: the caller's own doubts, judged before the others (a level the model does not
            take).
        done: what the command did with a doubted stack, for the notes (``mapped``).
        physics: apply the physical rules, which are a scene's (False: patches pooled from
            a dataset whose scenes or images were judged at its export or import).
        names_trusted: the band names are vouched for (:func:`physics_doubts`).

    Returns:
        The notes to record: each doubt the stack was accepted with.

    Raises:
        InputDataError: untagged fill; a doubt without ``allow_implausible``.
    """
    if samples:
        refuse_fill(what, np.stack([np.asarray(v) for v in samples.values()]), list(samples))
    doubts = list(first)
    if fingerprint is not None:
        doubts += fingerprint_problems(samples, fingerprint)
    if physics:
        doubts += physics_doubts(samples, level=level, dark_rule=dark_rule,
                                 names_trusted=names_trusted)
    doubts = list(dict.fromkeys(d for d in doubts if d))
    if doubts and not allow_implausible:
        raise InputDataError(f"{what}: {doubts[0]}; or, if the stack really is so, pass "
                             f"{OVERRIDE} (the reason is recorded in {recorded_in})")
    for doubt in doubts:
        log.warning("%s: %s; %s anyway (%s)", what, doubt, done, OVERRIDE)
    return tuple(f"{done} with {OVERRIDE}: {d}" for d in doubts)


def judge_stacks(stacks: Mapping[str, Mapping[str, np.ndarray]],
                 fingerprint: Fingerprint | None = None, *, allow_implausible: bool = False,
                 recorded_in: str = "the output's metadata") -> tuple[str, ...]:
    """Stacks one model learns from, each against one fingerprint: none may be unlike the rest.

    Each stack (``what`` -> its samples, as :func:`judge_stack` takes them) is judged by
    :func:`judge_stack` against ``fingerprint`` (a dataset's recorded one), or where none is
    given against the first stack's own, the first then being the reference itself: a
    later stack (a ``--data`` root, an ``--input``) whose bands are transposed, on another
    scale or shifted is refused, naming it. The physical rules are not applied (the caller
    judges them once over all the stacks).

    Returns:
        The notes to record (the doubts accepted with ``allow_implausible``).
    """
    notes: list[str] = []
    for what, samples in stacks.items():
        if fingerprint is None:
            fingerprint = fingerprint_of(samples)
            continue
        notes += judge_stack(what, samples, fingerprint=fingerprint, physics=False,
                             allow_implausible=allow_implausible, recorded_in=recorded_in)
    return tuple(notes)
