"""What a stack's pixels show, gathered once: the facts every input check reads.

Names and tags are written by people and tools; the spectra are not. A stack whose bands are
swapped, whose processing level is not the one it claims, or whose unit is shifted still holds
numbers in the right range, so each check here judges the *shape* of the spectra against
physics that holds in every real scene, measured on the shared real tiles (calibrated on the
Dynamic World Java and Ghana A tiles, the BigEarthNet Austria patch and eo-learn's first three
L1C dates; tested on the other tiles: Ghana B, BigEarthNet Ireland and Finland, the four
TerraMesh cells, eo-learn's last two dates and the Sen1Floods11 L1C chip,
``tests/contract/test_input_facts.py``):

- **vegetation** (near infrared far above red: ``B8 > 2 B4`` and ``B8 > 0.15``) absorbs blue
  and red alike, so over it surface reflectance has ``B2 - B4`` near 0 (median -0.055 to
  +0.004 in the real L2A tiles); the atmosphere's path radiance (Rayleigh, strongest in the
  blue) lifts top-of-atmosphere blue above red over it (+0.020 to +0.054 in the real L1C
  scenes): :data:`TOA_BLUE_EXCESS`;
- **dark objects** (the darkest 0.5 % of each band): at the top of the atmosphere the blue
  floor is above the green one (path radiance; +0.014 to +0.021 in L1C), at the surface it
  is not (at most +0.001 in L2A, snow aside): :data:`TOA_FLOOR_EXCESS`. No surface has a
  floor below 0; one near -0.1 is the reflectance offset subtracted twice
  (:data:`OFFSET_TWICE_FLOOR`);
- **red against blue**: surfaces differ more in red than in blue (bare soil and roofs against
  plants), so red spreads over a scene more than blue does (0.98 to 2.1 x between the 10th
  and 90th percentiles in every real tile, hazy and snowy ones included; swapped, the clear
  ones show 0.47-0.75 x): :data:`RED_SPREAD_MIN`. A hazy or snow-covered scene (spread near
  1) cannot show a swap;
- **red above blue**: soil, concrete and roofs reflect more red than blue. Over them (chosen
  without B2 or B4: near infrared 1.4-2.5 x green, rising as soil and built surfaces do, not
  as plants, water, snow or clouds; green 0.05-0.3, neither shadow nor cloud or snow), red
  less its dark-object floor is a median +0.031 to +0.062 above blue less its floor in every
  clear real tile (the floors take the atmosphere's path radiance out, as in Level-1C);
  hazy, snowy and cloudy tiles show -0.001 to +0.009 (64-128 px crops of them -0.005 at
  least), and swapped the clear ones -0.031 to -0.062, whatever their spread:
  :data:`RED_OVER_BLUE_MIN` (set on all the real tiles and the demo's synthetic scene,
  +0.021, whose red spreads like its blue; none held out);
- **green** is never the brightest band by far: a pixel with ``B3 >= 0.15`` above 1.5 x ``B8``
  and 2 x ``B4`` does not occur in any real tile (0 %), but every vegetated pixel looks so
  when green and near infrared are swapped (:data:`BRIGHT_GREEN_SHARE`);
- **sigma0 in dB**: the scene medians of the real tiles are -9.9 to -14.5 dB (VV) and -15.6
  to -21.9 dB (VH); co-polarised is above cross-polarised by a median 4.8 to 7.4 dB. A
  stack brighter than :data:`VV_BRIGHT_DB` and :data:`VH_BRIGHT_DB` holds dB shifted by a
  constant (+10) or halved (10 log10 of amplitude); halved dB also halves the polarisation
  difference (below :data:`CROSS_POL_MIN_DB`), as linear amplitude does (its ratio VV/VH is
  the square root of power's).

The rules judge spectra only where there are spectra: blue and red that do not move
together (:data:`VISIBLE_R_MIN`; correlation 0.91-0.99 in every real tile), reflectances
below 0 in more than :data:`NEGATIVE_MAX` of the pixels (none in the real tiles; the offset
rule alone judges those), or backscatter
spreading less than speckle alone makes it (:data:`SAR_SPREAD_MIN_DB`; 4.9 dB and more between
VV's 10th and 90th percentiles in the real tiles) are no scene's values, left to the rules of
the bands' names and the model's training ranges.

Sigma0 and terrain-flattened gamma0 differ by 10 log10(cos θ), 0.6-1.6 dB at Sentinel-1's
incidence angles, the same in VV and VH, less than real scenes differ from each other (the
TerraMesh gamma0 tiles' medians lie among the sigma0 tiles'; no other statistic of the real
tiles separates them either): no rule here judges it. The facts record the S1 medians for
the map's tags, and :mod:`contract.backscatter` compares them with the model's training
medians to note what the map could not check.

Pure functions of value samples (NaN = nodata); the inference checks
(:mod:`inference.predict.expected_inputs`) read them once per input.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

import numpy as np

VEGETATION_SHARE_MIN = 0.02  # vegetated pixels needed to judge by vegetation
TOA_BLUE_EXCESS = 0.012  # median B2 - B4 over vegetation: L2A <= 0.004, L1C >= 0.020
#: the blue's excess at most this over vegetation for a sample to show surface reflectance:
#: real L2A patches of 32 to 128 px 0.006 at most, small samples of real L1C 0.0097 and up
SURFACE_BLUE_EXCESS = 0.008
TOA_FLOOR_EXCESS = 0.008  # floor(B2) - floor(B3): L2A <= 0.001 (snow aside), L1C >= 0.014
RED_SPREAD_MIN = 0.8  # spread of B4 / spread of B2: real 0.98-2.14, swapped 0.47-0.75
#: soil, concrete and roofs, chosen without B2 or B4: B8 / B3 and B3 within these bounds
SOIL_NIR_OVER_GREEN = (1.4, 2.5)
SOIL_GREEN = (0.05, 0.3)
SOIL_PIXELS_MIN = 100  # and :data:`VEGETATION_SHARE_MIN` of the pixels, to judge by soil
#: median (B4 - its floor) - (B2 - its floor) over soil: real -0.005 .. +0.062 (clear tiles
#: +0.031 and up), swapped -0.031 and below (the demo's synthetic scene -0.021)
RED_OVER_BLUE_MIN = -0.01
BRIGHT_GREEN_SHARE = 0.02  # share of "green far above NIR and red" pixels: real 0 %
#: the darkest 0.5 % of a reflectance band after the -0.1 offset subtracted once more: real
#: floors are 0.006 to 0.14, so -0.094 to +0.04 (a hazy scene hides it); far lower values are
#: no reflectance at all, judged by the band's own rules
OFFSET_TWICE_FLOOR = (-0.15, -0.05)
FLOOR_PERCENTILE = 0.5
VV_BRIGHT_DB = -8.0  # scene median; real -9.9 .. -14.5, dB + 10 or halved: -7.2 .. +0.5
VH_BRIGHT_DB = -12.5  # scene median; real -15.6 .. -21.9, shifted or halved: -5.6 .. -11.9
CROSS_POL_MIN_DB = 4.2  # median VV - VH; real 4.8 .. 7.4, halved 2.4 .. 3.7
MIN_PIXELS = 256
VISIBLE_R_MIN = 0.5  # B2-B4 correlation below which no spectral rule judges (real 0.91-0.99)
NEGATIVE_MAX = 0.05  # share of negative pixels above which no spectral rule judges (real 0)
SAR_SPREAD_MIN_DB = 2.0  # VV 10th-90th percentile in dB below which no S1 rule judges


@dataclass(frozen=True)
class OpticalFacts:
    """What the blue, green, red and near-infrared reflectances of a scene show.

    Attributes:
        floor: each band's darkest :data:`FLOOR_PERCENTILE` % (dark objects).
        median: each band's median.
        vegetation: share of pixels with near infrared far above red.
        blue_excess: median ``B2 - B4`` over vegetation (None: too little vegetation).
        bright_green: share of pixels whose green is far above near infrared and red.
        red_blue_spread: the spread (10th to 90th percentile) of B4 over that of B2.
        soil: share of pixels judged as soil, concrete and roofs (:data:`SOIL_GREEN`,
            :data:`SOIL_NIR_OVER_GREEN`).
        red_over_blue: median ``B4 - B2`` over them, less the difference of the two
            floors (None: too few such pixels).
        visible_r: the correlation of B2 and B4 over the scene (real: 0.91-0.99).
        negative: share of pixels below 0 in any of the four bands.
    """

    floor: dict[str, float]
    median: dict[str, float]
    vegetation: float
    blue_excess: float | None
    bright_green: float
    red_blue_spread: float
    soil: float
    red_over_blue: float | None
    visible_r: float
    negative: float

    def spectra(self) -> bool:
        """Whether the values are reflectance spectra the band rules can judge at all."""
        return self.visible_r >= VISIBLE_R_MIN and self.negative <= NEGATIVE_MAX

    def path_radiance(self) -> bool:
        """Whether the blue carries the atmosphere's path radiance (top of atmosphere)."""
        floor_excess = self.floor["B2"] - self.floor["B3"]
        return (self.blue_excess is not None and self.blue_excess > TOA_BLUE_EXCESS
                and floor_excess > TOA_FLOOR_EXCESS)

    def surface(self) -> bool:
        """Whether neither sign of path radiance shows (surface reflectance).

        Both must say so: a small sample of Level-1C (a few 32 to 128 px patches of the
        sen1floods11 chip) shows the blue's excess over vegetation without dark objects to
        lift the floor, or the floor without the excess, or an excess between Level-2A's
        and the threshold, and was taken for Level-2A; real Level-2A patches show neither
        (excess at most 0.006, :data:`SURFACE_BLUE_EXCESS`; floor excess at most 0.003).
        """
        floor_excess = self.floor["B2"] - self.floor["B3"]
        return (self.blue_excess is not None and self.blue_excess <= SURFACE_BLUE_EXCESS
                and floor_excess <= TOA_FLOOR_EXCESS)


@dataclass(frozen=True)
class RadarFacts:
    """What the VV and VH backscatter of a scene shows.

    Attributes:
        unit: ``"linear"`` (every value positive) or ``"dB"`` (any value 0 or below).
        median: each band's median as given.
        cross_pol_db: median ``VV - VH`` in dB (linear values converted).
        spread_db: VV's 10th to 90th percentile in dB (linear values converted).
    """

    unit: str
    median: dict[str, float]
    cross_pol_db: float
    spread_db: float


#: the findings that say bands are in another order than their names (``--trust-band-names``
#: vouches for the names against them)
BAND_ORDER_KINDS = frozenset({"b2_b4_swapped", "b3_b8_swapped"})


@dataclass(frozen=True)
class Finding:
    """One thing the facts show is wrong with a stack.

    Attributes:
        kind: a short name (``b2_b4_swapped``, ``top_of_atmosphere`` ...).
        text: what is wrong and why the pixels say so.
        fix: what to do.
    """

    kind: str
    text: str
    fix: str


@dataclass(frozen=True)
class InputFacts:
    """Everything the input checks read of a stack's sample, gathered in one pass.

    Attributes:
        optical: the reflectance facts (None: the stack lacks B2, B3, B4 or B8).
        radar: the backscatter facts (None: it lacks VV or VH).
        notes: why a doubted input was mapped anyway (recorded in the map's tags).
    """

    optical: OpticalFacts | None
    radar: RadarFacts | None
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, object]:
        """The facts as JSON-ready numbers (rounded), for tags and reports."""
        def rounded(value: object) -> object:
            if isinstance(value, float):
                return round(value, 4)
            if isinstance(value, dict):
                return {k: rounded(v) for k, v in value.items()}
            return value
        out: dict[str, object] = {}
        if self.optical is not None:
            out["optical"] = rounded(asdict(self.optical))
        if self.radar is not None:
            out["radar"] = rounded(asdict(self.radar))
        if self.notes:
            out["notes"] = list(self.notes)
        return out


def _finite_rows(samples: Mapping[str, np.ndarray], names: tuple[str, ...]) -> np.ndarray | None:
    """The pixels finite in every band of ``names`` as ``(len(names), n)`` float64."""
    if not all(n in samples for n in names):
        return None
    rows = np.stack([np.asarray(samples[n], np.float64).ravel() for n in names])
    rows = rows[:, np.isfinite(rows).all(axis=0)]
    return rows if rows.shape[1] >= MIN_PIXELS else None


def optical_facts(samples: Mapping[str, np.ndarray]) -> OpticalFacts | None:
    """The reflectance facts of ``samples`` (B2, B3, B4, B8 as reflectance 0-1), or None."""
    rows = _finite_rows(samples, ("B2", "B3", "B4", "B8"))
    if rows is None:
        return None
    b2, b3, b4, b8 = rows
    names = ("B2", "B3", "B4", "B8")
    floor = {n: float(np.percentile(v, FLOOR_PERCENTILE)) for n, v in zip(names, rows, strict=True)}
    median = {n: float(np.median(v)) for n, v in zip(names, rows, strict=True)}
    vegetation = (b8 > 2 * b4) & (b8 > 0.15)
    blue_excess = (float(np.median(b2[vegetation] - b4[vegetation]))
                   if vegetation.mean() >= VEGETATION_SHARE_MIN else None)
    bright_green = (b3 >= 0.15) & (b3 > 1.5 * b8) & (b3 > 2 * b4)
    spread = [float(np.percentile(v, 90) - np.percentile(v, 10)) for v in (b4, b2)]
    soil = ((b3 >= SOIL_GREEN[0]) & (b3 <= SOIL_GREEN[1])
            & (b8 >= SOIL_NIR_OVER_GREEN[0] * b3) & (b8 <= SOIL_NIR_OVER_GREEN[1] * b3))
    red_over_blue = (float(np.median(b4[soil] - b2[soil]) - (floor["B4"] - floor["B2"]))
                     if soil.sum() >= max(SOIL_PIXELS_MIN, VEGETATION_SHARE_MIN * soil.size)
                     else None)
    r = float(np.corrcoef(b2, b4)[0, 1]) if b2.std() > 0 and b4.std() > 0 else 0.0
    return OpticalFacts(floor, median, float(vegetation.mean()), blue_excess,
                        float(bright_green.mean()), spread[0] / max(spread[1], 1e-6),
                        float(soil.mean()), red_over_blue, r,
                        float((rows < 0).any(axis=0).mean()))


def radar_facts(samples: Mapping[str, np.ndarray]) -> RadarFacts | None:
    """The backscatter facts of ``samples`` (VV, VH in dB or linear), or None."""
    rows = _finite_rows(samples, ("VV", "VH"))
    if rows is None:
        return None
    vv, vh = rows
    median = {"VV": float(np.median(vv)), "VH": float(np.median(vh))}
    unit = "linear" if (rows > 0).all() else "dB"  # power is never 0 or below
    if unit == "linear":
        vv, vh = 10 * np.log10(vv), 10 * np.log10(vh)
    spread = float(np.percentile(vv, 90) - np.percentile(vv, 10))
    return RadarFacts(unit, median, float(np.median(vv - vh)), spread)


def shown_level(facts: InputFacts) -> str | None:
    """The Sentinel-2 level the pixels show: ``"L1C"``, ``"L2A"``, or None (cannot tell).

    Top of atmosphere where the blue carries path radiance
    (:meth:`OpticalFacts.path_radiance`), surface reflectance where the scene has the
    vegetation to show it and neither sign of path radiance shows (:meth:`OpticalFacts.surface`);
    None without optical bands, with values no spectral rule judges, with too little
    vegetation (a cloudy or snowy date), or where one sign shows and the other does not.
    """
    o = facts.optical
    if o is None or not o.spectra() or o.blue_excess is None:
        return None
    if o.path_radiance():
        return "L1C"
    return "L2A" if o.surface() else None


@dataclass(frozen=True)
class LevelJudgement:
    """The Sentinel-2 level a stack is taken to hold, and whether the model may map it.

    Attributes:
        shown: the level its pixels show (:func:`shown_level`; None: they cannot tell).
        stated: ``"L1C"`` when its tags or band names say so (a ``PRODUCT_LEVEL`` tag, a B10
            band), else None.
        taken: the level the check goes by: the pixels', else the stated one.
        finding: why the model may not map it (None: it may).
        notes: what the map must record of the level (why a top-of-atmosphere stack was
            mapped, or why a stack named L1C was mapped as surface reflectance).
    """

    shown: str | None
    stated: str | None
    taken: str | None
    finding: Finding | None
    notes: tuple[str, ...]


def judge_level(facts: InputFacts, *, stated: str | None = None,
                model_takes_l1c: str | None = None, allowed: bool = False) -> LevelJudgement:
    """Whether a model may map a stack, by the level its pixels show rather than its name.

    The pixels decide (:func:`shown_level`); a stack whose pixels cannot tell (too little
    vegetation, no optical bands) is taken at its word (``stated``). A top-of-atmosphere
    stack is mapped when the model takes Level-1C (``model_takes_l1c``: why, e.g. it was
    trained on Level-1C exports) or the user accepted it (``allowed``: ``isamap-export`` or
    ``isamap-map --allow-l1c``, recorded in the stack), each reason recorded in the notes;
    else it is refused. A stack named Level-1C whose pixels show surface reflectance is
    mapped as such, with that recorded.

    Args:
        facts: the stack's facts.
        stated: ``"L1C"`` when the stack's tags or band names say so.
        model_takes_l1c: why the model maps top-of-atmosphere input as it maps surface
            reflectance (None: it was trained on Level-2A and nothing shows it does).
        allowed: the user asked for Level-1C input to be mapped.
    """
    shown = shown_level(facts)
    taken = shown or stated
    how = "as its pixels show" if shown == "L1C" else "as its tags or band names say"
    notes: list[str] = []
    finding = None
    if taken == "L1C" and model_takes_l1c:
        notes.append(f"Level-1C (top-of-atmosphere) input, {how}, to a model that takes it: "
                     f"{model_takes_l1c}")
    elif taken == "L1C" and allowed:
        notes.append(f"Level-1C (top-of-atmosphere) input, {how}, mapped as asked "
                     "(isamap-export/isamap-map --allow-l1c) by a model trained on Level-2A "
                     "surface reflectance: the atmosphere's haze is in every band and the map "
                     "may be poor; its dark objects were not checked for a reflectance offset")
    elif taken == "L1C":
        finding = Finding("top_of_atmosphere", _toa_text(facts.optical, shown == "L1C"),
                          "give the Level-2A product of the scene")
    elif stated == "L1C" and shown == "L2A":
        notes.append("the stack's tags or band names say Level-1C, but its pixels show "
                     "surface reflectance (no path radiance in the blue): mapped as Level-2A")
    return LevelJudgement(shown, stated, taken, finding, tuple(notes))


def _toa_text(o: OpticalFacts | None, by_pixels: bool) -> str:
    trained = "not the surface (Level-2A) reflectances the model was trained on"
    if by_pixels and o is not None and o.blue_excess is not None:
        return (f"over vegetation B2 (blue) is {o.blue_excess:+.3f} above B4 (red) and the "
                f"darkest B2 is {o.floor['B2'] - o.floor['B3']:+.3f} above the darkest B3: "
                "the atmosphere's path radiance is in the blue, so these are "
                f"top-of-atmosphere (Level-1C) reflectances, {trained}")
    return ("its tags or band names say top-of-atmosphere (Level-1C) reflectance and its "
            f"pixels cannot show otherwise (too little vegetation to judge by), {trained}")


def input_facts(samples: Mapping[str, np.ndarray]) -> InputFacts:
    """The facts of a stack's sample, band name -> values (reflectance 0-1, sigma0)."""
    return InputFacts(optical_facts(samples), radar_facts(samples))


def _band_findings(o: OpticalFacts) -> list[Finding]:
    found = []
    if o.bright_green >= BRIGHT_GREEN_SHARE:
        found.append(Finding(
            "b3_b8_swapped",
            f"in {100 * o.bright_green:.0f} % of the pixels the band named B3 (green) is above "
            "0.15 and far above B8 (near infrared) and B4 (red), which no real surface shows "
            "(0 % in every real tile) but every plant does when green and near infrared are "
            "swapped: B3 and B8 are swapped", "put the bands in the order their names say"))
    if o.red_blue_spread < RED_SPREAD_MIN:
        found.append(Finding(
            "b2_b4_swapped",
            f"the band named B4 (red) varies over the scene {o.red_blue_spread:.2f} x as much as "
            "the band named B2 (blue) (10th to 90th percentile), where surfaces differ more "
            "in red than in blue (0.98-2.1 x in every real tile, hazy and snowy ones "
            "included): B2 and B4 are swapped", "put the bands in the order their names say"))
    elif o.red_over_blue is not None and o.red_over_blue < RED_OVER_BLUE_MIN:
        found.append(Finding(
            "b2_b4_swapped",
            f"over soil, concrete and roofs ({100 * o.soil:.0f} % of the pixels: B8 1.4-2.5 x "
            f"B3) the band named B2 (blue) is {-o.red_over_blue:.3f} above the band named B4 "
            "(red) (median, each less its darkest pixels), where these surfaces reflect more "
            "red than blue (red 0.03-0.06 above blue in every clear real tile, no more than "
            "0.005 below in hazy and snowy ones): B2 and B4 are swapped",
            "put the bands in the order their names say"))
    return found


def findings(facts: InputFacts, *, level: str | None = None) -> list[Finding]:
    """What the facts show is wrong, most certain first.

    Args:
        facts: the stack's facts.
        level: ``"L1C"`` when the stack is known to be top of atmosphere (its recipe or the
            model's training data say so): path radiance and bright floors are then expected.
    """
    found: list[Finding] = []
    o, r = facts.optical, facts.radar
    if r is not None and r.spread_db < SAR_SPREAD_MIN_DB:
        r = None  # backscatter without speckle's spread is no SAR scene
    if o is not None:
        low = min(o.floor, key=o.floor.__getitem__)
        if OFFSET_TWICE_FLOOR[0] <= o.floor[low] < OFFSET_TWICE_FLOOR[1]:
            found.append(Finding(
                "offset_removed_twice",
                f"the darkest pixels of {low} are at {o.floor[low]:.3f} (median B2 "
                f"{o.median['B2']:.3f}), where no surface reflects less than 0: the "
                "reflectance offset (-0.1, 1000 DN) was subtracted from values that no longer "
                "carried it", "give the values without the second subtraction (add 0.1)"))
        if o.spectra():
            found += _band_findings(o)
        if level != "L1C" and not found and o.spectra() and o.path_radiance():
            found.append(Finding("top_of_atmosphere", _toa_text(o, True),
                                 "give the Level-2A product of the scene"))
    if r is not None and r.unit == "dB" and r.median["VV"] > VV_BRIGHT_DB \
            and r.median["VH"] > VH_BRIGHT_DB:
        halved = r.cross_pol_db < CROSS_POL_MIN_DB
        cause = ("halved: 10 log10 of amplitude instead of power (VV - VH is "
                 f"{r.cross_pol_db:.1f} dB, real scenes 4.8-7.4 dB)" if halved else
                 "shifted by a constant (dB + 10?)")
        fix = ("give 20 log10 of amplitude (10 log10 of power)" if halved else
               "give sigma0 in dB as calibrated (10 log10 of linear power)")
        found.append(Finding(
            "s1_db_halved" if halved else "s1_db_shifted",
            f"sigma0 medians VV {r.median['VV']:.1f} dB and VH {r.median['VH']:.1f} dB are "
            "brighter than any real scene (VV -10 to -15, VH -15 to -22): the dB values are "
            f"{cause}", fix))
    if r is not None and r.unit == "linear" and r.cross_pol_db < CROSS_POL_MIN_DB:
        found.append(Finding(
            "s1_amplitude",
            f"VV is only {r.cross_pol_db:.1f} dB above VH (real power: 4.8-7.4 dB): the "
            "positive values are amplitude, the square root of sigma0's power",
            "convert each value with 20 log10(value) for dB (or square it for linear power)"))
    return found
