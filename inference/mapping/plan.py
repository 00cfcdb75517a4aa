"""The dry run of a map: tiles, requests, bytes and a time estimate, computed offline."""


from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

from contract.grid import Grid
from gee_export.ee.band_statistics import sample_scale
from gee_export.ee.budget import format_budget
from gee_export.ee.compute import ComputeEstimate, estimate, format_estimate
from gee_export.ee.export import MAX_WORKERS
from gee_export.ee.pixels import split_request
from gee_export.ee.plan import format_duration
from gee_export.ee.prediction_stack import stack_tiles
from gee_export.ee.tasks import CONCURRENT_BATCH_TASKS, TASK_MINUTES, tasks_hours
from inference.mapping.fetched import FetchRequest, FetchTile, fetch_layout, layout_requests
from inference.mapping.request import ChangeOptions, ChangeRule, MapRequest
from inference.predict.sources import SAMPLE_SIDE


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
    compute: ComputeEstimate | None = None  # Earth Engine EECU of every date (ee backend)
    #: reduceRegion requests per date for a scene-normalised model's statistics (ee pixels)
    statistics_per_date: int = 0
    statistics_scale: float | None = None  # metres per pixel of their sample
    max_eecu_hours: float | None = None  # --max-eecu-hours (None: no bound)
    change: str = ""  # the change rule in force, in words ("": one date, no pair)
    #: the encoder change rule's features, every pair: seconds (0: another rule)
    change_seconds: float = 0.0

    @property
    def seconds_estimate(self) -> float:
        """Fetch- or model-bound, whichever is slower, for every date."""
        fetch = ((self.requests_per_date * self.latency_s / self.workers
                  + self.statistics_per_date * self.latency_s)  # before the tiles, alone
                 if self.backend == "ee" else 0.0)  # local scenes: no request
        if self.method == "tasks" and self.compute is not None:  # batch tasks, two at a time
            fetch = tasks_hours(self.compute.requests // len(self.dates)) * 3600.0
        model = self.tiles_per_date * self.model_seconds_per_tile
        return max(fetch, model) * len(self.dates) + self.change_seconds

    def to_dict(self) -> dict[str, Any]:
        """Every field (the grid and compute as their dicts, times rounded) and the estimates."""
        return {**{f.name: getattr(self, f.name) for f in fields(self)},
                "grid": self.grid.to_dict(), "area_km2": round(self.grid.area_km2, 3),
                "model_seconds_per_tile": round(self.model_seconds_per_tile, 4),
                "seconds_estimate": round(self.seconds_estimate, 1),
                "compute": self.compute.to_dict() if self.compute else None,
                "change_seconds": round(self.change_seconds, 1)}


def plan_map(request: MapRequest, grid: Grid, bands: Sequence[str],
             model_seconds_per_tile: float, crs_note: str | None = None,
             scene: bool = False, feature_seconds_per_px: float = 0.0) -> MapPlan:
    """Tiles, requests, bytes and a time estimate of ``request`` (pure).

    Requests take ``request.latency_s`` each.

    ``scene``: the model normalises each map by its input's statistics, which tiles fetched
    with computePixels ask Earth Engine for first: one ``reduceRegion`` per date
    (:mod:`inference.mapping.ee_statistics`), counted with the grid's pixels as its compute
    (its image is computed on the grid, then sampled). ``feature_seconds_per_px``: the encoder
    change rule's features per pixel of a date (:func:`change_plan`).
    """
    inputs, dates, lattice = request.inputs, request.extent.dates, request.window.lattice
    runner = request.runner  # its workers' requests, above the quota: the plan counts what
    # Earth Engine serves, the runner says why
    workers = (inputs.workers if runner is None
               else min(runner.workers * runner.threads, MAX_WORKERS))
    layout = fetch_layout(grid, lattice.tile, lattice.overlap, lattice.blend)
    tiles = sum(len(row) for row in layout)
    # a pipeline's workers fetch each tile with a request of its own; the streamed map joins
    # neighbouring tiles of a row into one request (layout_requests)
    groups: Sequence[FetchTile | FetchRequest] = (
        [t for row in layout for t in row] if runner is not None else
        [g for row in layout_requests(layout, len(bands), workers) for g in row])
    nbytes = sum(g.window.height * g.window.width for g in groups) * len(bands) * 4
    requests = (sum(len(split_request(g.window, tuple(bands))) for g in groups)
                if inputs.method == "pixels" and inputs.backend == "ee" else 0)
    compute = None
    statistics = int(scene and inputs.method == "pixels" and inputs.backend == "ee")
    if inputs.backend == "ee":
        if inputs.method == "pixels":  # overlapping tiles are computed once per request
            pixels = sum(g.window.height * g.window.width for g in groups)
            pixels += statistics * grid.width * grid.height
            compute = estimate((requests + statistics) * len(dates), pixels * len(dates))
        else:  # one batch task per stack tile, every pixel once
            compute = estimate(len(stack_tiles(grid)) * len(dates),
                               grid.width * grid.height * len(dates), interactive=False)
    return MapPlan(request.extent.region.name, grid, dates, inputs.backend, inputs.method,
                   tiles, requests, nbytes, workers, model_seconds_per_tile,
                   request.latency_s,
                   crs_note, compute, statistics,
                   sample_scale(grid, SAMPLE_SIDE) if statistics else None,
                   inputs.max_eecu_hours, *change_plan(request.change, request.rule(),
                                                       len(dates) - 1, grid,
                                                       feature_seconds_per_px))


def change_plan(change: ChangeOptions, rule: ChangeRule, pairs: int, grid: Grid,
                feature_seconds_per_px: float = 0.0) -> tuple[str, float]:
    """The change rule in force (``rule``) in words, and the encoder rule's features' seconds.

    The encoder rule computes the features of both dates of every one of ``pairs`` pairs of
    consecutive dates, a date's every pixel, at ``feature_seconds_per_px`` (measured on this
    machine's CPU).
    """
    if pairs < 1:
        return "", 0.0
    if change.temporal_consistency:
        return (f"the consistent class maps differenced (--temporal-consistency "
                f"{change.temporal_consistency})", 0.0)
    if rule == "margin":
        margin = change.margin_in_force()
        return (f"margin {margin:g} on both dates' probabilities" if margin > 0
                else "the class maps differenced", 0.0)
    said = (f"{rule}, --spectral-threshold {change.spectral_threshold:g}: each date's stack "
            f"decides whether a pixel changed, the probabilities which way")
    if rule != "encoder":
        return said, 0.0
    seconds = grid.width * grid.height * 2 * pairs * feature_seconds_per_px
    return (f"{said}; the encoder's features of both dates of {pairs} pair(s) of "
            f"{grid.width * grid.height:,} px on the CPU: about "
            f"{format_duration(seconds / 3600)} ({feature_seconds_per_px * 1e5:.1f} ms per "
            "100 px measured now on this machine)", seconds)


def format_plan(plan: MapPlan) -> str:
    """The plan, one fact per line."""
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
                     f"{plan.workers} concurrent (max {MAX_WORKERS}; fewer while the project's "
                     "quota answers 429); a request the service cannot compute in time is "
                     "retried once, then asked as two halves")
    if plan.statistics_per_date:
        lines.append(f"  scene     {plan.statistics_per_date} reduceRegion per date, before its "
                     "first tile: the band statistics this model normalises each map by, "
                     f"sampled at {plan.statistics_scale:g} m (not fetched by a dry run)")
    lines += [
        f"  bytes     {plan.bytes_per_date / 2**30:,.2f} GiB of float32 input per date",
        f"  time      about {format_duration(plan.seconds_estimate / 3600)}: model "
        f"{plan.model_seconds_per_tile * 1000:.0f} ms/tile measured now on this machine"
        + (" (local scenes: compositing time not included)" if plan.backend != "ee" else
           f", requests at {plan.latency_s:g} s each" if plan.method != "tasks" else
           f", stack tasks about {CONCURRENT_BATCH_TASKS} at a time (Earth Engine's batch "
           f"concurrency), assumed {TASK_MINUTES:g} min each")
        + ("; and the change features below" if plan.change_seconds else ""),
    ]
    if plan.change:
        lines.append(f"  change    {plan.change}")
    if plan.compute:
        unit = "request" if plan.method == "pixels" else "stack task"
        lines += format_estimate(plan.compute, unit)
        lines += format_budget(plan.max_eecu_hours, plan.compute, f"{unit}s")
    if plan.crs_note:
        lines.append(f"  note      {plan.crs_note}")
    return "\n".join(lines)
