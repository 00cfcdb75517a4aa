"""The local backend's entry point: local scenes -> the monthly stack GeoTIFFs on a Grid.

``build_local_stack`` runs the same monthly recipe as the Earth Engine backend, in numpy, over
blocks of the grid (each block read with the halo its filters need), so a full 10,980 x 10,980
Sentinel-2 tile is processed in bounded memory; outputs are written window by window into
temporary files and moved into place only when complete. Re-running with the same inputs and
recipe finds the finished files (their ``ISAMAP_RECIPE`` tag matches) and does nothing.

Output (``docs/data-contract.md``, "Stack"): ``<out_dir>/stack_<month>_image.tif`` (float32,
one band per name in ``bands``, NaN nodata, band descriptions = names),
``stack_<month>_label.tif`` (uint8, 255 nodata) and optionally ``stack_<month>_label_x<k>.tif``
on ``grid.scaled(k)``. They are returned as a :class:`gee_export.contract.patches.StackPaths`.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.errors import RasterioError
from tqdm.auto import tqdm

from gee_export.contract import bands as band_registry
from gee_export.contract.grid import Grid, Window
from gee_export.contract.patches import StackPaths
from gee_export.core.errors import EmptyCompositeError, InputDataError
from gee_export.local import sentinel1, sentinel2
from gee_export.local.labels import ClassMapping, get_scheme, label_window
from gee_export.local.scenes import BandRef, Scene, SceneCollection, discover_scenes, parse_month
from gee_export.local.speckle import DEFAULT_ENL, DEFAULT_KERNEL, SPECKLE_FILTERS, SpeckleFilter
from gee_export.local.warp import overlaps

DEFAULT_BLOCK = 1024
FINE_SCALES = (2, 4, 5, 8, 10)


@dataclass(frozen=True)
class LocalRecipe:
    """Every parameter of the local composite (written to the outputs' tags and the manifest)."""

    speckle: SpeckleFilter = "refined_lee"
    enl: float = DEFAULT_ENL
    kernel: int = DEFAULT_KERNEL
    scl_masked: tuple[int, ...] = sentinel2.SCL_MASKED_CLASSES
    label_scheme: str = "binary"
    allow_l1c: bool = False
    s1_unit: str | None = None
    boa_add_offset: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"backend": "local", **asdict(self)}


def _blocks(grid: Grid, block: int) -> Iterator[Window]:
    for r in range(0, grid.height, block):
        for c in range(0, grid.width, block):
            yield Window(r, c, min(block, grid.height - r), min(block, grid.width - c))


def _profile(grid: Grid, count: int, dtype: str, nodata: float) -> dict[str, Any]:
    profile: dict[str, Any] = {"driver": "GTiff", "width": grid.width, "height": grid.height,
                               "count": count, "dtype": dtype, "nodata": nodata, "crs": grid.crs,
                               "transform": grid.transform, "compress": "deflate",
                               "predictor": 3 if dtype == "float32" else 2, "zlevel": 1,
                               "BIGTIFF": "IF_SAFER"}
    if grid.width >= 256 and grid.height >= 256:
        profile.update(tiled=True, blockxsize=256, blockysize=256)
    return profile


def _done(path: Path, signature: str) -> bool:
    if not path.exists():
        return False
    try:
        with rasterio.open(path) as src:
            return src.tags().get("ISAMAP_RECIPE") == signature
    except RasterioError:
        return False


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


def _where(grid: Grid) -> str:
    west, south, east, north = grid.bounds
    return f"grid {grid.crs} [{west:.0f}, {south:.0f}, {east:.0f}, {north:.0f}]"


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


def _fine_label_ref(label_ref: BandRef | None, collection: SceneCollection,
                    scale: int) -> BandRef | None:
    """``<label>_x<k>.tif`` beside the label, else one among the scenes, else the label itself.

    A label that is already fine (1 m WorldCover, say) serves both grids; a 10 m label only
    yields a blocky fine label, so the dedicated fine raster wins when it exists.
    """
    if label_ref is not None:
        sibling = label_ref.path.with_name(f"{label_ref.path.stem}_x{scale}{label_ref.path.suffix}")
        if sibling.is_file():
            return BandRef(sibling)
    found = collection.label(scale)
    return BandRef(found) if found else label_ref


def build_local_stack(scenes: SceneCollection | str | Path | Sequence[str | Path], grid: Grid,
                      month: str,
                      bands: Sequence[str] = band_registry.DEFAULT_IMAGE_BANDS
                      + band_registry.QUALITY,
                      label: str | Path | BandRef | None = None, fine_scale: int | None = None,
                      speckle: SpeckleFilter = "refined_lee", out_dir: str | Path = ".", *,
                      label_scheme: str | ClassMapping | dict[int, int] | None = None,
                      recipe: LocalRecipe | None = None, block: int = DEFAULT_BLOCK,
                      progress: bool = True) -> StackPaths:
    """Build one month's stack from local scenes on ``grid``.

    Args:
        scenes: a :class:`SceneCollection`, or a folder / glob / list of files to discover.
        grid: the target grid (CRS, 10 m transform, size).
        month: ``YYYY-MM``; scenes acquired in it are composited.
        bands: stack band names from :mod:`gee_export.contract.bands` (S2, S1 and quality bands), in
            output order.
        label: label raster; None uses ``labels/label.tif`` found among the scenes, and with
            no label at all the label file is written as all-nodata (inference-only stacks).
        fine_scale: also write the label on ``grid.scaled(fine_scale)``, from
            ``label_x<k>.tif`` when present, else from the same label raster.
        speckle: Sentinel-1 speckle filter (see :mod:`gee_export.local.speckle`).
        out_dir: folder of the output GeoTIFFs.
        label_scheme: class mapping of the label (preset name such as ``worldcover`` or
            ``landcover:chesapeake``, or a {value: class} dict), applied by lookup table.
        recipe: every other parameter; ``speckle``/``label_scheme`` arguments override it.
        block: grid pixels per block side (memory grows with block^2 x scenes).
        progress: show a tqdm bar over blocks.

    Raises:
        EmptyCompositeError: no scene in the month, none overlapping the grid, or no clear
            observation at all (an all-cloud month).
        InputDataError: missing band, L1C input, unreadable file, file without CRS.
    """
    parse_month(month)
    if speckle not in SPECKLE_FILTERS:
        raise InputDataError(f"unknown speckle filter {speckle!r}; choose {SPECKLE_FILTERS}")
    if fine_scale is not None and fine_scale not in FINE_SCALES:
        raise InputDataError(f"fine_scale must be one of {FINE_SCALES}, got {fine_scale}")
    recipe = recipe or LocalRecipe()
    scheme_name = label_scheme if isinstance(label_scheme, str) else recipe.label_scheme
    recipe = LocalRecipe(**{**asdict(recipe), "speckle": speckle, "label_scheme": scheme_name})
    mapping = get_scheme(label_scheme if label_scheme is not None else recipe.label_scheme)
    specs = band_registry.resolve(bands)
    names = tuple(s.name for s in specs)
    s2_bands = tuple(s.source_name for s in specs if s.sensor == "S2")
    s1_bands = tuple(s.source_name for s in specs if s.sensor == "S1")
    need_s2 = bool(s2_bands) or "s2_clear_count" in names
    need_s1 = bool(s1_bands) or "s1_scene_count" in names
    unknown = [n for n in names if band_registry.get_band(n).sensor == "label"]
    if unknown:
        raise InputDataError(f"{unknown} is not an image band; the label is its own file")

    collection = scenes if isinstance(scenes, SceneCollection) else discover_scenes(scenes)
    monthly = collection.in_month(month)
    s2: tuple[Scene, ...] = ()
    s1: tuple[Scene, ...] = ()
    if need_s2:
        if not monthly.s2:
            raise EmptyCompositeError(
                f"no Sentinel-2 scene acquired in {month} for {_where(grid)} (found "
                f"{len(collection.s2)} in other months); add scenes or pick another month")
        for scene in monthly.s2:
            sentinel2.check_level(scene, recipe.allow_l1c)
            for band in s2_bands:
                scene.band(band)
            if not (scene.has("SCL") or scene.has("CLOUD_MASK")):
                warnings.warn(f"{scene.product} has neither SCL nor a cloud mask: all its "
                              "pixels count as clear", stacklevel=2)
        s2 = _usable(monthly.s2, s2_bands[0] if s2_bands else monthly.s2[0].band_names[0],
                     grid, "Sentinel-2")
        if not s2:
            raise EmptyCompositeError(f"no Sentinel-2 scene of {month} overlaps {_where(grid)}; "
                                      "check the scenes' CRS and the region")
    if need_s1:
        if not monthly.s1:
            raise EmptyCompositeError(
                f"no Sentinel-1 scene acquired in {month} for {_where(grid)} (found "
                f"{len(collection.s1)} in other months); add scenes or drop VV/VH")
        for scene in monthly.s1:
            for band in s1_bands:
                scene.band(band)
        s1 = _usable(monthly.s1, s1_bands[0] if s1_bands else "VV", grid, "Sentinel-1")
        if not s1:
            raise EmptyCompositeError(f"no Sentinel-1 scene of {month} overlaps {_where(grid)}; "
                                      "check the scenes' CRS and the region")

    offsets = {s.product: sentinel2.boa_offset(s, recipe.boa_add_offset) for s in s2}
    reflectance = frozenset((s.product, b) for s in s2 for b in s2_bands
                            if sentinel2.is_reflectance(s, b))
    units = {(s.product, b): sentinel1.scene_unit(s, b, recipe.s1_unit) for s in s1
             for b in s1_bands}
    label_ref = _label_ref(label, collection, 1)
    fine_ref = _fine_label_ref(label_ref, collection, fine_scale) if fine_scale else None
    if label_ref is None:
        warnings.warn("no label raster given or found: the label file is all nodata (255), "
                      "usable for inference only", stacklevel=2)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    image_path = out / f"stack_{month}_image.tif"
    label_path = out / f"stack_{month}_label.tif"
    fine_path = out / f"stack_{month}_label_x{fine_scale}.tif" if fine_scale else None
    signature = json.dumps({"recipe": recipe.to_dict(), "grid": grid.to_dict(), "bands": names,
                            "month": month, "s2": sorted(offsets),
                            "s1": sorted(s.product for s in s1),
                            "label": str(label_ref.path) if label_ref else None,
                            "fine": str(fine_ref.path) if fine_ref else None}, sort_keys=True)
    result = StackPaths(grid=grid, bands=names, month=month, image=str(image_path),
                        label=str(label_path), label_fine=str(fine_path) if fine_path else None,
                        fine_scale=fine_scale if fine_path else None)
    targets = [p for p in (image_path, label_path, fine_path) if p is not None]
    if all(_done(p, signature) for p in targets):
        return result

    tags = {"ISAMAP_RECIPE": signature, "MONTH": month, "BACKEND": "local"}
    if any(dict(sc.tags).get("SYNTHETIC", "").lower() == "yes" for sc in (*s2, *s1)):
        tags["SYNTHETIC"] = "yes"  # synthetic inputs stay labelled synthetic downstream
    tmp_paths = [p.with_name(f".{p.name}.tmp{os.getpid()}") for p in targets]
    try:
        _write_image(tmp_paths[0], grid, names, s2, s2_bands, s1, s1_bands, offsets,
                     reflectance, units, recipe, month, tags, block, progress)
        _write_label(tmp_paths[1], grid, label_ref, mapping, tags, block, progress)
        if fine_path is not None and fine_scale is not None:
            _write_label(tmp_paths[2], grid.scaled(fine_scale), fine_ref, mapping, tags,
                         block, progress)
        for tmp, final in zip(tmp_paths, targets, strict=True):
            os.replace(tmp, final)
    finally:
        for tmp in tmp_paths:
            tmp.unlink(missing_ok=True)
    return result


def _write_image(path: Path, grid: Grid, names: tuple[str, ...], s2: Sequence[Scene],
                 s2_bands: tuple[str, ...], s1: Sequence[Scene], s1_bands: tuple[str, ...],
                 offsets: dict[str, float], reflectance: frozenset[tuple[str, str]],
                 units: dict[tuple[str, str], str], recipe: LocalRecipe, month: str,
                 tags: dict[str, str], block: int, progress: bool) -> None:
    max_clear = 0.0
    max_s1 = 0.0
    windows = list(_blocks(grid, block))
    with rasterio.open(path, "w", **_profile(grid, len(names), "float32", np.nan)) as dst:
        for i, name in enumerate(names, 1):
            dst.set_band_description(i, name)
        dst.update_tags(**tags)
        for window in tqdm(windows, desc=f"local stack {month}", disable=not progress,
                           unit="block"):
            layers: dict[str, np.ndarray] = {}
            if s2:
                comp, clear = sentinel2.composite_window(
                    s2, s2_bands, grid, window, masked_classes=recipe.scl_masked,
                    offsets=offsets, reflectance_bands=reflectance)
                layers.update(zip(s2_bands, comp, strict=True))
                layers["s2_clear_count"] = clear
                max_clear = max(max_clear, float(clear.max(initial=0)))
            if s1:
                comp, count = sentinel1.composite_window(
                    s1, s1_bands, grid, window, units=units, speckle=recipe.speckle,
                    size=recipe.kernel, enl=recipe.enl)
                layers.update(zip(s1_bands, comp, strict=True))
                layers["s1_scene_count"] = count
                max_s1 = max(max_s1, float(count.max(initial=0)))
            data = np.stack([layers[band_registry.get_band(n).source_name]
                             if band_registry.get_band(n).sensor in ("S1", "S2") else layers[n]
                             for n in names]).astype(np.float32)
            dst.write(data, window=window.to_rasterio())
    if s2 and max_clear == 0:
        raise EmptyCompositeError(
            f"every Sentinel-2 observation of {month} over {_where(grid)} is masked (cloud, "
            f"shadow, cirrus, snow or nodata in {len(s2)} scenes); use a wider window or "
            "another month")
    if s1 and max_s1 == 0:
        raise EmptyCompositeError(f"no valid Sentinel-1 pixel in {month} over {_where(grid)}")


def _write_label(path: Path, grid: Grid, ref: BandRef | None, mapping: ClassMapping,
                 tags: dict[str, str], block: int, progress: bool) -> None:
    nodata = band_registry.LABEL_NODATA
    with rasterio.open(path, "w", **_profile(grid, 1, "uint8", nodata)) as dst:
        dst.set_band_description(1, band_registry.LABEL)
        dst.update_tags(**tags)
        windows = list(_blocks(grid, block))
        for window in tqdm(windows, desc=f"label {grid.resolution:g} m", unit="block",
                           disable=not progress or ref is None):
            if ref is None:
                data = np.full((window.height, window.width), nodata, dtype=np.uint8)
            else:
                data = label_window(ref, grid, window, mapping)
            dst.write(data[np.newaxis], window=window.to_rasterio())
