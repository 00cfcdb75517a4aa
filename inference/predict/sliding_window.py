"""The sliding window's engine: three threads that read, predict and write a raster's strips.

:func:`inference.predict.raster.predict_raster` decides what to run (bands, fingerprint, resuming,
outputs); :class:`SlidingWindowJob` runs it, panel by panel (:mod:`inference.predict.panels`:
blocks of tile columns, each top to bottom, so memory does not grow with the raster's width or
height): a reader (:class:`inference.predict.reader.BlockReader`: the next block of a tile
row into a reused buffer, and its nodata mask), the main thread (batches of tile views through
the model), and a writer (:class:`inference.predict.writer.MapWriter`: blend, take, the
checkpoint strips, and the two maps' COG encoders). Per-stage times
(:class:`inference.predict.stages.Stages`) go back with the result.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine

from contract.bands import own_month
from contract.vrt import Piece
from core.errors import ConfigError
from core.progress import progress_bar
from inference.cog import maps, stream
from inference.cog.maps import NODATA
from inference.predict.blending import strip_bounds
from inference.predict.config import PredictConfig
from inference.predict.keep.inputs import KeepStrips
from inference.predict.lattice import AxisTile, grid_offset
from inference.predict.panels import column_blocks, panels
from inference.predict.postprocess import ClaheStream
from inference.predict.reader import BlockReader
from inference.predict.runtime import TilePredictor
from inference.predict.stages import Stages
from inference.predict.writer import Layout, MapWriter

#: Column blocks of work the writer thread may fall behind the model (bounds the memory).
PENDING_BLOCKS = 2
#: About how many input pixels wide the reader reads a tile row at a time (a whole number of
#: batches of tile columns), and so how wide a panel is: nothing the run holds grows with the
#: raster's width.
COLUMN_BLOCK_PX = 4096


def _cpu_is_free(predictor: TilePredictor) -> bool:
    """Whether the model leaves the CPU cores to the pipeline (it runs on an accelerator)."""
    return predictor.device.type != "cpu"


def _whole_rows(src: Any, config: PredictConfig) -> bool:
    """Whether the map must be one panel of the whole width.

    CLAHE equalises across the width; the keep rule reads the product through GDAL's warper,
    whose approximate transformation depends on the window read (strips of the whole width
    keep the pixels every map of the rule has); a source fetched by whole rows (Earth
    Engine's tiles) reads them in order.
    """
    return bool(getattr(src, "whole_rows", False) or config.postprocess != "none")


class SlidingWindowJob:
    """One run of the sliding window: three threads, each owning its stage's state.

    - reader: the next block of tile columns of a tile row (whole tiles of the grid-anchored
      lattice, :mod:`inference.predict.lattice`) and its nodata mask, one block ahead;
    - main thread (this object's ``run``): runs the model on batches of tiles (views), panel
      by panel, each top to bottom;
    - writer ("encoder" in the stage names): :class:`inference.predict.writer.MapWriter`. With
      ``stream_tags`` it also feeds the two maps' COG encoders (:mod:`inference.cog.stream`)
      and the checkpoint stores the encoder's tiles where a strip is whole tiles; without,
      :func:`inference.cog.maps.strips_cog` makes the COGs from the strips at the end. With
      CLAHE post-processing, strips pass through the :class:`ClaheStream` first.

    Work handed to the writer is bounded (:data:`PENDING_BLOCKS` blocks), so memory stays
    bounded when it is slower than the model.
    """

    def __init__(self, src: Any, indexes: list[int], predictor: TilePredictor,
                 config: PredictConfig, work: Path, transform: Affine,
                 progress: bool, stream_tags: dict[str, str] | None = None,
                 info: maps.OutputInfo | None = None) -> None:
        self.src, self.predictor, self.config = src, predictor, config
        self.work, self.progress = work, progress
        #: the reader thread's reads and int8's windows (read by the model's thread when it
        #: has no patches of its own) hold it: rasterio reads one file from one thread at once
        self._source_lock = threading.Lock()
        predictor.int8_input = (src, indexes, self._source_lock)
        s = predictor.scale
        self.width, self.height = src.width * s, src.height * s
        self.stages = Stages()
        #: the lattice's tiles along the rows and the columns (anchored to the CRS grid)
        rows_t, cols_t = config.lattice.axes(src.height, src.width, grid_offset(src.transform))
        blocks = column_blocks(cols_t, config.batch_size, config.tile - config.overlap,
                               None if getattr(src, "whole_rows", False) else COLUMN_BLOCK_PX)
        self.layout = Layout(rows_t, blocks, panels(blocks, src.width, s,
                                                    _whole_rows(src, config)),
                             strip_bounds(self.height, config.strip_rows), src.height,
                             src.width, s)
        self.reader = BlockReader(src, indexes, config.tile, rows_t, blocks, s,
                                  self._source_lock, self.stages,
                                  None if info is None else own_month(info.bands))
        self.streams: dict[str, stream.CogStream] | None = None
        self.keep: KeepStrips | None = None
        self.done: list[tuple[int, int]] = []  # (panel, strip) an earlier run left, in order
        try:
            self.writer = self._writer(indexes, transform, stream_tags, info)
        except Exception:
            self.close()
            raise
        self.tiles = 0

    def _writer(self, indexes: list[int], transform: Affine,
                stream_tags: dict[str, str] | None, info: maps.OutputInfo | None) -> MapWriter:
        """The writer's state: the encoders, the post-processing, and what is left to do."""
        src, config, s = self.src, self.config, self.predictor.scale
        if stream_tags is not None:  # the two maps' COG encoders
            self.streams = {}
            for kind in ("class", "probability"):
                self.streams[kind] = stream.open_stream(
                    self.work, kind, kind, self.width, self.height, transform, src.crs,
                    stream_tags)
        post = (ClaheStream(self.height, self.width, config.isa_class, config.clahe)
                if config.postprocess == "clahe" else None)
        if config.postprocess == "keep" and config.keep is not None:
            if info is None:
                raise ConfigError("the keep rule needs the model's bands and classes (info)")
            rule = config.keep
            bands = [indexes[list(info.bands).index(b)] for b in (rule.red, rule.nir)] \
                if rule.settled else []
            self.keep = KeepStrips(src, bands, rule, info.classes, s, self._source_lock)
        profile = {"driver": "GTiff", "count": 2, "dtype": "uint8", "crs": src.crs,
                   "nodata": NODATA, "tiled": True, "blockxsize": 512,
                   "blockysize": min(512, config.strip_rows), "compress": "ZSTD",
                   "zstd_level": 1, "interleave": "band"}
        if _cpu_is_free(self.predictor):  # the model runs on a GPU: GDAL may use every core
            profile["num_threads"] = "ALL_CPUS"
        todo, resume_row = self._todo(post)
        return MapWriter(self.layout, config, self.work, todo, resume_row, profile,
                         transform, self.stages, self.streams, post, self.keep)

    def _todo(self, post: ClaheStream | None) -> tuple[dict[int, list[int]], int]:
        """Per panel, the strips to take, and the first row an earlier run did not checkpoint.

        A run resumes at the first strip missing in panel order. CLAHE needs the tile row
        above it: those strips are recomputed for context (not written again).
        """
        lay = self.layout
        units = [(p, s) for p in range(len(lay.panels)) for s in range(len(lay.strips))]
        self.done = next((units[:i] for i, (p, s) in enumerate(units)
                          if not lay.strip_file(self.work, p, s).exists()), units)
        first_p, first_s = units[len(self.done)] if len(self.done) < len(units) else (
            len(lay.panels), 0)
        resume_row = lay.strips[first_s][0] if first_p < len(lay.panels) else self.height
        context = post.context_start(resume_row) if post else resume_row
        todo = {p: [i for i, (_, r1) in enumerate(lay.strips) if p > first_p or r1 > context]
                for p in range(first_p, len(lay.panels))}
        return todo, resume_row

    @property
    def first(self) -> int:
        """How many strips an earlier run left (resumed, not predicted again)."""
        return len(self.done)

    def close(self) -> None:
        """Remove the encoders' level files and close the keep rule's product.

        The COGs were assembled from the level files, or the run failed before.
        """
        for encoder in (self.streams or {}).values():
            encoder.remove()
        if self.keep is not None:
            self.keep.close()

    def strip_pieces(self) -> list[Piece]:
        """Every checkpoint strip as a piece of the output grid, panel by panel."""
        lay = self.layout
        return [Piece(str(lay.strip_file(self.work, p.index, s).resolve()), r0, p.cols[0],
                      r1 - r0, p.width, relative=False)
                for p in lay.panels for s, (r0, r1) in enumerate(lay.strips)]

    # ---------------------------------------------------------------- main thread
    def run(self) -> None:
        """Predict every tile row of every panel still to do; the writer follows."""
        pending: collections.deque[Future] = collections.deque()
        blocks = self.layout.blocks
        per_block = max(len(b) for b in blocks) // self.config.batch_size + 2
        with ThreadPoolExecutor(1) as reader, ThreadPoolExecutor(1) as writer:

            def hand_over(fn: Callable[..., None], *args: Any) -> None:
                pending.append(writer.submit(fn, *args))
                while pending and (pending[0].done()
                                   or len(pending) > PENDING_BLOCKS * per_block):
                    with self.stages.time("wait_encoder"):
                        pending.popleft().result()  # re-raises the writer's errors here

            if self.streams is not None and self.done:
                hand_over(self.writer.replay, self.done)  # a resumed run's strips go first
            units = self._units()
            if units:
                self._predict(units, reader, hand_over)
            while pending:
                with self.stages.time("wait_encoder"):
                    pending.popleft().result()

    def _units(self) -> list[tuple[int, int, int]]:
        """``(panel, tile row, column block)`` still to predict, in order."""
        lay, s, tile = self.layout, self.predictor.scale, self.config.tile
        units = []
        for p, strips in self.writer.todo.items():
            row_from = lay.strips[strips[0]][0]
            k0 = next(k for k, y in enumerate(lay.rows) if (y.start + tile) * s > row_from)
            units += [(p, k, c) for k in range(k0, len(lay.rows))
                      for c in lay.panels[p].blocks]
        return units

    def _predict(self, units: list[tuple[int, int, int]], reader: ThreadPoolExecutor,
                 hand_over: Callable[..., None]) -> None:
        """The model over ``units``: each block's batches handed to the writer as they come."""
        lay, out = self.layout, self.writer
        todo_tiles = sum(len(lay.blocks[c]) for _, _, c in units)
        bar = progress_bar(total=todo_tiles, unit="tile", disable=not self.progress,
                           desc="predict")
        if self.predictor.expected_tiles is None:  # whether compiling can pay
            self.predictor.expected_tiles = todo_tiles
        nxt = reader.submit(self.reader.read, *units[0][1:])
        for n, (p, k, c) in enumerate(units):
            with self.stages.time("wait_reader"):
                block, invalid = nxt.result()
            if n + 1 < len(units):
                nxt = reader.submit(self.reader.read, *units[n + 1][1:])
            if c == lay.panels[p].blocks[0]:
                hand_over(out.begin_row, p, k)
            finite = True
            for xs, probs, batch_finite in self._predict_block(block, lay.blocks[c]):
                finite &= batch_finite
                hand_over(out.blend, p, k, xs, probs)
            if not finite:  # NaN or infinities in the block: their pixels are nodata
                with self.stages.time("mask"):
                    invalid = self.reader.invalid(block, k, c, finite=False)
            if invalid is not None:
                hand_over(out.mark, p, invalid)
            if c == lay.panels[p].blocks[-1]:
                hand_over(out.close_row, p, k)
            bar.update(len(lay.blocks[c]))
            self.tiles += len(lay.blocks[c])
        hand_over(out.finish_post)
        bar.close()

    def _predict_block(self, block: np.ndarray,
                       xs: Sequence[AxisTile]) -> Iterator[tuple]:
        """Tiles of one column block, batch by batch: ``(tiles, probabilities, finite)``.

        ``finite``: whether the batch's inputs held no NaN and no infinity. The tiles are
        views into the block: the predictor normalises them straight into the model's
        batch, so the main thread makes no copy of its own, and checks them there for NaN
        and infinities (no pass over the block of its own).
        """
        tile, size = self.config.tile, self.config.batch_size
        col = xs[0].start
        for b in range(0, len(xs), size):
            group = xs[b:b + size]
            with self.stages.time("predict"):
                tiles = [block[:, :, x.start - col:x.start - col + tile] for x in group]
                probs = forward(self.predictor, tiles, size)
            yield group, probs, self.predictor.last_finite


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
