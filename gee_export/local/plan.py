"""``--backend local --dry-run``: what a local export would do, from the scenes' metadata only.

The Earth Engine plan counts requests and tasks; a local run's questions are different: which
scenes were found, which of them fall in each month and touch the grid, whether a label
raster is there, and how many patches the grid yields. These read file headers and bounds
only. Given the export's recipe, each month with scenes on the grid is also put through the
real run's own checks before its composite (:func:`~.month_inputs.check_month_inputs`, which
reads headers and small pixel samples, and :func:`~.training_label.check_training_label`,
which reads the label until its first impervious pixel): what they refuse is a PROBLEM, so a
plan the real run would refuse fails as the real run does, with its message.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from contract import bands as band_registry
from contract.dataset_diff import out_problem
from contract.grid import Grid
from contract.splits import DEFAULT_BLOCK, SPLITS, assign_splits
from core.errors import IsamapError
from gee_export.local.compositing import LocalRecipe
from gee_export.local.month_inputs import check_month_inputs
from gee_export.local.scenes import SceneCollection, discover_scenes
from gee_export.local.stack import earlier_inputs
from gee_export.local.training_label import check_training_label
from gee_export.local.warp import overlaps

log = logging.getLogger(__name__)

#: the real run's checks of a month ``--out`` holds: True when they ran (and passed), False
#: for a month it does not hold; raises what they refuse
OutCheck = Callable[[SceneCollection, str], bool]


@dataclass(frozen=True)
class MonthScenes:
    """The scenes of one month: acquired in it, and of those, touching the grid."""

    month: str
    s2: int
    s2_on_grid: int
    s1: int
    s1_on_grid: int
    refused: str | None = None  # what the real run's checks refuse (None: passed or not run)


@dataclass(frozen=True)
class LocalPlan:
    """Sizes and inputs of one local export (every month cut on the same grid)."""

    region: str
    grid: Grid
    bands: tuple[str, ...]
    scenes: str
    found_s2: int
    found_s1: int
    months: tuple[MonthScenes, ...]
    label: str | None
    positions: int
    patches: int
    per_split: tuple[tuple[str, int], ...]
    out: str
    out_refused: str | None = None  # the real run's refusal of --out's dataset (None: none)

    def problems(self) -> list[str]:
        """What would stop the real run (one line each).

        ``--out``'s refusal first, then each month's, in the real run's words where its
        checks ran.
        """
        gaps = month_gaps(self.bands, self.months)
        out = [self.out_refused] if self.out_refused else []
        for m in self.months:
            out += ([f"{m.month}: {m.refused}"] if m.refused
                    else [f"{m.month}: {gap}" for gap in gaps.get(m.month, [])])
        return out

    def stop_line(self) -> str | None:
        """The one-line refusal of the first problem (None: the real run would go on)."""
        problems = self.problems()
        if not problems:
            return None
        if problems[0] == self.out_refused or any(
                m.refused and problems[0].endswith(m.refused) for m in self.months):
            return f"the real run would stop: {problems[0]}"
        return (f"the real run would stop: {problems[0]}; add scenes of that month to --scenes "
                "or choose other months")


def month_gaps(bands: Sequence[str], months: Sequence[MonthScenes]) -> dict[str, list[str]]:
    """The months without a scene on the grid of a sensor ``bands`` need, and which.

    The real run raises :class:`~core.errors.EmptyCompositeError` for such a month: an
    export stops, a map skips the date (:func:`inference.mapping.dates.map_dates`).
    """
    specs = band_registry.resolve(bands)
    need_s2 = any(s.sensor == "S2" for s in specs) or "s2_clear_count" in bands
    need_s1 = any(s.sensor == "S1" for s in specs) or "s1_scene_count" in bands
    gaps = {}
    for m in months:
        missing = [f"no Sentinel-{n} scene on the grid ({total} in the month)"
                   for n, need, on_grid, total in ((2, need_s2, m.s2_on_grid, m.s2),
                                                   (1, need_s1, m.s1_on_grid, m.s1))
                   if need and not on_grid]
        if missing:
            gaps[m.month] = missing
    return gaps


def month_scenes(collection: SceneCollection, grid: Grid, months: Sequence[str]
                 ) -> list[MonthScenes]:
    """The scenes of each month (headers only): acquired in it, and of those, on ``grid``."""
    rows = []
    for month in months:
        monthly = collection.in_month(month)
        s2 = [s for s in monthly.s2 if overlaps(s.bands[0][1], grid)]
        s1 = [s for s in monthly.s1 if overlaps(s.bands[0][1], grid)]
        rows.append(MonthScenes(month, len(monthly.s2), len(s2), len(monthly.s1), len(s1)))
    return rows


def make_local_plan(scenes: str | Path | Sequence[str | Path] | SceneCollection, region: str,
                    grid: Grid, months: Sequence[str], bands: Sequence[str], out: str, *,
                    reading: Mapping[str, Any] | None = None, seed: int = 0,
                    block: int | None = None, recipe: LocalRecipe | None = None,
                    fine_scale: int | None = None, out_refused: str | None = None,
                    out_check: OutCheck | None = None) -> LocalPlan:
    """The plan of a local export: discovers the scenes (headers only) and counts per month.

    ``reading`` holds the ``discover_scenes`` arguments (``LocalRecipe.reading()``); ``seed``
    and ``block`` split the positions as the real run does (``--seed``, ``--split-block``).
    ``recipe`` (an export's, with ``fine_scale``): every month with scenes on the grid is also
    checked as the real run checks it before its composite (:func:`_refusal`): ``out_check``
    runs the real run's checks of a month ``--out`` holds (its inputs' digest included), and
    ``out_refused`` is the real run's refusal of ``--out``'s dataset, if any.
    """
    collection = (scenes if isinstance(scenes, SceneCollection)
                  else discover_scenes(scenes, **(reading or {})))
    rows = [row if recipe is None else replace(row, refused=_refusal(
        collection, grid, row.month, bands, recipe, fine_scale,
        None if out_refused else out_check)) for row in month_scenes(collection, grid, months)]
    label = collection.label(1)
    splits = list(assign_splits(grid, None, seed=seed, block=block or DEFAULT_BLOCK).values()
                  ) if grid.patch_count else []
    per_split = tuple((name, splits.count(name) * len(months)) for name in SPLITS)
    return LocalPlan(region, grid, tuple(bands), str(scenes), len(collection.s2),
                     len(collection.s1), tuple(rows), str(label) if label else None,
                     grid.patch_count * len(months), len(splits) * len(months), per_split, out,
                     out_refused)


def _refusal(collection: SceneCollection, grid: Grid, month: str, bands: Sequence[str],
             recipe: LocalRecipe, fine_scale: int | None,
             out_check: OutCheck | None = None) -> str | None:
    """What the real run's checks of ``month`` refuse before its composite, else None.

    A series stack's earlier months (``B4_m1``) are checked as the real run checks them
    (:func:`gee_export.local.stack.earlier_inputs`): a missing one is refused here too.
    """
    try:
        if out_check is not None and out_check(collection, month):
            return None  # a month --out holds: the real run's own checks ran, digest included
        own = tuple(bands[i] for i in band_registry.own_month(bands))
        inputs = check_month_inputs(collection, grid, month, own, recipe,
                                    recipe.label_scheme, None, fine_scale)
        earlier_inputs(collection, grid, month, bands, recipe, recipe.label_scheme,
                       inputs.label_ref)
        warning = check_training_label(inputs.label_ref, grid, recipe.label_scheme)
        if warning:
            log.warning("%s", warning)
    except IsamapError as err:
        return str(err)
    return None


def format_local_plan(plan: LocalPlan) -> str:
    """Human-readable plan, one fact per line, problems last."""
    g = plan.grid
    lines = [
        f"Local export plan (dry run: nothing composited or written) for region {plan.region!r}",
        f"  scenes      {plan.scenes}: {plan.found_s2} Sentinel-2 and {plan.found_s1} "
        "Sentinel-1 scenes found",
    ]
    for m in plan.months:
        lines.append(f"  {m.month}     Sentinel-2 {m.s2_on_grid} on the grid ({m.s2} in the "
                     f"month), Sentinel-1 {m.s1_on_grid} ({m.s1})")
    lines += [
        f"  grid        {g.crs}, {g.width} x {g.height} px of {g.resolution:g} m "
        f"({g.area_km2:,.1f} km2), origin ({g.x0:.0f}, {g.y0:.0f})",
        f"  patches     {g.patch_size} px every {g.stride} px: {plan.positions:,} positions, "
        f"{plan.patches:,} kept by the blocked split ("
        + ", ".join(f"{n:,} {name}" for name, n in plan.per_split)
        + f"; {len(plan.months)} month(s))",
        f"  bands       {', '.join(plan.bands)} + label",
        f"  label       {plan.label or 'none found: the label is all nodata (inference only)'}",
        f"  output      {plan.out}",
    ]
    lines += [f"  PROBLEM     {out_problem(plan.out) if p == plan.out_refused else p}"
              for p in plan.problems()]  # --out's refusal, long, is the error line's alone
    return "\n".join(lines)
