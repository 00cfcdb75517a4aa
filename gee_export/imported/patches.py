"""Image/mask patch pairs from another project, imported into a patch dataset of the contract.

A folder of georeferenced GeoTIFF pairs (``images/<name>.tif`` with ``masks/<name>.tif`` or
``labels/<name>.tif``, or ``<name>.tif`` beside ``<name>_mask.tif`` / ``<name>_label.tif``)
becomes one month of a dataset (docs/data-contract.md) that ``isamap-train`` reads like an
export: the patches must share one CRS, pixel size and patch size, and lie on one lattice of
whole patches (as tiles cut from scenes do); the lattice is the dataset's grid, each pair its
patch at ``(row, col)``, the split spatially blocked as every dataset's. Written through the
contract's one writer (:func:`contract.patch_writer.open_month`): atomic, resumable,
refused where the folder holds a dataset of other parameters.

Pixels are checked, not names: the image bands' values must be what their names say
(:func:`contract.band_values.band_value_problems`; ``scale`` multiplies the reflectance bands
only, never Sentinel-1 dB; ``s1_unit`` "linear" makes VV/VH dB, :mod:`contract.sigma0`), every
mask value must be declared impervious, pervious or ignored, and
Level-1C (top-of-atmosphere) pixels are refused unless ``allow_l1c``, as the export refuses
Level-1C scenes (:func:`contract.s2_level.check_import_level`). The pairs are found by
:func:`gee_export.imported.pairs.find_pairs`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio

from contract.band_values import (
    DB_MEDIAN_MIN,
    band_value_problems,
    finite_values,
    pooled_s2_band_name_problem,
    reflectance_too_small,
)
from contract.bands import LABEL_NODATA, check_series_bands, find_band, own_month
from contract.dataset import DatasetSpec, read_manifest
from contract.grid import Grid, patch_id
from contract.input_check import Fingerprint, judge_stack, refuse_fill
from contract.patch_writer import MonthProgress, open_month, valid_mask
from contract.s2_level import check_import_level, s2_level_of
from contract.sigma0 import S1Unit, check_s1_unit, linear_advice, samples_in_db, to_db
from contract.splits import split_advice, split_counts
from core.digest import combined_digest, file_sha256
from core.errors import InputDataError
from core.lock import hold_output
from core.progress import progress_bar
from core.storage import files, open_store
from gee_export.imported.pairs import (
    PatchPair,
    band_names_of,
    check_metres,
    find_pairs,
    read_header,
)

log = logging.getLogger(__name__)

IMPORT_BLOCK = 4  # split blocks of 4 x 4 patches: imported patches are large, the areas small
_EDGE = 1e-6  # fraction of a pixel two edges may differ by and still be one


@dataclass(frozen=True)
class ImportOptions:
    """How a foreign patch folder is read.

    Attributes:
        month: ``YYYY-MM`` the patches show (the dataset's month).
        bands: the images' band names in file order (None: their band descriptions).
        impervious: mask values that are impervious (label 1).
        pervious: mask values that are pervious (label 0).
        ignore: mask values that are no label (255).
        scale: the reflectance bands' values are multiplied by it (1e-4: reflectance x 10000
            exports); other bands of the registry (Sentinel-1 dB) are read as they are
            (:func:`scaled_band`).
        ratios / seed / block: the spatially blocked split (``block``: ``--split-block``).
        min_valid_fraction: patches with fewer valid pixels are not imported.
        trust_band_names: the band-order rules are not applied (``--trust-band-names``).
        allow_l1c: Level-1C (top-of-atmosphere) patches are imported with a warning, the
            recipe recording ``allow_l1c`` as the export's does (``--allow-l1c``).
        s1_unit: ``"linear"``: VV/VH are linear power, made dB as read (``--s1-unit``).
        allow_implausible: import what the input check doubts, noted in the recipe.
    """

    month: str
    bands: tuple[str, ...] | None = None
    impervious: tuple[int, ...] = (1,)
    pervious: tuple[int, ...] = (0,)
    ignore: tuple[int, ...] = ()
    scale: float = 1.0
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 0
    block: int = IMPORT_BLOCK
    min_valid_fraction: float = 0.9
    region: str | None = None
    trust_band_names: bool = False
    allow_l1c: bool = False
    allow_implausible: bool = False
    s1_unit: S1Unit = "dB"
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        sets = {"--impervious-values": self.impervious, "--pervious-values": self.pervious,
                "--ignore-values": self.ignore}
        seen: dict[int, str] = {}
        for flag, values in sets.items():
            for v in values:
                if v in seen:
                    raise InputDataError(f"mask value {v} is in {seen[v]} and {flag}; give "
                                         "each value one meaning")
                seen[v] = flag
        if not self.scale > 0:
            raise InputDataError(f"--scale must be > 0, got {self.scale}")


@dataclass(frozen=True)
class ImportPlan:
    """Where every pair goes: the dataset's grid and each pair's patch position."""

    grid: Grid
    bands: tuple[str, ...]
    positions: dict[tuple[int, int], PatchPair]


def plan_import(pairs: Sequence[PatchPair], bands: Sequence[str] | None = None) -> ImportPlan:
    """Check the pairs' georeferencing and put them on one grid (headers only, no pixels).

    Raises:
        InputDataError: what keeps the pairs from being one dataset, naming the pair.
    """
    first = read_header(pairs[0].image)
    names = band_names_of(pairs[0], first, bands)
    check_series_bands(names, f"{pairs[0].image.name}'s bands",
                       add="import the month before ({}) too")
    size, res = first["width"], first["transform"].a
    if first["height"] != size or abs(first["transform"].e) != res or first["crs"] is None:
        raise InputDataError(f"{pairs[0].image} is {first['width']} x {first['height']} px of "
                             f"{first['transform'].a:g} x {abs(first['transform'].e):g} in "
                             f"{first['crs']}: patches must be square, north-up, with square "
                             "pixels and a CRS")
    check_metres(pairs[0].image, first)
    lefts, tops = [], []
    for pair in pairs:
        head, mask = read_header(pair.image), read_header(pair.mask)
        if (mask["width"], mask["height"]) != (head["width"], head["height"]) or \
                not mask["transform"].almost_equals(head["transform"]):
            raise InputDataError(f"the mask {pair.mask.name} is not on the grid of its image "
                                 f"{pair.image.name}")
        if head["crs"] != first["crs"] or head["transform"].a != res or \
                head["width"] != size or head["height"] != size or head["count"] != len(names):
            raise InputDataError(
                f"{pair.image.name} differs from {pairs[0].image.name} in CRS, pixel size, "
                f"patch size or band count; import each kind of patch into its own dataset")
        lefts.append(head["transform"].c)
        tops.append(head["transform"].f)
    x0, y0 = min(lefts), max(tops)
    positions: dict[tuple[int, int], PatchPair] = {}
    for pair, left, top in zip(pairs, lefts, tops, strict=True):
        col, row = (left - x0) / (res * size), (y0 - top) / (res * size)
        if abs(col - round(col)) * size > _EDGE or abs(row - round(row)) * size > _EDGE:
            raise InputDataError(f"{pair.image.name} is not on the lattice of whole "
                                 f"{size}-px patches the others lie on; patches cut from one "
                                 "scene without overlap import as they are")
        key = (round(row), round(col))
        if key in positions:
            raise InputDataError(f"{pair.image.name} and {positions[key].image.name} cover "
                                 "the same ground; keep one of them")
        positions[key] = pair
    rows, cols = max(r for r, _ in positions) + 1, max(c for _, c in positions) + 1
    grid = Grid(str(first["crs"]), x0, y0, cols * size, rows * size, res, patch_size=size,
                stride=size)
    return ImportPlan(grid, names, positions)


def label_of(mask: np.ndarray, options: ImportOptions, name: str) -> np.ndarray:
    """The contract's label (0, 1, 255) of a mask, every value accounted for.

    Raises:
        InputDataError: a value the options do not name.
    """
    label = np.full(mask.shape, LABEL_NODATA, dtype=np.uint8)
    known = np.zeros(mask.shape, dtype=bool)
    for values, code in ((options.impervious, 1), (options.pervious, 0),
                         (options.ignore, LABEL_NODATA)):
        hit = np.isin(mask, values)
        label[hit], known = code, known | hit
    if not known.all():
        odd = np.unique(mask[~known])[:5].tolist()
        raise InputDataError(f"the mask of {name} holds {odd}, which is neither impervious "
                             f"{list(options.impervious)}, pervious {list(options.pervious)} "
                             f"nor ignored {list(options.ignore)}; say which with "
                             "--impervious-values, --pervious-values or --ignore-values")
    return label


def check_values(plan: ImportPlan, options: ImportOptions, samples: int = 16,
                 fingerprint: Fingerprint | None = None) -> tuple[str, ...]:
    """Refuse image values that are not what the band names say, or an unnamed mask value.

    Called before any write. Up to ``samples`` images spread over the source are read,
    scaled by ``options.scale``; every mask is read. Untagged fill first, the doubts of the
    input check of every door (:func:`contract.input_check.judge_stack`, against
    ``fingerprint``: the one the dataset imported into records) last; returns those
    accepted with ``options.allow_implausible``, for the manifest.
    """
    pairs = list(plan.positions.values())
    chosen = [pairs[i] for i in np.linspace(0, len(pairs) - 1, min(samples, len(pairs)),
                                            dtype=int)]
    values: dict[str, list[np.ndarray]] = {b: [] for b in plan.bands}
    for pair in chosen:
        image = _image(pair, options, plan.bands, convert=False)
        for band, array in zip(plan.bands, image, strict=True):
            values[band].append(array.ravel())
    stored = {b: np.concatenate(v) for b, v in values.items()}
    refuse_fill("the images", np.stack(list(stored.values())), plan.bands)
    check_s1_unit(stored, options.s1_unit)  # judged as stored, the rest as the patches hold
    sampled = samples_in_db(stored, options.s1_unit)
    problems = band_value_problems(sampled)
    if problems:
        raise InputDataError(f"the images' values do not match their band names: "
                             f"{problems[0]}; {_value_fix(sampled, options)}")
    order = None if options.trust_band_names else pooled_s2_band_name_problem(sampled)
    if order:  # the export's band-order rules
        raise InputDataError(f"the images' values do not match their band names: {order}; "
                             f"{_bands_fix(options)}, or pass --trust-band-names if they "
                             "are right")
    with rasterio.open(chosen[0].image) as ds:  # the level, as every stack's is judged
        stated = s2_level_of(ds.tags(), plan.bands)
    check_import_level(sampled, stated, options.allow_l1c)
    for pair in pairs:  # every mask value accounted for (masks are small: all of them)
        with rasterio.open(pair.mask) as ds:
            label_of(ds.read(1), options, pair.name)
    what = "the images" + (" (against the fingerprint the dataset's manifest records)"
                           if fingerprint else "")
    return judge_stack(what, sampled, fingerprint=fingerprint,
                       allow_implausible=options.allow_implausible,
                       recorded_in="the dataset's manifest",
                       level="L1C" if options.allow_l1c else None,
                       names_trusted=options.trust_band_names)


def _bands_fix(options: ImportOptions) -> str:
    """Advice to give the bands in file order, never repeating the names already given."""
    if options.bands:
        return (f"give the images' bands in file order (gdalinfo lists them): --bands "
                f"{','.join(options.bands)} does not match their values")
    return ("give the images' bands in file order with --bands (gdalinfo lists them): their "
            "band descriptions do not match their values")


def _value_fix(samples: Mapping[str, np.ndarray], options: ImportOptions) -> str:
    """What to change when the scaled samples do not match their band names.

    Sentinel-1 bands of linear power: ``--s1-unit linear``; of dB x 100: divide them by 100 in
    the files (``--scale`` never multiplies dB), with the advice for the other bands. Else the
    samples are tried unscaled and at 0.0001 with the same rules; the first scale other than
    ``options.scale`` they pass at is the advice. Values that pass at none: far below
    reflectance, another scale; else the band order (``--bands``), and ``--scale 0.0001`` only
    where no scale was given.
    """
    if linear := linear_advice(samples):
        return linear
    hundred = [b for b, v in samples.items() if (spec := find_band(b)) is not None and
               spec.unit == "dB" and (f := finite_values(v)).size and
               np.median(f) < DB_MEDIAN_MIN]
    if hundred:  # --scale leaves dB as it is: one meaning, whatever the values
        fix = (f"{', '.join(hundred)} look like dB x 100 (an integer export): divide them by "
               "100 in the files (--scale multiplies reflectance only)")
        rest = {b: v for b, v in samples.items() if b not in hundred}
        return fix + (f"; {_value_fix(rest, options)}" if band_value_problems(rest) else "")
    scale = options.scale
    for right, text in ((1.0, f"the images hold reflectance 0-1 already: drop --scale {scale:g}"),
                        (1e-4, f"the images hold reflectance x 10000: give --scale 0.0001, not "
                               f"{scale:g}")):
        if right != scale and \
                not band_value_problems({b: v * (right / scale) if scaled_band(b) else v
                                        for b, v in samples.items()}):
            return text
    if any((spec := find_band(b)) is not None and spec.unit == "reflectance" and
           reflectance_too_small(finite_values(v)) for b, v in samples.items()):
        return (f"give the --scale that turns the images' values into reflectance 0-1 (not "
                f"{scale:g}), or the right --bands")
    return _bands_fix(options) + (", or --scale 0.0001 for reflectance x 10000"
                                  if scale == 1.0 else "")


def scaled_band(name: str) -> bool:
    """Whether ``--scale`` multiplies band ``name``: reflectance, and names no band has.

    Sentinel-1 dB, counts and embeddings are never scaled: 0.0001 meant for reflectance x 10000
    turned VV medians of -10.8 dB into -0.00108.
    """
    spec = find_band(name)
    return spec is None or spec.unit == "reflectance"


def _image(pair: PatchPair, options: ImportOptions, bands: Sequence[str], convert: bool = True,
           ) -> np.ndarray:
    with rasterio.open(pair.image) as ds:
        image: np.ndarray = ds.read(out_dtype="float32")
        nodata = ds.nodata
    if nodata is not None and not np.isnan(nodata):
        image[image == nodata] = np.nan
    if options.scale != 1.0:
        image[[scaled_band(b) for b in bands]] *= np.float32(options.scale)
    return to_db(image, bands, options.s1_unit) if convert else image


def _write_patches(plan: ImportPlan, options: ImportOptions, state: MonthProgress,
                   progress: bool) -> int:
    """Write the patches still to do; how many. A month of none is refused, uncommitted."""
    bar = progress_bar(total=len(plan.positions), desc=f"import {options.month}",
                       unit="patch", disable=not progress)
    written, finite = 0, np.zeros(len(plan.bands), np.int64)
    for (row, col), pair in sorted(plan.positions.items()):
        bar.update(1)
        pid = patch_id(row, col)
        if (row, col) not in state.splits or pid in state.records or pid in state.invalid:
            continue
        image = _image(pair, options, plan.bands)
        finite += np.isfinite(image).sum(axis=(1, 2))
        with rasterio.open(pair.mask) as ds:
            label = label_of(ds.read(1), options, pair.name)
        if valid_mask(image, label, plan.bands).mean() < options.min_valid_fraction:
            state.mark_invalid(row, col)
            continue
        state.add(state.writer.write(row, col, image, label))
        written += 1
    bar.close()
    if not state.records:  # a month of nothing is no finished month (as the export's)
        empty = [plan.bands[i] for i in own_month(plan.bands) if finite[i] == 0]  # as valid
        why = (f"{', '.join(empty)} holds no finite value in any image (NaN or nodata): "
               "give images whose every band is observed" if empty else
               "check that the images' bands and the masks cover the patches (ignored mask "
               "values are no label), or lower --min-valid-fraction")
        raise InputDataError(
            f"no patch of {state.sources['source']} has {options.min_valid_fraction:.0%} "
            f"valid pixels (every band finite, the label not ignored): all "
            f"{len(state.invalid)} were left out, so nothing was written and "
            f"{options.month} is not tagged complete; {why}")
    return written


def import_patches(src: str | os.PathLike[str], out: str | os.PathLike[str],
                   options: ImportOptions, *, progress: bool = True) -> dict[str, Any]:
    """Import the pairs of ``src`` as month ``options.month`` of the dataset at ``out``.

    Everything is checked before the first patch is written: the pairs, their grid, the
    images' values and the dataset's parameters. A second run with the same source writes
    nothing; another source for the same month is refused (its fingerprint differs). A split
    left without patches is warned about with the block side that gives each split some
    (:func:`contract.splits.split_advice`), as ``isamap-export`` warns.

    Returns:
        ``{"patches", "written", "invalid", "per_split", "grid"}``; ``per_split`` names
        every split, an empty one with 0.
    """
    pairs = find_pairs(src)
    plan = plan_import(pairs, options.bands)
    recorded = read_manifest(out, missing_ok=True).get("pixel_fingerprint")  # a later month's
    notes = check_values(plan, options, fingerprint=Fingerprint.from_dict(recorded))
    recipe = {"imported": {"impervious": list(options.impervious),
                           "pervious": list(options.pervious),
                           "ignore": list(options.ignore), "scale": options.scale,
                           **({"s1_unit": "linear"} if options.s1_unit == "linear" else {}),
                           **options.extra},
              # as the export's recipe records it; only where given, so earlier imports
              # keep their recipe
              **({"allow_l1c": True} if options.allow_l1c else {})}
    spec = DatasetSpec(grid=plan.grid, bands=plan.bands, ratios=options.ratios,
                       seed=options.seed, block=options.block,
                       min_valid_fraction=options.min_valid_fraction, backend="imported",
                       region=options.region or Path(src).name, recipe=recipe)
    digest = combined_digest(f"{p.name}:{file_sha256(p.image)}:{file_sha256(p.mask)}"
                             for p in pairs)
    store = open_store(out)
    written = 0
    with files.unmade_if_refused(out), hold_output(store):  # a refusal leaves no folder
        state = open_month(store, spec, options.month,
                           sources={"source": Path(src).name, "pairs": len(pairs),
                                    "fingerprint": digest,  # why doubts were taken, as
                                    **({"input_notes": list(notes)} if notes else {})})
        if not state.up_to_date:
            written = _write_patches(plan, options, state, progress)
            state.commit(complete=True)
    records = list(state.records.values())
    splits = split_counts(r["split"] for r in records)
    advice = split_advice(plan.grid, splits, options.ratios, options.seed, options.block,
                          counted=[(r["row"], r["col"]) for r in records],
                          larger="(import more patches of the area)")
    if advice:  # as isamap-export warns: isamap-train needs val, isamap-evaluate test
        log.warning("%s", advice)
    return {"patches": len(state.records), "written": written, "invalid": len(state.invalid),
            "per_split": splits, "grid": plan.grid.to_dict()}
