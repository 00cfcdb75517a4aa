"""One prediction per date of a map: inputs from Earth Engine or local scenes, then the COGs.

The map is built from exactly what the model was trained on: the model file records its
dataset (bands, grid, recipe, backend; :func:`training.run.inputs.dataset_record`), and every date
is composited with that recipe on a grid in the region's UTM zone at the model's resolution,
on the dataset's pixel lattice when the zone is the same. Inputs are never a whole-region stack:

- ``ee``/``pixels`` (default): the predictor's tiles (tile + overlap) are fetched with
  ``computePixels`` through the one Earth Engine session, up to ``workers`` at once, ahead of
  the streaming predictor (:class:`inference.mapping.fetched.FetchedSource`); a
  scene-normalised model's statistics are asked for first, in one request
  (:mod:`inference.mapping.ee_statistics`);
- ``ee``/``tasks``: for very large regions the date's stack is exported as grid-aligned GeoTIFF
  tiles to Cloud Storage (:func:`gee_export.ee.prediction_stack.export_prediction_stack`) and
  the predictor reads their VRT in place through ``/vsigs/``;
- ``local``: the same recipe on scenes on disk (:func:`gee_export.local.stack.build_local_stack`,
  block by block), then the streaming predictor over the stack file.

Each date is one resumable prediction (:func:`inference.predict.workflow.predict_checked` of a
:class:`inference.predict.job.PredictJob`, checked once for every date by
:func:`inference.mapping.region.check_map`: COGs, quick-looks, area table); a date without data
(no Sentinel-1 pass, no clear Sentinel-2 pixel even after widening) is reported and skipped. The
series products (change maps, per-zone table, plot, STAC) are in :mod:`inference.mapping.series`.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import rasterio

from contract.bands import PRODUCT
from contract.grid import Grid
from contract.regions import Region
from contract.vrt import Piece, VrtBand, mosaic_vrt
from core.errors import EarthEngineError, EmptyCompositeError, InputDataError
from core.shareable import shareable, shareable_path
from core.storage import LocalStore, atomic_write, files
from gee_export.ee.export import fetch_window
from gee_export.ee.prediction_stack import (
    composite_windows,
    export_prediction_stack,
    prediction_image,
    recipe_for_month,
)
from gee_export.ee.request_region import request_geometry
from gee_export.local.compositing import LocalRecipe
from gee_export.local.plan import month_gaps, month_scenes
from gee_export.local.scenes import SceneCollection, discover_scenes
from gee_export.local.stack import plan_local_stack, write_local_stack
from inference.mapping import series_runtime
from inference.mapping.ee_statistics import date_statistics
from inference.mapping.fetched import FetchedSource
from inference.mapping.request import MapExtent, MapInputs, MapRequest, ModelDataset
from inference.mapping.same_series import check_series
from inference.predict.job import PredictInput, PredictJob, PredictRun
from inference.predict.lattice import grid_offset
from inference.predict.sources import MaskedFileSource, WindowSource
from inference.predict.workflow import predict_checked

if TYPE_CHECKING:
    from training.data import NormStats
    from training.modelfile import LoadedModel, ModelMeta

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DateResult:
    """One date of a map: its outputs, or why it was skipped."""

    month: str
    outputs: Any | None  # inference.predict.workflow.Outputs
    skipped: str | None = None
    #: what the date was built from (:func:`date_inputs`, :func:`scene_inputs`)
    inputs: Mapping[str, Any] | None = None
    #: the stack file it was predicted from, where the run keeps one (local scenes' stack,
    #: exported tiles' VRT; None for fetched tiles): the spectral change rule reads it
    stack: str | None = None


def stack_identity(backend: str, grid: Grid, recipe: Mapping[str, Any]) -> str:
    """Names one date's inputs in the prediction fingerprint (a changed recipe re-predicts)."""
    return json.dumps({"backend": backend, "grid": grid.to_dict(), "recipe": recipe},
                      sort_keys=True, default=str)


def date_inputs(identity: str) -> dict[str, Any]:
    """What an Earth Engine date is built from: its composite windows (from its identity)."""
    recipe = json.loads(identity)["recipe"]
    return {"backend": "ee", "s2_window": recipe.get("s2_window"),
            "s1_window": recipe.get("s1_window")}


def scene_inputs(plan: Any) -> dict[str, Any]:
    """What a local date is built from: the product name and date of every scene it read.

    With the notes of scenes the input check doubted and ``--allow-implausible`` took.
    """
    notes = plan.input_notes
    return {"backend": "local", "scenes": plan.scene_list(),
            **({"input_notes": notes} if notes else {})}


#: ``(request, grid, model, dataset, month, session) -> (Outputs, inputs)``
DatePredictor = Callable[[MapRequest, Grid, "LoadedModel", "ModelDataset", str, Any],
                         tuple[Any, Mapping[str, Any]]]


def map_dates(request: MapRequest, grid: Grid, model: LoadedModel, dataset: ModelDataset, *,
              session: Any = None,
              predict_date: DatePredictor | None = None) -> list[DateResult]:
    """Predict every date of ``request`` on ``grid`` (resumable; finished dates are skipped).

    ``model`` is the model file read once for every date (:func:`training.modelfile.load_model`).
    ``predict_date(request, grid, model, dataset, month, session)`` replaces the streaming
    prediction of one date when given (the Beam pipeline, :mod:`inference.mapping.beam_map`); it
    returns the date's :class:`inference.predict.workflow.Outputs`.
    """
    config, outputs, runtime, dates, inputs = (request.window, request.outputs, request.runtime,
                                               request.extent.dates, request.inputs)
    local = outputs.product_dir()
    check_series(outputs, config.lattice, grid, model.file_id, model.meta.name)  # before reads
    held = (series_runtime.recorded(outputs.out, local, {m: outputs.prefix(m) for m in dates})
            if predict_date is None and series_runtime.leaves_auto(runtime) else None)
    if held is not None:
        series_runtime.check_held(held, runtime, outputs.out)
    _remove_killed_writes(outputs.out, dates, local)
    results = []
    # a local run reads the scene folder's headers once, for all its dates
    open_inputs = (_ee_inputs if inputs.backend == "ee" or predict_date is not None else partial(
        _local_inputs, scenes=discover_scenes(inputs.local_scenes(), **local_recipe(
            dataset, inputs.scene_reading).reading())))
    for month in dates:
        options = replace(runtime, held=held) if held else runtime
        try:
            if predict_date is not None:
                written, used = predict_date(request, grid, model, dataset, month, session)
                log.info("date %s: %s", month, "already mapped" if written.prediction.skipped
                         else f"{written.prediction.tiles} tiles in "
                              f"{written.prediction.seconds:.1f} s")
                results.append(DateResult(month, written, inputs=used))
                continue
            opened = open_inputs(request, grid, model.meta, dataset, month, session)
            with opened as source:
                try:
                    written = predict_checked(PredictJob(
                        model, PredictInput(source, month, scene=opened.scene,
                                            allow_implausible=inputs.allow_implausible),
                        outputs.date_outputs(month), config, options,
                        run=PredictRun(progress=request.progress)), source, model)
                except EarthEngineError as exc:
                    raise _with_tiles_left(exc, source, month) from exc
        except EmptyCompositeError as exc:
            log.warning("date %s skipped: %s", month, exc)
            results.append(DateResult(month, None, str(exc)))
            continue
        log.info("date %s: %s", month, "already mapped" if written.prediction.skipped
                 else f"{written.prediction.tiles} tiles in {written.prediction.seconds:.1f} s")
        results.append(DateResult(month, written, inputs=opened.inputs, stack=opened.stack))
        held = series_runtime.settled(runtime, outputs.prefix(month), held)
    return results


def _remove_killed_writes(out: str, dates: Sequence[str], local: Path) -> None:
    """Delete the half-written files a killed run left where this run writes (under its lock).

    The folders of the dates (COGs of a local ``--out``, PNGs and tables), the stacks, and the
    series' change and consistent maps (their unfinished maps' work folders included).
    """
    products = ("change", "consistent")
    folders = [local / ".stacks", *(local / m for m in (*dates, *products))]
    if not files.is_gcs(out):
        folders += [Path(out) / m for m in (*dates, *products)]
    for folder in dict.fromkeys(f.absolute() for f in folders):
        removed = LocalStore(folder).remove_temporaries() if folder.is_dir() else 0
        if removed:
            log.info("removed %d temporary file(s) left in %s by a killed run", removed, folder)


def _with_tiles_left(exc: EarthEngineError, source: Any, month: str) -> EarthEngineError:
    """``exc`` with the tiles a resumed run still has to fetch, and how to resume."""
    pending = getattr(source, "pending_tiles", None)
    if pending is None:
        return exc
    left = pending()
    shown = ", ".join(left[:8]) + (" ..." if len(left) > 8 else "")
    return type(exc)(f"{exc} -- {month}: {len(left)} tile(s) not fetched yet ({shown}); run the "
                     "same command again to resume (finished strips and dates are kept)")


class _Opened:
    """A context manager over an already-made source (a path, or an object to close).

    ``scene``: the input's statistics where the source cannot be sampled for them (tiles
    fetched one by one), for a scene-normalised model.
    """

    def __init__(self, source: Any, close: Callable[[], None] | None = None,
                 inputs: Mapping[str, Any] | None = None, stack: str | None = None,
                 scene: NormStats | None = None) -> None:
        self.source, self._close, self.inputs, self.stack = source, close, inputs, stack
        self.scene = scene

    def __enter__(self) -> Any:
        return self.source

    def __exit__(self, *exc: object) -> None:
        if self._close:
            self._close()


def local_recipe(dataset: ModelDataset,
                 scene_reading: Mapping[str, Any] | Iterable[tuple[str, Any]] = ()
                 ) -> LocalRecipe:
    """The :class:`~gee_export.local.compositing.LocalRecipe` the model's dataset recorded.

    The scenes of a map are read and composited as the training scenes were (band names,
    scene date, speckle filter); keys of the Earth Engine recipe are left out. The
    scene-reading options the user gave (``scene_reading``: ``--scene-date``,
    ``--allow-l1c``, ...) replace the recorded ones; scenes without a date take
    ``--scene-date``, else the date the training export recorded.
    """
    recorded = dict(dataset.recipe.get("local_recipe") or dataset.recipe)
    recipe = LocalRecipe.from_dict({k: v for k, v in recorded.items()
                                    if k in LocalRecipe.__dataclass_fields__})
    return recipe.with_reading(**dict(scene_reading))


def _local_inputs(request: MapRequest, grid: Grid, meta: ModelMeta, dataset: ModelDataset,
                  month: str, session: Any, *, scenes: SceneCollection) -> _Opened:
    recipe = local_recipe(dataset, request.inputs.scene_reading)
    work = request.outputs.product_dir() / ".stacks" / month
    # the stack covers what the lattice's tiles reach past the grid too, so the tiles at its
    # edges see the ground there, as inside a larger map and as the streamed map fetches it
    margin = request.window.lattice.reach(grid.height, grid.width, grid_offset(grid.transform))
    with files.unmade_if_refused(work):  # a month without scenes leaves no empty folder
        work.mkdir(parents=True, exist_ok=True)
        plan = plan_local_stack(scenes, grid.widened(margin), month, tuple(meta.bands), None,
                                None, recipe.speckle, work, recipe=recipe, model_bands=True,
                                labelled=False)  # a map predicts: the scenes' label is unread
        stack = write_local_stack(plan, progress=request.progress)
    with rasterio.open(stack.image) as ds:  # the recipe signature names its inputs
        signature = ds.tags().get("ISAMAP_RECIPE", "")
        on_grid = _grid_vrt(ds, grid, margin, work)  # the stack the change rules read
    wide = MaskedFileSource(stack.image, identity=f"{stack.image}#{signature}")
    source = WindowSource(wide, margin[0], margin[1], grid.height, grid.width)
    return _Opened(source, wide.close, scene_inputs(plan), stack=on_grid)


def _grid_vrt(stack: Any, grid: Grid, margin: tuple[int, int, int, int], folder: Path) -> str:
    """The map's grid of a stack ``margin`` pixels wider: a VRT beside it (its path)."""
    path = folder / f"{Path(stack.name).stem}.vrt"
    bands = [VrtBand(i, dtype, nodata, description) for i, (dtype, nodata, description)
             in enumerate(zip(stack.dtypes, stack.nodatavals, stack.descriptions,
                              strict=True), 1)]
    text = mosaic_vrt(grid.width, grid.height, grid.transform, grid.crs, bands, [
        Piece(Path(stack.name).name, -margin[0], -margin[1], stack.height, stack.width)])
    atomic_write(path, lambda handle: handle.write(text.encode()))
    return str(path)


def check_local_scenes(inputs: MapInputs, extent: MapExtent, grid: Grid,
                       bands: Sequence[str], dataset: ModelDataset) -> list[str]:
    """The scenes of every date of ``extent`` on ``grid`` (headers only), as the export's.

    Returns the plan's lines (scenes found, per date: on the grid / in the month, and the
    dates the real run would skip: no scene of a sensor the model needs on the grid).

    Raises:
        InputDataError: ``--scenes`` is missing or holds no raster, or no date has the scenes
            the model needs on the grid (the real run would map none).
    """
    scenes = [inputs.scenes] if isinstance(inputs.scenes, (str, os.PathLike)) else list(
        inputs.scenes or [])
    missing = [str(s) for s in scenes
               if not any(c in str(s) for c in "*?[") and not Path(s).exists()]
    if missing:
        raise InputDataError(f"--scenes {', '.join(missing)} does not exist; give the folder of "
                             "local Sentinel-1/2 scenes")
    collection = discover_scenes(inputs.local_scenes(), **local_recipe(
        dataset, inputs.scene_reading).reading())  # as the real run reads them
    months = month_scenes(collection, grid, extent.dates)
    lines = [f"  scenes    {len(collection.s2)} Sentinel-2 and {len(collection.s1)} Sentinel-1 "
             f"scenes found in --scenes (headers read, no pixel)"]
    lines += [f"  {m.month}   Sentinel-2 {m.s2_on_grid} on the grid ({m.s2} in the month), "
              f"Sentinel-1 {m.s1_on_grid} ({m.s1})" for m in months]
    # the real run skips the dates without a scene the model needs (map_dates) and stops when
    # none is left
    gaps = {month: "; ".join(missing) for month, missing in month_gaps(bands, months).items()}
    lines += [f"  {month}   would be skipped: {gap}" for month, gap in gaps.items()]
    if gaps and all(m.month in gaps for m in months):
        raise InputDataError(f"the real run would stop: {unmapped_line(gaps)}; add scenes of "
                             "those months to --scenes or choose other --months")
    return lines


def unmapped_line(skipped: Mapping[str, str]) -> str:
    """Why a series mapped no date, in one line: ``no date could be mapped: 2022-07: why``."""
    return "no date could be mapped: " + "; ".join(f"{m}: {why}" for m, why in skipped.items())


def ee_date_image(region: Region, grid: Grid, meta: ModelMeta, dataset: ModelDataset,
                  month: str, session: Any) -> tuple[Any, str]:
    """One date's input image of ``region`` on ``grid`` (the model's recipe) and its identity.

    Asks the session for the date's composite windows (clear Sentinel-2 observations,
    Sentinel-1 scenes); raises :class:`EmptyCompositeError` for a date without data.
    """
    geometry = request_geometry(region)  # the box: requests stay small
    date = composite_windows(session, geometry, region.name,
                             recipe_for_month(dataset.recipe, tuple(meta.bands), month,
                                              dataset.sources))
    return prediction_image(grid, date, geometry), stack_identity("ee", grid, date.to_dict())


def _ee_inputs(request: MapRequest, grid: Grid, meta: ModelMeta, dataset: ModelDataset,
               month: str, session: Any) -> _Opened:
    image, identity = ee_date_image(request.extent.region, grid, meta, dataset, month, session)
    lattice, workers = request.window.lattice, request.inputs.workers
    if request.inputs.method == "tasks":
        # the pixels the lattice's tiles reach past the region are exported too, so the
        # tiles at its edges see what the streamed and the Beam maps fetch there
        margin = lattice.reach(grid.height, grid.width, grid_offset(grid.transform))
        exported = export_prediction_stack(session, image, grid, tuple(meta.bands),
                                           f"{request.outputs.out.rstrip('/')}/stacks",
                                           f"stack_{month}", progress=request.progress,
                                           margin=margin)
        wide = MaskedFileSource(exported.margin_vrt or exported.vrt)
        source = WindowSource(wide, margin[0], margin[1], grid.height, grid.width)
        return _Opened(source, wide.close, date_inputs(identity), stack=exported.vrt)
    bands = tuple(meta.bands)
    scene = date_statistics(session, image, grid, meta, month)  # before the first tile
    session.limit_requests(workers)  # adaptive, at most --workers in flight
    fetched = FetchedSource(lambda window: fetch_window(session, image, grid, window, bands)[0],
                            grid, bands, tile=lattice.tile, overlap=lattice.overlap,
                            blend=lattice.blend, workers=workers, identity=identity)
    return _Opened(fetched, fetched.close, date_inputs(identity), scene=scene)


def write_run_record(request: MapRequest, grid: Grid, model: LoadedModel,
                     results: Sequence[DateResult], extra: Mapping[str, Any]) -> Path:
    """``map.json`` in the product folder: what was mapped, from what, and what was skipped.

    It travels with the maps: files under ``--out`` are named relative to it (a relative
    ``--out`` too), the model by its name and content id, any other local path by its file
    name (:mod:`core.shareable`), and ``out`` is kept only when it is a Cloud
    Storage URI.
    """
    region, window, out = request.extent.region, request.window, request.outputs.out
    record = {"region": region.name, "bbox": list(region.bbox),
              "grid": grid.to_dict(), "lattice": window.lattice.record((grid.x0, grid.y0)),
              "model": {"name": model.meta.name, "file": Path(model.path).name,
                        "id": model.file_id},
              "backend": request.inputs.backend, "method": request.inputs.method,
              **({"out": out} if files.is_gcs(out) else {}),
              **({"postprocess": window.postprocess, "clahe": vars(window.clahe)}
                 if window.postprocess == "clahe" else {}),
              **({"postprocess": window.postprocess, "keep": {**(
                  {"product": window.keep.product, "table": window.keep.table}
                  if window.keep.product else {"band": PRODUCT}),  # the stack's own band
                  **({"window": window.keep.window} if window.keep.window else {})}}
                 if window.postprocess == "keep" and window.keep else {}),
              "dates": {r.month: _date_record(out, r) for r in results},
              "runtime": series_runtime.series_tags(request.outputs.prefix(r.month)
                                                    for r in results if r.outputs is not None),
              **{k: ([shareable_path(p, out) for p in v] if k == "stac" else v)
                 for k, v in extra.items()}}
    record = shareable(record, out)
    record_path = request.outputs.product_dir() / "map.json"
    atomic_write(record_path,
                 lambda fh: fh.write(json.dumps(record, indent=1, default=str).encode()))
    return record_path


def _date_record(out: str, result: DateResult) -> dict[str, Any]:
    """One date's entry of ``map.json``: its COGs (relative to ``out``) and inputs, or why not."""
    if result.skipped or result.outputs is None:
        return {"skipped": result.skipped}
    prediction = result.outputs.prediction
    return {"class_cog": shareable_path(prediction.class_path, out),
            "prob_cog": shareable_path(prediction.prob_path, out), "inputs": result.inputs}
