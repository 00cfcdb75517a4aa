"""A month's local inputs found and checked from their headers and pixel samples: no composite.

:func:`check_month_inputs` is everything :func:`gee_export.local.stack.plan_local_stack`
refuses before it digests the sources and the composite runs: the month's scenes on the grid
(level, bands, cloud masks), the Sentinel-2 offsets, reflectance and band names, the
Sentinel-1 units, the label's place on the grid and its codes. The dry run
(:mod:`gee_export.local.plan`) calls it too, so a month the real run refuses is a PROBLEM of
the plan, with the same message.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio

from contract import bands as band_registry
from contract.grid import Grid
from contract.input_check import judge_stack
from core.errors import EmptyCompositeError, InputDataError
from gee_export.local import plausibility, sentinel1, sentinel2
from gee_export.local.compositing import LocalRecipe, where
from gee_export.local.labels import ClassMapping, check_codes, check_labels_on_grid
from gee_export.local.scenes import BandRef, Scene, SceneCollection
from gee_export.local.warp import overlaps, source_resolution


@dataclass(frozen=True)
class MonthInputs:
    """The checked inputs of one month's stack (a :class:`~.stack.LocalStackPlan` holds it).

    Attributes:
        s2, s1: the month's scenes over the grid, of each sensor asked for.
        s2_bands, s1_bands: the source band names read from them.
        offsets: each Sentinel-2 product's BOA offset.
        reflectance: the (product, band) pairs stored as reflectance, not digital numbers.
        units: each Sentinel-1 (product, band)'s unit.
        label_ref, fine_ref: the label rasters of the grid and of the fine grid.
        notes: the input check's doubts accepted with ``allow_implausible`` (why), which
            the manifest records in the month's ``sources``.
    """

    s2: tuple[Scene, ...]
    s2_bands: tuple[str, ...]
    s1: tuple[Scene, ...]
    s1_bands: tuple[str, ...]
    offsets: dict[str, float]
    reflectance: frozenset[tuple[str, str]]
    units: dict[tuple[str, str], str]
    label_ref: BandRef | None
    fine_ref: BandRef | None
    notes: tuple[str, ...] = ()


def check_month_inputs(collection: SceneCollection, grid: Grid, month: str,
                       names: Sequence[str], recipe: LocalRecipe,
                       scheme: str | ClassMapping | dict[int, int],
                       label: str | Path | BandRef | None = None,
                       fine_scale: int | None = None, *, model_bands: bool = False,
                       labelled: bool = True) -> MonthInputs:
    """Find and check one month's scenes and label on ``grid`` (headers and samples only).

    Args:
        collection: the discovered scenes.
        grid: the stack's grid.
        month: ``YYYY-MM``.
        names: the stack's band names (resolved).
        recipe: how the scenes are read (level, offsets, units, band names).
        scheme: the label's scheme (a name, ``map:``, a mapping or a dict).
        label: the label raster; None: ``labels/label.tif`` among the scenes, if any.
        fine_scale: the fine label's scale, if one is written.
        model_bands: ``names`` are a model's (a map): a missing sensor's scenes must be
            added, as its bands cannot be dropped; otherwise (an export) dropping them is
            advised too.
        labelled: False: the stack's label is not wanted (``isamap-fit``'s points are its
            labels; a map predicts): no label is looked for, read, checked or warned of,
            unless ``names`` hold the product band, which is read from the label.

    Raises:
        EmptyCompositeError: no scene of the month on the grid.
        InputDataError: what the plausibility, level, band and label checks refuse.
    """
    specs = band_registry.resolve(names)
    s2_bands = tuple(s.source_name for s in specs if s.sensor == "S2")
    s1_bands = tuple(s.source_name for s in specs if s.sensor == "S1")
    need_s2 = bool(s2_bands) or "s2_clear_count" in names
    need_s1 = bool(s1_bands) or "s1_scene_count" in names
    s2 = _month_scenes(collection, month, grid, "S2", s2_bands, recipe) if need_s2 else ()
    s1 = (_month_scenes(collection, month, grid, "S1", s1_bands, recipe, model_bands)
          if need_s1 else ())
    offsets = {s.product: sentinel2.boa_offset(s, recipe.boa_add_offset) for s in s2}
    reflectance = frozenset((s.product, b) for s in s2 for b in s2_bands
                            if sentinel2.is_reflectance(s, b))
    units = {(s.product, b): sentinel1.scene_unit(s, b, recipe.s1_unit) for s in s1
             for b in s1_bands}
    wanted = labelled or band_registry.PRODUCT in names  # a product band is read from a label
    label_ref = _label_ref(label, collection, 1) if wanted else None
    fine_ref = (_fine_label_ref(label_ref, collection, fine_scale, grid)
                if fine_scale and labelled else None)
    check_labels_on_grid(label_ref, fine_ref, grid, fine_scale,
                         [sc.band(sc.band_names[0]) for sc in (*s2[:1], *s1[:1])])
    sentinel2.check_plausible(s2, s2_bands, offsets, reflectance)  # pixels over names/tags
    if recipe.s2_band_names is not None:  # names the user gave: do the pixels agree?
        reflectance_all = frozenset((s.product, b) for s in s2 for b in s.band_names
                                    if sentinel2.is_reflectance(s, b))
        sentinel2.check_band_names(s2, offsets, reflectance_all,
                                   bool(recipe.trust_band_names))
    notes = _judge_scenes(s2, s1, specs, offsets, reflectance, units,
                          bool(recipe.allow_implausible))
    if wanted:
        _check_label(label_ref, scheme, names)
    return MonthInputs(s2, s2_bands, s1, s1_bands, offsets, reflectance, units, label_ref,
                       fine_ref, notes)


def _judge_scenes(s2: Sequence[Scene], s1: Sequence[Scene],
                  specs: Sequence[band_registry.BandSpec], offsets: dict[str, float],
                  reflectance: frozenset[tuple[str, str]], units: dict[tuple[str, str], str],
                  allow_implausible: bool) -> tuple[str, ...]:
    """Each scene judged by the input check of every command (:func:`judge_stack`).

    One sample of the scene's bands, pixel for pixel, as the composite reads them
    (reflectance 0-1, sigma0 in dB): untagged fill, the physical rules (VV/VH swapped, the
    +0.1 offset left in, B2/B4 swapped ...); a doubt is refused unless ``allow_implausible``
    (``--allow-implausible``), then warned about and returned: the notes recorded beside the
    stack's scenes (the manifest's ``sources``, a fit's model file, a map's STAC items and run
    record).
    """
    notes: list[str] = []
    for scene, sensor in [*((sc, "S2") for sc in s2), *((sc, "S1") for sc in s1)]:
        wanted = [sp for sp in specs if sp.sensor == sensor and sp.source_name in scene.band_names]
        if not wanted:
            continue
        with rasterio.open(scene.band(wanted[0].source_name).path) as src:
            step = max(1, -(-max(src.width, src.height) // plausibility.SAMPLE_SIDE))
            shape = (max(1, src.height // step), max(1, src.width // step))
        samples = {}
        for sp in wanted:
            v = plausibility.read_sample(scene.band(sp.source_name), shape=shape)
            if sensor == "S2" and (scene.product, sp.source_name) not in reflectance:
                v = sentinel2.dn_to_reflectance(sentinel2.zero_is_nodata(v),
                                                offsets.get(scene.product, 0.0))
            elif sensor == "S1" and units.get((scene.product, sp.source_name)) == "linear":
                with np.errstate(divide="ignore", invalid="ignore"):
                    v = 10 * np.log10(np.where(v > 0, v, np.nan))
            samples[sp.name] = v
        notes += judge_stack(f"Sentinel-{sensor[1]} {scene.product}", samples,
                             allow_implausible=allow_implausible,
                             recorded_in="the record of the scenes read",
                             level=scene.level if sensor == "S2" else None)
    return tuple(notes)


def _usable(scenes: Sequence[Scene], band: str, grid: Grid, sensor: str) -> tuple[Scene, ...]:
    kept = []
    for scene in scenes:
        if overlaps(scene.band(band), grid):
            kept.append(scene)
        else:
            warnings.warn(f"{sensor} scene {scene.product} does not overlap the grid "
                          f"({grid.crs}, bounds {grid.bounds}); skipped. If it should, check "
                          "its CRS.", stacklevel=3)
    return tuple(kept)


def _label_ref(label: str | Path | BandRef | None, collection: SceneCollection,
               scale: int) -> BandRef | None:
    if isinstance(label, BandRef):
        return label
    if label is not None:
        path = Path(label)
        if not path.is_file():
            raise InputDataError(f"label raster {path} does not exist")
        return BandRef(path)
    found = collection.label(scale)
    return BandRef(found) if found else None


def _fine_label_ref(label_ref: BandRef | None, collection: SceneCollection, scale: int,
                    grid: Grid) -> BandRef | None:
    """The label the fine grid ``grid.scaled(scale)`` is read from; warned when no finer one.

    ``<label>_x<scale>.tif`` beside the label, else ``label_x<scale>.tif`` among the scenes;
    else, of every label at hand (the label, ``<label>_x<k>`` beside it, ``label_x<k>`` among
    the scenes), the coarsest that is still as fine as the fine grid, which
    :func:`~gee_export.local.labels.label_window` puts on it by its rule (mode from a finer
    source): a 1 m ``label_x10.tif`` serves ``--fine-scale 5``. A 1 m label given as the label
    serves both grids. Without one as fine as the fine grid the finest is nearest-upsampled,
    as the Earth Engine backend does with its 10 m products, and a warning says the fine label
    holds no detail finer than that source's pixels.
    """
    if label_ref is not None:
        sibling = label_ref.path.with_name(f"{label_ref.path.stem}_x{scale}{label_ref.path.suffix}")
        if sibling.is_file():
            return BandRef(sibling)
    found = collection.label(scale)
    if found:
        return BandRef(found)
    candidates = _labels_at_hand(label_ref, collection)
    if not candidates:
        return None
    fine_grid = grid.scaled(scale)
    sizes = {ref: source_resolution(ref, fine_grid) for ref in candidates}
    fine_enough = [ref for ref in candidates if sizes[ref] <= FINE_ENOUGH * fine_grid.resolution]
    if fine_enough:
        return max(fine_enough, key=lambda ref: sizes[ref])
    best = min(candidates, key=lambda ref: sizes[ref])
    size = sizes[best]
    detail = (f"no finer detail than the {grid.resolution:g} m label"
              if size >= grid.resolution / FINE_ENOUGH else f"no detail finer than {size:g} m")
    warnings.warn(
        f"no label as fine as the --fine-scale {scale} grid ({fine_grid.resolution:g} m): the "
        f"fine label is {best.path} ({size:g} m pixels) nearest-upsampled, so it holds "
        f"{detail}; for a real super-resolution target put a label of {fine_grid.resolution:g} m "
        f"or finer at labels/label_x{scale}.tif among the scenes (or <label>_x{scale}.tif "
        "beside the label)", stacklevel=3)
    return best


#: a source whose pixels are at most this times the fine grid's counts as fine enough for it
FINE_ENOUGH = 1.01


def _labels_at_hand(label_ref: BandRef | None, collection: SceneCollection) -> list[BandRef]:
    """The label, ``<label>_x<k>`` beside it and ``label_x<k>`` among the scenes, once each."""
    paths = [*collection.labels]
    if label_ref is not None:
        stem, suffix = label_ref.path.stem, label_ref.path.suffix
        paths += sorted(label_ref.path.parent.glob(f"{stem}_x*{suffix}"))
    scaled = [p for p in paths if re.search(r"_x\d+$", p.stem)]
    refs = [BandRef(p) for p in dict.fromkeys(scaled)]
    if label_ref is not None and label_ref not in refs:
        refs.append(label_ref)
    return refs


def _month_scenes(collection: SceneCollection, month: str, grid: Grid, sensor: str,
                  bands: Sequence[str], recipe: LocalRecipe,
                  model_bands: bool = False) -> tuple[Scene, ...]:
    """The month's scenes of ``sensor`` (``S2``, ``S1``) over the grid, each checked.

    Every scene must hold the bands asked for; a Sentinel-2 scene is also checked for its
    level, and warned about without a cloud mask. ``model_bands``: a missing Sentinel-1 is
    advised as a model's bands (its scenes must be added), not as bands to drop.
    """
    optical = sensor == "S2"
    name = "Sentinel-2" if optical else "Sentinel-1"
    monthly = collection.in_month(month).s2 if optical else collection.in_month(month).s1
    if not monthly:
        shown = "/".join(bands) or "VV/VH"
        advice = ("add scenes or pick another month" if optical else
                  f"add Sentinel-1 scenes of {month} to --scenes: the model reads {shown}"
                  if model_bands else f"add scenes or drop {shown}")
        found = len(collection.s2 if optical else collection.s1)
        raise EmptyCompositeError(
            f"no {name} scene acquired in {month} for {where(grid)} (found "
            f"{found} in other months); {advice}")
    for scene in monthly:
        if optical:
            sentinel2.check_level(scene, recipe.allow_l1c)
        for band in bands:
            scene.band(band)
        if optical and not (scene.has("SCL") or scene.has("CLOUD_MASK")):
            warnings.warn(f"{scene.product} has neither SCL nor a cloud mask: all its "
                          "pixels count as clear", stacklevel=3)
    first = bands[0] if bands else (monthly[0].band_names[0] if optical else "VV")
    kept = _usable(monthly, first, grid, name)
    if not kept:
        raise EmptyCompositeError(f"no {name} scene of {month} overlaps {where(grid)}; "
                                  "check the scenes' CRS and the region")
    return kept


def _check_label(label_ref: BandRef | None, scheme: str | ClassMapping | dict[int, int],
                 names: Sequence[str]) -> None:
    """The label raster's codes against its scheme; a product band needs one; none: warned.

    A label raster of several bands (SEN12MS's land cover holds four schemes) is read at its
    band ``label_ref.index`` (the first); a warning names it and how to read another.
    """
    if label_ref is not None:
        with rasterio.open(label_ref.path) as src:
            count = src.count
        if count > 1:
            path = label_ref.path
            aside = path.with_name(f"{path.stem}_bandN{path.suffix}")
            warnings.warn(f"label {path} has {count} bands: band {label_ref.index} is read as "
                          f"the label; to read band N, save it aside (gdal_translate -b N "
                          f"{path} {aside}), move {path} out of --scenes and put {aside} in "
                          f"its place ({path})", stacklevel=3)
        check_codes(label_ref, scheme)
        return
    if band_registry.PRODUCT in names:
        raise InputDataError(f"the {band_registry.PRODUCT!r} band is read from the label raster, "
                             "and none was given or found (labels/label.tif among the scenes)")
    warnings.warn("no label raster given or found: the label file is all nodata "
                  f"({band_registry.LABEL_NODATA}), usable for inference only", stacklevel=3)
