"""One date of ``isamap-map`` as an Apache Beam pipeline: tiles fetched and predicted in parallel.

The same map as the streaming predictor, cut into independent tiles (:mod:`inference.mapping.tiles`,
the mapping library's units of work) so that any number of workers can share it::

    todo units -> Reshuffle -> bundles -> fetch (T threads per worker) -> predict -> tile GeoTIFFs
        -> all tiles -> mosaic: VRT + class/probability COGs with overviews

- **Tiles**: :func:`inference.mapping.tiles.plan_tiles`, the tiles of the map's lattice
  (``--tile``, ``--overlap``, ``core`` blend; :mod:`inference.predict.lattice`): each fetches the
  window the streaming predictor reads and keeps the core it owns. A unit of work is one batch
  of the streaming predictor (:func:`inference.predict.lattice.batches`: ``--batch-size`` tiles
  of a tile row), predicted in one forward pass, so even the last float bit is the same.
- **Fetching** goes through the one Earth Engine seam on each worker
  (:func:`inference.mapping.tiles.fetch_tile`, the ``computePixels`` helper of the export), under
  the
  per-process request semaphore of :mod:`core.pipeline_options`, so the whole job
  keeps ``workers x threads <= --max-concurrent``.
- **The model** is loaded once per worker process (``beam.utils.shared.Shared``: every DoFn
  instance of a process uses the same predictor) and predicts unit by unit
  (:func:`inference.mapping.tiles.predict_tiles`; the workers' side is
  :mod:`inference.mapping.beam_workers`). A scene-normalised model's statistics
  are asked of Earth Engine once, by the launcher (:mod:`inference.mapping.ee_statistics`),
  and travel to every worker in the pipeline's task.
- **Per-tile outputs** are small GeoTIFFs written atomically
  (:func:`inference.mapping.tiles.write_tile`,
  uploaded through the storage seam for gs://), under ``<out>/<month>/tiles/<fingerprint>/``:
  the fingerprint names the model file's content, the date's recipe and the lattice (and
  the scene statistics a scene-normalised model maps with), so a re-run
  skips exactly the tiles of the same map and never mixes two models' tiles.
- **Mosaic**: one step builds the VRT and the two COGs (:func:`inference.mapping.tiles.mosaic`),
  then
  a ``mosaic.json`` beside the tiles; a re-run that finds it and both COGs starts no pipeline.

Afterwards the date's quick-looks and area table are written by the same function as for the
streaming prediction (:func:`inference.predict.workflow.finish_outputs`), and the series products,
STAC files and ImageCollection manifests by ``isamap-map``'s own code (:func:`map_region` passes
:func:`date_predictor` to :func:`inference.mapping.dates.map_dates`).

The streaming predictor of ``isamap-map`` cuts the same lattice and keeps the same cores, so the
COGs equal the streaming ones for every model, also one that pools over the whole tile.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from contract.grid import Grid
from core.digest import json_digest
from core.errors import ConfigError
from core.pipeline_options import RunnerConfig, pipeline_counters, require_beam, run_pipeline
from core.storage import files
from engine.devices import layout_flag
from engine.execution import Setting
from gee_export.ee.beam_export import EarthEngineProject, SerializedImages, SessionFactory
from inference.cog.maps import OutputInfo
from inference.mapping.beam_workers import (
    LAUNCHED,
    METRICS_NAMESPACE,
    MOSAIC_RECORD,
    MapTask,
    Mosaic,
    Predictor,
    make_dofn,
    tile_path,
)
from inference.mapping.dates import DatePredictor, date_inputs, ee_date_image
from inference.mapping.ee_statistics import date_statistics
from inference.mapping.request import MapRequest, ModelDataset, map_window
from inference.mapping.tiles import MapTile, plan_tiles
from inference.predict.config import PredictConfig
from inference.predict.lattice import Lattice, batches
from inference.predict.raster import PredictionResult
from inference.predict.runtime import RuntimeOptions
from inference.predict.workflow import Outputs, finish_outputs, isa_class_index, model_output_info
from training.data import NormStats
from training.modelfile import LoadedModel, load_model

log = logging.getLogger(__name__)

#: the plain path's runtime label: what ``auto`` settles to on a pipeline
PLAIN = "fp32/nchw"

#: a tile folder's record of its tiles' runtime (a folder without one: an earlier isamap's)
TILES_RUNTIME = "runtime.json"


def map_fingerprint(model_id: str, identity: str, lattice: Lattice,
                    normalisation: str = "", runtime: str = PLAIN) -> str:
    """Names one map's tiles: the model file's content id, the date's inputs and the lattice.

    ``normalisation``: the scene statistics a scene-normalised model maps with
    (:func:`inference.predict.scene.describe`); other maps' fingerprints leave it out.
    ``runtime``: the label every worker runs (:func:`runtime_tags`), so a resumed map never
    mixes tiles of two runtimes; the plain path's (:data:`PLAIN`) is left out, as it was
    before runtimes were named, so those maps' finished tiles are kept.
    """
    parts: list = [model_id, identity, [lattice.tile, lattice.overlap, lattice.blend,
                                        lattice.placement]]
    parts += [normalisation] if normalisation else []
    return json_digest([*parts, runtime] if runtime != PLAIN else parts, 16)


def predict_date(image: Any, identity: str, grid: Grid, bands: Sequence[str], model_file: str,
                 out_prefix: str, info: OutputInfo, runner: RunnerConfig,
                 sessions: SessionFactory, *, window: PredictConfig | None = None,
                 isa_class: int = 1, options: RuntimeOptions | None = None,
                 model: LoadedModel | None = None,
                 scene: NormStats | None = None) -> PredictionResult:
    """Map one date with a Beam pipeline; resumable, a finished date runs no pipeline.

    Args:
        image: the date's input image on ``grid`` (``mapping.ee_date_image``).
        identity: the date's input identity (recipe, windows, grid): part of the fingerprint.
        grid: the map's grid.
        bands: the model's input bands, in order.
        model_file: the model file (gs:// for Dataflow workers).
        out_prefix: ``<out>/<month>/isa_<month>``: the COGs are ``_class.tif``/``_prob.tif``.
        info: what the COGs record (model, bands, classes, month, metrics).
        runner: the runner and its options.
        model: ``model_file`` already read (its id and output scale); None: read it here.
        sessions: opens each worker's Earth Engine session.
        window: the map's window (:func:`inference.mapping.request.map_window`; None: its
            defaults): its lattice (``--tile``, ``--overlap``) and ``--batch-size``, the
            streaming predictor's batches, so the maps are equal bit for bit.
        isa_class: index of the impervious class.
        options: device, precision and memory format of the workers' predictor.
        scene: the date's statistics a scene-normalised model maps with
            (:func:`inference.mapping.ee_statistics.date_statistics`, asked once by the
            launcher): every worker normalises by them, and ``info`` records them.
    """
    started = time.monotonic()
    asked = options or RuntimeOptions()
    options = pipeline_runtime(asked)
    # the runner's own checks, and Dataflow's workers reading and writing Cloud Storage
    runner.check(needs_torch=True, cloud={"--out": out_prefix, "--model": model_file})
    beam: Any = require_beam()  # an optional extra: untyped here
    pipeline_options = runner.pipeline_options()
    window = window or map_window()
    lattice, batch_size = window.lattice, window.batch_size
    tiles = plan_tiles(grid, lattice)
    model = LAUNCHED[model_file] = model or load_model(model_file)
    fingerprint = map_fingerprint(model.file_id, identity, lattice, info.normalisation,
                                  runtime_tags(asked)["runtime"])
    tiles_dir = f"{out_prefix.rsplit('/', 1)[0]}/tiles/{fingerprint}"
    scale = int(model.meta.output_scale)
    result = PredictionResult(f"{out_prefix}_class.tif", f"{out_prefix}_prob.tif",
                              grid.width * scale, grid.height * scale,
                              tuple(grid.scaled(scale).transform if scale > 1 else grid.transform),
                              grid.crs, len(tiles), 0.0, 0.0, 0, True)
    if all(files.exists(p) for p in (result.class_path, result.prob_path,
                                     f"{tiles_dir}/{MOSAIC_RECORD}")):
        log.info("%s: already mapped (%d tiles)", out_prefix, len(tiles))
        return result
    _own_tiles(tiles_dir, runtime_tags(asked)["runtime"], runner.dry_run)
    todo = [t for t in tiles if not files.exists(tile_path(tiles_dir, t))]
    missing = {t.name for t in todo}
    units = [u for u in batches(tiles, batch_size) if any(t.name in missing for t in u)]
    log.info("%s: %d of %d tiles to predict on the %s runner (%d workers x %d requests)%s",
             out_prefix, len(todo), len(tiles), runner.runner, runner.workers, runner.threads,
             " [dry run: nothing is submitted]" if runner.dry_run else "")
    task = MapTask(sessions, SerializedImages.of(image), grid, tuple(bands), model_file,
                   options, isa_class, tiles_dir, runner.threads, scene, batch_size)
    last = Mosaic(tuple(tiles), tiles_dir, grid, out_prefix, info, scale,
                  tuple(lattice.tags((grid.x0, grid.y0)).items()),
                  tuple(runtime_tags(asked).items()))
    pipeline = beam.Pipeline(options=pipeline_options)
    _add_steps(beam, pipeline, units, task, last, max(1, 2 * runner.threads // batch_size))
    outcome = run_pipeline(pipeline, resume="finished tiles are kept")
    if not runner.dry_run:
        counts = pipeline_counters(outcome, METRICS_NAMESPACE)
        log.info("%s: %d tiles predicted, %d found finished, %d requests retried",
                 out_prefix, counts.get("predicted", 0), counts.get("skipped", 0),
                 counts.get("retries", 0))
    return PredictionResult(result.class_path, result.prob_path, result.width, result.height,
                            result.transform, result.crs, len(todo),
                            time.monotonic() - started, 0.0, len(tiles) - len(todo),
                            runner.dry_run)


def _own_tiles(tiles_dir: str, runtime: str, dry_run: bool) -> None:
    """Record the runtime of a tile folder's tiles; discard tiles an earlier isamap left.

    Before a pipeline's runtime was settled at launch, each worker of an ``auto`` map measured
    its own, so a tile folder without this record may hold tiles of several runtimes under a
    fingerprint that names none: they are not resumed (predicting them again is safe).
    """
    store, name = files.store_of(f"{tiles_dir.rstrip('/')}/{TILES_RUNTIME}")
    if store.exists(name):
        return
    stale = [rel for rel in store.list() if rel.endswith(".tif") and "/" not in rel]
    if stale:
        log.warning("%s holds %d tiles an earlier isamap wrote without recording their runtime "
                    "(its workers may each have measured their own): %s", tiles_dir,
                    len(stale), "the run would predict them again" if dry_run
                    else "discarding them and predicting them again")
    if dry_run:
        return
    for rel in stale:
        store.delete(rel)
    store.write_bytes(name, json.dumps({"runtime": runtime}).encode("utf-8"))


def _add_steps(beam: Any, pipeline: Any, units: Sequence[tuple[MapTile, ...]], task: MapTask,
               last: Mosaic, bundle: int) -> None:
    """The date's pipeline: its units spread over the workers, predicted, then the mosaic."""
    (pipeline
     | "TodoUnits" >> beam.Create(units, reshuffle=False)
     | "Spread" >> beam.Reshuffle()
     | "Bundle" >> beam.BatchElements(min_batch_size=1, max_batch_size=bundle)
     | "FetchPredictWrite" >> beam.ParDo(make_dofn()(task))
     | "AllTiles" >> beam.combiners.ToList()
     | "Mosaic" >> beam.Map(last))


def _stage_model(model: LoadedModel, out: str) -> str:
    """Upload a local model file beside the map (``<out>/models/``) for Dataflow's workers."""
    uri = f"{out.rstrip('/')}/models/{model.file_id}-{Path(model.path).name}"
    if not files.exists(uri):
        files.upload_file(Path(model.path), uri)
    return uri


def check_runner(request: MapRequest, model: LoadedModel, isa_class: int) -> None:
    """Refuse a pipeline map (``request.runner``) that cannot work, before any fetch.

    ``model``: the run's model, read; ``isa_class``: the impervious class's index in its
    classes (the int8 check's).
    """
    runner, postprocess, runtime = request.runner, request.window.postprocess, request.runtime
    assert runner is not None
    if request.inputs.backend != "ee" or request.inputs.method != "pixels":
        raise ConfigError("--runner maps with computePixels tiles: use --backend ee and "
                          "--method pixels")
    if postprocess != "none":  # its tiles are predicted apart, in any order
        raise ConfigError(f"--postprocess {postprocess} needs the whole map (clahe "
                          "equalises it in order, keep samples the date's stack), which a "
                          "pipeline of independent tiles cannot: drop --runner or --postprocess")
    runner.check(needs_torch=True, cloud={"--out": request.outputs.out})
    runner.pipeline_options()  # Beam's own validation of the options
    if runtime.precision == "int8":
        if runner.runner == "dataflow":
            raise ConfigError("--precision int8 calibrates every worker on the model file's "
                              "training patches, which Dataflow workers cannot read: use "
                              "--precision bf16 on Dataflow")
        Predictor(model, runtime, isa_class, check_only=True).predictor.check_int8()


def pipeline_runtime(options: RuntimeOptions) -> RuntimeOptions:
    """The options every worker of a pipeline runs: nothing left to measure.

    A worker measuring ``auto`` on its own first batch, on its own machine, would settle its
    own runtime, and the map would mix tiles of two arithmetics. So before launch ``auto``
    settles to the plain path, fp32 and NCHW, for what it leaves open (no timing decides it);
    an explicit precision and layout are used as given.
    """
    if options.precision == "int8":
        return options
    layout = layout_flag(options.channels_last)
    return replace(options, precision="fp32" if options.precision == "auto"
                   else options.precision, channels_last="off" if layout == "auto" else layout)


def runtime_tags(options: RuntimeOptions) -> dict[str, str]:
    """What a pipeline map's COGs say of how its tiles ran: what every worker ran.

    The label the streamed map gives its choice (``Setting.label``) of
    :func:`pipeline_runtime`'s options; ``runtime_source`` says whether ``auto`` settled it.
    """
    ran = pipeline_runtime(options)
    layout = layout_flag(ran.channels_last)
    label = (Setting("int8").label if ran.precision == "int8" else
             Setting(ran.precision, layout == "on", compile=ran.compile).label)  # type: ignore[arg-type]
    auto = "auto" in (options.precision, layout_flag(options.channels_last))
    source = ("auto: fp32 and nchw where auto, settled before launch (no worker measures), "
              "every worker" if auto else "explicit, every worker")
    return {"runtime": label, "runtime_source": source,
            "runtime_device": f"{options.device} on every worker"}


def describe_pipeline(runner: RunnerConfig, lattice: Lattice, out: str, grid: Grid) -> str:
    """The dry run's lines for a pipeline map: its tile units and the runner's options."""
    tiles = len(plan_tiles(grid, lattice))
    return (f"  pipeline    {tiles:,} tiles per date ({lattice.tile} px, {lattice.overlap} px "
            f"overlap, each keeping the core it owns; one computePixels request each), "
            f"per-tile GeoTIFFs under {out.rstrip('/')}"
            "/<date>/tiles/, then a VRT mosaic into the COGs\n" + runner.describe())


def date_predictor(runner: RunnerConfig, sessions: SessionFactory | None = None
                   ) -> DatePredictor:
    """A ``predict_date`` for :func:`inference.mapping.dates.map_dates`: each date as a pipeline.

    ``sessions`` opens the workers' Earth Engine sessions (default: the request's project,
    with the worker's own service account on Dataflow).
    """

    def run(request: MapRequest, grid: Grid, model: LoadedModel, dataset: ModelDataset,
            month: str, session: Any) -> tuple[Outputs, dict[str, Any]]:
        meta, outputs, window = model.meta, request.outputs, request.window
        image, identity = ee_date_image(request.extent.region, grid, meta, dataset, month,
                                        session)
        scene = date_statistics(session, image, grid, meta, month)  # once, by the launcher
        index = isa_class_index(tuple(meta.class_names))
        info = model_output_info(meta, month, scene)
        workers = sessions or EarthEngineProject(
            request.inputs.project, application_default=runner.runner == "dataflow")
        prefix = outputs.prefix(month)
        model_file = model.path
        if runner.runner == "dataflow" and not files.is_gcs(model_file):
            model_file = _stage_model(model, outputs.out)
        result = predict_date(image, identity, grid, meta.bands, model_file,
                              prefix, info, runner, workers, window=window, isa_class=index,
                              options=request.runtime, model=model, scene=scene)
        written = finish_outputs(result, outputs.date_outputs(month), index)
        return written, date_inputs(identity)

    return run
