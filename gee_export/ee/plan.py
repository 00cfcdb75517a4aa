"""``--dry-run``: what an export would do, computed locally without any Earth Engine call.

The plan is pure arithmetic on the grid and the service limits, so a user can check the size
and cost of a job (patch count, requests, bytes, batch tasks) before authenticating.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from contract.grid import Grid
from contract.regions import Region
from contract.splits import (
    DEFAULT_BLOCK,
    DEFAULT_RATIOS,
    assign_splits,
    split_advice,
    split_counts,
)
from gee_export.ee.budget import format_budget
from gee_export.ee.compute import ComputeEstimate, estimate, format_duration, format_estimate
from gee_export.ee.pixels import FLOAT_BYTES, bands_bytes, split_request
from gee_export.ee.tasks import (
    CONCURRENT_BATCH_TASKS,
    DEFAULT_PATCHES_PER_TILE,
    TASK_MINUTES,
    file_dimensions,
    plan_tiles,
    tasks_hours,
)

Method = Literal["pixels", "tasks"]
AUTO_TASKS_ABOVE_KM2 = 5000.0  # interactive requests suit regions up to a few thousand km^2
DEFAULT_LATENCY_S = 1.0
"""Assumed seconds of one 128 px multi-band request (``--latency`` overrides it; a real run
states the latency it measures on its first requests)."""


def choose_method(requested: str, grid: Grid, out: str) -> Method:
    """``auto`` picks batch tasks for very large regions written to Cloud Storage."""
    if requested in ("pixels", "tasks"):
        return requested  # type: ignore[return-value]
    big = grid.area_km2 > AUTO_TASKS_ABOVE_KM2
    return "tasks" if big and out.startswith("gs://") else "pixels"


@dataclass(frozen=True)
class ExportPlan:
    """Sizes of one export job (every month alike)."""

    region: str
    area_km2: float
    grid: dict[str, Any]
    months: tuple[str, ...]
    bands: tuple[str, ...]
    label: str
    fine_scale: int | None
    method: Method
    out: str
    positions: int
    patches: int
    requests_per_patch: int
    requests: int
    bytes_per_patch: int
    bytes: int
    tiles: int
    tile_pixels: int
    tasks: int
    workers: int
    hours_estimate: float
    per_split: dict[str, int]
    split_block: int = DEFAULT_BLOCK
    split_advice: str | None = None
    compute: ComputeEstimate | None = None
    latency_s: float = DEFAULT_LATENCY_S
    max_eecu_hours: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["compute"] = self.compute.to_dict() if self.compute else None
        return out


def make_plan(region: Region, grid: Grid, months: tuple[str, ...], bands: tuple[str, ...],
              label: str, fine_scale: int | None, method: Method, out: str, workers: int,
              patches_per_tile: int = DEFAULT_PATCHES_PER_TILE, seed: int = 0,
              block: int = DEFAULT_BLOCK, latency_s: float = DEFAULT_LATENCY_S,
              max_eecu_hours: float | None = None) -> ExportPlan:
    """The plan of an export (pure: no Earth Engine, no storage access).

    The wall time of the ``pixels`` method is ``requests x latency_s / workers``: the
    requests in flight are at most ``workers`` (fewer while the project's quota answers 429).

    The split counts are the real ones of this grid, seed and block (the same function the
    export uses), so a small area that would give no validation or test patches is caught here.
    """
    names = (*bands, "label")
    splits = assign_splits(grid, None, DEFAULT_RATIOS, seed, block) if grid.patch_count else {}
    per_split = split_counts(splits)
    patches_per_month = len(splits)
    window = grid.patch_window(0, 0) if grid.patch_count else None
    per_patch = len(split_request(window, names)) if window else 0
    patch_bytes = grid.patch_size ** 2 * bands_bytes(names)
    if fine_scale:
        fine = grid.scaled(fine_scale)
        per_patch += len(split_request(fine.patch_window(0, 0), ("label",)))
        patch_bytes += fine.patch_size ** 2 * FLOAT_BYTES
    n_months = len(months)
    tiles = plan_tiles(grid, patches_per_tile) if grid.patch_count else []
    tile_px = file_dimensions(tiles[0].window) if tiles else 0
    requests = per_patch * patches_per_month * n_months
    n_tasks = len(tiles) * n_months * (2 if fine_scale else 1)  # a tile's (and fine label's)
    if method == "pixels":  # each request computes its patch again: overlaps cost twice
        pixels = (grid.patch_size ** 2 + (grid.scaled(fine_scale).patch_size ** 2
                                          if fine_scale else 0)) * patches_per_month * n_months
        compute = estimate(requests, pixels)
    else:  # one task per tile (and fine label), each pixel of the grid computed once
        pixels = grid.width * grid.height * n_months * (1 + (fine_scale or 0) ** 2)
        compute = estimate(n_tasks, pixels, interactive=False)
    hours = (requests * latency_s / workers / 3600.0 if method == "pixels"
             else tasks_hours(n_tasks))
    return ExportPlan(
        region=region.name, area_km2=round(grid.area_km2, 1), grid=grid.to_dict(),
        months=months, bands=bands, label=label, fine_scale=fine_scale, method=method, out=out,
        positions=grid.patch_count * n_months, patches=patches_per_month * n_months,
        requests_per_patch=per_patch, requests=requests if method == "pixels" else 0,
        bytes_per_patch=patch_bytes, bytes=patch_bytes * patches_per_month * n_months,
        tiles=len(tiles) * n_months, tile_pixels=tile_px,
        tasks=n_tasks if method == "tasks" else 0,
        workers=workers, hours_estimate=round(hours, 5), per_split=per_split,
        split_block=block,
        split_advice=split_advice(grid, per_split, DEFAULT_RATIOS, seed, block)
        if grid.patch_count else None, compute=compute, latency_s=latency_s,
        max_eecu_hours=max_eecu_hours)


def _size(nbytes: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if nbytes < 1024 or unit == "TB":
            return f"{nbytes:,.1f} {unit}"
        nbytes /= 1024
    return f"{nbytes:,.1f} TB"  # pragma: no cover


def format_plan(plan: ExportPlan) -> str:
    """Human-readable plan, one fact per line."""
    g = plan.grid
    lines = [
        f"Export plan (dry run: nothing was sent to Earth Engine) for region {plan.region!r}",
        f"  grid        {g['crs']}, {g['width']} x {g['height']} px of {g['resolution']:g} m "
        f"({plan.area_km2:,.1f} km2), origin ({g['x0']:.0f}, {g['y0']:.0f})",
        f"  patches     {g['patch_size']} px every {g['stride']} px: {plan.positions:,} positions, "
        f"{plan.patches:,} kept by the blocked 8:1:1 split ({len(plan.months)} month(s): "
        f"{', '.join(plan.months)})",
        f"  split       per month train {plan.per_split['train']:,}, val "
        f"{plan.per_split['val']:,}, test {plan.per_split['test']:,} positions (blocks of "
        f"{plan.split_block} x {plan.split_block} positions)",
        f"  bands       {', '.join(plan.bands)} + label ({plan.label})"
        + (f", fine label x{plan.fine_scale}" if plan.fine_scale else ""),
        f"  method      {plan.method}",
    ]
    if plan.method == "pixels":
        lines += [
            f"  requests    {plan.requests:,} computePixels requests ({plan.requests_per_patch} "
            f"per patch, limits 48 MB / 32,768 px / 1,024 bands respected), {plan.workers} "
            "concurrent (max 40)",
            f"  time        about {format_duration(plan.hours_estimate)}: {plan.requests:,} "
            f"requests x {plan.latency_s:g} s / {plan.workers} in flight (--latency sets "
            "the latency; a real run states the one it measures on its first requests)",
            "  time-outs   a request the service cannot compute in time is retried once, "
            "then asked as two halves",
        ]
    else:
        lines += [
            f"  tasks       {plan.tasks:,} Export.image.toCloudStorage tasks of "
            f"{plan.tiles:,} tiles (one {plan.tile_pixels} px GeoTIFF each), at most 2,500 "
            "pending (limit 3,000)",
            f"  time        about {format_duration(plan.hours_estimate)}: Earth Engine runs "
            f"about {CONCURRENT_BATCH_TASKS} batch tasks of a project at once, assumed "
            f"{TASK_MINUTES:g} min each (rough)",
        ]
    lines += [
        f"  bytes       {_size(plan.bytes)} uncompressed ({_size(plan.bytes_per_patch)} per "
        "patch; files are deflate-compressed)",
        f"  output      {plan.out}",
    ]
    if plan.compute:
        lines += format_estimate(plan.compute, "request" if plan.method == "pixels" else "task",
                                 width=12)
    lines += format_budget(plan.max_eecu_hours, plan.compute,
                           "requests" if plan.method == "pixels" else
                           "tasks (measured EECU once done)", width=12)
    if plan.split_advice:
        lines.append(f"  WARNING     {plan.split_advice}")
    return "\n".join(lines)
