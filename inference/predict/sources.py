"""Where the streaming predictor reads its input: a raster file, or any object that reads like one.

The predictor (:func:`inference.predict.raster.predict_raster`) reads full-width tile rows in
order through a small interface, the part of a rasterio dataset it uses (size, georeference,
band names and nodata, ``read(indexes, window)``). An open rasterio dataset is one
implementation, so stacks on disk or behind ``/vsigs/`` are read exactly as before;
:class:`MaskedFileSource` is another: a raster whose masked pixels carry a sentinel value
(Earth Engine's exported GeoTIFFs and their VRT: -3e38), read with those pixels as NaN, the
way the model's runtime expects nodata. Tiles fetched on demand from Earth Engine are a third
(:class:`inference.mapping.fetched.FetchedSource`).

A stack file is opened once for a whole prediction, and probed before any model is loaded
(:mod:`inference.predict.input_stack`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

import numpy as np
import rasterio
import rasterio.errors
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window

from contract.bands import canonical_band, find_band, series_months
from contract.stack import FINGERPRINT_TAG
from core.errors import InputDataError
from core.storage import files
from core.storage.gdal_auth import gdal_env

MASKED_BELOW = -1.0e38  # Earth Engine's masked float pixels (-3e38) and anything lower


class RasterSource(Protocol):
    """The part of a rasterio dataset the streaming predictor uses."""

    width: int
    height: int
    count: int
    transform: Affine
    crs: CRS
    descriptions: tuple[str | None, ...]
    nodatavals: tuple[float | None, ...]

    def read(self, indexes: Sequence[int], window: Any = None, out_dtype: str = "float32",
             out: np.ndarray | None = None) -> np.ndarray: ...


#: what a missing band's refusal says to do, where a model asks for the bands
USE_ANOTHER_MODEL = "Export those bands or use a model trained on these."


def select_bands(descriptions: Sequence[str | None], names: Sequence[str],
                 order: Sequence[str] | None = None, remedy: str = USE_ANOTHER_MODEL, *,
                 subject: str = "the input stack", needed_by: str = "the model needs",
                 series_remedy: Callable[[int], str] | None = None) -> list[int]:
    """1-based band indexes of ``names`` in a stack, found by band name.

    Args:
        descriptions: the stack's band descriptions (its band names; None where unnamed).
        names: the bands the model needs, in its order.
        order: the stack's band names in file order as the user states them (``--bands``).
            Needed for a stack without names (a count that happens to match says nothing
            about the order, and reordered bands give a wrong map silently); checked against
            the names of a stack that has them.
        remedy: what a refusal for a missing band tells the user to do.
        subject: how that refusal names the input.
        needed_by: how it says who needs the bands.
        series_remedy: what it tells to do, given the months of the series, where the bands
            missing are a series' earlier months (``B4_m1``); None: a map's advice
            (export the date with ``--series-months``, or map it with ``isamap-map``).
    """
    if order is not None:
        order = [b.strip() for b in order]
        if len(order) != len(descriptions):
            raise InputDataError(f"--bands names {len(order)} bands but the input has "
                                 f"{len(descriptions)}; name every band in file order")
        if all(d for d in descriptions) and [canonical_band(str(d)) for d in descriptions] \
                != [canonical_band(b) for b in order]:
            raise InputDataError(
                f"--bands {','.join(order)} contradicts the input's own band names "
                f"{','.join(str(d) for d in descriptions)}; drop --bands (the names are used)")
        descriptions = order
    if all(d for d in descriptions):
        lookup = _by_name(descriptions, {canonical_band(n) for n in names})
        missing = [n for n in names if canonical_band(n) not in lookup]
        if missing:
            months = _series_months(names, missing)
            advice = (series_remedy or _map_series_remedy)(months) if months else remedy
            raise InputDataError(f"{subject} lacks band(s) {missing} {needed_by}; it has "
                                 f"{list(descriptions)}. {advice}")
        return [lookup[canonical_band(n)] for n in names]
    raise InputDataError(
        f"the input's {len(descriptions)} bands have no names (band descriptions), so their "
        f"order is unknown; if the file's order is the model's, say so with --bands "
        f"{','.join(names)} (Python: band_order=...), else name the bands with: rio edit-info "
        "--bidx N --description NAME FILE")


def _series_months(names: Sequence[str], missing: Sequence[str]) -> int | None:
    """The months of the series ``names`` where the bands missing are its earlier months."""
    if not any((spec := find_band(n)) is not None and spec.months_before for n in missing):
        return None
    return series_months(n for n in names if find_band(n) is not None)


def _map_series_remedy(months: int) -> str:
    """What a map of a series model does for an input without the months before."""
    return (f"The model reads a series of {months} months (bands _m1.._m{months - 1}: the "
            f"months before the stack's own): export the date with isamap-export "
            f"--series-months {months}, so its stack holds the months before it, or map it "
            "with isamap-map, which builds such stacks from the model's recipe")


def _by_name(descriptions: Sequence[str | None], needed: set[str]) -> dict[str, int]:
    """1-based band index by name as isamap writes it (``B02`` is ``B2``).

    A name given twice is refused where it is one of the ``needed`` bands (which would be
    read is unknown); among the others the first is kept.
    """
    lookup: dict[str, int] = {}
    for i, d in enumerate(descriptions):
        name = canonical_band(str(d))
        if name in lookup and name not in needed:
            continue
        if name in lookup:
            first = descriptions[lookup[name] - 1]
            raise InputDataError(f"the input names band {name} twice ({first} and {d}); give "
                                 "a stack with one band of each name")
        lookup[name] = i + 1
    return lookup


def content_key(path: str, fingerprint: str | None = None, ds: Any = None) -> str:
    """What names an input file's content in a run's fingerprint (hashed, never shown).

    A stack's own content fingerprint where it records one, with the open file's value types
    and nodata (``ds``: a copy converted by another tool keeps the tag, not the values), else
    the file's absolute path (``maps/x.tif`` and ``./maps/x.tif`` are one file); remote paths
    as given.
    """
    if fingerprint:
        kept = "" if ds is None else f" {list(ds.dtypes)} {list(ds.nodatavals)}"
        return f"stack {fingerprint}{kept}"
    if files.is_gcs(path) or path.startswith("/vsi") or "://" in path:
        return path
    return os.path.abspath(path)


def source_key(source: str | RasterSource, opened: Any = None) -> str:
    """:func:`content_key` of an input path or opened input (a source's identity otherwise).

    ``opened``: the dataset a path was opened as, whose tags may hold a stack's fingerprint
    (so a path given through the Python API is keyed as the command line keys it).
    """
    if isinstance(source, str):
        tags = getattr(opened, "tags", None)
        fingerprint = tags().get(FINGERPRINT_TAG) if callable(tags) else None
        return content_key(source, fingerprint, opened if fingerprint else None)
    return str(getattr(source, "content", None) or source_identity(source))


def source_identity(source: str | RasterSource) -> str:
    """What names an input in a prediction's fingerprint (a path, or the source's identity)."""
    if isinstance(source, str):
        return source
    return str(getattr(source, "identity", None) or getattr(source, "name", "") or
               type(source).__name__)


def input_path(source: str | RasterSource) -> str | None:
    """The stack file ``source`` is, as the user named it (``--input``); None for other sources.

    A path, or a stack file opened once for the run
    (:class:`inference.predict.input_stack.InputStack`).
    """
    return source if isinstance(source, str) else getattr(source, "input_path", None)


@contextlib.contextmanager
def open_source(source: str | RasterSource) -> Iterator[RasterSource]:
    """An open source: a path (local, VRT or gs://) opened with rasterio, or ``source`` as is.

    A source object stays open afterwards: whoever made it owns it.
    """
    if isinstance(source, str):
        with files.open_raster(source) as ds:
            yield ds
    else:
        yield source


def read_window(source: RasterSource, indexes: Sequence[int], window: Window) -> np.ndarray:
    """One window of ``source`` read on its own, float32 ``(len(indexes), h, w)``.

    The predictor reads tile rows in order; a source that fetches rows ahead of that reader
    (:class:`inference.mapping.fetched.FetchedSource`) reads windows elsewhere apart
    (``read_apart``), so the rows it holds for the predictor stay as they are.
    """
    apart = getattr(source, "read_apart", None)
    if apart is not None:
        return apart(indexes, window)
    return source.read(list(indexes), window=window, out_dtype="float32")


def read_padded(source: RasterSource, indexes: Sequence[int], row: int, col: int, height: int,
                width: int, out: np.ndarray | None = None) -> np.ndarray:
    """Bands ``indexes`` in rows ``[row, row + height)`` and columns ``[col, col + width)``.

    The window may reach past ``source``'s edges (a lattice tile hanging over them): a source
    that reads there itself (``reads_beyond``: a window of a larger stack, tiles fetched from
    Earth Engine) is read as it is; elsewhere the pixels past the edges are NaN (nodata, which
    the model sees as each band's mean), as Earth Engine returns the pixels around its image.
    ``out``: a float32 array of the window's shape to fill.
    """
    if out is None:
        out = np.empty((len(indexes), height, width), np.float32)
    if getattr(source, "reads_beyond", False):
        return source.read(list(indexes), window=Window(col, row, width, height),
                           out_dtype="float32", out=out)
    r0, r1 = max(row, 0), min(row + height, source.height)
    c0, c1 = max(col, 0), min(col + width, source.width)
    if (r0, r1, c0, c1) == (row, row + height, col, col + width):
        return source.read(list(indexes), window=Window(col, row, width, height),
                           out_dtype="float32", out=out)
    out.fill(np.nan)
    if r1 > r0 and c1 > c0:
        out[:, r0 - row:r1 - row, c0 - col:c1 - col] = source.read(
            list(indexes), window=Window(c0, r0, c1 - c0, r1 - r0), out_dtype="float32")
    return out


class WindowSource:
    """A window of a larger source, read as a raster of its own that reads past its edges.

    What maps part of a stack (a city inside its province's stack): the map covers the
    window, and the lattice tiles hanging over its edges see the stack's own pixels there
    (nodata only past the stack's edges), so the window's map equals the stack's map on
    every pixel of the window.
    """

    reads_beyond = True

    def __init__(self, source: RasterSource, row: int, col: int, height: int,
                 width: int) -> None:
        if not (row >= 0 and col >= 0 and row + height <= source.height
                and col + width <= source.width and height > 0 and width > 0):
            raise InputDataError(
                f"window rows {row}..{row + height}, columns {col}..{col + width} is not "
                f"inside the {source.height} x {source.width} input; give a window inside it")
        self.source, self.row, self.col = source, row, col
        self.width, self.height, self.count = width, height, source.count
        self.transform = source.transform @ Affine.translation(col, row)
        self.crs, self.descriptions = source.crs, source.descriptions
        self.nodatavals = source.nodatavals
        name = getattr(source, "identity", None) or getattr(source, "name", "")
        part = f"[{row}:{row + height},{col}:{col + width}]"
        self.identity = f"{name}{part}"
        content = getattr(source, "content", None)  # a stack keyed by its content: so is this
        self.content = f"{content}{part}" if content else None

    def read(self, indexes: Sequence[int], window: Any = None, out_dtype: str = "float32",
             out: np.ndarray | None = None) -> np.ndarray:
        if window is None:
            window = Window(0, 0, self.width, self.height)
        data = read_padded(self.source, indexes, int(window.row_off) + self.row,
                           int(window.col_off) + self.col, int(window.height),
                           int(window.width), out)
        return data.astype(out_dtype, copy=False)

    def sample(self, indexes: Sequence[int], max_side: int) -> np.ndarray:
        """A decimated read of the window alone (:func:`decimated_read`'s), nodata NaN."""
        step = max(1, -(-max(self.width, self.height) // max_side))
        shape = (len(indexes), max(1, self.height // step), max(1, self.width // step))
        sample = getattr(self.source, "sample", None)
        if sample is not None and (self.height, self.width) == (self.source.height,
                                                                 self.source.width):
            return np.asarray(sample(indexes, max_side))
        reader: Any = self.source  # a rasterio dataset: it reads decimated (out_shape)
        data = reader.read(list(indexes), window=Window(self.col, self.row, self.width,
                                                        self.height),
                           out_shape=shape, out_dtype="float32")
        return _masked(self.source, indexes, data)

    def tags(self) -> dict[str, str]:
        """The source's tags: the input checks read a stack's recipe there."""
        tags = getattr(self.source, "tags", None)
        return dict(tags()) if callable(tags) else {}


class MaskedFileSource:
    """A raster read through rasterio with pixels at or below :data:`MASKED_BELOW` as NaN."""

    def __init__(self, path: str, identity: str | None = None) -> None:
        self.identity, self.path = identity or path, path
        with gdal_env(path):  # GDAL keeps the credentials with the open file
            self._ds = rasterio.open(files.gdal_path(path))
        ds = self._ds
        fingerprint = ds.tags().get(FINGERPRINT_TAG)  # a backend's stack: by its content
        self.content = content_key(path, fingerprint, ds) if fingerprint or not identity \
            else f"{content_key(path)}#{identity}"
        self.width, self.height, self.count = ds.width, ds.height, ds.count
        self.transform, self.crs, self.descriptions = ds.transform, ds.crs, ds.descriptions
        self.nodatavals = (float("nan"),) * ds.count

    def read(self, indexes: Sequence[int], window: Any = None, out_dtype: str = "float32",
             out: np.ndarray | None = None,
             out_shape: tuple[int, ...] | None = None) -> np.ndarray:
        """As rasterio's ``read`` (``out_shape`` reads decimated: a window's sample)."""
        data = self._ds.read(list(indexes), window=window, out_dtype="float32", out=out,
                             out_shape=out_shape)
        data[data <= MASKED_BELOW] = np.nan
        return data

    def sample(self, indexes: Sequence[int], max_side: int) -> np.ndarray:
        """A decimated read of ``indexes`` (inputs checked before predicting), masked as NaN."""
        return decimated_read(self._ds, indexes, max_side)

    def tags(self) -> dict[str, str]:
        """The raster's tags (the input checks read its recipe: an L1C export says so)."""
        return dict(self._ds.tags())

    def close(self) -> None:
        self._ds.close()

    def __enter__(self) -> MaskedFileSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


SAMPLE_SIDE = 1024
"""Pixels a side of the decimated sample a fit over a whole stack reads (:func:`decimated_read`:
the relative normalisation, the spectral change rule's fit)."""


def decimated_read(src: Any, indexes: Sequence[int], max_side: int) -> np.ndarray:
    """Bands ``indexes`` of an open rasterio dataset, at most ``max_side`` a side, nodata NaN."""
    step = max(1, -(-max(src.width, src.height) // max_side))
    shape = (len(indexes), max(1, src.height // step), max(1, src.width // step))
    return _masked(src, indexes, src.read(list(indexes), out_shape=shape, out_dtype="float32"))


def masked_read(src: Any, indexes: Sequence[int], window: Window) -> np.ndarray:
    """Bands ``indexes`` of an open rasterio dataset in ``window``, float32, nodata NaN.

    Nodata as :func:`decimated_read` reads it (each band's nodata value, and Earth Engine's
    masked pixels at or below :data:`MASKED_BELOW`), so a fit on the sample and the windows it
    scores see the same pixels as missing.
    """
    return _masked(src, indexes, src.read(list(indexes), window=window, out_dtype="float32"))


def _masked(src: Any, indexes: Sequence[int], data: np.ndarray) -> np.ndarray:
    """``data`` (bands ``indexes`` of ``src``) with every band's nodata set to NaN, in place."""
    for k, index in enumerate(indexes):
        nodata = src.nodatavals[index - 1]
        if nodata is not None and not np.isnan(nodata):
            data[k][data[k] == np.float32(nodata)] = np.nan
    data[data <= MASKED_BELOW] = np.nan
    return data


def unreadable(src_path: str, exc: Exception) -> str:
    """The one-line refusal of an input GDAL cannot read (at open or mid-run)."""
    return files.raster_refusal("--input", src_path, exc, "the stack GeoTIFF/VRT")
