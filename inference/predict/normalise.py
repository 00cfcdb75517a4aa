"""Raw tiles normalised into the model's batch on the CPU: ``x * (1/std) - mean/std``, one pass.

Each tile is read where it lies (a view into the caller's tile row, or a
:class:`~inference.predict.direct_read.Mosaic` of the input file's pages) and written once,
normalised, into a batch tensor reused from call to call (a fresh one is tens of MB of new
pages to fault in on the model's thread between forwards). Two ways write the same values:

- ``torch``: a broadcasting multiply-add per tile (per piece of a mosaic);
- ``native``: the C loop of ``normalise.c`` (:mod:`gee_export.core.native`), which reads a
  pixel's bands from their planes and writes them side by side. Writing a channels-last batch
  from band-planar tiles is where torch's strided inner loop costs the most.

Which is faster on this machine is measured on the first batch of each memory format (torch's
way and each build of the C loop, :data:`BUILDS`, in turns, each going first once; the least
CPU time of this thread wins) and kept: the tiles' source does not change within a job. Without a
C compiler, or with ``ISAMAP_NATIVE=off``, it is torch.

NaN and infinities (nodata) become 0, the band mean. The C loop finds them from the bits of
what it writes; torch's way sums each tile just written (still in the cache: NaN and
infinities survive a sum, so one read proves there are none).
"""

from __future__ import annotations

import ctypes
import functools
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from gee_export.core import native
from gee_export.core.commands import DETAIL
from inference.predict.direct_read import Mosaic

log = logging.getLogger(__name__)

Method = Literal["torch", "native"]
#: the C source of the ``native`` way
SOURCE = Path(__file__).with_name("normalise.c")
#: a batch of raw tiles: ``(N, C, H, W)``, or N arrays ``(C, H, W)`` or mosaics
Tiles = np.ndarray | Sequence[np.ndarray | Mosaic]
#: rounds of the ways on the first batch, at least (the least CPU time of each counts)
ROUNDS = 2
#: the C loop's builds (compiler options) the first batch chooses from: which is faster
#: depends on the compiler, the CPU and the loop (six bands or not, channels last or first);
#: ``benchmarks/bench_encoder.py`` times the six-band loop's builds
BUILDS: tuple[tuple[str, ...], ...] = (("-O2",), ("-O3",))

_F32 = np.dtype(np.float32)
_ARGS = (ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int, ctypes.c_int,
         ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
         ctypes.c_int64, ctypes.c_int64)


def kernel(optimise: tuple[str, ...] = native.OPTIMISE) -> Callable[..., int] | None:
    """The C function (``optimise``: compiler options), or None where it cannot be had."""
    library = native.load(SOURCE, optimise)
    if library is None:
        return None
    fn = library.isamap_normalise
    fn.argtypes, fn.restype = _ARGS, ctypes.c_int
    return fn


class BatchNormaliser:
    """Writes raw tiles normalised into a reused batch tensor.

    Args:
        shift, scale: per band, ``-mean/std`` and ``1/std`` (float32).
        method: ``"torch"`` or ``"native"`` to fix the way; None measures it on the first
            batch.
        builds: the compiler options of the C loop's builds to choose from (each one that
            builds is a candidate).
    """

    def __init__(self, shift: np.ndarray, scale: np.ndarray, method: Method | None = None,
                 builds: Sequence[tuple[str, ...]] = BUILDS) -> None:
        self.shift = np.ascontiguousarray(shift, _F32).reshape(-1)
        self.scale = np.ascontiguousarray(scale, _F32).reshape(-1)
        self._shift_t = torch.from_numpy(self.shift).view(-1, 1, 1)
        self._scale_t = torch.from_numpy(self.scale).view(-1, 1, 1)
        #: the candidate ways: ``"torch"`` and ``"C <options>"`` per build of the C loop
        self.ways: dict[str, Callable[[np.ndarray | Mosaic, torch.Tensor, int], bool]] = {}
        if method != "native":
            self.ways["torch"] = self._torch
        if method != "torch":
            for options in builds:
                if (fn := kernel(options)) is not None:
                    self.ways[" ".join(("C", *options))] = functools.partial(self._native, fn)
        if not self.ways:
            raise RuntimeError("the C loop is not available (see the log); use torch")
        #: the way of the last batch (a key of :attr:`ways`); None before the first
        self.way: str | None = None
        #: CPU seconds of each way on the last batch they were measured on
        self.timings: dict[str, float] = {}
        #: the way chosen for each memory format (chosen on its first batch: a layout costs
        #: each way differently, and ``auto`` normalises its first batch channels-first)
        self._chosen: dict[torch.memory_format, str] = {}
        self._buffers: dict[tuple, torch.Tensor] = {}

    @property
    def method(self) -> Method | None:
        """``"torch"`` or ``"native"`` (the C loop); None until measured."""
        return None if self.way is None else "torch" if self.way == "torch" else "native"

    def __call__(self, tiles: Tiles, fmt: torch.memory_format,
                 finite: bool | None = None) -> tuple[torch.Tensor, bool]:
        """The batch ``(N, C, H, W)`` in ``fmt`` and whether all its values were finite.

        ``finite``: None (each tile is checked; those with NaN or infinities have them
        replaced), True (the caller knows there are none) or False (replaced unchecked).
        """
        n, shape = len(tiles), tuple(tiles[0].shape)
        if any(tuple(tile.shape) != shape for tile in tiles):
            raise ValueError(f"tiles of a batch differ in shape: "
                             f"{sorted({tuple(tile.shape) for tile in tiles})}")
        key = (n, *shape, fmt)
        if key not in self._buffers:
            self._buffers.clear()
            with torch.inference_mode(False):  # writable in and outside inference mode
                self._buffers[key] = torch.empty((n, *shape), memory_format=fmt)
        x = self._buffers[key]
        if fmt not in self._chosen:
            self._chosen[fmt] = self._measure(tiles, x)
        self.way = self._chosen[fmt]
        write = self.ways[self.way]
        clean = finite is not False
        for j in range(n):
            if not write(tiles[j], x, j) and finite is None:
                torch.nan_to_num_(x[j], nan=0.0, posinf=0.0, neginf=0.0)
                clean = False
        if finite is False:
            torch.nan_to_num_(x, nan=0.0, posinf=0.0, neginf=0.0)
        return x, clean

    # ------------------------------------------------------------------ the ways
    def _torch(self, tile: np.ndarray | Mosaic, x: torch.Tensor, j: int) -> bool:
        """Tile ``j`` by torch; whether it is finite."""
        shift, scale = self._shift_t, self._scale_t
        if isinstance(tile, Mosaic):  # pieces of the input file's blocks, in place
            for p in tile.pieces:
                _, h, w = p.array.shape
                torch.addcmul(shift[p.bands], torch.from_numpy(p.array), scale[p.bands],
                              out=x[j, p.bands, p.row:p.row + h, p.col:p.col + w])
        else:
            raw = torch.from_numpy(np.asarray(tile, dtype=_F32))
            torch.addcmul(shift, raw, scale, out=x[j])
        return bool(torch.isfinite(x[j].sum()))

    def _native(self, fn: Callable[..., int], tile: np.ndarray | Mosaic, x: torch.Tensor,
                j: int) -> bool:
        """Tile ``j`` by the C loop ``fn``, piece by piece; whether it is finite."""
        sn, sc, sh, sw = x.stride()
        item = _F32.itemsize
        base = x.data_ptr() + item * j * sn
        pieces = ([(p.array, p.bands.start or 0, p.row, p.col) for p in tile.pieces]
                  if isinstance(tile, Mosaic) else [(np.asarray(tile, dtype=_F32), 0, 0, 0)])
        bad = 0
        # every piece lies inside its tile (Mosaic checks it) and every tile has the slot's
        # shape (__call__): the C loop writes inside the batch
        for a, b0, row, col in pieces:
            if a.dtype != _F32 or a.strides[2] != item or a.strides[0] % item \
                    or a.strides[1] % item:
                a = np.ascontiguousarray(a, dtype=_F32)
            nb, h, w = a.shape
            bad |= fn(a.ctypes.data, a.strides[0] // item, a.strides[1] // item, nb, h, w,
                      self.shift.ctypes.data + item * b0, self.scale.ctypes.data + item * b0,
                      base + item * (b0 * sc + row * sh + col * sw), sc, sh, sw)
        return not bad

    def _measure(self, tiles: Tiles, x: torch.Tensor) -> str:
        """The way with the least CPU time on this batch, each going first in turn.

        The only way, untimed, when there is one.
        """
        names = list(self.ways)
        if len(names) == 1:
            return names[0]
        best = dict.fromkeys(names, float("inf"))
        for r in range(max(ROUNDS, len(names))):
            for name in names[r % len(names):] + names[:r % len(names)]:
                start = time.thread_time()
                for j in range(len(tiles)):
                    self.ways[name](tiles[j], x, j)
                best[name] = min(best[name], time.thread_time() - start)
        self.timings = best
        way = min(best, key=best.get)
        log.log(DETAIL, "tiles normalised by %s: %.1f CPU-ms per batch (%s)", way, 1e3 * best[way],
                ", ".join(f"{name} {1e3 * t:.1f}" for name, t in best.items()))
        return way
