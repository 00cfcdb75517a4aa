"""``isamap-map``'s library: a region, dates and a model file -> ISA maps, one command.

The map is built from exactly what the model was trained on: the model file records its
dataset (bands, grid, recipe, backend; :func:`training.trainer.dataset_record`), and every date
is composited with that recipe on a grid in the region's UTM zone at the model's resolution,
on the dataset's pixel lattice when the zone is the same. Inputs are never a whole-region stack:

- ``ee``/``pixels`` (default): the predictor's tiles (tile + overlap) are fetched with
  ``computePixels`` through the one Earth Engine session, up to ``workers`` at once, ahead of
  the streaming predictor (:class:`inference.sources.FetchedSource`);
- ``ee``/``tasks``: for very large regions the date's stack is exported as grid-aligned GeoTIFF
  tiles to Cloud Storage (:func:`gee_export.ee.prediction_stack.export_prediction_stack`) and
  the predictor reads their VRT in place through ``/vsigs/``;
- ``local``: the same recipe on scenes on disk (:func:`gee_export.local.stack.build_local_stack`,
  block by block), then the streaming predictor over the stack file.

Each date is one resumable prediction (:func:`inference.workflow.predict_with_model_file`: COGs,
quick-looks, area table); a date without data (no Sentinel-1 pass, no clear Sentinel-2 pixel
even after widening) is reported and skipped. The series products (change maps, per-zone
table, plot, STAC) are in :mod:`inference.series`.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from gee_export.contract.dataset import read_manifest
from gee_export.contract.grid import Grid, projected_crs, utm_caveat, utm_epsg
from gee_export.contract.regions import Region
from gee_export.core.errors import (
    ConfigError,
    EarthEngineError,
    EmptyCompositeError,
    IsamapError,
)
from gee_export.core.storage import files
from inference.postprocess import ClaheParams, Postprocess
from inference.predict import PredictConfig
from inference.runtime import RuntimeOptions
from inference.sources import DEFAULT_WORKERS, MAX_WORKERS

log = logging.getLogger(__name__)

Backend = Literal["ee", "local"]
Method = Literal["pixels", "tasks"]
DEFAULT_LATENCY_S = 0.4  # a computePixels round trip for one 512 px tile (plans only)


@dataclass(frozen=True)
class ModelDataset:
    """What a model was trained on, as its dataset manifest recorded it."""

    bands: tuple[str, ...]
    grid: Grid | None
    recipe: Mapping[str, Any]
    backend: str
    months: tuple[str, ...]
    source: str  # where this was read: the model file, or a manifest
    sources: Mapping[str, Any] = field(default_factory=dict)  # per month: composite windows

    def month_of_year(self) -> str:
        """The calendar month the model was trained on (``06`` for 2019-06)."""
        if not self.months:
            raise ConfigError("the model's dataset records no month; give --months YYYY-MM,...")
        return self.months[0][5:7]


def model_dataset(meta: Any, dataset: str | None = None) -> ModelDataset:
    """The dataset record of a model file (its ``extra``), or the manifest under ``dataset``.

    Older model files record only the dataset's root; its ``manifest.json`` is read then.
    """
    record = dict((getattr(meta, "extra", None) or {}).get("dataset") or {})
    where = "the model file"
    if dataset is not None or "recipe" not in record:
        root = dataset or record.get("root")
        if not root:
            raise ConfigError("the model file does not record its dataset; give --dataset DIR "
                              "(the patch dataset it was trained on)")
        try:
            record = read_manifest(root)
        except IsamapError as exc:
            raise ConfigError(f"cannot read the model's dataset manifest in {root} ({exc}); "
                              "give --dataset DIR pointing at the patch dataset") from None
        where = f"{root}/manifest.json"
    grid = Grid.from_dict(record["grid"]) if record.get("grid") else None
    return ModelDataset(tuple(record.get("bands") or ()), grid, dict(record.get("recipe") or {}),
                        str(record.get("backend") or ""), tuple(record.get("months") or ()),
                        where, dict(record.get("sources") or {}))


def check_recipe(meta: Any, dataset: ModelDataset, backend: Backend,
                 allow_mismatch: bool = False) -> list[str]:
    """Refuse a map whose inputs would differ from the model's training data.

    Returns the differences that ``allow_mismatch`` accepted (logged as warnings).
    """
    problems = []
    missing = [b for b in meta.bands if dataset.bands and b not in dataset.bands]
    if missing:
        problems.append(f"the model reads bands {missing} that its dataset ({dataset.source}) "
                        f"does not have ({list(dataset.bands)})")
    trained = "ee" if dataset.backend == "ee" else "local"
    if dataset.backend and trained != backend:
        problems.append(f"the model was trained on the {trained!r} backend's recipe "
                        f"({dataset.source}) and this map uses --backend {backend}")
    if problems and not allow_mismatch:
        raise ConfigError("; ".join(problems) + ". The map would not be built from what the "
                          "model learned; use a matching model or pass --allow-recipe-mismatch")
    for problem in problems:
        log.warning("recipe mismatch accepted (--allow-recipe-mismatch): %s", problem)
    return problems


def region_grid(region: Region, resolution: float, dataset_grid: Grid | None = None,
                crs: str | None = None) -> tuple[Grid, str | None]:
    """The map's grid in ``crs`` (default: the region's UTM zone) at ``resolution``.

    The grid sits on the dataset's pixel lattice when its CRS is the training grid's.

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
    grid = Grid.from_lonlat_bounds(region.bbox, crs, resolution)
    note = None
    if dataset_grid is not None:
        if dataset_grid.crs == crs:
            grid = _on_lattice(grid, dataset_grid)
        else:
            note = (f"region {region.name!r} is mapped in {crs}, not the model's training CRS "
                    f"{dataset_grid.crs}; its inputs are composited and mapped in {crs} at "
                    f"{resolution:g} m (the recipe does not depend on the CRS)")
    return grid, note


def _on_lattice(grid: Grid, lattice: Grid) -> Grid:
    """``grid`` widened to whole pixels of ``lattice`` (same CRS and resolution)."""
    res = lattice.resolution
    x0 = lattice.x0 + math.floor((grid.x0 - lattice.x0) / res + 1e-9) * res
    y0 = lattice.y0 - math.floor((lattice.y0 - grid.y0) / res + 1e-9) * res
    east, south = grid.bounds[2], grid.bounds[1]
    width = max(1, math.ceil((east - x0) / res - 1e-9))
    height = max(1, math.ceil((y0 - south) / res - 1e-9))
    return Grid(grid.crs, float(x0), float(y0), width, height, res, lattice.patch_size,
                lattice.stride)


def parse_dates(months: str | None, years: str | None, month_of_year: Callable[[], str]
                ) -> tuple[str, ...]:
    """``--months 2017-06,2019-06`` or ``--years 2017:2023:2`` (month from the dataset)."""
    from gee_export.contract.dataset import check_month

    if bool(months) == bool(years):
        raise ConfigError("give exactly one of --months YYYY-MM,... or --years FIRST:LAST[:STEP]")
    if months:
        dates = [check_month(m.strip()) for m in months.split(",") if m.strip()]
    else:
        parts = str(years).split(":")
        try:
            first, last = int(parts[0]), int(parts[1] if len(parts) > 1 else parts[0])
            step = int(parts[2]) if len(parts) > 2 else 1
        except ValueError:
            raise ConfigError(f"--years {years!r} must be FIRST:LAST[:STEP], e.g. 2017:2023:2"
                              ) from None
        if step < 1 or last < first:
            raise ConfigError(f"--years {years!r}: LAST must be >= FIRST and STEP >= 1")
        dates = [f"{y}-{month_of_year()}" for y in range(first, last + 1, step)]
    if not dates or len(set(dates)) != len(dates):
        raise ConfigError(f"dates {dates} must be given, and each once")
    return tuple(sorted(dates))


@dataclass(frozen=True)
class MapRequest:
    """Everything ``isamap-map`` was asked to do (the CLI fills it, notebooks and tests too).

    Attributes:
        region: the area (a built-in name, a GeoJSON file or a bbox, see ``regions``).
        dates: ``YYYY-MM`` months, ascending.
        model_file: a file written by ``isamap-train``.
        out: folder or ``gs://bucket/prefix`` of the COGs (``<out>/<month>/isa_<month>_*.tif``).
        backend: ``ee`` (Earth Engine) or ``local`` (``scenes`` on disk).
        scenes: folder(s) of local scenes (``local``).
        method: ``pixels`` (streamed computePixels) or ``tasks`` (batch-exported tiles).
        workers: concurrent computePixels requests (1..40).
        project: Cloud project registered for Earth Engine.
        zones: GeoJSON polygons of the per-zone table (default: the whole map).
        dataset: the model's patch dataset, when the model file does not record its recipe.
        allow_recipe_mismatch: map even though the inputs differ from the training data.
        grid: map exactly this grid instead of the region's (the demo maps its scene's grid).
        crs: projected CRS in metres of the region's grid (default: its centre's UTM zone;
            e.g. ``EPSG:6933`` for an area over several zones, as the export's ``--crs``).
        local_dir: where PNGs, tables, STAC and publication files go (default: ``out`` when
            local, else ``./<name of out>``).
        tile / overlap / batch_size: the sliding window.
        strip_rows: output rows per checkpoint strip (what a killed run keeps).
        postprocess / clahe: the class map's post-processing (``clahe``: the land-cover paper's
            CLAHE re-decision of the impervious class, :mod:`inference.postprocess`).
        options: device, precision, memory format.
        progress: tqdm bars.
    """

    region: Region
    dates: tuple[str, ...]
    model_file: str
    out: str
    backend: Backend = "ee"
    scenes: str | Sequence[str] | None = None
    method: Method = "pixels"
    workers: int = DEFAULT_WORKERS
    project: str | None = None
    zones: str | None = None
    dataset: str | None = None
    allow_recipe_mismatch: bool = False
    grid: Grid | None = None
    crs: str | None = None
    local_dir: str | None = None
    tile: int = 512
    overlap: int = 64
    batch_size: int = 8
    strip_rows: int = 512
    postprocess: Postprocess = "none"
    clahe: ClaheParams = field(default_factory=ClaheParams)
    options: RuntimeOptions = field(default_factory=RuntimeOptions)
    progress: bool = True

    def __post_init__(self) -> None:
        if not 1 <= self.workers <= MAX_WORKERS:
            raise ConfigError(f"--workers must be between 1 and {MAX_WORKERS} (Earth Engine "
                              f"allows about {MAX_WORKERS} concurrent requests), got "
                              f"{self.workers}")
        if self.backend == "local" and not self.scenes:
            raise ConfigError("--backend local needs --scenes DIR (Sentinel-1/2 scenes); "
                              "`make demo` shows the layout on a synthetic scene")
        if self.method == "tasks" and (self.backend != "ee" or not files.is_gcs(self.out)):
            raise ConfigError("--method tasks exports the stack with Earth Engine to Cloud "
                              "Storage: use --backend ee and --out gs://BUCKET/PREFIX")
        self.predict_config()

    def predict_config(self) -> PredictConfig:
        return PredictConfig(tile=self.tile, overlap=self.overlap, batch_size=self.batch_size,
                             strip_rows=self.strip_rows, postprocess=self.postprocess,
                             clahe=self.clahe)

    def product_dir(self) -> Path:
        """Local folder of PNGs, tables, STAC and publication files."""
        if self.local_dir:
            return Path(self.local_dir)
        if files.is_gcs(self.out):
            return Path.cwd() / self.out.rstrip("/").rsplit("/", 1)[-1]
        return Path(self.out)

    def prefix(self, month: str) -> str:
        """Output prefix of one date's COGs."""
        return f"{self.out.rstrip('/')}/{month}/isa_{month}"


@dataclass(frozen=True)
class MapPlan:
    """What a map run will do, computed offline (``--dry-run`` prints it)."""

    region: str
    grid: Grid
    dates: tuple[str, ...]
    backend: str
    method: str
    tiles_per_date: int
    requests_per_date: int
    bytes_per_date: int
    workers: int
    model_seconds_per_tile: float
    latency_s: float
    crs_note: str | None = None

    @property
    def seconds_estimate(self) -> float:
        """Fetch- or model-bound, whichever is slower, for every date."""
        fetch = self.requests_per_date * self.latency_s / self.workers
        model = self.tiles_per_date * self.model_seconds_per_tile
        return max(fetch, model) * len(self.dates)

    def to_dict(self) -> dict[str, Any]:
        return {"region": self.region, "grid": self.grid.to_dict(), "dates": list(self.dates),
                "backend": self.backend, "method": self.method,
                "area_km2": round(self.grid.area_km2, 3),
                "tiles_per_date": self.tiles_per_date,
                "requests_per_date": self.requests_per_date,
                "bytes_per_date": self.bytes_per_date, "workers": self.workers,
                "model_seconds_per_tile": round(self.model_seconds_per_tile, 4),
                "latency_s": self.latency_s,
                "seconds_estimate": round(self.seconds_estimate, 1), "crs_note": self.crs_note}


def plan_map(request: MapRequest, grid: Grid, bands: Sequence[str],
             model_seconds_per_tile: float, latency_s: float = DEFAULT_LATENCY_S,
             crs_note: str | None = None) -> MapPlan:
    """Tiles, requests, bytes and a time estimate of ``request`` (pure)."""
    from gee_export.ee.pixels import split_request
    from inference.sources import fetch_layout, layout_requests

    layout = fetch_layout(grid, request.tile, request.overlap)
    tiles = sum(len(row) for row in layout)
    groups = [g for row in layout_requests(layout, len(bands), request.workers) for g in row]
    nbytes = sum(g.window.height * g.window.width for g in groups) * len(bands) * 4
    requests = (sum(len(split_request(g.window, tuple(bands))) for g in groups)
                if request.method == "pixels" else 0)
    return MapPlan(request.region.name, grid, request.dates, request.backend, request.method,
                   tiles, requests, nbytes, request.workers, model_seconds_per_tile, latency_s,
                   crs_note)


def format_plan(plan: MapPlan) -> str:
    """The plan, one fact per line."""
    from gee_export.ee.plan import format_duration

    g = plan.grid
    lines = [
        f"Map plan (dry run: nothing sent to Earth Engine) for region {plan.region!r}",
        f"  grid      {g.crs}, {g.width} x {g.height} px of {g.resolution:g} m "
        f"({g.area_km2:,.1f} km2), origin ({g.x0:.0f}, {g.y0:.0f})",
        f"  dates     {', '.join(plan.dates)}",
        f"  inputs    backend {plan.backend}, method {plan.method}",
        f"  tiles     {plan.tiles_per_date:,} per date (tile + overlap, streamed; memory "
        "bounded by a band of tile rows)",
    ]
    if plan.method == "pixels" and plan.backend == "ee":
        lines.append(f"  requests  {plan.requests_per_date:,} computePixels per date, "
                     f"{plan.workers} concurrent (max {MAX_WORKERS})")
    lines += [
        f"  bytes     {plan.bytes_per_date / 2**30:,.2f} GiB of float32 input per date",
        f"  time      about {format_duration(plan.seconds_estimate / 3600)}: model "
        f"{plan.model_seconds_per_tile * 1000:.0f} ms/tile measured now on this machine, "
        f"requests at {plan.latency_s:g} s each",
    ]
    if plan.crs_note:
        lines.append(f"  note      {plan.crs_note}")
    return "\n".join(lines)


@dataclass(frozen=True)
class DateResult:
    """One date of a map: its outputs, or why it was skipped."""

    month: str
    outputs: Any | None  # inference.workflow.Outputs
    skipped: str | None = None


def stack_identity(backend: str, grid: Grid, recipe: Mapping[str, Any]) -> str:
    """Names one date's inputs in the prediction fingerprint (a changed recipe re-predicts)."""
    return json.dumps({"backend": backend, "grid": grid.to_dict(), "recipe": recipe},
                      sort_keys=True, default=str)


DatePredictor = Callable[[MapRequest, Grid, Any, "ModelDataset", str, Any], Any]


def map_dates(request: MapRequest, grid: Grid, meta: Any, dataset: ModelDataset, *,
              session: Any = None,
              predict_date: DatePredictor | None = None) -> list[DateResult]:
    """Predict every date of ``request`` on ``grid`` (resumable; finished dates are skipped).

    ``predict_date(request, grid, meta, dataset, month, session)`` replaces the streaming
    prediction of one date when given (the Beam pipeline, :mod:`inference.beam_map`); it
    returns the date's :class:`inference.workflow.Outputs`.
    """
    from inference.workflow import predict_with_model_file

    config = request.predict_config()
    local = request.product_dir()
    results = []
    inputs = _ee_inputs if request.backend == "ee" else _local_inputs
    for month in request.dates:
        try:
            if predict_date is not None:
                outputs = predict_date(request, grid, meta, dataset, month, session)
                log.info("date %s: %s", month, "already mapped" if outputs.prediction.skipped
                         else f"{outputs.prediction.tiles} tiles in "
                              f"{outputs.prediction.seconds:.1f} s")
                results.append(DateResult(month, outputs))
                continue
            with inputs(request, grid, meta, dataset, month, session) as source:
                try:
                    outputs = predict_with_model_file(
                        request.model_file, source, request.prefix(month), month=month,
                        config=config, options=request.options, zones=request.zones,
                        local_dir=local / month, progress=request.progress)
                except EarthEngineError as exc:
                    raise _with_tiles_left(exc, source, month) from exc
        except EmptyCompositeError as exc:
            log.warning("date %s skipped: %s", month, exc)
            results.append(DateResult(month, None, str(exc)))
            continue
        log.info("date %s: %s", month, "already mapped" if outputs.prediction.skipped
                 else f"{outputs.prediction.tiles} tiles in {outputs.prediction.seconds:.1f} s")
        results.append(DateResult(month, outputs))
    return results


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
    """A context manager over an already-made source (a path, or an object to close)."""

    def __init__(self, source: Any, close: Callable[[], None] | None = None) -> None:
        self.source, self._close = source, close

    def __enter__(self) -> Any:
        return self.source

    def __exit__(self, *exc: object) -> None:
        if self._close:
            self._close()


def _local_inputs(request: MapRequest, grid: Grid, meta: Any, dataset: ModelDataset,
                  month: str, session: Any) -> _Opened:
    from gee_export.local.stack import LocalRecipe, build_local_stack

    recorded = dict(dataset.recipe.get("local_recipe") or dataset.recipe)
    recipe = LocalRecipe.from_dict({k: v for k, v in recorded.items()
                                    if k in LocalRecipe.__dataclass_fields__})
    work = request.product_dir() / ".stacks" / month
    stack = build_local_stack(request.scenes, grid, month, tuple(meta.bands), label=None,
                              speckle=recipe.speckle, out_dir=work, recipe=recipe,
                              progress=request.progress)
    import rasterio

    from inference.sources import MaskedFileSource

    with rasterio.open(stack.image) as ds:  # the recipe signature names its inputs
        signature = ds.tags().get("ISAMAP_RECIPE", "")
    source = MaskedFileSource(stack.image, identity=f"{stack.image}#{signature}")
    return _Opened(source, source.close)


def ee_date_image(request: MapRequest, grid: Grid, meta: Any, dataset: ModelDataset,
                  month: str, session: Any) -> tuple[Any, str]:
    """One date's input image on ``grid`` (the model's recipe) and its identity.

    Asks the session for the date's composite windows (clear Sentinel-2 observations,
    Sentinel-1 scenes); raises :class:`EmptyCompositeError` for a date without data.
    """
    import ee

    from gee_export.ee.prediction_stack import composite_windows, prediction_image, recipe_for_month

    geometry = ee.Geometry(request.region.to_geojson())
    date = composite_windows(session, geometry, request.region.name,
                             recipe_for_month(dataset.recipe, tuple(meta.bands), month,
                                              dataset.sources))
    return prediction_image(grid, date, geometry), stack_identity("ee", grid, date.to_dict())


def _ee_inputs(request: MapRequest, grid: Grid, meta: Any, dataset: ModelDataset,
               month: str, session: Any) -> _Opened:
    from gee_export.ee.export import fetch_window
    from gee_export.ee.prediction_stack import export_prediction_stack
    from inference.sources import FetchedSource, MaskedFileSource

    image, identity = ee_date_image(request, grid, meta, dataset, month, session)
    if request.method == "tasks":
        exported = export_prediction_stack(session, image, grid, tuple(meta.bands),
                                           f"{request.out.rstrip('/')}/stacks",
                                           f"stack_{month}", progress=request.progress)
        source = MaskedFileSource(exported.vrt)
        return _Opened(source, source.close)
    bands = tuple(meta.bands)
    fetched = FetchedSource(lambda window: fetch_window(session, image, grid, window, bands)[0],
                            grid, bands, tile=request.tile, overlap=request.overlap,
                            workers=request.workers, identity=identity)
    return _Opened(fetched, fetched.close)


def write_run_record(request: MapRequest, grid: Grid, results: Sequence[DateResult],
                     extra: Mapping[str, Any]) -> Path:
    """``map.json`` in the product folder: what was mapped, from what, and what was skipped."""
    from gee_export.core.storage import atomic_write

    record = {"region": request.region.name, "bbox": list(request.region.bbox),
              "grid": grid.to_dict(), "model": os.fspath(request.model_file),
              "backend": request.backend, "method": request.method, "out": request.out,
              **({"postprocess": request.postprocess, "clahe": vars(request.clahe)}
                 if request.postprocess != "none" else {}),
              "dates": {r.month: ({"skipped": r.skipped} if r.skipped else
                                  {"class_cog": r.outputs.prediction.class_path,
                                   "prob_cog": r.outputs.prediction.prob_path})
                        for r in results}, **extra}
    path = request.product_dir() / "map.json"
    atomic_write(path, lambda fh: fh.write(json.dumps(record, indent=1, default=str).encode()))
    return path
