"""What the keep rule reads: the coarse product on the map's grid, the stack's red and NIR.

The rule itself (:mod:`inference.predict.keep.rule`) is pure; this module is its edge:

- :func:`check_product`: the product raster exists and is placed on the Earth (before the
  model loads);
- :func:`settle`: the rule of one map, before the first tile: the model's red and
  near-infrared bands, the classes its training labels hold, and the **green cut** from a
  decimated sample of the stack and of the product read onto the stack's grid (at most
  :data:`~inference.predict.sources.SAMPLE_SIDE` pixels a side, the sample the scene
  statistics use). The cut depends on the input's and the product's pixels alone, never on
  ``--tile``;
- :class:`KeepStrips`: the predictor's writer thread applies the rule strip by strip; it reads
  the product warped onto the output grid (nearest: each output pixel takes the product cell
  under its centre; any grid and CRS) and the stack's red and NIR rows (repeated onto a finer
  output grid).

The product's codes become the model's classes through the label scheme
(:func:`contract.label_schemes.get_landcover_scheme`) and the class names; codes the
scheme ignores, a class the model lacks, and pixels outside the product or at its nodata say
nothing (``LABEL_NODATA``).
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
import rasterio
import rasterio.errors
from affine import Affine
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.warp import calculate_default_transform
from rasterio.windows import Window

from contract.bands import LABEL_NODATA, PRODUCT
from contract.label_schemes import LANDCOVER_CLASSES, SCHEMES, get_landcover_scheme
from core.errors import ConfigError, InputDataError
from core.storage import files
from inference.predict.expected_inputs import read_band_sample
from inference.predict.keep import rule as keep
from inference.predict.keep.rule import KeepRule, check_model
from inference.predict.sources import (
    SAMPLE_SIDE,
    RasterSource,
    open_source,
    read_window,
    select_bands,
)
from inference.predict.step_proof import StepProof, crs_unit_mismatch, fitting_tables

if TYPE_CHECKING:
    from training.modelfile import ModelMeta

log = logging.getLogger(__name__)


def check_product(path: str) -> None:
    """Refuse a product raster that is missing, unreadable or not georeferenced.

    An empty ``path`` (the input stack's own ``product`` band) is checked by :func:`settle`.
    """
    if not path:
        return
    given, give = f"--keep-product {path}", "the coarse land-cover raster (e.g. an NLCD GeoTIFF)"
    files.require("--keep-product", path, give)
    try:
        with files.open_raster(path) as ds:
            if ds.crs is None or ds.transform.is_identity:
                raise InputDataError(f"{given} has no georeferencing, so it cannot be put on "
                                     "the map's grid; give a georeferenced GeoTIFF")
    except rasterio.errors.RasterioError as exc:
        raise InputDataError(files.raster_refusal("--keep-product", path, exc, give)) from None


def class_table(table: str, class_names: Sequence[str]) -> np.ndarray:
    """256 entries: product code -> the model's class index (``LABEL_NODATA``: none)."""
    seven = get_landcover_scheme(table).lookup_table()
    to_model = np.full(256, LABEL_NODATA, np.uint8)
    for i, name in enumerate(LANDCOVER_CLASSES):
        if name in class_names:
            to_model[i] = class_names.index(name)
    return to_model[seven]


def product_on(product: Any, crs: Any, transform: Affine, width: int,
                height: int) -> WarpedVRT:
    """The product's first band warped nearest onto a grid, with an alpha band (coverage)."""
    return WarpedVRT(product, crs=crs, transform=transform, width=width, height=height,
                     resampling=Resampling.nearest, add_alpha=True)


def _codes(vrt: WarpedVRT, table: np.ndarray, window: Window | None = None,
           band: int = 1) -> np.ndarray:
    """The product's classes (``table`` applied) in ``window``; nodata where it has none."""
    codes = vrt.read(band, window=window)
    covered = vrt.read_masks(band, window=window) > 0
    inside = (codes >= 0) & (codes < 256)
    classes = table[np.where(inside, codes, 255).astype(np.int64)]
    return np.where(covered & inside, classes, LABEL_NODATA).astype(np.uint8)


def sample_product(source: str | RasterSource, product: str, red_index: int, nir_index: int,
                   band: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The stack's NDVI and the product's raw codes and coverage on the stack's sample grid.

    Codes outside 0-255 read as 255; ``covered``: the product has a value there (inside its
    footprint, not its nodata).

    Raises:
        InputDataError: the stack's pixels are fetched on demand (no sample of the scene).
    """
    sample = read_band_sample(source, [red_index, nir_index], SAMPLE_SIDE)
    if sample is None:
        raise InputDataError("--postprocess keep computes its green cut from the whole input "
                             "stack before the first tile, which an input fetched tile by "
                             "tile cannot give: give the stack file to isamap-predict --input")
    greenness = keep.ndvi(sample[0], sample[1])
    greenness[np.isnan(sample[0]) | np.isnan(sample[1])] = np.nan
    h, w = greenness.shape
    with open_source(source) as grid:  # the sample's grid: the stack's, decimated
        crs, width, height = grid.crs, grid.width, grid.height
        transform = grid.transform @ Affine.scale(width / w, height / h)
    with files.open_raster(product) as prod, product_on(prod, crs, transform, w, h) as vrt:
        raw = vrt.read(band)
        covered = vrt.read_masks(band) > 0
    inside = (raw >= 0) & (raw < 256)
    codes = np.where(inside, raw, 255).astype(np.int64)
    return greenness, codes, covered & inside


def prove(rule: KeepRule, meta: ModelMeta, codes: np.ndarray, covered: np.ndarray,
          learnt: Sequence[str] | None, cut: float | None) -> StepProof:
    """What the keep rule showed on the sample (:mod:`inference.predict.step_proof`).

    It decides the pixels the product calls impervious (given a green ``cut``), those of a
    class the model never learnt and, with a window, every pixel the product gives a class
    of the model.

    Raises:
        InputDataError: the product covers none of the map, its codes are not its table's,
            or it decides no pixel.
    """
    scheme = get_landcover_scheme(rule.table)
    names = list(meta.class_names)
    to_model = class_table(rule.table, names)
    listed = {name: {c.code for c in s.codes} for name, s in SCHEMES.items()}
    present = codes[covered]
    known = float(np.isin(present, list(listed[scheme.source])).mean()) if present.size else 0.0
    classes = np.where(covered, to_model[codes], LABEL_NODATA)
    deciding = [names.index("impervious")] * (cut is not None) + [
        i for i, n in enumerate(names) if learnt is not None and n not in learnt]
    decided = (classes != LABEL_NODATA) if rule.window else np.isin(classes, deciding)
    given = f"--keep-product {rule.product}"
    proof = StepProof("--postprocess keep", given, float(covered.mean()), known,
                      float(decided.mean()))
    seen = sorted(int(c) for c in np.unique(present))
    shown = ", ".join(map(str, seen[:10])) + (", ..." if len(seen) > 10 else "")
    fits = fitting_tables(set(seen), listed, scheme.source)
    with files.open_raster(rule.product) as ds:
        unit = crs_unit_mismatch(ds.crs, tuple(ds.bounds))
    proof.require(
        no_cover=((unit, "set the CRS its coordinates are in (for degrees: rio edit-info "
                         "--crs EPSG:4326 FILE)") if unit else
                  ("does not overlap the map (not one sampled pixel of the input lies on it)",
                   "give the product of the map's area")),
        foreign=(f"holds codes {shown}, most of which the {scheme.source!r} table does not "
                 "list", f"they are {fits[0]!r} codes: pass --keep-table {fits[0]}" if fits
                 else "pass the --keep-table of the product it is"),
        no_effect=(f"decides no sampled pixel of the map (codes {shown} under the "
                   f"{scheme.source!r} table: impervious needs some of its vegetation beside "
                   "for the green cut)", "give a product that names impervious ground here"
                   + ("" if rule.window else ", or a window (--keep-window) to let its other "
                      "classes decide")))
    return proof


def settle(rule: KeepRule, meta: ModelMeta, source: str | RasterSource,
           band_order: Sequence[str] | None = None) -> KeepRule:
    """``rule`` settled for one map of the model ``meta`` describes (before the first tile).

    The model's red and near-infrared bands, the classes its training labels hold
    (``ModelMeta.learnt_classes``; a model file without them gets the impervious part only,
    said in a warning) and the green cut from a sample of ``source`` and the product. A rule
    without a product raster reads the product from ``source``'s own ``product`` band, with
    the label table the model records (:func:`from_input`).
    """
    check_model(meta.class_scheme, meta.class_names, meta.bands)
    red, nir = keep.red_nir(meta.bands)
    learnt = meta.learnt_classes
    if learnt is None:
        log.warning("the model file does not record which classes its training labels hold "
                    "(trained by an older isamap): --postprocess keep keeps the product's "
                    "impervious pixels unless green, but not the product's classes the "
                    "model never learnt")
    with open_source(source) as ds:
        descriptions, crs, pixel = ds.descriptions, ds.crs, abs(ds.transform.a)
    red_index, nir_index = select_bands(descriptions, [red, nir], band_order)
    if not rule.product:
        rule = from_input(rule, meta, source, descriptions, band_order)
    else:
        check_window(rule, crs, pixel / meta.output_scale)
    greenness, codes, covered = sample_product(source, rule.product, red_index, nir_index,
                                               rule.band)
    seven = get_landcover_scheme(rule.table).lookup_table()
    cut = keep.green_cut([greenness], [np.where(covered, seven[codes], LABEL_NODATA)
                                       .astype(np.uint8)])
    proof = prove(rule, meta, codes, covered, learnt, cut)
    if cut is None:
        log.warning("--keep-product %s calls no sampled pixel of the input impervious, or "
                    "none vegetation: the product's impervious class changes nothing",
                    rule.product)
    return replace(rule, green_cut=cut, red=red, nir=nir,
                   learnt=None if learnt is None else tuple(learnt), proof=proof.record())


def product_cell(product: str, crs: Any, pixel: float) -> float | None:
    """The side of one cell of ``product`` in map pixels of size ``pixel`` in ``crs``.

    A product in another CRS is measured as GDAL would warp it there
    (``calculate_default_transform``); None when either has no CRS.
    """
    with files.open_raster(product) as ds:
        if ds.crs is None or crs is None:
            return None
        if ds.crs == crs:
            side = abs(ds.transform.a)
        else:
            transform, _, _ = calculate_default_transform(ds.crs, crs, ds.width, ds.height,
                                                          *ds.bounds)
            side = abs(transform.a)
    return side / pixel


def check_window(rule: KeepRule, crs: Any, pixel: float) -> None:
    """Warn when ``rule.window`` is far from two cells of its product raster.

    ``crs`` and ``pixel`` are the map's (an output pixel's side). The shares are a
    neighbourhood's: over one cell they repeat the product's own placement, over many they
    let the network move classes between places the product tells apart. The default (64 px)
    is about two NLCD cells on a 1 m map; a product of other cells, or a map of other pixels,
    wants another window (a power of two, as it divides the output strips).
    """
    if not rule.window:
        return
    cell = product_cell(rule.product, crs, pixel)
    if cell is None or 1 <= rule.window / cell <= 4:
        return
    better = 2 ** max(0, round(math.log2(2 * cell)))
    log.warning("--keep-window %d spans %.1f cells of the product (one cell is %.3g output "
                "pixels); its shares are meant for about two cells: consider --keep-window %d",
                rule.window, rule.window / cell, cell, min(better, 512))


def from_input(rule: KeepRule, meta: ModelMeta, source: str | RasterSource,
               descriptions: Sequence[str | None], band_order: Sequence[str] | None = None
               ) -> KeepRule:
    """``rule`` reading the product from the input stack's ``product`` band.

    The band holds the label source's own codes (``isamap-export --bands ...,product``), and a
    model that reads it records that source (``product_scheme``), so the table is the
    model's: the rule keeps the very product the network was given.

    Raises:
        ConfigError: the model does not read the product, or the input is not a file.
    """
    scheme = check_input_product(rule, meta)
    path = source if isinstance(source, str) else getattr(source, "path", None)
    if not path:
        raise ConfigError("--postprocess keep reads the product from the input stack file; "
                          "give --keep-product RASTER and --keep-table SOURCE")
    (index,) = select_bands(descriptions, [PRODUCT], band_order)
    return replace(rule, product=str(path), table=scheme, band=index)


def check_input_product(rule: KeepRule, meta: ModelMeta) -> str:
    """The product table of a rule that reads the input's ``product`` band ("" otherwise).

    Called as soon as the model is read, before any input is made or fetched.

    Raises:
        ConfigError: the rule has no product raster and the model does not read the band.
    """
    if rule.product:
        return ""
    scheme = meta.model_kwargs.get("product_scheme")
    if PRODUCT not in meta.bands or not scheme:
        raise ConfigError(f"--postprocess keep without --keep-product reads the product from "
                          f"the input's {PRODUCT!r} band, which this model does not take; give "
                          f"the product with --keep-product RASTER and --keep-table SOURCE")
    return str(scheme)


class KeepStrips:
    """The keep rule of one prediction, applied strip by strip in the writer thread.

    Args:
        src: the open input (the predictor's; read under ``lock``).
        band_indexes: 1-based indexes of the red and near-infrared bands in ``src``.
        rule: the settled rule (:func:`settle`).
        class_names: the model's classes.
        scale: output pixels per input pixel.
        lock: held while ``src`` is read (the predictor's reader shares it).
    """

    def __init__(self, src: Any, band_indexes: Sequence[int], rule: KeepRule,
                 class_names: Sequence[str], scale: int, lock: threading.Lock) -> None:
        if not rule.settled:
            raise ConfigError("the keep rule was not settled for this map (its bands and "
                              "green cut); give --postprocess keep to isamap-predict")
        self.src, self.indexes, self.rule, self.scale, self.lock = (
            src, list(band_indexes), rule, int(scale), lock)
        names = list(class_names)
        self.impervious = names.index("impervious")
        self.learnt = None if rule.learnt is None else [names.index(n) for n in rule.learnt]
        self.table = class_table(rule.table, names)
        transform = src.transform @ Affine.scale(1.0 / self.scale)
        self._open = contextlib.ExitStack()
        with self._open as opened:
            product = opened.enter_context(files.open_raster(rule.product))
            self._vrt = opened.enter_context(product_on(
                product, src.crs, transform, src.width * self.scale, src.height * self.scale))
            self._open = opened.pop_all()  # open until close()

    def close(self) -> None:
        self._open.close()

    def greenness(self, row0: int, rows: int) -> np.ndarray:
        """NDVI of output rows ``[row0, row0 + rows)`` at full width (input rows repeated)."""
        s = self.scale
        first, last = row0 // s, math.ceil((row0 + rows) / s)
        with self.lock:
            bands = read_window(self.src, self.indexes,
                                Window(0, first, self.src.width, last - first))
        if s > 1:
            bands = bands.repeat(s, axis=1).repeat(s, axis=2)
        skip = row0 - first * s
        return keep.ndvi(bands[0, skip:skip + rows], bands[1, skip:skip + rows])

    def product(self, row0: int, rows: int) -> np.ndarray:
        """The product's classes (the model's indices) on output rows ``[row0, row0 + rows)``."""
        return _codes(self._vrt, self.table, Window(0, row0, self._vrt.width, rows),
                      self.rule.band)

    def apply(self, row0: int, probs: np.ndarray) -> np.ndarray:
        """A strip's ``(K, rows, W)`` probabilities after the rule (in place where possible).

        One channel (a two-class model's P(class 1)) is expanded to both classes first.
        """
        if probs.shape[0] == 1:
            probs = np.concatenate([1.0 - probs, probs])
        rows = probs.shape[1]
        return keep.keep_probabilities(probs, self.product(row0, rows),
                                       self.greenness(row0, rows), self.rule.green_cut,
                                       self.learnt, self.impervious, self.rule.window)
