"""The sliding window's engine: three threads that read, predict and write a raster's strips.

:func:`inference.predict.raster.predict_raster` decides what to run (bands, fingerprint, resuming,
outputs); :class:`SlidingWindowJob` runs it: a reader (the next block of a tile row into a
reused buffer, and its nodata mask), the main thread (batches of tile views through the
model), and a writer (blend, take, the checkpoint strip files, and the two maps' COG
encoders). Per-stage times (:class:`Stages`) go back with the result.
:class:`PredictConfig` (tiling and output options) is the job's configuration;
:mod:`inference.predict.raster` re-exports it.
"""

from __future__ import annotations

import collections
import contextlib
import math
import threading
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.errors
from affine import Affine
from rasterio.windows import Window

from contract.vrt import Piece
from core.errors import ConfigError, InputDataError
from core.progress import progress_bar
from core.storage import atomic_path, temporary_name
from core.storage.gdal_auth import check_read
from inference.cog import maps, stream
from inference.cog.layout import write_tiled
from inference.cog.maps import BLOCK, NODATA
from inference.predict.blending import (
    Accumulator,
    encode,
    invalid_mask,
    strip_bounds,
    tile_weights,
    weight_sums,
)
from inference.predict.keep import KeepRule
from inference.predict.keep_inputs import KeepStrips
from inference.predict.lattice import AxisTile, Blend, Lattice, grid_offset
from inference.predict.postprocess import POSTPROCESSES, ClaheParams, ClaheStream, Postprocess
from inference.predict.runtime import TilePredictor
from inference.predict.sources import read_padded, unreadable

#: Column blocks of work the writer thread may fall behind the model (bounds the memory).
PENDING_BLOCKS = 2
#: About how many input pixels wide the reader reads a tile row at a time (a whole number of
#: batches of tile columns): the read buffers do not grow with the raster's width.
COLUMN_BLOCK_PX = 4096

#: a block's nodata mask on the output grid, and its output ``(row, col)``
Invalid = tuple[np.ndarray, int, int]


@dataclass(frozen=True)
class PredictConfig:
    """Tiling and output options.

    Attributes:
        tile: input tile size in pixels (on the input grid).
        overlap: minimum overlap between neighbouring tiles, input pixels.
        batch_size: tiles per forward pass.
        blend: ``"cosine"`` (tapered-cosine weights, no seams), ``"uniform"`` (plain mean of
            overlapping tiles; kept to show what the cosine blend removes) or ``"core"`` (each
            pixel from the one tile that owns it: the map any runner of the same lattice gives,
            :mod:`inference.predict.blending`).
        strip_rows: output rows per checkpoint strip (a multiple of 16).
        isa_class: index of the impervious class in the model's classes.
        compress: COG compression.
        keep_work: keep the strip directory after the COGs are written (debugging).
        postprocess: ``"clahe"`` re-decides the class map with the CLAHE post-processing
            of the impervious probability (:mod:`inference.predict.postprocess`); the probability
            band stays the model's.
            ``"keep"`` keeps a coarse product's impervious class unless green, and its
            classes the model never learnt (:mod:`inference.predict.keep`): on the pixels
            the rule decides, the probabilities become the decision's (1 for the class it
            chose, 0 for the others), so the probability COG holds 1 where the rule keeps a
            pixel impervious, 0 where it takes one out (or gives it the product's class), and
            the model's impervious probability everywhere else. With the rule's ``window``
            the other pixels' probabilities are those given the product's class shares
            (:mod:`inference.predict.shares`).
        clahe: its parameters.
        keep: the keep rule (``"keep"``), settled for the map before the first tile
            (:func:`inference.predict.keep_inputs.settle`).
        force_postprocess: apply ``postprocess`` to a model it was not made for (a binary ISA
            model); see :func:`inference.predict.postprocess.check_postprocess`. It does not
            change the map, so it is no part of a run's identity.
        any_tile: predict on ``tile`` even where the model file records another window
            (:func:`inference.predict.blending.check_window`); the tile is part of the
            lattice every output records, so this flag is no part of a run's identity.
    """

    tile: int = 512
    overlap: int = 64
    batch_size: int = 8
    blend: Blend = "cosine"
    strip_rows: int = 512
    isa_class: int = 1
    compress: maps.Compression = "DEFLATE"
    keep_work: bool = False
    postprocess: Postprocess = "none"
    clahe: ClaheParams = field(default_factory=ClaheParams)
    keep: KeepRule | None = None
    force_postprocess: bool = False
    any_tile: bool = False

    def __post_init__(self) -> None:
        Lattice(self.tile, self.overlap, self.blend)  # checks the tiling and the blend
        if self.postprocess not in POSTPROCESSES:
            raise ConfigError(f"postprocess must be one of {', '.join(POSTPROCESSES)}, got "
                              f"{self.postprocess!r}")
        if self.postprocess == "keep" and self.keep is None:
            raise ConfigError("--postprocess keep needs its product: give --keep-product "
                              "RASTER and --keep-table SOURCE")
        if self.batch_size < 1:
            raise ConfigError(f"batch size must be >= 1, got {self.batch_size}")
        if self.strip_rows < 16 or self.strip_rows % 16:
            raise ConfigError(f"strip rows must be a multiple of 16, got {self.strip_rows}")
        window = self.keep.window if self.postprocess == "keep" and self.keep else 0
        if window and self.strip_rows % window:
            # each strip must hold whole rows of windows, so strips give the whole map's pixels
            raise ConfigError(f"--keep-window {window} does not divide the {self.strip_rows} "
                              f"rows of an output strip; give a divisor of it (e.g. 32, 64 "
                              f"or 128)")

    @property
    def lattice(self) -> Lattice:
        """Where the tiles are cut and how they combine (recorded in the outputs)."""
        return Lattice(self.tile, self.overlap, self.blend)


def read_rows(src: Any, indexes: Sequence[int], row: int, rows: int,
              out: np.ndarray | None = None) -> np.ndarray:
    """Input rows ``[row, row + rows)`` of the bands ``indexes`` at full width, float32.

    How the engine reads its input: ``src`` is anything with rasterio's ``read(indexes,
    window=..., out_dtype=..., out=...)``, ``width``, ``height`` and ``nodatavals``. ``out``
    (float32, ``(bands, rows, width)``) is filled instead of a new array: a tile row of a wide
    region is hundreds of MB, and a fresh one costs the reader a page fault per 4 KiB every
    row.
    """
    window = Window(0, row, src.width, rows)
    with _read_errors(src):
        return src.read(list(indexes), window=window, out_dtype="float32", out=out)


@contextlib.contextmanager
def _read_errors(src: Any) -> Iterator[None]:
    """A damaged or vanished input as :class:`InputDataError`, credentials as their own error."""
    try:
        yield
    except (rasterio.errors.RasterioError, OSError) as exc:
        name = getattr(src, "name", "the input")
        check_read(name, exc)  # credentials or network, not a damaged stack
        raise InputDataError(unreadable(name, exc)) from None


class Stages:
    """Seconds per stage, summed over the threads that run it (thread-safe).

    Wall time, and the CPU time of the calling thread: what the stage costs the model's
    cores, whatever other threads make of their wall time.
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def time(self, name: str) -> Iterator[None]:
        start, cpu = time.perf_counter(), time.thread_time()
        try:
            yield
        finally:
            with self._lock:
                self.seconds[name] += time.perf_counter() - start
                self.cpu[name] += time.thread_time() - cpu


def _cpu_is_free(predictor: TilePredictor) -> bool:
    """Whether the model leaves the CPU cores to the pipeline (it runs on an accelerator)."""
    return predictor.device.type != "cpu"


class SlidingWindowJob:
    """One run of the sliding window: three threads, each owning its stage's state.

    - reader: the next block of tile columns of a tile row (whole tiles of the grid-anchored
      lattice, :mod:`inference.predict.lattice`) and its nodata mask, one block ahead;
    - main thread (this object's ``run``): runs the model on batches of tiles (views);
    - writer ("encoder" in the stage names): blends tile probabilities into the accumulator,
      takes finished strips and writes them to their checkpoint files (two bands: classes,
      probability); with ``stream_tags``, it also feeds them to the two maps' COG encoders
      (:mod:`inference.cog.stream`), which compress their tiles and reduce their overviews
      while the model works on the next rows, and the checkpoint stores the encoder's class
      and probability tiles as they are; without, :func:`inference.cog.maps.strips_cog` makes
      the COGs from the strips at the end. With CLAHE post-processing, strips pass through
      the :class:`ClaheStream` first.

    Work handed to the writer is bounded (:data:`PENDING_BLOCKS` blocks), so memory stays
    bounded when it is slower than the model; results arrive in order because the writer is
    one thread.
    """

    def __init__(self, src: Any, indexes: list[int], predictor: TilePredictor,
                 config: PredictConfig, work: Path, transform: Affine,
                 progress: bool, stream_tags: dict[str, str] | None = None,
                 info: maps.OutputInfo | None = None) -> None:
        self.src, self.indexes, self.predictor, self.config = src, indexes, predictor, config
        self.work, self.transform, self.progress = work, transform, progress
        self.nodata = [src.nodatavals[i - 1] for i in indexes]
        #: the reader thread's reads and int8's windows (read by the model's thread when it
        #: has no patches of its own) hold it: rasterio reads one file from one thread at once
        self._source_lock = threading.Lock()
        predictor.int8_input = (src, indexes, self._source_lock)
        s = predictor.scale
        self.width, self.height = src.width * s, src.height * s
        self.strips = strip_bounds(self.height, config.strip_rows)
        self.first = next((i for i, (r0, _) in enumerate(self.strips)
                           if not strip_path(work, r0).exists()), len(self.strips))
        #: first output row an earlier run did not checkpoint
        self.resume_row = (self.strips[self.first:] or [(self.height, 0)])[0][0]
        self.profile = {"driver": "GTiff", "width": self.width, "count": 2, "dtype": "uint8",
                        "crs": src.crs, "nodata": NODATA, "tiled": True, "blockxsize": 512,
                        "blockysize": min(512, config.strip_rows), "compress": "ZSTD",
                        "zstd_level": 1, "interleave": "band"}
        if _cpu_is_free(predictor):  # the model runs on a GPU: GDAL may use every core
            self.profile["num_threads"] = "ALL_CPUS"
        self.stages = Stages()
        #: the two maps' COG encoders (None: GDAL's COG driver writes them from the strips)
        self.streams: dict[str, stream.CogStream] | None = None
        if stream_tags is not None:
            self.streams = {}
            try:
                for kind in ("class", "probability"):
                    self.streams[kind] = stream.open_stream(
                        work, kind, kind, self.width, self.height, transform, src.crs,
                        stream_tags)
            except Exception:
                self.close()
                raise
        self.acc: Accumulator | None = None
        self._cores: tuple[list[tuple[int, int]], dict[int, tuple[int, int]]] | None = None
        self.post = (ClaheStream(self.height, self.width, config.isa_class, config.clahe)
                     if config.postprocess == "clahe" else None)
        #: the keep rule's reader of the product and the bands (None: no keep rule)
        self.keep: KeepStrips | None = None
        if config.postprocess == "keep" and config.keep is not None:
            if info is None:
                raise ConfigError("the keep rule needs the model's bands and classes (info)")
            rule = config.keep
            bands = [indexes[list(info.bands).index(b)] for b in (rule.red, rule.nir)] \
                if rule.settled else []
            try:
                self.keep = KeepStrips(src, bands, rule, info.classes, s, self._source_lock)
            except Exception:
                self.close()
                raise
        # CLAHE needs the tile row above the first missing strip: its strips are recomputed
        # for context (not written again)
        context = self.post.context_start(self.resume_row) if self.post else self.resume_row
        self.todo = [i for i, (_, r1) in enumerate(self.strips) if r1 > context]
        self.tiles = 0
        #: the lattice's tiles along the rows and the columns (anchored to the CRS grid)
        self.rows_t, self.cols_t = config.lattice.axes(src.height, src.width,
                                                       grid_offset(src.transform))
        self.blocks = column_blocks(self.cols_t, config.batch_size, config.tile - config.overlap,
                                    None if getattr(src, "whole_rows", False) else
                                    COLUMN_BLOCK_PX)
        #: the reader fills these in turn (per block width): it runs one block ahead of the
        #: model, so the block the model reads its tiles from is never the one being filled
        self._buffers: dict[int, list[np.ndarray]] = {}
        self._reads: dict[int, int] = {}
        #: the arrays each strip's probabilities are taken into (see ``_close_row``)
        self._taken: tuple[np.ndarray, np.ndarray] | None = None

    def close(self) -> None:
        """Remove the encoders' level files and close the keep rule's product.

        The COGs were assembled from the level files, or the run failed before.
        """
        for encoder in (self.streams or {}).values():
            encoder.remove()
        keep = getattr(self, "keep", None)  # None too when __init__ failed before it
        if keep is not None:
            keep.close()

    def strip_pieces(self) -> list[Piece]:
        """Every checkpoint strip as a piece of the output grid, top to bottom."""
        return [Piece(str(strip_path(self.work, r0).resolve()), r0, 0, r1 - r0, self.width,
                      relative=False) for r0, r1 in self.strips]

    # ---------------------------------------------------------------- main thread
    def run(self) -> None:
        s, tile = self.predictor.scale, self.config.tile
        rows_t, blocks = self.rows_t, self.blocks
        pending: collections.deque[Future] = collections.deque()
        per_block = max(len(b) for b in blocks) // self.config.batch_size + 2
        with ThreadPoolExecutor(1) as reader, \
                ThreadPoolExecutor(1) as writer:

            def hand_over(fn, *args) -> None:
                pending.append(writer.submit(fn, *args))
                while pending and (pending[0].done()
                                   or len(pending) > PENDING_BLOCKS * per_block):
                    with self.stages.time("wait_encoder"):
                        pending.popleft().result()  # re-raises the writer's errors here

            if self.streams is not None and self.first:
                hand_over(self._replay_strips)  # a resumed run's strips go to the COGs first
            if self.todo:
                row_from = self.strips[self.todo[0]][0]
                k0 = next(k for k, y in enumerate(rows_t) if (y.start + tile) * s > row_from)
                self.acc_rows = (row_from, tile * s + self.config.strip_rows)
                todo_tiles = (len(rows_t) - k0) * len(self.cols_t)
                bar = progress_bar(total=todo_tiles, unit="tile", disable=not self.progress,
                                   desc="predict")
                if self.predictor.expected_tiles is None:  # whether compiling can pay
                    self.predictor.expected_tiles = todo_tiles
                units = [(k, c) for k in range(k0, len(rows_t)) for c in range(len(blocks))]
                nxt = reader.submit(self._read, *units[0])
                for n, (k, c) in enumerate(units):
                    with self.stages.time("wait_reader"):
                        block, invalid = nxt.result()
                    if n + 1 < len(units):
                        nxt = reader.submit(self._read, *units[n + 1])
                    finite = True
                    for xs, probs, batch_finite in self._predict_block(block, blocks[c]):
                        finite &= batch_finite
                        hand_over(self._blend, k, xs, probs)
                    if not finite:  # NaN or infinities in the block: their pixels are nodata
                        with self.stages.time("mask"):
                            invalid = self._invalid(block, k, c, finite=False)
                    if invalid is not None:
                        hand_over(self._mark, invalid)
                    if c == len(blocks) - 1:
                        final = (max(rows_t[k + 1].start, 0) * s if k + 1 < len(rows_t)
                                 else self.height)
                        hand_over(self._close_row, final)
                    bar.update(len(blocks[c]))
                    self.tiles += len(blocks[c])
                if self.post is not None:  # the strips the CLAHE stream still holds
                    hand_over(lambda: self._post_done(self.post.finish()))
                bar.close()
            while pending:
                with self.stages.time("wait_encoder"):
                    pending.popleft().result()

    def _predict_block(self, block: np.ndarray,
                       xs: list[AxisTile]) -> Iterator[tuple]:
        """Tiles of one column block, batch by batch: ``(tiles, probabilities, finite)``.

        ``finite``: whether the batch's inputs held no NaN and no infinity. The tiles are
        views into the block: the predictor normalises them straight
        into the model's batch, so the main thread makes no copy of its own, and checks them
        there for NaN and infinities (no pass over the block of its own).
        """
        tile, size = self.config.tile, self.config.batch_size
        col = xs[0].start
        for b in range(0, len(xs), size):
            group = xs[b:b + size]
            with self.stages.time("predict"):
                tiles = [block[:, :, x.start - col:x.start - col + tile] for x in group]
                probs = forward(self.predictor, tiles, size)
            yield group, probs, self.predictor.last_finite

    # ---------------------------------------------------------------- reader thread
    def _read(self, k: int, c: int) -> tuple[np.ndarray, Invalid | None]:
        """Tile row ``k``'s column block ``c``: ``(its tiles' input, nodata mask)``.

        The block spans its tiles whole (past the raster's edges too:
        :func:`inference.predict.sources.read_padded`). The mask (on the output grid, for the
        block's pixels inside the raster) holds the bands' nodata values (None where no band
        has one); NaN and infinities are found by the model's thread as it normalises the
        tiles (:meth:`_predict_block`).
        """
        tile, xs = self.config.tile, self.blocks[c]
        col, width = xs[0].start, xs[-1].start + tile - xs[0].start
        with self.stages.time("read"):
            buffers = self._buffers.setdefault(width, [])
            if len(buffers) < 2:
                buffers.append(np.empty((len(self.indexes), tile, width), np.float32))
            out = buffers[self._reads.get(width, 0) % 2]
            self._reads[width] = self._reads.get(width, 0) + 1
            with self._source_lock, _read_errors(self.src):
                block = read_padded(self.src, self.indexes, self.rows_t[k].start, col, tile,
                                    width, out=out)
        with self.stages.time("mask"):
            invalid = None
            if any(v is not None and not math.isnan(v) for v in self.nodata):
                invalid = self._invalid(block, k, c, finite=True)
        return block, invalid

    def _inside(self, k: int, c: int) -> tuple[int, int, int, int]:
        """``(row0, row1, col0, col1)`` of tile row ``k``'s block ``c`` inside the raster."""
        y, xs, tile = self.rows_t[k].start, self.blocks[c], self.config.tile
        return (max(y, 0), min(y + tile, self.src.height), max(xs[0].start, 0),
                min(xs[-1].start + tile, self.src.width))

    def _invalid(self, block: np.ndarray, k: int, c: int,
                 finite: bool) -> Invalid:
        """Where the block's pixels inside the raster are nodata, and their output corner.

        On the output grid, as ``(mask, row, col)``; ``finite``: skip the NaN test.
        """
        r0, r1, c0, c1 = self._inside(k, c)
        y, x = self.rows_t[k].start, self.blocks[c][0].start
        invalid = invalid_mask(block[:, r0 - y:r1 - y, c0 - x:c1 - x], self.nodata, finite)
        s = self.predictor.scale
        if s > 1:
            invalid = invalid.repeat(s, axis=0).repeat(s, axis=1)
        return invalid, r0 * s, c0 * s

    # ---------------------------------------------------------------- writer thread
    def _blend(self, k: int, xs: list[AxisTile], probs: np.ndarray) -> None:
        s, tile, config = self.predictor.scale, self.config.tile, self.config
        with self.stages.time("blend"):
            if self.acc is None:
                classes = 2 if probs.shape[1] == 1 else probs.shape[1]
                if not 0 <= config.isa_class < classes:
                    raise ConfigError(f"ISA class {config.isa_class} is not one of the "
                                      f"model's {classes} output classes")
                ov = config.overlap
                self.acc = Accumulator(
                    probs.shape[1], self.acc_rows[1], self.width, self.acc_rows[0],
                    weight_sums(self.src.height, self.rows_t, tile, ov, s, config.blend),
                    weight_sums(self.src.width, self.cols_t, tile, ov, s, config.blend))
            y = self.rows_t[k]
            weights = None
            if config.blend == "core":
                r0, r1 = y.core
            else:
                r0, r1 = max(y.start, 0), min(y.start + tile, self.src.height)
                weights = tile_weights(tile * s, config.overlap * s, top=True, bottom=True,
                                       left=True, right=True, blend=config.blend)
            rows = slice((r0 - y.start) * s, (r1 - y.start) * s)
            for j, x in enumerate(xs):
                c0, c1 = x.core if config.blend == "core" else (
                    max(x.start, 0), min(x.start + tile, self.src.width))
                if r1 <= r0 or c1 <= c0:
                    continue
                cols = slice((c0 - x.start) * s, (c1 - x.start) * s)
                self.acc.add(probs[j, :, rows, cols],
                             None if weights is None else weights[rows, cols], r0 * s, c0 * s)

    def _mark(self, invalid: Invalid) -> None:
        """Mark a block's nodata pixels (:meth:`_invalid`) in the accumulator."""
        mask, row, col = invalid
        self._accumulator().mark_invalid(mask, row, col)

    def _accumulator(self) -> Accumulator:
        """The accumulator, made with the first batch (every caller runs after one)."""
        if self.acc is None:
            raise RuntimeError("no batch was predicted before the accumulator was used")
        return self.acc

    def _close_row(self, final_row: int) -> None:
        """Take, checkpoint and encode the strips that end at ``final_row`` or above."""
        while self.todo and self.strips[self.todo[0]][1] <= final_row:
            r0, r1 = self.strips[self.todo.pop(0)]
            with self.stages.time("take"):
                # without CLAHE (which keeps the strip) one pair of arrays serves every strip
                acc = self._accumulator()
                if self.post is None and self._taken is None:
                    self._taken = (np.empty((acc.sums.shape[0], self.config.strip_rows,
                                             self.width), np.float32),
                                   np.empty((self.config.strip_rows, self.width), bool))
                probs, bad = acc.take_probs(r1 - r0, None if self.post else self._taken)
            if self.keep is not None:
                with self.stages.time("postprocess"):
                    probs = self.keep.apply(r0, probs)
            with self.stages.time("take"):
                classes, prob = encode(probs, bad, self.config.isa_class,
                                       overwrite=self.post is None)
            if self.post is None:
                self._finish_strip(r0, classes, prob)
                continue
            with self.stages.time("postprocess"):
                done = self.post.push(r0, probs, bad, (prob, bad))
            self._post_done(done)

    def _post_done(self, done: list[tuple[int, np.ndarray, Any]]) -> None:
        """Strips the CLAHE stream finished: its classes (nodata kept), the model's probability."""
        for r0, classes, (prob, bad) in done:
            classes[bad] = NODATA
            self._finish_strip(r0, classes, prob)

    def _finish_strip(self, r0: int, classes: np.ndarray, prob: np.ndarray) -> None:
        """Write the final strip at row ``r0`` to its checkpoint (unless an earlier run did)."""
        if r0 < self.resume_row:
            return  # a CLAHE context strip: its checkpoint exists already
        profile = {**self.profile, "transform": self.transform @ Affine.translation(0, r0)}
        path = strip_path(self.work, r0)
        if self.streams is None:
            with self.stages.time("checkpoint"):
                write_strip(path, classes, prob, profile)
            return
        with self.stages.time("encode"):
            tiles = self.streams["class"].add(classes) + self.streams["probability"].add(prob)
        with self.stages.time("checkpoint"):
            across, down = math.ceil(self.width / BLOCK), math.ceil(classes.shape[0] / BLOCK)
            if (r0 % BLOCK == 0 and profile["blockysize"] == BLOCK
                    and len(tiles) == 2 * across * down):
                write_strip_tiles(path, tiles, profile, classes.shape[0])
            else:  # the strip is not whole rows of COG tiles
                write_strip(path, classes, prob, profile)

    def _replay_strips(self) -> None:
        """Feed the strips an earlier run left (resuming) to the COG encoders, in order."""
        assert self.streams is not None  # called only when the encoders write the maps
        for r0, _ in self.strips[:self.first]:
            with self.stages.time("checkpoint"), rasterio.open(strip_path(self.work, r0)) as ds:
                classes, prob = ds.read(1), ds.read(2)
            with self.stages.time("encode"):
                self.streams["class"].add(classes)
                self.streams["probability"].add(prob)


def column_blocks(cols: list[AxisTile], batch_size: int, stride: int,
                  block_px: int | None) -> list[list[AxisTile]]:
    """The tile columns of a tile row in blocks read at once: whole batches, ~``block_px`` wide.

    A block holds a whole number of batches (the batches stay the row's runs of
    ``batch_size`` from its first column, :func:`inference.predict.lattice.batches`), so
    blocking changes no forward pass. ``block_px`` None: the whole row in one block.
    """
    per = len(cols) if block_px is None else batch_size * max(1, block_px // (stride *
                                                                              batch_size))
    return [cols[i:i + per] for i in range(0, len(cols), max(per, 1))]


def forward(predictor: TilePredictor, tiles: list[np.ndarray], batch_size: int) -> np.ndarray:
    """The compact probabilities of ``tiles``, a lone tile run beside a copy of itself.

    A forward pass over one tile may round differently from the same tile among others (torch
    picks another kernel for a batch of one); with ``batch_size`` above one a lone tile (the
    end of a row) is therefore never run alone, so a tile's bits do not depend on where the
    row of a map ends (:mod:`inference.predict.lattice`).
    """
    if len(tiles) == 1 and batch_size > 1:
        return predictor([tiles[0], tiles[0]], compact=True)[:1]
    return predictor(tiles, compact=True)


def strip_path(work: Path, row0: int) -> Path:
    return work / f"strip_{row0:07d}.tif"


def write_strip_tiles(path: Path, tiles: Sequence[bytes], profile: dict, height: int) -> None:
    """Write the checkpoint strip from the COG encoders' own compressed tiles.

    ``tiles``: the class band's, then the probability band's (DEFLATE, no predictor), written
    as they are: the same rows are not compressed a second time.
    """
    template = temporary_name(path)
    try:
        options = {k: v for k, v in profile.items() if k not in ("compress", "zstd_level")}
        with rasterio.open(template, "w", **options, height=height, compress="DEFLATE",
                           predictor=1, sparse_ok=True):
            pass  # tags only: the tiles follow
        with atomic_path(path) as tmp:
            write_tiled(Path(tmp), template, tiles)
    finally:
        template.unlink(missing_ok=True)


def write_strip(path: Path, classes: np.ndarray, prob: np.ndarray, profile: dict) -> None:
    with atomic_path(path) as tmp, rasterio.open(tmp, "w", **profile,
                                                 height=classes.shape[0]) as dst:
        dst.write(classes, 1)
        dst.write(prob, 2)
