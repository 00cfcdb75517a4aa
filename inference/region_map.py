"""Map a region over a series of dates and publish it: the library function of ``isamap-map``.

:func:`map_region` checks everything a run needs before its first expensive step (the model
and its recorded recipe, the grid, the zones, the publication target, Earth Engine
authentication), then maps every date (:func:`inference.mapping.dates.map_dates`), writes the series
products (:mod:`inference.mapping.series`), a STAC Item beside every COG and a STAC Collection
(:mod:`inference.mapping.stac`), and optionally publishes the series as an ImageCollection
(:mod:`inference.publish.collection`). With ``dry_run`` it prints the plan (tiles, requests, bytes,
a time estimate from the model's speed measured on this machine), the image manifests and the Code
Editor app, and touches neither Earth Engine nor the outputs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from contract.archive import check_months as check_archive_months
from contract.grid import Grid
from core.errors import ConfigError
from core.lock import hold_output
from core.storage import files
from core.version import code_version
from gee_export.ee.budget import compute_budget, kept_in
from gee_export.ee.export import MAX_WORKERS
from inference.cog.maps import PROB_SCALE
from inference.mapping.dates import DateResult, map_dates, write_run_record
from inference.mapping.plan import DEFAULT_LATENCY_S, MapPlan, format_plan, plan_map
from inference.mapping.request import MapRequest, check_recipe, model_dataset, region_grid
from inference.mapping.series import SeriesOutputs, series_products
from inference.predict import stats
from inference.predict.blending import check_window
from inference.predict.keep_inputs import check_input_product, check_product
from inference.predict.postprocess import check_postprocess
from inference.predict.vectors import check_vector_extra
from inference.publish.app_zones import app_zones
from inference.publish.asset_manifest import asset_name, check_asset_name
from inference.publish.collection import SeriesPublication, SeriesRequest, publish_series
from inference.publish.properties import asset_properties

if TYPE_CHECKING:
    from training.modelfile import LoadedModel, ModelMeta

log = logging.getLogger(__name__)

MAP_WITHOUT_ACCOUNT = """No account? Map local Sentinel-1/2 scenes with the same recipe instead:
  isamap-map --backend local --scenes DIR ... (a model trained on a local-backend dataset)
(or `make demo` for a synthetic scene)."""
"""What ``isamap-map`` can do without an Earth Engine account (its authentication advice)."""


@dataclass(frozen=True)
class PublishTarget:
    """Where and how ``isamap-map --publish`` publishes the series."""

    parent: str  # asset folder; the collection is <parent>/isa_<region>
    project: str | None = None
    gcs_prefix: str | None = None
    public: bool = False
    readers: tuple[str, ...] = ()
    overwrite: bool = False
    wait: bool = False


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


def measure_model(model: LoadedModel, tile: int, options: Any, repeats: int = 2) -> float:
    """Seconds the model takes for one tile on this machine (dry-run estimates)."""
    from inference.predict.runtime import TilePredictor
    from inference.predict.scene import recorded_statistics

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


def map_region(request: MapRequest, *, publish: PublishTarget | None = None,
               dry_run: bool = False, publish_dry_run: bool = False, session: Any = None,
               latency_s: float | None = None, runner: Any = None, worker_sessions: Any = None,
               echo: Callable[[str], None] | None = None,
               model: LoadedModel | None = None) -> MapResult:
    """Map ``request`` (see module docstring); resumable, finished dates are not redone.

    Args:
        request: region, dates, model, outputs, backend and tiling.
        publish: publish the series as an ImageCollection (None: do not).
        dry_run: print the plan, manifests and app script only.
        publish_dry_run: map, then only prepare the publication (manifests and app saved and
            printed; nothing uploaded), as the demo does without an account.
        session: the Earth Engine seam (default: one for ``request.project``; tests pass one
            whose transport serves a local stack).
        latency_s: computePixels latency used by the plan's estimate.
        runner: a :class:`core.pipeline_options.RunnerConfig`: map each date as an
            Apache Beam pipeline of tiles (:mod:`inference.mapping.beam_map`) instead of streaming.
        worker_sessions: how the pipeline's workers open their Earth Engine sessions (default:
            ``request.project``; tests pass a factory serving a local stack).
        echo: where the plan, tables and publication text go (default: this module's log;
            the command prints them).
        model: ``request.model_file`` already read (:func:`training.modelfile.load_model`);
            None: read here. Either way it is read and hashed once for every date.
    """
    from training.modelfile import load_model

    echo = echo or log.info
    model = model or load_model(request.model_file)  # read and hashed once: every date uses it
    meta = model.meta
    for warning in check_archive_months(request.dates, meta.bands):  # dry runs too
        log.warning("%s", warning)
    dataset = model_dataset(meta, request.dataset)
    check_recipe(meta, dataset, request.backend, request.allow_recipe_mismatch)
    if runner is not None:
        from inference.mapping.beam_map import check_runner

        check_runner(request, runner)
        if request.max_eecu_hours is not None:
            raise ConfigError("--max-eecu-hours bounds the requests this process sends; a "
                              "--runner pipeline's workers send their own: leave one out")
    check_postprocess(request.postprocess, meta.class_scheme, tuple(meta.class_names),
                      request.force_postprocess, tuple(meta.bands))  # every runner, dry run
    if request.postprocess == "keep" and request.keep is not None:
        check_product(request.keep.product)
        check_input_product(request.keep, meta)
    check_window(meta.window, request.tile, meta.name, override=None)
    resolution = dataset.grid.resolution if dataset.grid else 10.0
    if request.grid is not None:
        grid, note = request.grid, None
    else:
        grid, note = region_grid(request.region, resolution, dataset.grid,
                                                request.crs)
    if note:
        log.warning("%s", note)
    stats.load_zones(request.zones, grid.crs, request.zones_name)  # fails here, not at the end
    check_vector_extra(request.vectors)  # a missing extra too
    embedded = app_zones(_zones_geojson(request.zones, request.zones_name)) if publish else None
    zones_geojson = embedded.zones if embedded else None
    collection = (check_asset_name(asset_name(
        f"{publish.parent.rstrip('/')}/isa_{request.region.name}", publish.project),
        "the collection") if publish else None)
    recipe = {k: v for k, v in dict(dataset.recipe).items() if k != "per_month"}
    classes = tuple(meta.class_names)
    isa = _isa_index(classes)
    props = {m: asset_properties(model=meta.name, bands=meta.bands, classes=classes, month=m,
                                 code_version=code_version(), recipe=recipe,
                                 metrics=dict(meta.metrics))
             for m in request.dates}
    if dry_run:
        scenes = None
        if request.backend == "local":  # what the real run reads, checked first
            from inference.mapping.dates import check_local_scenes

            scenes = check_local_scenes(request, grid, meta.bands, dataset)
        seconds = measure_model(model, request.tile, request.options)
        planned = request if runner is None else replace(
            request, workers=min(runner.workers * runner.threads, MAX_WORKERS))  # its budget
            # (above the quota: the plan counts what Earth Engine serves, the runner says why)
        plan = plan_map(planned, grid, meta.bands, seconds,
                        latency_s or DEFAULT_LATENCY_S, note, scene=meta.norm == "scene")
        echo(format_plan(plan))
        if embedded:
            echo(f"  app zones {embedded.describe()}")
        if scenes is not None:
            echo("\n".join(scenes))
        if runner is not None:
            from inference.mapping.beam_map import describe_pipeline

            echo(describe_pipeline(request, grid, runner))
        publication = None
        if publish:
            cogs = {m: (f"{request.prefix(m)}_class.tif", f"{request.prefix(m)}_prob.tif")
                    for m in request.dates}
            publication = publish_series(
                _series_request(collection, cogs, props, publish, classes, isa, zones_geojson,
                                grid), request.product_dir() / "publish", dry_run=True,
                save=False, echo=echo)  # a dry run writes nothing
        return MapResult(grid, plan, publication=publication)
    if embedded and embedded.tolerance_m != 0.0:
        log.warning("the series app's zones: %s", embedded.describe())
    if publish and not publish_dry_run and not files.is_gcs(request.out) \
            and not publish.gcs_prefix:
        raise ConfigError("publishing local COGs needs --gcs-prefix gs://BUCKET/PREFIX to upload "
                          "them to (Earth Engine ingests only from Cloud Storage)")
    if request.backend == "ee" and session is None:
        from gee_export.ee.session import EESession

        session = EESession(request.project, without_account=MAP_WITHOUT_ACCOUNT).initialize()
    if request.backend == "ee" and request.max_eecu_hours is not None:  # charged per request
        session.budget = compute_budget(request.max_eecu_hours, plan_map(
            request, grid, meta.bands, 0.0, scene=meta.norm == "scene").compute)
    with hold_output(request.out):  # a second run into the same --out is refused
        predict_date = None
        if runner is not None:
            from inference.mapping.beam_map import date_predictor

            predict_date = date_predictor(runner, worker_sessions)
        with kept_in(session.budget if session is not None else None,
                     request.product_dir() / "eecu.json"):  # what earlier runs spent counts
            results = map_dates(request, grid, model, dataset, session=session,
                                predict_date=predict_date)
        mapped = [(r.month, r.outputs) for r in results if r.outputs is not None]
        skipped = {r.month: r.skipped for r in results if r.skipped}
        if not mapped:
            raise ConfigError(f"no date could be mapped: {skipped}; choose other --months")
        local = request.product_dir()
        series = series_products(mapped, skipped, request.out, local, request.zones,
                                 isa_class=isa, crs=grid.crs, zones_name=request.zones_name,
                                 temporal_consistency=request.temporal_consistency,
                                 change_margin=request.margin(), change_rule=request.rule(),
                                 spectral_threshold=request.spectral_threshold,
                                 stacks={r.month: r.stack for r in results}, bands=meta.bands)
        echo(series.table())
        stac_paths = _write_stac(request, mapped, series, meta, recipe,
                                 {r.month: r.inputs for r in results})
        publication = None
        if publish:
            cogs = {m: (o.prediction.class_path, o.prediction.prob_path) for m, o in mapped}
            publication = publish_series(
                _series_request(collection, cogs, props, publish, classes, isa, zones_geojson,
                                grid, series), local / "publish", dry_run=publish_dry_run,
                echo=echo)
        write_run_record(request, grid, model, results, {
            "skipped": skipped, "stac": list(stac_paths),
            "temporal_consistency": request.temporal_consistency,
            "change_rule": request.rule()})
        return MapResult(grid, None, tuple(results), series, tuple(stac_paths), publication)


def _isa_index(classes: tuple[str, ...]) -> int:
    from inference.predict.workflow import isa_class_index

    return isa_class_index(classes)


def _zones_geojson(zones: str | None, name_field: str | None = None) -> dict | None:
    """The zones as the app embeds them: a FeatureCollection in EPSG:4326, a name each.

    Reprojected from whatever CRS the file names (Earth Engine reads GeoJSON coordinates as
    longitude/latitude) and always a collection (``ee.FeatureCollection`` refuses a Feature).
    """
    if zones is None:
        return None
    return {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"name": zone.name}, "geometry": zone.geometry}
        for zone in stats.load_zones(zones, "EPSG:4326", name_field)]}


def _series_request(collection: str | None, cogs: dict, props: dict, publish: PublishTarget,
                    classes: tuple[str, ...], isa: int, zones: dict | None,
                    grid: Grid, series: SeriesOutputs | None = None) -> SeriesRequest:
    assert collection is not None
    areas: dict[str, list[tuple[str, float]]] = {}
    for row in series.area_rows if series else ():
        areas.setdefault(row.zone, []).append((row.date, row.isa_km2))
    return SeriesRequest(collection, cogs, props, project=publish.project,
                         gcs_prefix=publish.gcs_prefix, public=publish.public,
                         readers=publish.readers, overwrite=publish.overwrite, wait=publish.wait,
                         classes=classes, isa_class=isa, zones=zones, scale=grid.resolution,
                         areas=areas or None)


def _write_stac(request: MapRequest, mapped: list, series: SeriesOutputs, meta: ModelMeta,
                recipe: dict, inputs: dict) -> list[str]:
    from inference.mapping import stac

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
    collection = stac.series_collection(items, [m for m, _ in mapped], request.out,
                                        {**common, "region": request.region.name},
                                        f"isamap {request.region.name}")
    return stac.write_series_stac(collection)
