"""``isamap-export`` with Earth Engine: every month composited and delivered, one way or another.

For each month the recipe's composite windows are asked for (a cloudy month is widened; an
S1-only export asks nothing of Sentinel-2), the stack and the fine label are built offline as
graphs, and the month is delivered by computePixels in this process
(:func:`gee_export.ee.export.export_pixels`), by batch tasks
(:func:`gee_export.ee.tasks.export_tasks`) or by a Beam pipeline
(:func:`gee_export.ee.beam_export.export_pipeline`). The dataset's parameters are checked against
its manifest before any Earth Engine call, and ``--max-eecu-hours`` is one budget for every month
of the run (:mod:`gee_export.ee.budget`). The command's options arrive in three parts: what is
made and where (:class:`~contract.export_options.ExportTarget`), the composite's
:class:`~gee_export.ee.recipe.EERecipe` and how Earth Engine delivers it
(:class:`EEDelivery`); the recipe's flags and the Earth Engine flags' bounds are defined here,
beside what reads them.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

from contract.composite import SPECKLE_FILTERS
from contract.dataset import DatasetSpec, check_compatible, out_refusal
from contract.dataset_diff import out_problem
from contract.export_options import ExportTarget
from core.commands import check_range
from core.errors import ConfigError, InputDataError
from core.pipeline_options import RunnerConfig, runner_config
from core.storage import open_store
from gee_export.ee.beam_export import EarthEngineProject, export_pipeline
from gee_export.ee.budget import ComputeBudget, check_max_eecu_hours, compute_budget
from gee_export.ee.export import check_workers, export_pixels
from gee_export.ee.export_job import ExportJob, ExportSummary
from gee_export.ee.labels import parse_label_source
from gee_export.ee.names import default_workload_tag
from gee_export.ee.plan import Method, choose_method, format_plan, make_plan
from gee_export.ee.prediction_stack import DateRecipe, composite_windows
from gee_export.ee.recipe import EERecipe, build_fine_label, build_stack
from gee_export.ee.request_region import request_geometry
from gee_export.ee.sentinel1 import ORBIT_PASSES, S1Recipe
from gee_export.ee.sentinel2 import S2Recipe, month_window
from gee_export.ee.session import EESession
from gee_export.ee.tasks import MAX_PENDING_TASKS, export_tasks
from gee_export.ee.terrain import DEFAULT_DEM, TERRAIN_MODELS


def add_recipe_arguments(g: argparse._ArgumentGroup) -> None:
    """The composite recipe's flags (``--speckle`` serves the local backend too)."""
    g.add_argument("--speckle", default="refined_lee", choices=SPECKLE_FILTERS,
                     help="Sentinel-1 speckle filter applied to each scene before compositing")
    g.add_argument("--terrain-flattening", default="none", choices=TERRAIN_MODELS,
                     help="Sentinel-1 radiometric terrain flattening and its scattering model "
                          "(uses --dem)")
    g.add_argument("--dem", default=DEFAULT_DEM, help="DEM for terrain flattening")
    g.add_argument("--orbit-pass", default="both", choices=ORBIT_PASSES,
                     help="Sentinel-1 orbit directions composited")
    g.add_argument("--cloud-mask", default="cloudscoreplus", choices=("cloudscoreplus", "scl"),
                     help="Sentinel-2 cloud mask: Cloud Score+ or the scene classification "
                          "layer")
    g.add_argument("--cloud-threshold", type=float, default=0.60,
                     help="Cloud Score+ cs_cdf threshold (keep >=)")
    g.add_argument("--s2-max-widen-days", type=int, default=15,
                     help="widen a too-cloudy month by up to this many days on each side")


def check_ee_arguments(args: argparse.Namespace) -> None:
    """The bounds of the Earth Engine flags, for a dry run and a real run alike."""
    check_workers(args.workers)
    check_range("--patches-per-tile", args.patches_per_tile, 1)
    check_range("--max-pending", args.max_pending, 1, MAX_PENDING_TASKS)
    if args.max_eecu_hours is not None:
        check_max_eecu_hours(args.max_eecu_hours)
        if args.backend == "local":
            raise ConfigError("--max-eecu-hours bounds Earth Engine compute; the local "
                              "backend uses none: leave it out with --backend local")
    check_range("--cloud-threshold", args.cloud_threshold, 0.0, 1.0,
                "it is the Cloud Score+ cs_cdf a pixel needs to count as clear")
    check_range("--s2-max-widen-days", args.s2_max_widen_days, 0)


def ee_runner(args: argparse.Namespace, out: str) -> RunnerConfig | None:
    """The Beam runner ``--runner`` asks for, checked before anything is fetched.

    None: the export runs in this process. ``out`` is the dataset root the run writes.
    """
    runner = runner_config(args, dry_run=args.dry_run)
    if runner is None:
        return None
    if args.backend != "ee":
        raise ConfigError("--runner runs the Earth Engine export as a Beam pipeline; the local "
                          "backend runs in this process (drop --runner)")
    if args.method == "tasks":
        raise ConfigError("--runner fetches patches with computePixels; batch tasks "
                          "(--method tasks) already run on Earth Engine's machines")
    runner.check(cloud={"--out": out})
    return runner.for_workers(needs_torch=False)  # no torch, the versions constraints.txt pins


@dataclass(frozen=True)
class EEDelivery:
    """How Earth Engine computes and delivers an export's months: its runtime, not its recipe.

    The Cloud ``project``; the ``method`` (``pixels`` or ``tasks``) with its ``workers``, or its
    ``patches_per_tile`` and ``max_pending``; ``max_eecu_hours``, one budget for every month;
    ``progress`` bars; and a Beam ``runner`` (None: this process).
    """

    project: str | None
    method: Method
    workers: int
    patches_per_tile: int
    max_pending: int
    max_eecu_hours: float | None
    progress: bool
    runner: RunnerConfig | None


def ee_delivery(args: argparse.Namespace, target: ExportTarget,
                runner: RunnerConfig | None) -> EEDelivery:
    """How the flags ask Earth Engine to deliver ``target`` (``runner``: :func:`ee_runner`'s)."""
    method: Method = "pixels" if runner else choose_method(args.method, target.grid, target.out)
    return EEDelivery(args.project, method, args.workers, args.patches_per_tile,
                      args.max_pending, args.max_eecu_hours, not args.no_progress, runner)


def s2_recipe(args: argparse.Namespace) -> S2Recipe:
    """The Sentinel-2 composite the recipe's flags ask for."""
    return S2Recipe(cloud_mask=args.cloud_mask, cs_threshold=args.cloud_threshold,
                    max_widen_days=args.s2_max_widen_days)


def ee_recipe(args: argparse.Namespace, target: ExportTarget) -> EERecipe:
    """The Earth Engine recipe the recipe's flags ask for, of ``target``'s bands and labels."""
    s1 = S1Recipe(orbit_pass=args.orbit_pass, speckle=args.speckle,
                  terrain_flattening=args.terrain_flattening, dem=args.dem)
    return EERecipe(bands=target.bands, s1=s1, s2=s2_recipe(args),
                    label=parse_label_source(target.labels), fine_scale=target.fine_scale)


def ee_spec(target: ExportTarget, recipe: EERecipe) -> DatasetSpec:
    """The dataset ``recipe`` makes of ``target`` (what ``--out`` must hold, if anything)."""
    label = recipe.label
    assert label is not None  # an export's recipe always has its label
    return target.spec("ee", recipe.to_dict(), label.classes, label.label_scheme)


def export_budget(target: ExportTarget, delivery: EEDelivery) -> ComputeBudget | None:
    """``--max-eecu-hours`` as a budget at the plan's estimate (None: no bound)."""
    if delivery.max_eecu_hours is None:
        return None
    plan = make_plan(target.region, target.grid, target.months, target.bands, "",
                     target.fine_scale, delivery.method, target.out, delivery.workers,
                     delivery.patches_per_tile, seed=target.seed, block=target.split_block)
    return compute_budget(delivery.max_eecu_hours, plan.compute)


def ee_dry_run(target: ExportTarget, recipe: EERecipe, delivery: EEDelivery, latency_s: float,
               echo: Callable[[str], None]) -> None:
    """Give ``echo`` the plan of an Earth Engine export, never contacting Earth Engine.

    The requests, their compute and the wall time at ``latency_s`` a request; the Beam
    runner's options are validated offline.

    Raises:
        InputDataError: the real run would stop (``--out`` holds another dataset).
    """
    runner = delivery.runner
    workers = runner.workers * runner.threads if runner else delivery.workers
    plan = make_plan(target.region, target.grid, target.months, target.bands, target.labels,
                     target.fine_scale, delivery.method, target.out, workers,
                     delivery.patches_per_tile, seed=target.seed, block=target.split_block,
                     latency_s=latency_s, max_eecu_hours=delivery.max_eecu_hours)
    echo(format_plan(plan))
    if runner:
        runner.pipeline_options()  # Beam's validation, offline in a dry run
        echo(runner.describe())
    refused = out_refusal(target.out, ee_spec(target, recipe))
    if refused:
        echo(f"  PROBLEM     {out_problem(target.out)}")
        raise InputDataError(f"the real run would stop: {refused}")


def run_ee_export(target: ExportTarget, recipe: EERecipe, delivery: EEDelivery,
                  on_month: Callable[[ExportSummary], None] = lambda summary: None) -> None:
    """Export every month of ``target`` with Earth Engine (see the module docstring).

    The delivery's ``runner``: a Beam runner (months fetched by a pipeline); None: this
    process, by its ``method``.
    """
    spec = ee_spec(target, recipe)
    out, runner = target.out, delivery.runner
    check_compatible(open_store(out), spec)  # before any Earth Engine call
    budget = export_budget(target, delivery)
    session = EESession(project=delivery.project,
                        workload_tag=default_workload_tag("isamap-export")).initialize()
    geometry = request_geometry(target.region)  # the box, not the outline: requests stay small
    for month in target.months:  # the map's rule: an S1-only export asks nothing of Sentinel-2
        date = composite_windows(session, geometry, target.region.name,
                                 DateRecipe(recipe, None, month_window(month)))
        s2_window, s1_window = date.s2_window or month_window(month), date.s1_window
        image = build_stack(target.grid, s2_window, recipe, geometry, s1_window)
        fine = (build_fine_label(target.grid, s2_window, recipe, geometry) if target.fine_scale
                else None)
        job = ExportJob(spec, month, sources={"s2_window": s2_window.to_dict(),
                                              "s1_window": s1_window.to_dict(),
                                              "method": delivery.method})
        if runner is not None:
            workers = EarthEngineProject(delivery.project,
                                         application_default=runner.runner == "dataflow",
                                         workload_tag=session.workload_tag)
            on_month(export_pipeline(workers, image, job, out, runner, fine_label=fine,
                                     budget=budget))
        elif delivery.method == "tasks":
            on_month(export_tasks(session, image, job, out, fine_label=fine,
                                  patches_per_tile=delivery.patches_per_tile,
                                  max_pending=delivery.max_pending, progress=delivery.progress,
                                  budget=budget))
        else:
            on_month(export_pixels(session, image, job, out, fine_label=fine,
                                   workers=delivery.workers, progress=delivery.progress,
                                   budget=budget))
