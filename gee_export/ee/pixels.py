"""computePixels requests for patches: sizing against the service limits, building, decoding.

Pure functions (no server call): export.py sends what these build through the session.
One request per patch carries every band and the label. A request is limited to 48 MB
uncompressed, 32,768 pixels a side and 1,024 bands; a patch that would exceed any of them
(hundreds of bands, or huge patches) is split into band groups, then into spatial tiles, and
reassembled after decoding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from contract.bands import LABEL_NODATA
from contract.grid import Grid, Window
from core.errors import ConfigError, EarthEngineError
from gee_export.ee.embedding import dequantise, is_embedding_band

MAX_REQUEST_BYTES = 50_331_648  # 48 MiB, uncompressed
MAX_REQUEST_SIDE = 32_768
MAX_REQUEST_BANDS = 1_024
FLOAT_BYTES = 4  # every band but the Satellite Embedding's is requested as float32
FLOAT_NODATA_BELOW = -1.0e38  # stack.FLOAT_NODATA marks masked pixels; anything this low is NaN
#: Bytes of an answer turned band-planar at a time (see :func:`planar`)
PLANAR_BLOCK_BYTES = 1 << 20


@dataclass(frozen=True)
class Limits:
    """computePixels limits (overridable so tests can force splitting with tiny patches)."""

    max_bytes: int = MAX_REQUEST_BYTES
    max_side: int = MAX_REQUEST_SIDE
    max_bands: int = MAX_REQUEST_BANDS


@dataclass(frozen=True)
class SubRequest:
    """One computePixels call: a window of a grid and a group of bands."""

    window: Window
    bands: tuple[str, ...]

    @property
    def nbytes(self) -> int:
        return self.window.width * self.window.height * bands_bytes(self.bands)


def value_bytes(band: str) -> int:
    """Bytes of one value of ``band`` in an answer: the embedding's 8-bit integers, else float32."""
    return 1 if is_embedding_band(band) else FLOAT_BYTES


def bands_bytes(bands: tuple[str, ...]) -> int:
    """Bytes of one pixel of ``bands`` in an answer (each band by its own data type)."""
    return sum(value_bytes(b) for b in bands)


def split_request(window: Window, bands: tuple[str, ...],
                  limits: Limits | None = None) -> list[SubRequest]:
    """Cover ``window`` x ``bands`` with requests that each respect ``limits``.

    Band groups come first (they need no stitching), in band order, each band counted at
    the bytes of its data type (:func:`value_bytes`: the embedding's values are one byte);
    only when a single band of the window is too large is the window also cut into tiles.
    """
    limits = limits or Limits()
    if not bands:
        raise ConfigError("a pixel request needs at least one band")
    side, pixels = limits.max_side, window.width * window.height
    widest = max(value_bytes(b) for b in bands)
    if pixels * widest > limits.max_bytes or window.width > side or window.height > side:
        tile = min(side, math.isqrt(limits.max_bytes // widest))
        if tile < 1:
            raise ConfigError(f"request limit {limits.max_bytes} bytes is below one pixel")
        out = []
        for r in range(window.row_off, window.row_end, tile):
            for c in range(window.col_off, window.col_end, tile):
                sub = Window(row_off=r, col_off=c, height=min(tile, window.row_end - r),
                             width=min(tile, window.col_end - c))
                out.extend(split_request(sub, bands, limits))
        return out
    groups: list[list[str]] = [[]]
    size = 0  # bytes of the group being filled, each band at its own data type's size
    for band in bands:
        grown = size + pixels * value_bytes(band)
        if groups[-1] and (grown > limits.max_bytes or len(groups[-1]) >= limits.max_bands):
            groups.append([])
            grown = pixels * value_bytes(band)
        groups[-1].append(band)
        size = grown
    return [SubRequest(window, tuple(group)) for group in groups]


def grid_spec(grid: Grid, window: Window) -> dict[str, Any]:
    """The ``grid`` field of a computePixels request: ``window`` of ``grid``, same lattice."""
    west, _, _, north = grid.window_bounds(window)
    return {
        "dimensions": {"width": window.width, "height": window.height},
        "affineTransform": {"scaleX": grid.resolution, "shearX": 0.0, "translateX": west,
                            "shearY": 0.0, "scaleY": -grid.resolution, "translateY": north},
        "crsCode": grid.crs,
    }


def build_request(expression: Any, grid: Grid, sub: SubRequest) -> dict[str, Any]:
    """A computePixels request for one sub-request (``expression`` holds every band)."""
    return {
        "expression": expression.select(list(sub.bands)) if expression is not None else None,
        "fileFormat": "NUMPY_NDARRAY",
        "bandIds": list(sub.bands),
        "grid": grid_spec(grid, sub.window),
    }


def decode(result: Any, sub: SubRequest) -> np.ndarray:
    """``(bands, height, width)`` float32 from a NUMPY_NDARRAY result; nodata becomes NaN.

    The Satellite Embedding's bands arrive as 8-bit integers and leave as the embedding's
    values (:func:`gee_export.ee.embedding.dequantise`).
    """
    arr = np.asarray(result)
    want = (sub.window.height, sub.window.width)
    if arr.dtype.names:
        missing = [b for b in sub.bands if b not in arr.dtype.names]
        if missing or arr.shape != want:
            raise EarthEngineError(
                f"computePixels returned shape {arr.shape} with bands {arr.dtype.names}; "
                f"expected {want} with {sub.bands}")
        packed = np.dtype([(b, "<f4") for b in sub.bands])
        if arr.dtype == packed:  # the usual answer: float32 pixels, bands in request order
            return planar(arr.view(np.float32).reshape(*want, len(sub.bands)))
        out = np.empty((len(sub.bands), *want), np.float32)  # one copy, band by band
        for i, b in enumerate(sub.bands):  # the embedding's 8-bit integers -> its values
            quantised = is_embedding_band(b) and arr.dtype[b] == np.int8
            out[i] = dequantise(arr[b]) if quantised else arr[b]
        out[out <= FLOAT_NODATA_BELOW] = np.nan
        return out
    if arr.shape != (*want, len(sub.bands)):
        raise EarthEngineError(f"computePixels returned shape {arr.shape}, expected "
                               f"{(*want, len(sub.bands))}")
    return planar(arr.astype(np.float32, copy=False))


def planar(pixels: np.ndarray, block_bytes: int = PLANAR_BLOCK_BYTES) -> np.ndarray:
    """``(bands, h, w)`` float32 of pixel-interleaved ``(h, w, bands)`` float32, nodata NaN.

    A few rows at a time, each block made NaN where nodata while it is still in the cache:
    one transposing copy of the whole answer followed by a nodata pass reads and writes it
    twice from memory, on the cores the model runs on when mapping, where memory-bound
    helper work slows the model most (docs/performance.md); blocked, the same bytes take
    about half the time (``bench_encoder.py``). A field-by-field copy would read the whole
    answer once per band.
    """
    h, w, n = pixels.shape
    out = np.empty((n, h, w), np.float32)
    rows = max(1, block_bytes // max(1, w * n * 4))
    for r in range(0, h, rows):
        block = out[:, r:r + rows]
        np.copyto(block, pixels[r:r + rows].transpose(2, 0, 1))
        block[block <= FLOAT_NODATA_BELOW] = np.nan
    return out


def assemble(window: Window, bands: tuple[str, ...],
             parts: list[tuple[SubRequest, np.ndarray]]) -> np.ndarray:
    """Put decoded sub-requests back into one ``(bands, height, width)`` array.

    One request that covers the whole window in band order is returned as is (no copy).
    """
    if len(parts) == 1 and parts[0][0].window == window and parts[0][0].bands == tuple(bands):
        return parts[0][1]
    out = np.full((len(bands), window.height, window.width), np.nan, np.float32)
    index = {b: i for i, b in enumerate(bands)}
    for sub, data in parts:
        rows = slice(sub.window.row_off - window.row_off, sub.window.row_end - window.row_off)
        cols = slice(sub.window.col_off - window.col_off, sub.window.col_end - window.col_off)
        for k, band in enumerate(sub.bands):
            out[index[band], rows, cols] = data[k]
    return out


def to_label(values: np.ndarray) -> np.ndarray:
    """A label band carried as float back to uint8 (anything not 0/1/... finite -> 255)."""
    out = np.full(values.shape, LABEL_NODATA, np.uint8)
    ok = np.isfinite(values) & (values >= 0) & (values <= LABEL_NODATA)
    out[ok] = np.rint(values[ok]).astype(np.uint8)
    return out
