"""Is an input what its name and tags say it is? Judged from a bounded sample of its pixels.

File names, product names and tags are written by people and tools that make mistakes: a
Level-1C product renamed ``MSIL2A``, a linear-power raster tagged ``SIGMA0_UNIT=dB``, a
WorldCover label given to a binary-label recipe. Each of these composites "successfully" into
a wrong dataset, so before any block is computed the local backend checks what the pixels
show against what the metadata claims, and trusts the pixels:

The value rules themselves (what dB, linear power and reflectance look like) belong to the data
contract (:mod:`contract.band_values`), which inference applies to its stacks too;
this module applies them to source scenes against their names and tags:

- Sentinel-1 unit: sigma0 in linear power is never negative and has a scene median far below
  1 (about 0.01-0.3); in dB the median is negative (about -25 to -5). Values that fit neither
  (all positive, median above 1) are uncalibrated digital numbers or amplitudes.
- Sentinel-2 level: B10 (cirrus) exists only in Level-1C products, so a product that names or
  tags itself L2A but carries B10 is Level-1C.
- Sentinel-2 reflectance: after DN scaling (and the BOA offset), surface reflectance has a
  median between 0 and 1 and hardly anything above 2; a negative median means the offset was
  applied to data that had it removed already, a median above 1 a different scaling.
- Label codes: every code in the label must be one the declared scheme knows (255 and
  negative values are nodata).

The checks read one decimated overview of a band (:func:`read_sample`, at most
``SAMPLE_SIDE`` x ``SAMPLE_SIDE`` pixels, GDAL picks overviews when the file has them), so a
full 10,980 px tile costs as little as a patch. The judgements themselves are pure functions
of arrays. A contradiction is refused with the reason and the command-line fix; a tag that
the pixels contradict is overridden with a warning (the pixels win).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Protocol

import numpy as np
import rasterio

from contract.band_values import (
    REFLECTANCE_MEDIAN_RANGE,
    reflectance_scaled,
    s1_unit_evidence,
    s2_band_name_problem,
)
from core.errors import InputDataError

log = logging.getLogger(__name__)

SAMPLE_SIDE = 256
LABEL_NODATA_CODES = (255,)
_UNIT_WORDS = {"linear": "linear power", "dB": "in dB"}


class BandSource(Protocol):
    """Where one band lives (``scenes.BandRef``; scenes imports this module, not the reverse)."""

    @property
    def path(self) -> Path: ...

    @property
    def index(self) -> int: ...


def read_sample(ref: BandSource, shape: tuple[int, int] | None = None) -> np.ndarray:
    """A decimated read of one band as float32, nodata as NaN (at most ``SAMPLE_SIDE``² pixels).

    ``shape``: read at this shape instead (the bands of one product at one shape, pixel for
    pixel, whatever their resolution).
    """
    with rasterio.open(ref.path) as src:
        step = max(1, -(-max(src.width, src.height) // SAMPLE_SIDE))
        shape = shape or (max(1, src.height // step), max(1, src.width // step))
        sample = src.read(ref.index, out_shape=shape).astype(np.float32)
        nodata = src.nodatavals[ref.index - 1]
    if nodata is not None and not np.isnan(nodata):
        sample[sample == np.float32(nodata)] = np.nan
    return sample


# ---------------------------------------------------------------------- Sentinel-1
def check_s1_unit(values: np.ndarray, what: str, *, stated: str | None = None,
                  tagged: str | None = None) -> str:
    """The unit to read a sigma0 band in: the pixels' unless they cannot tell.

    Args:
        values: a sample of the band (NaN = nodata).
        what: the band in words (product and polarisation), for messages.
        stated: the unit the user gave (``--s1-unit``); a contradiction is refused.
        tagged: the unit the file's ``SIGMA0_UNIT`` tag gives; a contradiction is warned
            about and the pixels' unit is used.

    Raises:
        InputDataError: uncalibrated values, a stated unit the values contradict, or no
            finite value and no unit given.
    """
    shown = s1_unit_evidence(values)
    if shown.unit == "uncalibrated":
        raise InputDataError(
            f"{what}: the values ({shown.describe()}) are neither sigma0 in linear power "
            "(median ~0.01-0.3) nor in dB (median ~-25 to -5); they look like uncalibrated "
            "digital numbers or amplitude. Calibrate the GRD product to sigma0 first (for "
            "example with ESA SNAP), then export it again")
    if stated is not None:
        if shown.unit is not None and shown.unit != stated:
            raise InputDataError(
                f"{what}: --s1-unit {stated} contradicts the values ({shown.describe()}), which "
                f"are {shown.unit}; drop --s1-unit to use the values' unit, or check the file")
        return stated
    if tagged is not None:
        if shown.unit is not None and shown.unit != tagged:
            log.warning("%s is tagged SIGMA0_UNIT=%s but its values (%s) are %s; reading it "
                        "as %s. Fix the tag with: rio edit-info --tag SIGMA0_UNIT=%s FILE",
                        what, tagged, shown.describe(), _UNIT_WORDS[shown.unit], shown.unit,
                        shown.unit)
            return shown.unit
        return tagged
    if shown.unit is None:
        if np.isnan(shown.median):
            raise InputDataError(
                f"{what}: cannot tell linear from dB, the band has no finite value; state the "
                "unit with --s1-unit linear|dB (or the SIGMA0_UNIT tag)")
        return "dB" if shown.median < 0 else "linear"
    return shown.unit


# ---------------------------------------------------------------------- Sentinel-2
def s2_level_from_bands(claimed: str | None, bands: Iterable[str]) -> tuple[str | None, str]:
    """The product level the band set shows, and why when it overrides ``claimed``.

    B10 (cirrus, 1375 nm) is delivered only in Level-1C products; Sen2Cor drops it from L2A.
    """
    if "B10" in set(bands):
        reason = ("" if claimed in (None, "L1C") else
                  "its name or tags say L2A but its band set includes B10 (cirrus), which "
                  "only Level-1C products carry")
        return "L1C", reason
    return claimed, ""


def check_reflectance(values: np.ndarray, what: str) -> None:
    """Refuse a sample that cannot be surface reflectance (wrong offset or scaling).

    Args:
        values: a sample of one band converted to reflectance (NaN = nodata).
        what: the band in words, for messages.
    """
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if finite.size < 16:
        return  # too little to judge; an empty month is reported by the composite
    median = float(np.median(finite))
    p99 = float(np.percentile(finite, 99))
    if median < REFLECTANCE_MEDIAN_RANGE[0]:
        raise InputDataError(
            f"{what}: reflectance median {median:.3f} is negative, so the BOA offset (-1000) "
            "was subtracted from values that no longer carry it (harmonized or reprocessed "
            "data). Pass --boa-add-offset 0, or set the files' tag with: rio edit-info --tag "
            "BOA_ADD_OFFSET=0 FILE")
    if reflectance_scaled(median, p99):
        raise InputDataError(
            f"{what}: values do not scale to reflectance (median {median:.3g}, 99th "
            f"percentile {p99:.3g} after scaling; surface reflectance is 0-1). Give DN = "
            "reflectance x 10000 (uint16, as ESA delivers L2A) or float reflectance 0-1")


# ---------------------------------------------------------------------- labels
def label_codes(values: np.ndarray) -> np.ndarray:
    """The distinct valid codes of a label sample (NaN, negatives and 255 are nodata)."""
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite) & (finite >= 0)]
    codes = np.unique(finite)
    return codes[~np.isin(codes, LABEL_NODATA_CODES)]


def check_label_codes(values: np.ndarray, scheme: str,
                      known: Mapping[str, frozenset[int]], what: str, *,
                      impervious: Mapping[str, frozenset[int]]) -> None:
    """Refuse a label whose codes the declared scheme does not know; say how to state them.

    The advice is ``--label-map`` naming the codes seen; a scheme that fits is named only as
    the label's possible product, since codes within its set do not make the label its (MODIS
    IGBP 8, woody savanna, read as eo-learn's artificial surface). A scheme fits when it
    knows every code of the label and reads at least one of them as impervious: one that
    knows the codes but finds no impervious pixel in them (Dynamic World's training labels,
    built = 7, read as eo-learn's classes, artificial = 8) would make a dataset without a
    single positive, so it is never named.

    Args:
        values: a sample of the label raster.
        scheme: the declared scheme's name.
        known: scheme name -> the codes it defines (nodata excluded).
        what: the label in words, for messages.
        impervious: scheme name -> the codes it reads as impervious (a scheme not listed
            reads none).
    """
    codes = label_codes(values)
    if scheme not in known or not codes.size:
        return
    foreign = [c for c in codes if c != int(c) or int(c) not in known[scheme]]
    if not foreign:
        return
    shown = ", ".join(f"{c:g}" for c in codes[:12]) + (", ..." if codes.size > 12 else "")
    covers = [name for name, allowed in known.items() if name != scheme
              and all(c == int(c) and int(c) in allowed for c in codes)]
    fits = [name for name in covers
            if any(int(c) in impervious.get(name, frozenset()) for c in codes)]
    if fits:  # codes within a scheme's set say nothing of what they mean (IGBP 8 is no
        # eo-learn artificial surface): the codes are stated first, the scheme only if it is it
        stated = ",".join(f"{int(c)}=C" for c in codes[:12])
        fix = (f"state what each code means with --label-map {stated} (C: 1 impervious, 0 "
               "pervious, 255 ignored; '*=C' for every other code); only if the label holds "
               f"{fits[0]!r} classes pass --label-scheme {fits[0]} (its codes include these, "
               "which alone does not tell products apart)")
    elif covers:
        fix = (f"the {covers[0]!r} scheme knows these codes but reads none of them as "
               "impervious, so no scheme fits: state what the codes mean with --label-map "
               "CODE=CLASS,... (1 impervious, 0 pervious, 255 ignored; Dynamic World training "
               "labels: 7=1,0=255,10=255,*=0)")
    else:
        fix = ("map it to 0 pervious / 1 impervious / 255 nodata, or pass the --label-scheme "
               f"it uses ({', '.join(known)})")
    raise InputDataError(
        f"{what} has codes {shown}, and {', '.join(f'{c:g}' for c in foreign[:5])} "
        f"{'is' if len(foreign) == 1 else 'are'} not in the {scheme!r} label scheme; {fix}")


IGNORED_MAX_SHARE = 0.99  # a scheme that ignores more of a label than this was not made for it


def check_label_balance(values: np.ndarray, apply: Callable[[np.ndarray], np.ndarray],
                        scheme: str, binary_codes: frozenset[int] | None, what: str) -> None:
    """Refuse a label whose classes the declared scheme turns into nonsense.

    Args:
        values: a sample of the label raster.
        apply: the scheme's mapping (source codes -> classes, 255 ignored).
        scheme: the declared scheme's name.
        binary_codes: the binary scheme's codes; a label holding only these (both) is a
            binary label, refused under another scheme (None: do not test, e.g. for a
            ``--label-map`` the user wrote for this label).
        what: the label in words, for messages.
    """
    codes = label_codes(values)
    if not codes.size:
        return
    if (binary_codes is not None and scheme != "binary" and codes.size == len(binary_codes)
            and set(codes.astype(int).tolist()) == set(binary_codes)):
        read_as = ", ".join(f"{int(c)} as class {int(apply(np.array([int(c)]))[0])}"
                            for c in codes)
        raise InputDataError(
            f"{what} holds only the codes 0 and 1, as a binary impervious label does, but "
            f"--labels/--label-scheme {scheme} would read {read_as} (255 = ignored); pass "
            "--label-scheme binary, or --label-map CODE=CLASS,... to say what the codes mean")
    finite = np.asarray(values, dtype=np.float64)
    coded = finite[np.isfinite(finite) & (finite >= 0) & ~np.isin(finite, LABEL_NODATA_CODES)]
    ignored = float((apply(coded.astype(np.int64)) == LABEL_NODATA_CODES[0]).mean())
    if ignored > IGNORED_MAX_SHARE:
        raise InputDataError(
            f"{what}: the {scheme!r} label scheme ignores {100 * ignored:.1f} % of its coded "
            f"pixels (codes {', '.join(f'{c:g}' for c in codes[:12])}); it was not made for "
            "this label. Pass the scheme the label uses, or --label-map CODE=CLASS,...")


# ---------------------------------------------------------------------- S2 band names
def check_s2_band_names(samples: Mapping[str, np.ndarray], what: str) -> None:
    """Refuse Sentinel-2 band names the reflectances contradict.

    The rules are the data contract's (:func:`contract.band_values.s2_band_name_problem`,
    which ``isamap-import-patches`` applies to its images too); this adds the export's fix.

    Args:
        samples: band name (``B2``, ``B8A``...) -> reflectance sample, all the same shape.
        what: the file in words, for messages.
    """
    problem = s2_band_name_problem(samples)
    if problem:
        raise InputDataError(
            f"{what}: {problem}; the band names do not fit the pixels. Check the order given "
            "with --s2-band-names (ESA's L2A order: B1,B2,B3,B4,B5,B6,B7,B8,B8A,B9,B11,B12); "
            "if it is right (a scene unlike most), pass --trust-band-names")
