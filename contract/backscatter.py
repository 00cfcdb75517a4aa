"""Which Sentinel-1 backscatter a model learned, and what a map records where pixels cannot tell.

Sigma0 is backscatter per unit of ground area on the ellipsoid; terrain-flattened gamma0
(``isamap-export --terrain-flattening``) divides it by the cosine of the incidence angle and,
on slopes, by the terrain's illuminated area. On flat ground the two differ by
``-10 log10(cos θ)``, the same in VV and VH: 0.6 to 1.6 dB brighter at Sentinel-1's incidence
angles (30.6-45.2°, :data:`MIX_UP_DB`). Inside one stack θ changes by hundredths of a degree,
so every statistic of the pixels but their level is the same in both: the polarisation
difference, the spreads, the correlation of VV and VH. The level is no help either, as real
scenes differ by more. Measured on the real tiles (five sigma0: the three BigEarthNet
patches, the Sen1Floods11 chip, the SEN12MS patch; four gamma0: the TerraMesh cells), the
sigma0 and the gamma0 tiles overlap in every candidate statistic but the VV median, where
they touch on the wrong side (the gamma0 tiles are the darker, though gamma0 is the
brighter quantity: the scenes set the level, not the processing):

- median VV: sigma0 -12.3 to -9.9 dB, gamma0 -14.5 to -12.3 dB;
- median VH: sigma0 -18.2 to -15.6 dB, gamma0 -21.9 to -17.8 dB;
- median VV - VH: sigma0 4.8 to 7.4 dB, gamma0 5.3 to 7.4 dB;
- VV's spread over VH's (10th to 90th percentile): sigma0 0.97 to 1.14, gamma0 0.90 to 1.21;
- correlation of VV and VH: sigma0 0.32 to 0.78, gamma0 0.54 to 0.84;
- standard deviation of VV - VH: sigma0 2.2 to 3.8 dB, gamma0 2.5 to 3.0 dB.

No stack carries the incidence angle (the export drops the ``angle`` band), and the slope
effect of terrain flattening needs a DEM the stack does not hold.

So the map points at a mix-up where the numbers do, and says what it could not compare: the
model's backscatter is read from its training recipe (:func:`trained_backscatter`), and
:func:`backscatter_note` compares the stack's VV and VH medians with the training medians
the model file records. Both shifted in the direction the other backscatter lies, by a
similar amount (:data:`SIMILAR_DB`) within :data:`LIKELY_SHIFT_DB`, is noted as the likely
cause (in either direction where the model file does not say what it learned). Between real
scenes of one kind that happens by chance in 1 of the 32 ordered pairs of the tiles above,
and in none of the 40 sigma0/gamma0 pairs (4 of all 72 in either direction): a real gamma0
scene differs from a sigma0 one by more than the mix-up does, and nothing in its pixels can
show it. Nothing is noted otherwise, nor where the model file records no training medians
(older files; prediction logs that it checks such a stack by band names only): a note that
every Sentinel-1 map of a model carries says nothing about the map, and every map's
``input_facts`` tag holds the stack's medians all the same.

Pure functions of recipes and facts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from contract.input_facts import RadarFacts

Backscatter = Literal["sigma0", "gamma0"]
#: brightening of terrain-flattened gamma0 over sigma0 on flat ground, -10 log10(cos θ), at
#: Sentinel-1 IW's incidence angles (30.6-45.2°)
MIX_UP_DB = (0.6, 1.6)
#: the shift of both medians named as a likely mix-up: from MIX_UP_DB's lower bound (a smaller
#: shift is less than any real mix-up makes, such as a split's medians against one scene's)
#: to MIX_UP_DB's upper bound with 0.4 dB of margin (slopes brighten gamma0 further)
LIKELY_SHIFT_DB = (MIX_UP_DB[0], 2.0)
#: how far the VV and VH shifts may differ for a mix-up (it shifts both alike)
SIMILAR_DB = 0.5


@dataclass(frozen=True)
class TrainedBackscatter:
    """The backscatter a model learned, as its training recipe records it.

    Attributes:
        kind: ``"sigma0"``, ``"gamma0"``, or None (the recipe does not say).
        source: where that was read, for the note (``Earth Engine export, terrain
            flattening 'volume'``).
        fix: how to give a stack of that kind.
    """

    kind: Backscatter | None
    source: str
    fix: str = ""


def trained_backscatter(recipe: Mapping[str, object] | None) -> TrainedBackscatter:
    """Which backscatter a dataset's stacks hold, read from its manifest's ``recipe``.

    The Earth Engine backend records ``s1.terrain_flattening`` (``none``: sigma0; ``volume``
    or ``surface``: gamma0). The local backend flattens no terrain but takes GRD (sigma0)
    and RTC (gamma0) scenes alike, and its recipe does not say which it was given, so a
    local export does not say either; nor do imported patches and datasets without a recipe.
    A model whose kind is not known is judged in both directions (:func:`likely_mix_up`).
    """
    recipe = recipe or {}
    s1 = recipe.get("s1")
    if isinstance(s1, Mapping) and isinstance(s1.get("terrain_flattening"), str):
        model = str(s1["terrain_flattening"])
        if model == "none":
            return TrainedBackscatter("sigma0", "Earth Engine export without terrain flattening",
                                      "isamap-export --terrain-flattening none")
        return TrainedBackscatter("gamma0", f"Earth Engine export, terrain flattening {model!r}",
                                  f"isamap-export --terrain-flattening {model}")
    if recipe.get("backend") == "local":  # it reads GRD (sigma0) and RTC (gamma0) scenes alike
        return TrainedBackscatter(None, "a local export, whose recipe does not record whether "
                                  "its scenes were sigma0 (GRD) or gamma0 (RTC)")
    return TrainedBackscatter(None, "its training recipe does not record it")


def _db(value: float, unit: str) -> float:
    return 10 * math.log10(value) if unit == "linear" else value


def training_medians(ranges: Mapping[str, Sequence[float]], unit: str) -> dict[str, float] | None:
    """VV and VH training medians in dB from the model's ``band_ranges`` (p1, p50, p99)."""
    if not all(b in ranges and len(ranges[b]) == 3 for b in ("VV", "VH")):
        return None
    if unit == "linear" and not all(float(ranges[b][1]) > 0 for b in ("VV", "VH")):
        return None
    return {b: _db(float(ranges[b][1]), unit) for b in ("VV", "VH")}


def likely_mix_up(shift: Mapping[str, float], trained: Backscatter | None) -> bool:
    """Whether VV and VH shifted alike, by a mix-up's size, the way the other kind lies.

    ``shift`` is the stack's median minus the training median (dB). Gamma0 is the brighter,
    so a sigma0 model given gamma0 sees both rise; a model whose kind is not recorded
    (None) is judged in either direction.
    """
    low, high = LIKELY_SHIFT_DB
    signs = {"sigma0": (1.0,), "gamma0": (-1.0,), None: (1.0, -1.0)}[trained]
    return any(low <= sign * shift["VV"] <= high and low <= sign * shift["VH"] <= high
               and abs(shift["VV"] - shift["VH"]) <= SIMILAR_DB for sign in signs)


def backscatter_note(radar: RadarFacts | None, trained: TrainedBackscatter,
                     ranges: Mapping[str, Sequence[float]]) -> str | None:
    """What the map records of the backscatter it could not check (None: nothing to say).

    A note where the stack's VV and VH medians moved from the training medians as a mix-up
    moves them (:func:`likely_mix_up`), naming the likely cause; none where they show no
    mix-up (a stack of the model's own kind, or a scene unlike the training data in another
    way) or the model file records no training medians to compare them with.

    Args:
        radar: the stack's radar facts (None: no VV and VH, nothing to note).
        trained: the model's backscatter (:func:`trained_backscatter`).
        ranges: the model's ``band_ranges`` (raw p1, p50, p99 of the training split).
    """
    if radar is None:
        return None
    shown = {b: _db(radar.median[b], radar.unit) for b in ("VV", "VH")}
    medians = training_medians(ranges, radar.unit)
    learned = (f"the model learned {trained.kind} ({trained.source})" if trained.kind else
               f"the model file does not record which backscatter it learned ({trained.source})")
    head = (f"Sentinel-1: {learned}; the stack's pixels cannot show whether it holds sigma0 or "
            f"terrain-flattened gamma0 (gamma0 is {MIX_UP_DB[0]}-{MIX_UP_DB[1]} dB brighter "
            "in VV and VH alike, less than real scenes differ); its medians are VV "
            f"{shown['VV']:.1f} dB, VH {shown['VH']:.1f} dB")
    if medians is None:
        return None
    shift = {b: shown[b] - medians[b] for b in ("VV", "VH")}
    if not likely_mix_up(shift, trained.kind):
        return None
    moved = (f"{head}, {shift['VV']:+.1f} and {shift['VH']:+.1f} dB from the training medians "
             f"(VV {medians['VV']:.1f}, VH {medians['VH']:.1f} dB): both shifted alike")
    if trained.kind is None:
        return (f"{moved}, as a sigma0/gamma0 mix-up shifts them: a mix-up is the likely "
                "cause (a scene unlike the training data can shift them so too)")
    other = "gamma0" if trained.kind == "sigma0" else "sigma0"
    return (f"{moved}, the way {other} differs from {trained.kind}: {other} given where "
            f"{trained.kind} is expected is the likely cause (a scene unlike the training data "
            f"can shift them so too); if so, give {trained.kind} ({trained.fix})")
