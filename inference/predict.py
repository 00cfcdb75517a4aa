"""Streaming sliding-window inference over a raster of any size, resumable.

Memory is bounded by one band of tile rows, never by the raster: the input is read one tile
row at a time (full width, prefetched in a thread while the previous row is predicted), tile
probabilities are blended into an accumulator that only spans the rows still open, and every
output strip whose rows no later tile can touch is written at once to its own small GeoTIFF
(atomically, by a writer thread). The strips are the checkpoint: a killed run restarts at the
first missing strip, recomputing only the tile row whose contribution it needs. At the end the
strips are mosaicked through a VRT into Cloud-Optimized GeoTIFFs (see :mod:`inference.cog`).

With ``postprocess="clahe"`` each strip's probabilities also pass through a
:class:`inference.postprocess.ClaheStream`, which hands a strip back (with its class map
re-decided) once the CLAHE tile row below it is complete; a resumed run restarts one CLAHE
tile row earlier to rebuild that context (the strips there exist and are not rewritten).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.errors
from affine import Affine
from rasterio.windows import Window
from tqdm.auto import tqdm

from gee_export.core.errors import ConfigError, InputDataError
from gee_export.core.storage import atomic_path, atomic_write, files
from inference import cog
from inference.blending import Blend, check_tiling, strip_bounds, tile_starts, tile_weights
from inference.cog import NODATA, PROB_SCALE, OutputInfo
from inference.inputs import unreadable
from inference.postprocess import ClaheParams, ClaheStream, Postprocess
from inference.runtime import TilePredictor
from inference.sources import RasterSource, open_source, source_identity

# GDAL's block cache defaults to 5 % of physical RAM, which would make the footprint grow with
# the machine; one full-width block row of a wide stack (~200 MB at 16k x 6 bands) is all the
# sliding window re-reads (the overlap), so a fixed cache keeps memory bounded.
GDAL_CACHE_MB = 512


@dataclass(frozen=True)
class PredictConfig:
    """Tiling and output options.

    Attributes:
        tile: input tile size in pixels (on the input grid).
        overlap: minimum overlap between neighbouring tiles, input pixels.
        batch_size: tiles per forward pass.
        blend: ``"cosine"`` (tapered-cosine weights, no seams) or ``"uniform"`` (plain mean of
            overlapping tiles; kept to show what the cosine blend removes).
        strip_rows: output rows per checkpoint strip; a multiple of the COG block size keeps
            each strip a whole row of COG tiles.
        isa_class: index of the impervious class in the model's classes.
        compress: COG compression.
        keep_work: keep the strip directory after the COGs are written (debugging).
        postprocess: ``"clahe"`` re-decides the class map with the CLAHE post-processing
            of the impervious probability (:mod:`inference.postprocess`); the probability
            band stays the model's.
        clahe: its parameters.
    """

    tile: int = 512
    overlap: int = 64
    batch_size: int = 8
    blend: Blend = "cosine"
    strip_rows: int = 512
    isa_class: int = 1
    compress: cog.Compression = "DEFLATE"
    keep_work: bool = False
    postprocess: Postprocess = "none"
    clahe: ClaheParams = field(default_factory=ClaheParams)

    def __post_init__(self) -> None:
        check_tiling(self.tile, self.overlap)
        if self.postprocess not in ("none", "clahe"):
            raise ConfigError(f"postprocess must be none or clahe, got {self.postprocess!r}")
        if self.batch_size < 1:
            raise ConfigError(f"batch size must be >= 1, got {self.batch_size}")
        if self.strip_rows < 16 or self.strip_rows % 16:
            raise ConfigError(f"strip rows must be a multiple of 16, got {self.strip_rows}")


@dataclass(frozen=True)
class PredictionResult:
    class_path: str
    prob_path: str
    width: int
    height: int
    transform: tuple[float, ...]
    crs: str
    tiles: int
    seconds: float
    forward_seconds: float
    resumed_strips: int
    skipped: bool

    @property
    def area_km2(self) -> float:
        """Ground area of the map (true km² also for a geographic CRS, as the area table)."""
        from rasterio.crs import CRS

        from inference.stats import raster_area_km2

        return raster_area_km2(Affine(*self.transform[:6]), CRS.from_user_input(self.crs),
                               self.width, self.height)


def select_bands(descriptions: Sequence[str | None], names: Sequence[str],
                 order: Sequence[str] | None = None) -> list[int]:
    """1-based band indexes of ``names`` in a stack, found by band name.

    Args:
        descriptions: the stack's band descriptions (its band names; None where unnamed).
        names: the bands the model needs, in its order.
        order: the stack's band names in file order as the user states them (``--bands``).
            Needed for a stack without names (a count that happens to match says nothing
            about the order, and reordered bands give a wrong map silently); checked against
            the names of a stack that has them.
    """
    if order is not None:
        order = [b.strip() for b in order]
        if len(order) != len(descriptions):
            raise InputDataError(f"--bands names {len(order)} bands but the input has "
                                 f"{len(descriptions)}; name every band in file order")
        if all(d for d in descriptions) and list(descriptions) != order:
            raise InputDataError(
                f"--bands {','.join(order)} contradicts the input's own band names "
                f"{','.join(str(d) for d in descriptions)}; drop --bands (the names are used)")
        descriptions = order
    if all(d for d in descriptions):
        lookup = {d: i + 1 for i, d in enumerate(descriptions)}
        missing = [n for n in names if n not in lookup]
        if missing:
            raise InputDataError(
                f"the input stack lacks band(s) {missing} the model needs; it has "
                f"{list(descriptions)}. Export those bands or use a model trained on these.")
        return [lookup[n] for n in names]
    raise InputDataError(
        f"the input's {len(descriptions)} bands have no names (band descriptions), so their "
        f"order is unknown; if the file's order is the model's, say so with --bands "
        f"{','.join(names)} (Python: band_order=...), else name the bands with: rio edit-info "
        "--bidx N --description NAME FILE")


def _invalid_mask(block: np.ndarray, nodata: Sequence[float | None]) -> np.ndarray:
    """True where any band is NaN or equals its nodata value: the output is nodata there."""
    invalid = np.zeros(block.shape[1:], dtype=bool)
    for band, value in zip(block, nodata, strict=True):
        invalid |= np.isnan(band)
        if value is not None and not math.isnan(value):
            invalid |= band == value
    return invalid


def _pad_to(block: np.ndarray, height: int, width: int) -> np.ndarray:
    pad_h, pad_w = height - block.shape[-2], width - block.shape[-1]
    if pad_h <= 0 and pad_w <= 0:
        return block
    return np.pad(block, ((0, 0), (0, max(pad_h, 0)), (0, max(pad_w, 0))), mode="edge")


class _Accumulator:
    """Weighted sums of probabilities for the output rows ``[row0, row0 + capacity)``."""

    def __init__(self, classes: int, capacity: int, width: int, row0: int) -> None:
        self.sums = np.zeros((classes, capacity, width), dtype=np.float32)
        self.weights = np.zeros((capacity, width), dtype=np.float32)
        self.invalid = np.zeros((capacity, width), dtype=bool)
        self.row0 = row0

    def add(self, probs: np.ndarray, weights: np.ndarray, row: int, col: int) -> None:
        """Add ``probs`` (K, h, w) placed at output ``(row, col)``; rows above row0 are dropped."""
        skip = max(self.row0 - row, 0)
        if skip >= probs.shape[1]:
            return
        r0 = row + skip - self.row0
        h, w = probs.shape[1] - skip, probs.shape[2]
        if r0 + h > self.weights.shape[0]:
            raise RuntimeError("accumulator overflow; tile rows arrived out of order")
        wt = weights[skip:skip + h, :w]
        self.sums[:, r0:r0 + h, col:col + w] += probs[:, skip:, :] * wt
        self.weights[r0:r0 + h, col:col + w] += wt

    def mark_invalid(self, invalid: np.ndarray, row: int) -> None:
        skip = max(self.row0 - row, 0)
        if skip < invalid.shape[0]:
            r0 = row + skip - self.row0
            self.invalid[r0:r0 + invalid.shape[0] - skip] |= invalid[skip:]

    def take(self, rows: int, isa_class: int) -> tuple[np.ndarray, np.ndarray]:
        """Encode and remove the first ``rows`` rows: (class uint8, ISA probability uint8)."""
        return encode(*self.take_probs(rows), isa_class)

    def take_probs(self, rows: int) -> tuple[np.ndarray, np.ndarray]:
        """Remove the first ``rows`` rows: blended probabilities (K, rows, W) and nodata mask."""
        sums, weights = self.sums[:, :rows], self.weights[:rows]
        bad = self.invalid[:rows] | (weights <= 0)
        probs = sums / np.where(weights > 0, weights, 1.0)
        keep = self.weights.shape[0] - rows
        self.sums[:, :keep] = self.sums[:, rows:]  # numpy copies overlapping slices safely
        self.sums[:, keep:] = 0.0
        self.weights[:keep] = self.weights[rows:]
        self.weights[keep:] = 0.0
        self.invalid[:keep] = self.invalid[rows:]
        self.invalid[keep:] = False
        self.row0 += rows
        return probs, bad


def encode(probs: np.ndarray, bad: np.ndarray, isa_class: int) -> tuple[np.ndarray, np.ndarray]:
    """(class uint8, ISA probability uint8) of blended probabilities, nodata where ``bad``.

    One channel means a two-class model in compact form (P(class 1) only).
    """
    if probs.shape[0] == 1:
        p1 = probs[0]
        classes = (p1 > 0.5).astype(np.uint8)  # argmax; a tie goes to class 0
        isa = p1 if isa_class == 1 else 1.0 - p1
    else:
        classes = np.argmax(probs, axis=0).astype(np.uint8)
        isa = probs[isa_class]
    prob = np.rint(np.clip(isa, 0.0, 1.0) * PROB_SCALE).astype(np.uint8)
    classes[bad] = NODATA
    prob[bad] = NODATA
    return classes, prob


def _fingerprint(src_path: str | RasterSource, src: Any, info: OutputInfo,
                 config: PredictConfig, scale: int, model_id: str,
                 indexes: Sequence[int] = ()) -> dict[str, Any]:
    run = {
        "input": source_identity(src_path), "size": [src.height, src.width, src.count],
        **({"indexes": list(indexes)} if list(indexes) != list(range(1, len(indexes) + 1))
           else {}),
        "transform": list(src.transform)[:6], "crs": str(src.crs), "model_id": model_id,
        "bands": list(info.bands), "scale": scale,
        "config": {k: v for k, v in asdict(config).items() if k not in ("batch_size", "keep_work")},
    }
    run["hash"] = hashlib.sha256(json.dumps(run, sort_keys=True).encode()).hexdigest()[:16]
    return run


def _strip_path(work: Path, row0: int) -> Path:
    return work / f"strip_{row0:07d}.tif"


def _write_strip(path: Path, classes: np.ndarray, prob: np.ndarray, profile: dict) -> None:
    with atomic_path(path) as tmp, rasterio.open(tmp, "w", **profile,
                                                 height=classes.shape[0]) as dst:
        dst.write(classes, 1)
        dst.write(prob, 2)


def predict_raster(
    src_path: str | RasterSource, out_prefix: str, predictor: TilePredictor, info: OutputInfo,
    config: PredictConfig | None = None, *, work_dir: str | os.PathLike | None = None,
    model_id: str = "", restart: bool = False, progress: bool = True,
    band_order: Sequence[str] | None = None,
) -> PredictionResult:
    """Predict a whole stack and write ``<out_prefix>_class.tif`` and ``<out_prefix>_prob.tif``.

    Args:
        src_path: stacked input (GeoTIFF/VRT), local or ``gs://`` (read through /vsigs/), or
            an open :class:`inference.sources.RasterSource` (tiles fetched on demand).
        out_prefix: output path prefix, local or ``gs://bucket/prefix``.
        predictor: the model wrapped with its normalisation (see :class:`TilePredictor`).
        info: model/bands/classes/month recorded in the outputs.
        config: tiling and output options.
        work_dir: where checkpoint strips go (default: beside a local output, or
            ``./.isamap-work/<name>`` for gs:// outputs). Must persist for resuming.
        model_id: identifies the model weights (e.g. the model file's hash) so a resumed run
            never mixes strips from two models.
        restart: discard strips of a different earlier run in ``work_dir`` instead of failing.
        progress: show a tqdm bar.
        band_order: the input's band names in file order, for a stack without band
            descriptions (see :func:`select_bands`).

    Returns:
        Paths, size, timings and whether work was resumed or skipped.
    """
    config = config or PredictConfig()
    started = time.perf_counter()
    forward_before = predictor.forward_seconds
    scale = predictor.scale
    class_path, prob_path = f"{out_prefix}_class.tif", f"{out_prefix}_prob.tif"
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB), open_source(src_path) as src:
        indexes = select_bands(src.descriptions, info.bands, band_order)
        nodata = [src.nodatavals[i - 1] for i in indexes]
        run = _fingerprint(src_path, src, info, config, scale, model_id, indexes)
        height, width = src.height * scale, src.width * scale
        transform = src.transform @ Affine.scale(1.0 / scale)
        crs = src.crs
        if _finished(class_path, prob_path, run["hash"]):
            return PredictionResult(class_path, prob_path, width, height, tuple(transform),
                                    str(crs), 0, time.perf_counter() - started, 0.0, 0, True)
        if predictor.channels != len(indexes):
            raise ConfigError(f"model takes {predictor.channels} bands, info lists {len(indexes)}")
        work = _prepare_work(work_dir, out_prefix, run, restart)
        profile = {"driver": "GTiff", "width": width, "count": 2, "dtype": "uint8", "crs": crs,
                   "nodata": NODATA, "tiled": True, "blockxsize": 512,
                   "blockysize": min(512, config.strip_rows), "compress": "ZSTD", "zstd_level": 1,
                   "interleave": "band"}
        strips = strip_bounds(height, config.strip_rows)
        first = next((i for i, (r0, _) in enumerate(strips)
                      if not _strip_path(work, r0).exists()), len(strips))
        if first < len(strips):
            tiles = _run_strips(src, indexes, nodata, predictor, config, strips, first, work,
                                {**profile}, transform, progress)
        else:
            tiles = 0
    parts = [(_strip_path(work, r0), r0, r1 - r0) for r0, r1 in strips]
    tags = cog.output_tags(info, run["hash"], config.tile, config.overlap, scale)
    for path, kind in ((class_path, "class"), (prob_path, "probability")):
        vrt = cog.strips_vrt(work / f"{kind}.vrt", parts, width, height, transform, crs,
                             band=1 if kind == "class" else 2)
        with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB):
            files.put_output(lambda local, v=vrt, k=kind: cog.write_cog(
                v, local, k, tags, compress=config.compress), path, work)
    if not config.keep_work:
        shutil.rmtree(work, ignore_errors=True)
    return PredictionResult(class_path, prob_path, width, height, tuple(transform), str(crs),
                            tiles, time.perf_counter() - started,
                            predictor.forward_seconds - forward_before, first, False)


def _finished(class_path: str, prob_path: str, run_hash: str) -> bool:
    """Whether both outputs exist and were written by this very run configuration."""
    for path in (class_path, prob_path):
        if not files.exists(path):
            return False
        try:
            with rasterio.open(files.gdal_path(path)) as ds:
                if ds.tags().get("isamap_run") != run_hash:
                    return False
        except rasterio.errors.RasterioError:
            return False  # damaged (e.g. a full disk cut it): write it again
    return True


def _prepare_work(work_dir: str | os.PathLike | None, out_prefix: str, run: dict,
                  restart: bool) -> Path:
    if work_dir is None:
        name = out_prefix.rstrip("/").rsplit("/", 1)[-1]
        base = Path(".isamap-work") if files.is_gcs(out_prefix) else Path(out_prefix).parent
        work = base / f".{name}.partial"
    else:
        work = Path(work_dir)
    stamp = work / "run.json"
    if stamp.exists():
        previous = json.loads(stamp.read_text())
        if previous.get("hash") != run["hash"]:
            if not restart:
                raise ConfigError(
                    f"{work} holds strips of a different run (input, model or tiling changed); "
                    "pass --restart (Python: restart=True) to discard them, or choose another "
                    "--work-dir")
            shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    if not stamp.exists():
        text = json.dumps(run, indent=1)
        atomic_write(stamp, lambda handle: handle.write(text.encode("utf-8")))
    return work


def _run_strips(src, indexes, nodata, predictor: TilePredictor, config: PredictConfig,
                strips, first: int, work: Path, profile: dict, transform: Affine,
                progress: bool) -> int:
    s, tile = predictor.scale, config.tile
    starts_y = tile_starts(src.height, tile, config.overlap)
    starts_x = tile_starts(src.width, tile, config.overlap)
    post = (ClaheStream(src.height * s, src.width * s, config.isa_class, config.clahe)
            if config.postprocess == "clahe" else None)
    start = first
    if post is not None:  # the first missing strip needs the CLAHE tile row above it
        context = post.context_start(strips[first][0])
        start = next(i for i, (_, r1) in enumerate(strips) if r1 > context)
    row_from = strips[start][0]  # first output row to compute
    span = min(tile, src.height)
    k0 = next(k for k, y in enumerate(starts_y) if (y + span) * s > row_from)
    acc = None
    pending: list[Future] = []
    todo = list(range(start, len(strips)))
    written_before = strips[first][0]  # strips above this row exist already

    def read(k: int) -> np.ndarray:
        y = starts_y[k]
        window = Window(0, y, src.width, min(tile, src.height - y))
        try:
            return src.read(indexes, window=window, out_dtype="float32")
        except rasterio.errors.RasterioError as exc:
            raise InputDataError(unreadable(src.name, exc)) from None

    with ThreadPoolExecutor(1) as reader, ThreadPoolExecutor(1) as writer:
        def write(r0: int, classes: np.ndarray, prob: np.ndarray) -> None:
            if r0 < written_before:
                return
            for done in [f for f in pending if f.done()]:
                done.result()  # re-raises a failed write here, not at the very end
                pending.remove(done)
            if len(pending) >= 2:  # at most two encoded strips wait in memory
                pending.pop(0).result()
            strip_profile = {**profile, "transform": transform @ Affine.translation(0, r0)}
            pending.append(writer.submit(_write_strip, _strip_path(work, r0), classes, prob,
                                         strip_profile))

        bar = tqdm(total=(len(starts_y) - k0) * len(starts_x), unit="tile", disable=not progress,
                   desc="predict")
        nxt = reader.submit(read, k0)
        for k in range(k0, len(starts_y)):
            block = nxt.result()
            if k + 1 < len(starts_y):
                nxt = reader.submit(read, k + 1)
            y = starts_y[k]
            for x, probs, weights in _predict_row(block, starts_x, predictor, config, starts_y, k):
                if acc is None:
                    classes = 2 if probs.shape[0] == 1 else probs.shape[0]
                    if not 0 <= config.isa_class < classes:
                        raise ConfigError(f"ISA class {config.isa_class} is not one of the "
                                          f"model's {classes} output classes")
                    acc = _Accumulator(probs.shape[0], span * s + config.strip_rows,
                                       src.width * s, row_from)
                acc.add(probs, weights, y * s, x * s)
            bar.update(len(starts_x))
            invalid = _invalid_mask(block, nodata)
            if s > 1:
                invalid = invalid.repeat(s, axis=0).repeat(s, axis=1)
            acc.mark_invalid(invalid, y * s)
            final_row = starts_y[k + 1] * s if k + 1 < len(starts_y) else src.height * s
            while todo and strips[todo[0]][1] <= final_row:
                r0, r1 = strips[todo.pop(0)]
                if post is None:
                    write(r0, *acc.take(r1 - r0, config.isa_class))
                    continue
                probs, bad = acc.take_probs(r1 - r0)
                _, prob = encode(probs, bad, config.isa_class)
                for row0, classes, (prob0, bad0) in post.push(r0, probs, bad, (prob, bad)):
                    classes[bad0] = NODATA
                    write(row0, classes, prob0)
        for row0, classes, (prob0, bad0) in post.finish() if post is not None else ():
            classes[bad0] = NODATA
            write(row0, classes, prob0)
        for future in pending:
            future.result()
        bar.close()
    return (len(starts_y) - k0) * len(starts_x)


def _predict_row(block, starts_x, predictor, config, starts_y, k):
    """Predict the tiles of one tile row batch by batch; yields ``(x, probs (K,h,w), weights)``."""
    s, tile = predictor.scale, config.tile
    rows = block.shape[1]
    padded = _pad_to(block, tile, max(block.shape[2], tile))
    last_y, last_x = k == len(starts_y) - 1, len(starts_x) - 1
    for b in range(0, len(starts_x), config.batch_size):
        batch_idx = range(b, min(b + config.batch_size, len(starts_x)))
        probs = predictor(np.stack([padded[:, :, starts_x[i]:starts_x[i] + tile]
                                    for i in batch_idx]), compact=True)
        for j, i in enumerate(batch_idx):
            x = starts_x[i]
            cols = min(tile, block.shape[2] - x)
            weights = tile_weights(tile * s, config.overlap * s, top=k > 0, bottom=not last_y,
                                   left=i > 0, right=i < last_x, blend=config.blend)
            yield x, probs[j, :, :rows * s, :cols * s], weights
