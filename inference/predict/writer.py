"""The sliding window's writer: blended tiles to finished strips, checkpoints and COG tiles.

:class:`MapWriter` runs in the writer thread of :class:`inference.predict.sliding_window.
SlidingWindowJob` (one thread, so results arrive in order). Per panel
(:mod:`inference.predict.panels`) it blends tile probabilities into an accumulator of the
panel's open rows (:class:`inference.predict.blending.Accumulator`), adds first in each tile
row the seam the panel on the left left it, takes every strip no later tile can touch,
applies the keep rule or CLAHE (:mod:`inference.predict.keep.inputs`,
:class:`inference.predict.postprocess.ClaheStream`), writes the strip's checkpoint and, with
``streams``, feeds it to the two maps' COG encoders (:mod:`inference.cog.stream`), which
compress its tiles and reduce its overviews while the model works on. Where a strip is whole
rows of COG tiles, its checkpoint stores the encoders' tiles as they are.

The checkpoints are what a prediction leaves in its work folder while it runs, so a killed run
can resume:

- *Strips*: each panel's (:mod:`inference.predict.panels`) output rows, ``strip_rows`` at a
  time, as two-band tiled GeoTIFFs (classes, probability): a run restarts at the first strip
  missing in panel order. A strip of the whole width keeps the name it always had.
- *Seams*: per tile row, the weighted probabilities the last tile of a panel gives the
  columns of the next panel (:func:`seam_path`), which that panel adds before its own tiles.
  A seam is written before any strip that follows its tile row, so a resumed run finds every
  seam of the rows it does not predict again; the seams of a panel go once its last strip is
  written.

Every file is written atomically (:func:`core.storage.atomic_path`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine

from core.errors import ConfigError
from core.storage import atomic_path, temporary_name
from inference.cog import stream
from inference.cog.layout import write_tiled
from inference.cog.maps import BLOCK, NODATA
from inference.predict.blending import Accumulator, encode, tile_weights, weight_sums
from inference.predict.config import PredictConfig
from inference.predict.keep.inputs import KeepStrips
from inference.predict.lattice import AxisTile
from inference.predict.panels import Panel
from inference.predict.postprocess import ClaheStream
from inference.predict.reader import Invalid
from inference.predict.stages import Stages


def strip_path(work: Path, row0: int, cols: tuple[int, int] | None = None) -> Path:
    """The strip at output row ``row0`` of the panel of output ``cols`` (None: whole width)."""
    if cols is None:
        return work / f"strip_{row0:07d}.tif"
    return work / f"strip_{row0:07d}_{cols[0]:07d}_{cols[1]:07d}.tif"


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


def seam_path(work: Path, col: int, row: int) -> Path:
    """The seam of tile row ``row`` (its place in the lattice's rows) at output column ``col``."""
    return work / f"seam_{col:07d}_{row:05d}.npy"


def write_seam(path: Path, part: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        np.save(tmp, part)


def read_seam(path: Path) -> np.ndarray:
    """A seam the panel on the left wrote (it must exist: see the module docstring).

    Raises:
        ConfigError: it is missing (the work folder was changed by hand).
    """
    if not path.exists():
        raise ConfigError(f"the work folder {path.parent} lacks {path.name}, which its strips "
                          "need; pass --restart (Python: restart=True) to map again")
    return np.load(path)


@dataclass(frozen=True)
class Layout:
    """Where a run's tiles, panels and strips lie (input and output grids).

    Attributes:
        rows: the lattice's tile rows; ``blocks``: its column blocks; ``panels``: the panels.
        strips: ``(row0, row1)`` of every output strip (the same in every panel).
        height / width: the input raster's size; ``scale``: output pixels per input pixel.
    """

    rows: Sequence[AxisTile]
    blocks: Sequence[Sequence[AxisTile]]
    panels: Sequence[Panel]
    strips: Sequence[tuple[int, int]]
    height: int
    width: int
    scale: int

    def strip_file(self, work: Path, p: int, s: int) -> Path:
        """The checkpoint of panel ``p``'s strip ``s`` (a whole-width strip by its old name)."""
        cols = self.panels[p].cols
        return strip_path(work, self.strips[s][0],
                          None if cols == (0, self.width * self.scale) else cols)

    def final_row(self, k: int) -> int:
        """The first output row tile rows after ``k`` still touch (rows above are final)."""
        return (max(self.rows[k + 1].start, 0) * self.scale if k + 1 < len(self.rows)
                else self.height * self.scale)


class MapWriter:
    """The writer thread's state and work (see the module docstring).

    Args:
        layout: the run's tiles, panels and strips.
        config: tiling and output options.
        work: the work folder (checkpoints and seams).
        todo: per panel, the strips still to take, in order (a resumed run's first panel
            may start with context strips CLAHE needs, which are not written again).
        resume_row: in the first panel to do, the first row whose strip is missing.
        profile: the checkpoint strips' GeoTIFF profile (without size and transform).
        transform: the output grid's.
        stages: where the stage times go.
        streams: the two maps' COG encoders (None: GDAL writes the COGs from the strips).
        post / keep: CLAHE's stream or the keep rule's strips, or None.
    """

    def __init__(self, layout: Layout, config: PredictConfig, work: Path,
                 todo: dict[int, list[int]], resume_row: int, profile: dict[str, Any],
                 transform: Affine, stages: Stages,
                 streams: dict[str, stream.CogStream] | None,
                 post: ClaheStream | None, keep: KeepStrips | None) -> None:
        self.layout, self.config, self.work, self.todo = layout, config, work, todo
        self.first = min(todo, default=len(layout.panels))
        self.resume_row, self.profile, self.transform = resume_row, profile, transform
        self.stages, self.streams, self.post, self.keep = stages, streams, post, keep
        self.acc: Accumulator | None = None
        self._acc_panel = -1
        self._weights: tuple[np.ndarray, np.ndarray] | None = None
        #: the arrays each strip's probabilities are taken into, per width (see close_row)
        self._taken: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._encoding = -1  # the panel the COG encoders are in

    # ---------------------------------------------------------------- accumulation
    def _accumulator(self, p: int, classes: int) -> Accumulator:
        """Panel ``p``'s accumulator, made when its first tile row arrives."""
        if self._acc_panel == p and self.acc is not None:
            return self.acc
        lay, config = self.layout, self.config
        if self._weights is None:
            args = (config.tile, config.overlap, lay.scale, config.blend)
            self._weights = (weight_sums(lay.height, lay.rows, *args),
                             weight_sums(lay.width, [t for b in lay.blocks for t in b], *args))
        c0, c1 = lay.panels[p].cols
        row0 = lay.strips[self.todo[p][0]][0]
        self.acc = Accumulator(classes, config.tile * lay.scale + config.strip_rows, c1 - c0,
                               row0, self._weights[0], self._weights[1][c0:c1])
        self._acc_panel = p
        return self.acc

    def begin_row(self, p: int, k: int) -> None:
        """Before panel ``p``'s tiles of tile row ``k``: the seam the panel on its left left."""
        if p == 0 or self._reach(p - 1) <= self.layout.panels[p].cols[0]:
            return
        with self.stages.time("blend"):
            part = read_seam(seam_path(self.work, self.layout.panels[p].cols[0], k))
            r0 = self._tile_rows(k)[0]
            self._accumulator(p, part.shape[0]).add(part, None, r0 * self.layout.scale, 0)

    def _reach(self, p: int) -> int:
        """The output column panel ``p``'s last tile gives the map up to."""
        lay = self.layout
        return self._tile_cols(lay.blocks[lay.panels[p].blocks[-1]][-1])[1] * lay.scale

    def _tile_rows(self, k: int) -> tuple[int, int]:
        """Input rows tile row ``k`` gives the map (its core with the core blend)."""
        y, tile = self.layout.rows[k], self.config.tile
        return y.core if self.config.blend == "core" else (
            max(y.start, 0), min(y.start + tile, self.layout.height))

    def _tile_cols(self, x: AxisTile) -> tuple[int, int]:
        tile = self.config.tile
        return x.core if self.config.blend == "core" else (
            max(x.start, 0), min(x.start + tile, self.layout.width))

    def blend(self, p: int, k: int, xs: Sequence[AxisTile], probs: np.ndarray) -> None:
        """Add a batch of panel ``p``'s tiles of tile row ``k``; what passes its edge, a seam."""
        s, config = self.layout.scale, self.config
        with self.stages.time("blend"):
            classes = 2 if probs.shape[1] == 1 else probs.shape[1]
            if not 0 <= config.isa_class < classes:
                raise ConfigError(f"ISA class {config.isa_class} is not one of the "
                                  f"model's {classes} output classes")
            acc = self._accumulator(p, probs.shape[1])
            y, (r0, r1) = self.layout.rows[k], self._tile_rows(k)
            weights = None if config.blend == "core" else tile_weights(
                config.tile * s, config.overlap * s, top=True, bottom=True, left=True,
                right=True, blend=config.blend)
            rows = slice((r0 - y.start) * s, (r1 - y.start) * s)
            o0, o1 = self.layout.panels[p].cols
            for j, x in enumerate(xs):
                c0, c1 = (c * s for c in self._tile_cols(x))
                if r1 <= r0 or c1 <= c0:
                    continue
                mine = slice(max(c0, o0) - x.start * s, min(c1, o1) - x.start * s)
                if mine.stop > mine.start:
                    acc.add(probs[j, :, rows, mine],
                            None if weights is None else weights[rows, mine], r0 * s,
                            max(c0, o0) - o0)
                if c1 > o1:  # the next panel's columns: they wait for it in a seam
                    theirs = slice(o1 - x.start * s, c1 - x.start * s)
                    part = probs[j, :, rows, theirs]
                    if weights is not None:
                        part = part * weights[rows, theirs]
                    write_seam(seam_path(self.work, o1, k), np.ascontiguousarray(part))

    def mark(self, p: int, invalid: Invalid) -> None:
        """Mark a block's nodata pixels in panel ``p``'s columns as nodata."""
        mask, row, col = invalid
        o0, o1 = self.layout.panels[p].cols
        a, b = max(col, o0), min(col + mask.shape[1], o1)
        if self.acc is None or self._acc_panel != p:
            raise RuntimeError("no batch was predicted before the accumulator was used")
        if b > a:
            self.acc.mark_invalid(mask[:, a - col:b - col], row, a - o0)

    # ---------------------------------------------------------------- strips
    def close_row(self, p: int, k: int) -> None:
        """Take, checkpoint and encode panel ``p``'s strips final after tile row ``k``."""
        todo, final = self.todo[p], self.layout.final_row(k)
        while todo and self.layout.strips[todo[0]][1] <= final:
            s = todo.pop(0)
            r0, r1 = self.layout.strips[s]
            with self.stages.time("take"):
                # without CLAHE (which keeps the strip) one pair of arrays serves every strip
                acc = self.acc
                if acc is None or self._acc_panel != p:
                    raise RuntimeError("a strip was taken before its panel's first batch")
                probs, bad = acc.take_probs(r1 - r0, None if self.post else self._taken_into(
                    acc.sums.shape[0], acc.sums.shape[2]))
            if self.keep is not None:
                with self.stages.time("postprocess"):
                    probs = self.keep.apply(r0, probs)  # one panel: the whole width
            with self.stages.time("take"):
                classes, prob = encode(probs, bad, self.config.isa_class,
                                       overwrite=self.post is None)
            if self.post is None:
                self.finish_strip(p, s, classes, prob)
                continue
            with self.stages.time("postprocess"):
                done = self.post.push(r0, probs, bad, (s, prob, bad))
            self.post_done(done)
        if not todo and p > 0:  # the panel is checkpointed: its seams are spent
            col = self.layout.panels[p].cols[0]
            for k in range(len(self.layout.rows)):
                seam_path(self.work, col, k).unlink(missing_ok=True)

    def _taken_into(self, channels: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        if width not in self._taken:
            self._taken[width] = (np.empty((channels, self.config.strip_rows, width),
                                           np.float32),
                                  np.empty((self.config.strip_rows, width), bool))
        return self._taken[width]

    def post_done(self, done: list[tuple[int, np.ndarray, Any]]) -> None:
        """Strips the CLAHE stream finished: its classes (nodata kept), the model's probability.

        CLAHE runs on one panel of the whole width.
        """
        for _, classes, (s, prob, bad) in done:
            classes[bad] = NODATA
            self.finish_strip(0, s, classes, prob)

    def finish_post(self) -> None:
        """The strips the CLAHE stream still holds, once the last row is in."""
        if self.post is not None:
            self.post_done(self.post.finish())

    def finish_strip(self, p: int, s: int, classes: np.ndarray, prob: np.ndarray) -> None:
        """Write panel ``p``'s final strip ``s`` to its checkpoint (unless an earlier run did)."""
        r0 = self.layout.strips[s][0]
        if p == self.first and r0 < self.resume_row:
            return  # a CLAHE context strip: its checkpoint exists already
        c0, c1 = self.layout.panels[p].cols
        profile = {**self.profile, "width": c1 - c0,
                   "transform": self.transform @ Affine.translation(c0, r0)}
        path = self.layout.strip_file(self.work, p, s)
        if self.streams is None:
            with self.stages.time("checkpoint"):
                write_strip(path, classes, prob, profile)
            return
        with self.stages.time("encode"):
            tiles = self._encode(p, classes, prob)
        with self.stages.time("checkpoint"):
            whole = c0 % BLOCK == 0 and (c1 % BLOCK == 0 or c1 == self.layout.width *
                                         self.layout.scale)
            across, down = math.ceil((c1 - c0) / BLOCK), math.ceil(classes.shape[0] / BLOCK)
            if (whole and r0 % BLOCK == 0 and profile["blockysize"] == BLOCK
                    and len(tiles) == 2 * across * down):
                write_strip_tiles(path, tiles, profile, classes.shape[0])
            else:  # the strip is not whole COG tiles
                write_strip(path, classes, prob, profile)

    def _encode(self, p: int, classes: np.ndarray, prob: np.ndarray) -> list[bytes]:
        """Feed a strip of panel ``p`` to the COG encoders: their tiles it completed."""
        assert self.streams is not None  # called only when the encoders write the maps
        if self._encoding != p:
            for encoder in self.streams.values():
                encoder.begin_panel(*self.layout.panels[p].cols)
            self._encoding = p
        return self.streams["class"].add(classes) + self.streams["probability"].add(prob)

    def replay(self, done: Sequence[tuple[int, int]]) -> None:
        """Feed the strips an earlier run left (resuming) to the COG encoders, in order."""
        for p, s in done:
            with self.stages.time("checkpoint"), \
                    rasterio.open(self.layout.strip_file(self.work, p, s)) as ds:
                classes, prob = ds.read(1), ds.read(2)
            with self.stages.time("encode"):
                self._encode(p, classes, prob)
