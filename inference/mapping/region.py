"""Map a region over a series of dates and publish it: the library function of ``isamap-map``.

:func:`map_region` runs one :class:`~inference.mapping.request.MapRequest` (every option of
``isamap-map``). It checks everything a run needs before its first expensive step
(:func:`check_map`: the model and its recorded recipe, the grid (:func:`region_grid`), the
zones, the publication target of :mod:`inference.mapping.publication`; then the publication's
environment, its upload prefix and Earth Engine authentication, and the mapping's), then maps
every date (:func:`inference.mapping.dates.map_dates`), writes the series
products (:mod:`inference.mapping.series`), a STAC Item beside every COG and a STAC Collection
(:mod:`inference.mapping.stac`), and optionally publishes the series as an ImageCollection
(:mod:`inference.publish.collection`). With ``dry_run`` it prints the plan (tiles, requests, bytes,
a time estimate from the model's speed measured on this machine), the image manifests and the Code
Editor app (:func:`plan_region`), and touches neither Earth Engine nor the outputs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from contract.archive import check_months as check_archive_months
from contract.grid import Grid, projected_crs, utm_caveat, utm_epsg
from contract.regions import Region
from core.errors import ConfigError
from core.lock import hold_output
from core.storage import files
from engine import choice as engine_choice
from gee_export.ee.budget import compute_budget, kept_in
from gee_export.ee.profiles import ProfileMeter
from gee_export.ee.session import EESession
from inference.cog.maps import PROB_SCALE
from inference.cog.stream import cog_writer
from inference.mapping import stac
from inference.mapping.beam_map import check_runner, date_predictor, describe_pipeline
from inference.mapping.dates import (
    DateResult,
    check_local_scenes,
    map_dates,
    unmapped_line,
    write_run_record,
)
from inference.mapping.plan import MapPlan, format_plan, plan_map
from inference.mapping.publication import SeriesTarget, map_recipe, series_target
from inference.mapping.request import MapRequest, ModelDataset, check_recipe, model_dataset
from inference.mapping.same_series import check_series
from inference.mapping.series import SeriesOutputs, series_products
from inference.predict import stats
from inference.predict.change.encoder import NAME as ENCODER
from inference.predict.change.encoder import EncoderModel, change_encoder, seconds_per_pixel
from inference.predict.keep.inputs import check_product
from inference.predict.runtime import TilePredictor
from inference.predict.scene import recorded_statistics
from inference.predict.vectors import check_vector_extra
from inference.predict.workflow import check_model, isa_class_index
from inference.predict.zone_cover import check_zones
from inference.publish.assets import EarthEngineAssets
from inference.publish.cog_sources import UPLOAD_PREFIX
from inference.publish.collection import SeriesPublication, check_publication, publish_series
from training.modelfile import LoadedModel, ModelMeta

log = logging.getLogger(__name__)

MAP_WITHOUT_ACCOUNT = """No account? Map local Sentinel-1/2 scenes with the same recipe instead:
  isamap-map --backend local --scenes DIR ... (a model trained on a local-backend dataset)
(or `make demo` for a synthetic scene)."""
"""What ``isamap-map`` can do without an Earth Engine account (its authentication advice)."""


def region_grid(region: Region, resolution: float, dataset_grid: Grid | None = None,
                crs: str | None = None) -> tuple[Grid, str | None]:
    """The map's grid in ``crs`` (default: the region's UTM zone) at ``resolution``.

    The grid sits on the dataset's pixel lattice when its CRS is the training grid's. A region
    that is where the scenes are (``region.covered``) gets the whole pixels inside it.

    Returns the grid and, when the region lies in another CRS than the training grid, a
    sentence saying so (the inputs are then composited in the map's own CRS).
    """
    if crs is None:
        caveat = utm_caveat(region.bbox)
        lon, lat = region.centroid
        if abs(lat) > 84:
            raise ConfigError(f"region {region.name!r} is centred above 84° latitude, outside "
                              f"the UTM zones: {caveat}")
        if caveat:
            log.warning("region %r: %s", region.name, caveat)
        crs = f"EPSG:{utm_epsg(lon, lat)}"
    else:
        crs = projected_crs(crs)
    lattice = dataset_grid if dataset_grid is not None and dataset_grid.crs == crs else None
    if lattice is not None:  # snapped once, onto the lattice (snapped twice, on multiples of
        # the resolution first, it could take a row or column more, or a pixel centre past
        # the scenes, where the lattice's origin is not such a multiple)
        grid = Grid.from_lonlat_bounds(region.bbox, crs, lattice.resolution, lattice.patch_size,
                                       lattice.stride, inside=region.covered,
                                       origin=(lattice.x0, lattice.y0))
    else:
        grid = Grid.from_lonlat_bounds(region.bbox, crs, resolution, inside=region.covered)
    note = None
    if dataset_grid is not None and lattice is None:
        note = (f"region {region.name!r} is mapped in {crs}, not the model's training CRS "
                f"{dataset_grid.crs}; its inputs are composited and mapped in {crs} at "
                f"{resolution:g} m (the recipe does not depend on the CRS)")
    return grid, note


@dataclass(frozen=True)
class MapResult:
    """What :func:`map_region` did."""

    grid: Grid
    plan: MapPlan | None
    dates: tuple[DateResult, ...] = ()
    series: SeriesOutputs | None = None
    stac: tuple[str, ...] = ()
    publication: SeriesPublication | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MapSetup:
    """What :func:`check_map` settled before the first expensive step of a map."""

    dataset: ModelDataset
    grid: Grid
    crs_note: str | None  # the grid is in another CRS than the model's training grid
    isa_class: int
    target: SeriesTarget | None  # where the series is published (None: not published)


def measure_model(model: LoadedModel, tile: int, options: Any, repeats: int = 2) -> float:
    """Seconds the model takes for one tile on this machine (dry-run estimates)."""
    meta = model.meta
    if options.precision in ("auto", "int8") or options.channels_last == "auto":
        # a dry run measures no choices: fp32 (the autotune's fallback), no compilation
        options = replace(options, precision="fp32", compile=False, autotune_cache=False,
                          channels_last=options.channels_last == "on")
    # the timing does not depend on the statistics: a scene-normalised model is timed with
    # the training statistics its file records, before any scene is read
    predictor = TilePredictor.for_model(model.module, meta, recorded_statistics(meta),
                                        options=options)
    tiles = np.zeros((1, len(meta.bands), tile, tile), np.float32)
    predictor(tiles, compact=True)  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        predictor(tiles, compact=True)
    return (time.perf_counter() - start) / repeats


def map_region(request: MapRequest, model: LoadedModel, *, session: Any = None,
               worker_sessions: Any = None, echo: Callable[[str], None] | None = None,
               assets: EarthEngineAssets | None = None) -> MapResult:
    """Map ``request`` (see module docstring); resumable, finished dates are not redone.

    ``request`` carries every option of the run (``isamap-map``'s, one value, in parts): what
    to map, how, whether only to plan it (``dry_run``), where to publish it and on which runner.

    Args:
        request: the run.
        model: the model file, read once for every date (:func:`training.modelfile.load_model`).
        session: the Earth Engine seam (default: one for the inputs' project; tests pass one
            whose transport serves a local stack).
        worker_sessions: how a pipeline's workers (``request.runner``) open their Earth Engine
            sessions (default: the inputs' project; tests pass a factory serving a local
            stack).
        echo: where the plan, tables and publication text go (default: this module's log;
            the command prints them).
        assets: the publication's Earth Engine seam (default: connected to the publication's
            project before the first date is mapped; tests pass one).
    """
    echo = echo or log.info
    setup = check_map(request, model)
    if request.dry_run:
        return plan_region(request, model, setup, echo)
    return _map_and_publish(request, model, setup, session, worker_sessions, echo, assets)


def check_map(request: MapRequest, model: LoadedModel) -> MapSetup:
    """Check everything a map needs before its first expensive step (dry runs too).

    The model against its recorded recipe, the archive's dates and int8, the runner, the
    post-processing, the window, the grid, the zones, the vector extra, the series ``--out``
    already holds (:func:`inference.mapping.same_series.check_series`) and the publication.
    """
    meta, inputs, window, outputs = model.meta, request.inputs, request.window, request.outputs
    extent, precision = request.extent, request.runtime.precision
    for warning in check_archive_months(extent.dates, meta.bands,
                                        earth_engine=inputs.backend == "ee"):
        log.warning("%s", warning)
    dataset = model_dataset(meta, inputs.dataset)
    check_recipe(meta, dataset, inputs.backend, inputs.allow_recipe_mismatch)
    isa = isa_class_index(tuple(meta.class_names))
    engine_choice.check_model(model.module, precision)  # int8 of an encoder
    if request.runner is not None:  # before the post-processing (a runner's own refusal)
        check_runner(request, model, isa)
        if inputs.max_eecu_hours is not None:
            raise ConfigError("--max-eecu-hours bounds the requests this process sends; a "
                              "--runner pipeline's workers send their own: leave one out")
    if window.postprocess == "keep" and window.keep is not None:
        check_product(window.keep.product)
    # the post-processing, the window (int8 again): as a single prediction checks them
    check_model(window, model, precision, override=None)
    if request.rule() == ENCODER:  # the model has an encoder whose features the rule reads
        change_encoder(model.module)
    resolution = dataset.grid.resolution if dataset.grid else 10.0
    if extent.grid is not None:
        grid, note = extent.grid, None
    else:
        grid, note = region_grid(extent.region, resolution, dataset.grid, extent.crs)
    if note:
        log.warning("%s", note)
    zones = stats.load_zones(outputs.zones, grid.crs, outputs.zones_name)  # here, not at the end
    check_zones(zones, grid.bounds, grid.crs, f"--zones {outputs.zones}")
    check_vector_extra(outputs.vectors)  # a missing extra too
    check_series(outputs, window.lattice, grid, model.file_id, meta.name)  # and under the lock
    target = (None if request.publication is None else series_target(
        request.publication, extent, outputs, meta, dataset, grid, isa))
    return MapSetup(dataset, grid, note, isa, target)


def plan_region(request: MapRequest, model: LoadedModel, setup: MapSetup,
                echo: Callable[[str], None]) -> MapResult:
    """The dry run: the plan, the scenes, the pipeline and the publication, printed.

    Touches neither Earth Engine nor the outputs (the publication's files are not saved).
    """
    scenes, outputs, dates = None, request.outputs, request.extent.dates
    if request.inputs.backend == "local":  # what the real run reads, checked first
        scenes = check_local_scenes(request.inputs, request.extent, setup.grid,
                                    model.meta.bands, setup.dataset)
    seconds = measure_model(model, request.window.tile, request.runtime)
    per_px = (seconds_per_pixel(change_encoder(model.module), len(model.meta.bands))
              if request.rule() == ENCODER and len(dates) > 1 else 0.0)
    plan = plan_map(request, setup.grid, model.meta.bands, seconds, setup.crs_note,
                    scene=model.meta.norm == "scene", feature_seconds_per_px=per_px)
    echo(format_plan(plan))
    if setup.target is not None and setup.target.zones is not None:
        echo(f"  app zones {setup.target.zones.describe()}")
    if scenes is not None:
        echo("\n".join(scenes))
    if request.runner is not None:
        echo(describe_pipeline(request.runner, request.window.lattice, outputs.out, setup.grid))
    publication = None
    if (setup.target is not None and not files.is_gcs(outputs.out)
            and not setup.target.options.gcs_prefix):  # publishing local COGs refuses
        echo(f"  note      the real run stops here without --gcs-prefix: publishing local COGs "
             f"needs {UPLOAD_PREFIX}; the "
             "URIs below are placeholders")
    if setup.target is not None:
        cogs = {m: (f"{outputs.prefix(m)}_class.tif", f"{outputs.prefix(m)}_prob.tif")
                for m in dates}
        publication = publish_series(setup.target.request(cogs),
                                     outputs.product_dir() / "publish", dry_run=True,
                                     save=False, echo=echo)  # a dry run writes nothing
    return MapResult(setup.grid, plan, publication=publication)


def _map_and_publish(request: MapRequest, model: LoadedModel, setup: MapSetup, session: Any,
                     worker_sessions: Any, echo: Callable[[str], None],
                     assets: EarthEngineAssets | None) -> MapResult:
    """Map every date, write the series products, STAC and ``map.json``, then publish.

    The publication's environment is checked before the first date, and ``map.json`` is
    written before publishing, so a failed publication leaves the map's summary.
    """
    if request.runner is None:  # a misspelt ISAMAP_COG_WRITER fails before the first date
        cog_writer()
    target, outputs, inputs = setup.target, request.outputs, request.inputs
    product_dir, publication = outputs.product_dir(), request.publication
    if files.is_gcs(outputs.out) and not outputs.local_dir:
        log.warning("the PNGs, tables and publication files go to %s (a local folder; "
                    "--local-dir sets it)", product_dir)
    if target is not None and target.zones is not None and target.zones.tolerance_m != 0.0:
        log.warning("the series app's zones: %s", target.zones.describe())
    if publication is not None and not publication.dry_run:  # not after every date is mapped
        assets = check_publication(publication.options, not files.is_gcs(outputs.out), assets)
    if inputs.backend == "ee" and session is None:
        session = EESession(inputs.project, without_account=MAP_WITHOUT_ACCOUNT).initialize()
    if inputs.backend == "ee":  # requests priced from a sample of their profiles
        session.meter = session.meter or ProfileMeter()
    if inputs.backend == "ee" and inputs.max_eecu_hours is not None:  # charged per request
        session.budget = compute_budget(inputs.max_eecu_hours, plan_map(
            request, setup.grid, model.meta.bands, 0.0,
            scene=model.meta.norm == "scene").compute)
    # a second run into the same --out is refused; a run that maps no date leaves no folder
    with files.unmade_if_refused(outputs.out, product_dir), hold_output(outputs.out):
        predict_date = (None if request.runner is None
                        else date_predictor(request.runner, worker_sessions))
        with kept_in(session.budget if session is not None else None,
                     product_dir / "eecu.json",  # what earlier runs spent counts
                     session.meter if session is not None else None):
            try:
                results = map_dates(request, setup.grid, model, setup.dataset,
                                    session=session, predict_date=predict_date)
            finally:
                if session is not None:
                    session.read_profiles(flush=True)
        mapped = [(r.month, r.outputs) for r in results if r.outputs is not None]
        skipped = {r.month: r.skipped for r in results if r.skipped}
        if not mapped:
            raise ConfigError(f"{unmapped_line(skipped)}; choose other --months")
        series = _series(request, model, setup, mapped, skipped, results)
        echo(series.table())
        stac_paths = _write_stac(request, mapped, series, model.meta,
                                 map_recipe(setup.dataset), {r.month: r.inputs for r in results})
        write_run_record(request, setup.grid, model, results, {
            "skipped": skipped, "stac": list(stac_paths),
            "temporal_consistency": request.change.temporal_consistency,
            "change_rule": request.rule()})
        published = None
        if target is not None and publication is not None:
            cogs = {m: (o.prediction.class_path, o.prediction.prob_path) for m, o in mapped}
            published = publish_series(target.request(cogs, series), product_dir / "publish",
                                       dry_run=publication.dry_run, echo=echo, assets=assets)
        return MapResult(setup.grid, None, tuple(results), series, tuple(stac_paths),
                         published)


def _series(request: MapRequest, model: LoadedModel, setup: MapSetup, mapped: list,
            skipped: dict[str, str], results: list[DateResult]) -> SeriesOutputs:
    """The series products of the mapped dates: change maps, per-zone table, plot."""
    outputs, change, rule = request.outputs, request.change, request.rule()
    return series_products(mapped, skipped, outputs.out, outputs.product_dir(), outputs.zones,
                           isa_class=setup.isa_class, crs=setup.grid.crs,
                           zones_name=outputs.zones_name,
                           temporal_consistency=change.temporal_consistency,
                           change_margin=change.margin_in_force(), change_rule=rule,
                           spectral_threshold=change.spectral_threshold,
                           stacks={r.month: r.stack for r in results},
                           bands=model.meta.bands,
                           encoder=EncoderModel(change_encoder(model.module),
                                                tuple(model.meta.norm_mean),
                                                tuple(model.meta.norm_std))
                           if rule == ENCODER else None)


def _write_stac(request: MapRequest, mapped: list, series: SeriesOutputs, meta: ModelMeta,
                recipe: dict, inputs: dict) -> list[str]:
    common = {"model": meta.name, "bands": list(meta.bands), "classes": list(meta.class_names),
              "recipe": recipe, "metrics": {k: v for k, v in dict(meta.metrics).items()
                                            if isinstance(v, (int, float, str))},
              "probability_scale": PROB_SCALE}
    items = []
    for month, outputs in mapped:
        dated = {**common, "inputs": inputs.get(month)}  # the scenes/windows of this date
        items.append(stac.cog_item(outputs.prediction.class_path, "class", [month], dated))
        items.append(stac.cog_item(outputs.prediction.prob_path, "probability", [month], dated))
    for change in series.changes:
        items.append(stac.cog_item(change.cog, "change", [change.date_from, change.date_to],
                                   common))
    region = request.extent.region.name
    collection = stac.series_collection(items, [m for m, _ in mapped], request.outputs.out,
                                        {**common, "region": region}, f"isamap {region}")
    return stac.write_series_stac(collection)
