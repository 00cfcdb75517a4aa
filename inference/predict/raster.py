"""Streaming sliding-window inference over a raster of any size, resumable.

Memory is bounded by one band of tile rows, never by the raster's height: the input is read one
block of tile columns of a tile row at a time (the tiles of the grid-anchored lattice,
:mod:`inference.predict.lattice`, whole, past the raster's edges too), tile probabilities are
blended into an accumulator that only spans the rows still open, and every output strip whose
rows no later tile can touch is taken at once (:class:`inference.predict.blending.Accumulator`)
and written to its own small GeoTIFF (the checkpoint: a killed run restarts at the first
missing strip, recomputing only the tile row whose contribution it needs, at the runtime the
strips record, :mod:`inference.predict.runtime_record`). Each strip also goes to the two maps'
COG encoders (:mod:`inference.cog.stream`), which compress its tiles and reduce its overviews
right away, so at the end the COGs are only assembled; with ``cog_writer="gdal"`` (or ZSTD
compression) GDAL's COG driver writes each map's COG from the strips at the end instead
(:func:`inference.cog.maps.strips_cog`: the same pixels at every level).

The work is spread over three threads so that the model never waits for I/O
(:class:`inference.predict.sliding_window.SlidingWindowJob`); this module decides what runs: the
bands, the run's fingerprint, what an earlier run left, and the outputs. Per-stage times are
returned with the result and logged.

With ``postprocess="clahe"`` the writer passes each strip through an
:class:`inference.predict.postprocess.ClaheStream` before its checkpoint, so checkpoints hold final
pixels; a resumed run recomputes from the CLAHE tile row above the first missing strip (those
strips are not rewritten) and so gives the uninterrupted run's map; the COGs record its
parameters (the ``postprocess`` tag). With ``postprocess="keep"``
the writer applies the keep rule to each strip before encoding it
(:class:`inference.predict.keep.inputs.KeepStrips`; pixel by pixel, or with the product's
shares by windows that lie wholly in one strip, so strips need no context); the COGs record
the rule, its green cut and its window (the ``postprocess`` tag).

What an ``--out`` already holds: a map of another model or another input is refused.

A prediction into an ``--out`` holding a map replaces it only where the map is of the same
model and the same input (other options, such as the tiling or a post-processing, map again:
the user asked for it); anything else would lose a map of another product, place or date
without a word.

An input's identity, as a map records it in its tags:

- ``input``: the file's name (never its folder), named in messages;
- ``input_grid``: a digest of its size, transform and CRS;
- ``input_month``: the month the stack's ``MONTH`` tag records, where it records one;
- ``input_content``: a digest of the content fingerprint a local-backend stack records
  (``ISAMAP_FINGERPRINT``), where it records one;
- ``input_pixels``: a digest of the decimated sample of the bands the model reads (the one
  the value checks read, :func:`inference.predict.expected_inputs.read_band_sample`).

The name, the grid and the month (where both record one) agreeing make the same input (the
map is replaced or kept as the run's options say). The content fingerprint only recognises a
copy of the stack under another name as the same input (its finished map is kept, naming the
file it was made from): it covers the stack's labels and recipe as well as its image, so a
stack exported again with the same image differs in it. Either way the pixels must agree
where both record them: another stack of the same name and grid (``2019/stack.tif`` after
``2021/stack.tif``, neither tagged), or a copy edited with its tags kept, is another input.
Maps written before inputs were recorded, and fetched sources (``isamap-map``), are not
compared.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.errors
from affine import Affine
from rasterio.crs import CRS

from contract.stack import FINGERPRINT_TAG, recorded_month
from core.commands import DETAIL
from core.digest import chunks_sha256, json_digest
from core.errors import ConfigError
from core.lock import LOCK_NAME, hold_output
from core.storage import atomic_write, files
from core.storage.gdal_auth import check_read, gdal_env
from engine import choice as engine_choice
from inference.cog import maps
from inference.cog.maps import OutputInfo
from inference.cog.stream import Writer, cog_writer, encodes, finish_stream
from inference.predict import runtime_record
from inference.predict.config import PredictConfig
from inference.predict.expected_inputs import read_band_sample
from inference.predict.pixel_area import raster_area_km2
from inference.predict.runtime import TilePredictor
from inference.predict.sliding_window import SlidingWindowJob
from inference.predict.sources import (
    RasterSource,
    input_path,
    open_source,
    select_bands,
    source_identity,
    source_key,
)

# GDAL's block cache defaults to 5 % of physical RAM, which would make the footprint grow with
# the machine; one full-width block row of a wide stack (~200 MB at 16k x 6 bands) is all the
# sliding window re-reads (the overlap), so a fixed cache keeps memory bounded.
GDAL_CACHE_MB = 512
#: GDAL options of the input while predicting. ``GTIFF_DIRECT_IO``: an uncompressed GeoTIFF
#: stack is read straight into the reader's buffer, not through the block cache, which then
#: stays empty (the same pixels; compressed files and other drivers read as before). Not
#: ``GTIFF_VIRTUAL_MEM_IO``: its file mapping counts every page it reads in the process's RSS,
#: the whole stack after one pass.
#: ``GDAL_CACHEMAX`` in bytes: rasterio sets an integer as bytes, and 512 was a 512-byte cache
#: that decompressed a compressed stack's tile again for every pixel of a resampled read.
INPUT_GDAL_OPTIONS: dict[str, Any] = {"GDAL_CACHEMAX": GDAL_CACHE_MB * 2**20,
                                      "GTIFF_DIRECT_IO": "YES"}

log = logging.getLogger(__name__)


def existing_tags(class_path: str) -> dict[str, str] | None:
    """The tags of a map already at ``class_path``.

    None when there is none, or it is damaged (a full disk cut it: it is written again).
    """
    if not files.exists(class_path):
        return None
    try:
        with rasterio.open(files.gdal_path(class_path)) as ds:
            return dict(ds.tags())
    except rasterio.errors.RasterioError:
        return None


def check_same_model(class_path: str, model_id: str, model: str) -> None:
    """Refuse to replace the maps of another model at the same ``--out``.

    A changed tiling or input of the same model maps again (the user asked for it); another
    model's map is a different product, and silently overwriting it loses it.
    """
    tags = existing_tags(class_path)
    if tags is None:
        return
    theirs, their_name = tags.get("model_id", ""), tags.get("model", "")
    if (theirs and model_id and theirs != model_id) or (not theirs and their_name
                                                        and their_name != model):
        raise ConfigError(
            f"{class_path} is a map of another model ({their_name or 'unnamed'}"
            f"{', id ' + theirs if theirs else ''}); this run's model is {model}"
            f"{', id ' + model_id if model_id else ''}: give another --out, or delete that "
            "map first")


def input_tags(run: Mapping[str, Any], source: Any,
               pixels: np.ndarray | None = None) -> dict[str, str]:
    """What a map records of its input file (see the module's docstring).

    Args:
        run: the run's fingerprint (its ``input``, ``size``, ``transform`` and ``crs``).
        source: the open input, whose own tags (``tags()``) hold its month and content
            fingerprint.
        pixels: the decimated sample of the bands the model reads (None: not recorded).
    """
    read = getattr(source, "tags", None)
    stack_tags = dict(read()) if callable(read) else {}
    name = str(run["input"]).rstrip("/").rsplit("/", 1)[-1]
    tags = {"input": name,
            "input_grid": json_digest([run["size"], run["transform"], run["crs"]], 16)}
    month = recorded_month(dict(stack_tags))
    if month:
        tags["input_month"] = month
    if stack_tags.get(FINGERPRINT_TAG):
        tags["input_content"] = json_digest(stack_tags[FINGERPRINT_TAG], 16)
    if pixels is not None:
        tags["input_pixels"] = chunks_sha256([np.ascontiguousarray(pixels).tobytes()], 16)
    return tags


def check_same_input(class_path: str, ours: Mapping[str, str]) -> None:
    """Refuse to replace a map of another input at ``--out`` (see the module's docstring)."""
    tags = existing_tags(class_path) if ours else None
    if tags is None or "input" not in tags:
        return
    theirs = tags["input"]
    months = (tags.get("input_month"), ours.get("input_month"))
    pixels = (tags.get("input_pixels"), ours.get("input_pixels"))
    same_pixels = None in pixels or pixels[0] == pixels[1]
    same_grid = tags.get("input_grid") == ours["input_grid"]
    if theirs == ours["input"] and same_grid and same_pixels and (
            None in months or months[0] == months[1]):
        return
    if (tags.get("input_content") and tags["input_content"] == ours.get("input_content")
            and same_pixels):
        return  # the same stack under another name
    what, mine = "input", ours["input"]
    if None not in months and months[0] != months[1]:
        theirs, mine = f"{theirs} of {months[0]}", f"{ours['input']} of {months[1]}"
    elif theirs == ours["input"] and not same_grid:
        what = "grid (another extent or pixel size)"
    elif theirs == ours["input"]:
        theirs = f"a {theirs} of other pixels on the same grid"
    raise ConfigError(f"{class_path} is a map of another {what}: {theirs}, where this run's "
                      f"--input is {mine}; give another --out, or delete that map first")


@dataclass(frozen=True)
class PredictionResult:
    """What a prediction produced, and where its time went.

    ``stages`` holds seconds per stage (read, mask, predict, forward, blend, take,
    checkpoint, encode (the streaming encoders), cog (the COGs written or assembled at the
    end), and the main thread's waits for the reader and the writer, ``wait_reader`` and
    ``wait_encoder``);
    stages of different threads overlap, so they do not add up to ``seconds``.
    ``stages_cpu`` is the CPU time each stage's own thread spent (torch's worker threads and
    GDAL's are not counted): the cost of the stage on a machine the model shares. ``runtime`` is
    how the model ran (``engine.autotune.Choice.to_dict()``), also in the COG tags.
    """

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
    stages: Mapping[str, float] = field(default_factory=dict)
    runtime: Mapping[str, Any] | None = None
    stages_cpu: Mapping[str, float] = field(default_factory=dict)

    @property
    def area_km2(self) -> float:
        """Ground area of the map (true km² also for a geographic CRS, as the area table)."""
        return raster_area_km2(Affine(*self.transform[:6]), CRS.from_user_input(self.crs),
                               self.width, self.height)


def _fingerprint(src_path: str | RasterSource, src: Any, info: OutputInfo,
                 config: PredictConfig, scale: int, model_id: str,
                 indexes: Sequence[int] = ()) -> dict[str, Any]:
    # without post-processing its options do not change the map (nor a run's identity)
    ignored = {"batch_size", "keep_work", "force_postprocess", "any_tile"} | (
        {"postprocess"} if config.postprocess == "none" else set()) | (
        {"clahe"} if config.postprocess != "clahe" else set()) | (
        {"keep"} if config.postprocess != "keep" else set())
    run = {
        "input": source_identity(src_path), "size": [src.height, src.width, src.count],
        **({"indexes": list(indexes)} if list(indexes) != list(range(1, len(indexes) + 1))
           else {}),
        "transform": list(src.transform)[:6], "crs": str(src.crs), "model_id": model_id,
        "bands": list(info.bands), "scale": scale,
        **({"normalisation": info.normalisation} if info.normalisation else {}),
        "config": {k: v for k, v in asdict(config).items() if k not in ignored},
        "lattice": config.lattice.placement,  # tiles anchored to the CRS grid
    }
    # the hash names the input by its content (source_key); "input" names it for messages
    run["hash"] = json_digest({**run, "input": source_key(src_path, src)}, 16)
    return run


def predict_raster(
    src_path: str | RasterSource, out_prefix: str, predictor: TilePredictor, info: OutputInfo,
    config: PredictConfig | None = None, *, work_dir: str | os.PathLike | None = None,
    model_id: str = "", restart: bool = False, progress: bool = True,
    band_order: Sequence[str] | None = None, writer: Writer | None = None,
) -> PredictionResult:
    """Predict a whole stack and write ``<out_prefix>_class.tif`` and ``<out_prefix>_prob.tif``.

    Args:
        src_path: stacked input (GeoTIFF/VRT), local or ``gs://`` (read through /vsigs/), the
            same opened once for the run (:class:`inference.predict.input_stack.InputStack`),
            or an open :class:`inference.predict.sources.RasterSource` (tiles fetched on
            demand).
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
        writer: who writes the two COGs: ``"stream"`` (the streaming encoder, while the
            rows are produced) or ``"gdal"`` (GDAL's COG driver from the strips at the end);
            the same pixels at every level. None: :func:`inference.cog.stream.cog_writer`
            (``$ISAMAP_COG_WRITER``, default ``stream``). ZSTD compression, and a map whose
            overviews are not exact halvings (:func:`inference.cog.stream.encodes`), are
            always GDAL's.

    Returns:
        Paths, size, timings (per stage too) and whether work was resumed or skipped.
    """
    config = config or PredictConfig()
    writer = cog_writer(writer)  # a misspelt name is refused whatever the compression
    if config.compress != "DEFLATE":
        writer = "gdal"  # the encoder writes DEFLATE only
    started = time.perf_counter()
    forward_before = predictor.forward_seconds
    scale = predictor.scale
    class_path, prob_path = f"{out_prefix}_class.tif", f"{out_prefix}_prob.tif"
    src_name = input_path(src_path)
    with gdal_env(src_name, out_prefix, **INPUT_GDAL_OPTIONS), open_source(src_path) as src:
        indexes = select_bands(src.descriptions, info.bands, band_order)
        run = _fingerprint(src_path, src, info, config, scale, model_id, indexes)
        height, width = src.height * scale, src.width * scale
        transform = src.transform @ Affine.scale(1.0 / scale)
        crs = src.crs
        check_same_model(class_path, model_id, info.model)
        ours = input_tags(run, src, read_band_sample(src, indexes)) if src_name is not None else {}
        check_same_input(class_path, ours)  # before a finished map is kept
        if _finished(class_path, prob_path, run["hash"], predictor.request):
            return PredictionResult(class_path, prob_path, width, height, tuple(transform),
                                    str(crs), 0, time.perf_counter() - started, 0.0, 0, True)
        if predictor.channels != len(indexes):
            raise ConfigError(f"model takes {predictor.channels} bands, info lists {len(indexes)}")
        work = work_path(work_dir, out_prefix)
        made = not work.exists()
        work.mkdir(parents=True, exist_ok=True)
        try:
            with hold_output(work):  # one run per output: a second one is refused
                return _run_job(src, indexes, predictor, info, config, run, work, restart,
                                out_prefix, progress, model_id, started, forward_before,
                                writer, ours)
        except BaseException:
            if made and not _strips(work):  # a refused run leaves no work folder behind
                shutil.rmtree(work, ignore_errors=True)
            raise


def _run_job(src: Any, indexes: list[int], predictor: TilePredictor, info: OutputInfo,
             config: PredictConfig, run: dict, work: Path, restart: bool, out_prefix: str,
             progress: bool, model_id: str, started: float, forward_before: float,
             writer: Writer, input_tags: Mapping[str, str]) -> PredictionResult:
    """The sliding window over an open source, under the output's lock."""
    scale = predictor.scale
    class_path, prob_path = f"{out_prefix}_class.tif", f"{out_prefix}_prob.tif"
    height, width = src.height * scale, src.width * scale
    transform = src.transform @ Affine.scale(1.0 / scale)
    crs = src.crs
    work = _prepare_work(work, out_prefix, run, restart, predictor)
    runtime_record.continue_strips(work, predictor, _strips(work))
    tags = {**maps.output_tags(info, run["hash"],
                              config.lattice.tags((src.transform.c, src.transform.f)), scale),
            **({"model_id": model_id} if model_id else {}), **input_tags,
            **config.postprocess_tags(out_prefix.rsplit("/", 1)[0] if "/" in out_prefix else ".")}
    streamed = writer == "stream" and encodes(width, height)
    job = SlidingWindowJob(src, indexes, predictor, config, work, transform, progress,
                           stream_tags=tags if streamed else None, info=info)
    try:
        job.run()
        runtime = predictor.choice.tags() if predictor.choice else {
            "runtime": "none: every strip came from an earlier run"}
        if predictor.choice:
            log.log(DETAIL, "runtime measured on this machine: %s",
                    predictor.choice.measurements())
        outputs: tuple[tuple[str, maps.Kind, int], ...] = ((class_path, "class", 1),
                                                          (prob_path, "probability", 2))
        for path, kind, band in outputs:
            with job.stages.time("cog"):
                if job.streams is not None:
                    job.streams[kind].update_tags(**runtime)
                    files.put_output(functools.partial(finish_stream, job.streams[kind]),
                                     path, work)
                    continue
                files.put_output(
                    functools.partial(maps.strips_cog, job.strip_pieces(), band, kind=kind,
                                      tags={**tags, **runtime}, width=width, height=height,
                                      transform=transform, crs=crs, compress=config.compress),
                    path, work)
    finally:
        predictor.on_choice = None
        job.close()
    if not config.keep_work:
        shutil.rmtree(work, ignore_errors=True)
    stages = {k: round(v, 3) for k, v in job.stages.seconds.items()}
    stages["forward"] = round(predictor.forward_seconds - forward_before, 3)
    stages_cpu = {k: round(v, 3) for k, v in job.stages.cpu.items()}
    log.log(DETAIL, "prediction stages (s, summed per stage over their threads): wall %s; CPU of "
            "the calling thread %s", stages, stages_cpu)
    return PredictionResult(class_path, prob_path, width, height, tuple(transform), str(crs),
                            job.tiles, time.perf_counter() - started,
                            predictor.forward_seconds - forward_before, job.first, False,
                            stages, predictor.choice.to_dict() if predictor.choice else None,
                            stages_cpu)


def work_path(work_dir: str | os.PathLike | None, out_prefix: str) -> Path:
    """The checkpoint folder: ``work_dir``, else beside a local output, else under ``./``."""
    if work_dir is not None:
        return Path(work_dir)
    name = out_prefix.rstrip("/").rsplit("/", 1)[-1]
    base = Path(".isamap-work") if files.is_gcs(out_prefix) else Path(out_prefix).parent
    return base / f".{name}.partial"


def _finished(class_path: str, prob_path: str, run_hash: str,
              request: engine_choice.Request) -> bool:
    """Whether both outputs exist, written by this very run configuration and runtime.

    Another runtime than an explicit option asks for: mapped again (``auto`` accepts any).
    """
    for path in (class_path, prob_path):
        if not files.exists(path):
            return False
        try:
            with files.open_raster(path) as ds:
                tags = ds.tags()
            if tags.get("isamap_run") != run_hash or runtime_record.other_runtime(
                    path, tags, request):
                return False
        except rasterio.errors.RasterioError as exc:
            check_read(path, exc)  # refused or unreachable: not a reason to predict again
            return False  # damaged (e.g. a full disk cut it): write it again
    return True


def _strips(work: Path) -> bool:
    """Whether the checkpoint folder holds a strip (what a run's identity protects)."""
    return work.is_dir() and any(work.glob("strip_*.tif"))


def _prepare_work(work: Path, out_prefix: str, run: dict, restart: bool,
                  predictor: TilePredictor) -> Path:
    """The checkpoint folder, stamped with this run; another run's strips are refused.

    A folder without strips (a run refused or stopped before its first strip) holds nothing
    to mix in: it is taken over without ``restart``. Strips of another runtime than an
    explicit option asks for are another run's too (:mod:`inference.predict.runtime_record`).
    """
    stamp = work / "run.json"
    if stamp.exists():
        previous = json.loads(stamp.read_text())
        other = previous.get("hash") != run["hash"]
        if other and not restart and _strips(work):
            raise ConfigError(f"{work} holds strips of a different run (input, model or tiling "
                              f"changed): {runtime_record.discard_advice(work)}")
        if other or (_strips(work) and runtime_record.check_strips(work, predictor, restart)):
            for old in work.iterdir():  # the lock file stays: this run holds it
                if old.name != LOCK_NAME:
                    shutil.rmtree(old) if old.is_dir() else old.unlink()
    work.mkdir(parents=True, exist_ok=True)
    if not stamp.exists():
        text = json.dumps(run, indent=1)
        atomic_write(stamp, lambda handle: handle.write(text.encode("utf-8")))
    return work
