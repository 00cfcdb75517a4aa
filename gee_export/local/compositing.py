"""Writing a planned local stack: the monthly composite and the label, block by block.

:func:`gee_export.local.stack.plan_local_stack` decides what to composite;
this module does the pixel work for :func:`~gee_export.local.stack.write_local_stack`, one
block of the grid at a time (each block read with the halo its filters need), so memory is
bounded by the block size, never by the tile size. :class:`LocalRecipe` is every parameter of
the composite.
"""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import rasterio

from contract import bands as band_registry
from contract.composite import DEFAULT_SPECKLE, SpeckleFilter
from contract.grid import Grid, Window
from core.errors import ConfigError, EmptyCompositeError, InputDataError
from core.progress import progress_bar
from gee_export.local import sentinel1, sentinel2
from gee_export.local.cloud_flags import CloudFlagCheck
from gee_export.local.labels import ClassMapping, label_window, product_window
from gee_export.local.scenes import BandRef, Scene, canonical_band
from gee_export.local.speckle import DEFAULT_ENL, DEFAULT_KERNEL

READING_OPTIONS = ("scene_date", "s2_band_names", "trust_band_names",  # recorded when given
                   "allow_implausible")


@dataclass(frozen=True)
class LocalRecipe:
    """Every parameter of the local composite (written to the outputs' tags and the manifest).

    ``scene_date`` (``YYYY-MM-DD``) dates the scenes whose tags and names carry no date;
    ``s2_band_names`` names the bands of stacked S2 files without band descriptions (checked
    against the pixels before any work: ``plausibility.check_s2_band_names``).
    """

    speckle: SpeckleFilter = DEFAULT_SPECKLE
    enl: float = DEFAULT_ENL
    kernel: int = DEFAULT_KERNEL
    scl_masked: tuple[int, ...] = sentinel2.SCL_MASKED_CLASSES
    label_scheme: str = "binary"
    allow_l1c: bool = False
    s1_unit: str | None = None
    boa_add_offset: float | None = None
    scene_date: str | None = None
    s2_band_names: tuple[str, ...] | None = None
    trust_band_names: bool | None = None  # --s2-band-names used though the pixels doubt them
    allow_implausible: bool | None = None  # scenes the input check doubts composited anyway

    def to_dict(self) -> dict[str, Any]:
        """The manifest's record; the reading options appear only when set."""
        data = asdict(self)
        for key in READING_OPTIONS:
            if data[key] is None:
                del data[key]
        return {"backend": "local", **data}

    def reading(self) -> dict[str, Any]:
        """``discover_scenes`` arguments: what the scene files do not say themselves."""
        return {"date": dt.date.fromisoformat(self.scene_date) if self.scene_date else None,
                "s2_band_names": self.s2_band_names}

    def with_reading(self, **given: Any) -> LocalRecipe:
        """This recipe with the scene-reading options the user gave (None: keep the recorded)."""
        return replace(self, **{k: v for k, v in given.items() if v is not None})

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LocalRecipe:
        """Inverse of :meth:`to_dict` (a manifest's record); unknown keys are refused."""
        fields = {k: v for k, v in data.items() if k != "backend"}
        for key in ("scl_masked", "s2_band_names"):
            if fields.get(key) is not None:
                fields[key] = tuple(fields[key])
        try:
            return cls(**fields)
        except TypeError as exc:
            raise InputDataError(f"the recorded local recipe has parameters this isamap does "
                                 f"not know ({exc}); use the version that made it") from None


def where(grid: Grid) -> str:
    """The grid's CRS and bounds, for messages that must say where a composite is empty."""
    west, south, east, north = grid.bounds
    return f"grid {grid.crs} [{west:.0f}, {south:.0f}, {east:.0f}, {north:.0f}]"


def grid_blocks(grid: Grid, block: int) -> Iterator[Window]:
    """The grid in windows of at most ``block`` x ``block`` pixels, row by row."""
    for r in range(0, grid.height, block):
        for c in range(0, grid.width, block):
            yield Window(row_off=r, col_off=c, height=min(block, grid.height - r),
                         width=min(block, grid.width - c))


def _profile(grid: Grid, count: int, dtype: str, nodata: float) -> dict[str, Any]:
    profile: dict[str, Any] = {"driver": "GTiff", "width": grid.width, "height": grid.height,
                               "count": count, "dtype": dtype, "nodata": nodata, "crs": grid.crs,
                               "transform": grid.transform, "compress": "deflate",
                               "predictor": 3 if dtype == "float32" else 2, "zlevel": 1,
                               "BIGTIFF": "IF_SAFER"}
    if grid.width >= 256 and grid.height >= 256:
        profile.update(tiled=True, blockxsize=256, blockysize=256)
    return profile


def write_image(path: Path, grid: Grid, names: tuple[str, ...], s2: Sequence[Scene],
                 s2_bands: tuple[str, ...], s1: Sequence[Scene], s1_bands: tuple[str, ...],
                 offsets: dict[str, float], reflectance: frozenset[tuple[str, str]],
                 units: dict[tuple[str, str], str], recipe: LocalRecipe, month: str,
                 tags: dict[str, str], block: int, progress: bool,
                 product: BandRef | None = None,
                 earlier: Mapping[int, Any] | None = None) -> None:
    """Composite the month block by block into ``path`` (a float32 GeoTIFF, NaN nodata).

    ``product``: the label raster whose own codes are the ``product`` band, when asked for.
    ``earlier``: a series stack's earlier months (months before -> their checked inputs),
    composited by the same recipe into their ``_mK`` bands; unlike the month's own, an
    earlier month may be all cloud (its bands are then nodata).

    Raises:
        EmptyCompositeError: not one clear Sentinel-2 observation (or valid Sentinel-1 pixel)
            anywhere on the grid.
    """
    max_clear = 0.0
    max_s1 = 0.0
    earlier = earlier or {}
    check = CloudFlagCheck(len(s2))
    windows = list(grid_blocks(grid, block))
    with rasterio.open(path, "w", **_profile(grid, len(names), "float32", np.nan)) as dst:
        for i, name in enumerate(names, 1):
            dst.set_band_description(i, name)
        dst.update_tags(**tags)
        for window in progress_bar(windows, desc=f"local stack {month}", disable=not progress,
                           unit="block"):
            layers: dict[str, np.ndarray] = {}
            if s2:
                comp, clear = sentinel2.composite_window(
                    s2, s2_bands, grid, window, masked_classes=recipe.scl_masked,
                    offsets=offsets, reflectance_bands=reflectance, check=check)
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
            if product is not None:
                layers[band_registry.PRODUCT] = product_window(product, grid, window)
            for k, given in earlier.items():  # a series stack: each earlier month's bands
                layers.update(_earlier_layers(given, k, grid, window, recipe))
            data = np.stack([layers[_layer(n)] for n in names]).astype(np.float32)
            dst.write(data, window=window.to_rasterio())
    if s2 and max_clear == 0:
        raise EmptyCompositeError(
            f"every Sentinel-2 observation of {month} over {where(grid)} is masked (cloud, "
            f"shadow, cirrus, snow or nodata in {len(s2)} scenes); add clearer scenes of that "
            "month to --scenes or choose other --months")
    if s1 and max_s1 == 0:
        raise EmptyCompositeError(f"no valid Sentinel-1 pixel in {month} over {where(grid)}")
    hidden = check.warning(month) if s2 else None
    if hidden:
        warnings.warn(hidden, stacklevel=2)


def _layer(name: str) -> str:
    """The key of band ``name`` among a block's layers (a Sentinel band's own ``B4_m2``)."""
    spec = band_registry.get_band(name)
    if spec.sensor not in band_registry.SERIES_SENSORS:
        return name
    return band_registry.earlier_name(spec.base, spec.months_before)


def _earlier_layers(given: Any, k: int, grid: Grid, window: Window,
                    recipe: LocalRecipe) -> dict[str, np.ndarray]:
    """One block of month ``k`` months before: its Sentinel bands, named ``_mK``.

    ``given``: that month's ``gee_export.local.month_inputs.MonthInputs`` (which imports this
    module, so it is not named in the signature).
    """
    layers: dict[str, np.ndarray] = {}
    if given.s2:
        comp, _ = sentinel2.composite_window(
            given.s2, given.s2_bands, grid, window, masked_classes=recipe.scl_masked,
            offsets=given.offsets, reflectance_bands=given.reflectance)
        layers.update((band_registry.earlier_name(b, k), c)
                      for b, c in zip(given.s2_bands, comp, strict=True))
    if given.s1:
        comp, _ = sentinel1.composite_window(
            given.s1, given.s1_bands, grid, window, units=given.units, speckle=recipe.speckle,
            size=recipe.kernel, enl=recipe.enl)
        layers.update((band_registry.earlier_name(b, k), c)
                      for b, c in zip(given.s1_bands, comp, strict=True))
    return layers


def write_label(path: Path, grid: Grid, ref: BandRef | None, mapping: ClassMapping,
                 tags: dict[str, str], block: int, progress: bool) -> None:
    """Put the label onto ``grid`` block by block (mapped classes, mode/nearest, uint8)."""
    nodata = band_registry.LABEL_NODATA
    with rasterio.open(path, "w", **_profile(grid, 1, "uint8", nodata)) as dst:
        dst.set_band_description(1, band_registry.LABEL)
        dst.update_tags(**tags)
        windows = list(grid_blocks(grid, block))
        for window in progress_bar(windows, desc=f"label {grid.resolution:g} m", unit="block",
                           disable=not progress or ref is None):
            if ref is None:
                data = np.full((window.height, window.width), nodata, dtype=np.uint8)
            else:
                data = label_window(ref, grid, window, mapping)
            dst.write(data[np.newaxis], window=window.to_rasterio())


def reading_options(scene_date: str | None, s2_band_names: str | None) -> dict[str, Any]:
    """``--scene-date`` and ``--s2-band-names`` checked, as :class:`LocalRecipe` fields.

    One check for ``isamap-export``, ``isamap-map`` and ``isamap-fit``, which read local
    scenes alike.
    """
    date = None
    if scene_date:
        try:
            date = dt.date.fromisoformat(scene_date).isoformat()
        except ValueError:
            raise ConfigError(f"--scene-date must be YYYY-MM-DD, got {scene_date!r}") from None
    names = None
    if s2_band_names:
        given = [n.strip() for n in s2_band_names.split(",") if n.strip()]
        bad = [n for n in given if canonical_band(n) in (None, "VV", "VH", "HH", "HV")]
        if bad or len(set(map(canonical_band, given))) != len(given):
            raise ConfigError(f"--s2-band-names takes distinct Sentinel-2 band names (B1..B12, "
                              f"B8A, SCL), got {s2_band_names!r}")
        names = tuple(str(canonical_band(n)) for n in given)
    return {"scene_date": date, "s2_band_names": names}
