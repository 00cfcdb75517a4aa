"""``isamap-export`` / ``python export_patches.py``: monthly composites -> co-registered patches.

Defaults are the CroFuseNet paper's (section II-B): Wuhan, June 2019, Sentinel-2 B2, B3, B4, B8
and Sentinel-1 VV, VH at 10 m, 128 px patches every 80 px. ``--dry-run`` and ``--code-editor``
never contact Earth Engine; the ``ee`` backend needs credentials and a Cloud project (the error
says how), the ``local`` backend runs the same recipe on local scenes.

Every argument is checked by :func:`check_arguments` and the grid is built before anything is
read or written, so a dry run refuses exactly what the real run would refuse, and the real run
never fails on an argument after an hour of work. ``--backend local --dry-run`` plans the local
run (scenes per month, grid, patches) instead of the Earth Engine requests.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from contract import bands as band_registry
from contract.archive import check_months as check_archive_months
from contract.bands import FINE_SCALES
from contract.composite import SPECKLE_FILTERS
from contract.dataset import DatasetSpec, check_compatible
from contract.grid import (
    DEFAULT_PATCH_SIZE,
    DEFAULT_STRIDE,
    Grid,
    projected_crs,
    utm_caveat,
)
from contract.label_schemes import check_product_band
from contract.regions import Region, resolve_region
from contract.splits import (
    DEFAULT_BLOCK,
    DEFAULT_RATIOS,
    assign_splits,
    empty_splits,
    split_advice,
    split_counts,
)
from core.commands import (
    add_logging_arguments,
    attach_values,
    check_output_folder,
    check_range,
    configure_logging,
    run_command,
)
from core.errors import ConfigError, GridError, InputDataError
from core.lock import hold_output
from core.months import parse_months
from core.parsers import command_parser
from core.pipeline_options import RunnerConfig, add_runner_arguments, runner_config
from core.storage import LocalStore, open_store
from gee_export.ee.budget import add_eecu_argument, check_max_eecu_hours, compute_budget
from gee_export.ee.export import DEFAULT_WORKERS, MAX_WORKERS, ExportJob, check_workers
from gee_export.ee.labels import parse_label_source
from gee_export.ee.plan import DEFAULT_LATENCY_S, choose_method, format_plan, make_plan
from gee_export.ee.sentinel1 import ORBIT_PASSES, S1Recipe
from gee_export.ee.sentinel2 import S2Recipe, month_window
from gee_export.ee.tasks import DEFAULT_MAX_PENDING, DEFAULT_PATCHES_PER_TILE, MAX_PENDING_TASKS
from gee_export.ee.terrain import DEFAULT_DEM, TERRAIN_MODELS
from gee_export.local.labels import ALIASES, SCHEMES

log = logging.getLogger(__name__)
PAPER_MONTH = "2019-06"
PAPER_REGION = "wuhan"
DEFAULT_EE_LABELS = "worldcover"  # ESA WorldCover built-up, the CroFuseNet-style ISA label
DEFAULT_LOCAL_LABELS = "binary"  # local label rasters hold 0/1/255 unless told otherwise
NEGATIVE_VALUE_OPTIONS = ("--bbox",)
EXAMPLES = (
    ("the plan of the paper's export (Wuhan, June 2019), offline and free",
     "isamap-export --region wuhan --months 2019-06 --dry-run"),
    ("export it to a bucket with Earth Engine",
     "isamap-export --region wuhan --months 2019-06 --project my-project "
     "--out gs://my-bucket/wuhan"),
    ("the same recipe on local scenes (isamap-demo --until scene writes a folder of them)",
     "isamap-export --backend local --scenes scenes/ --bbox 114.2,30.4,114.5,30.7 "
     "--out data/wuhan"),
)


def build_parser() -> argparse.ArgumentParser:
    p = command_parser(
        "isamap-export",
        "Export co-registered Sentinel-1/2 monthly composites and an impervious-surface label "
        "as 128 px patches (CroFuseNet recipe by default: Wuhan, June 2019, B2 B3 B4 B8 VV VH "
        "at 10 m). The ee backend needs Earth Engine credentials and a Cloud project; the "
        "local backend runs the same recipe on scenes in a folder. --dry-run plans either "
        "offline.",
        EXAMPLES)
    where = p.add_argument_group("area")
    where.add_argument("--region", help="built-in region name (default when no "
                       "--region-file/--bbox is given: with --backend local the area the "
                       f"scenes cover in common, else {PAPER_REGION!r})")
    where.add_argument("--region-file", help="GeoJSON polygon in EPSG:4326")
    where.add_argument("--bbox", help="WEST,SOUTH,EAST,NORTH in degrees (a leading minus "
                       "is fine: --bbox -7.45,52.63,-7.43,52.65)")
    where.add_argument("--crs", help="projected CRS of the grid in metres, e.g. EPSG:32650 "
                       "(default: the UTM zone of the area's centre)")
    when = p.add_argument_group("time and bands")
    when.add_argument("--month", help=f"one month YYYY-MM (default {PAPER_MONTH})")
    when.add_argument("--months", help="several months, comma-separated (e.g. 2019-06,2019-07)")
    when.add_argument("--bands", default=",".join(band_registry.DEFAULT_IMAGE_BANDS),
                      help="image bands in order (quality bands s2_clear_count, "
                           "s1_scene_count may be added)")
    when.add_argument("--labels", help=(
        "ee backend (default worldcover): worldcover | dynamicworld | ghsl[:THRESHOLD] | "
        "asset:<id>[:band]; local backend (default binary): binary | worldcover | "
        "dynamicworld | eolearn_lulc. Both: landcover:<source> for the seven land-cover "
        "classes, source worldcover | dynamicworld | fromglc10 | eolearn_lulc | chesapeake | nlcd "
        "(ee: landcover:<source>:<asset id>[:band] for sources outside the catalogue)"))
    when.add_argument("--fine-scale", type=int, help="also export the label at this integer "
                      "factor finer (super-resolution target), e.g. 4; a coarser label is "
                      "nearest-upsampled onto it")
    when.add_argument("--resolution", type=float, default=10.0,
                      help="pixel size of the grid in metres; a label coarser than it is "
                      "nearest-upsampled onto the grid")
    rec = p.add_argument_group("recipe")
    rec.add_argument("--speckle", default="refined_lee", choices=SPECKLE_FILTERS,
                     help="Sentinel-1 speckle filter applied to each scene before compositing")
    rec.add_argument("--terrain-flattening", default="none", choices=TERRAIN_MODELS,
                     help="Sentinel-1 radiometric terrain flattening and its scattering model "
                          "(uses --dem)")
    rec.add_argument("--dem", default=DEFAULT_DEM, help="DEM for terrain flattening")
    rec.add_argument("--orbit-pass", default="both", choices=ORBIT_PASSES,
                     help="Sentinel-1 orbit directions composited")
    rec.add_argument("--cloud-mask", default="cloudscoreplus", choices=("cloudscoreplus", "scl"),
                     help="Sentinel-2 cloud mask: Cloud Score+ or the scene classification "
                          "layer")
    rec.add_argument("--cloud-threshold", type=float, default=0.60,
                     help="Cloud Score+ cs_cdf threshold (keep >=)")
    rec.add_argument("--s2-max-widen-days", type=int, default=15,
                     help="widen a too-cloudy month by up to this many days on each side")
    loc = p.add_argument_group("local backend inputs")
    loc.add_argument("--allow-l1c", action="store_true",
                     help="composite Sentinel-2 Level-1C (top-of-atmosphere) scenes instead of "
                          "refusing them")
    loc.add_argument("--s1-unit", choices=("linear", "dB"),
                     help="unit of the Sentinel-1 files (default: from the values; a tag the "
                          "values contradict is overridden)")
    loc.add_argument("--label-scheme", choices=(*SCHEMES, *ALIASES),
                     help="codes of the local label raster (default binary 0/1/255): a "
                          "product's classes mapped to impervious, or landcover:<source> for "
                          "the seven land-cover classes (the same as --labels for this backend)")
    loc.add_argument("--boa-add-offset", type=float, metavar="DN",
                     help="Sentinel-2 BOA_ADD_OFFSET of the files (e.g. 0 for harmonized DNs, "
                          "-1000 for baseline 04.00 products); default: the files' tag, else "
                          "from the processing baseline or date (the values are checked)")
    loc.add_argument("--label-map", metavar="CODE=CLASS,...",
                     help="the label raster's codes stated one by one instead of a scheme: "
                          "CLASS 0 pervious, 1 impervious, 255 ignored, '*' every other code "
                          "(Dynamic World training labels: 7=1,0=255,10=255,*=0); without "
                          "'*' a code not listed is refused")
    loc.add_argument("--scl-mask", metavar="CLASSES",
                     help="scene classification (SCL) classes left out of the composite "
                          "(default 3,8,9,10,11: cloud shadow, cloud medium and high "
                          "probability, thin cirrus, snow; 'none' keeps every pixel). On a "
                          "single hazy scene Sen2Cor can flag bright built surfaces as cloud: "
                          "3,11 keeps them (docs/local-backend.md)")
    loc.add_argument("--scene-date", metavar="YYYY-MM-DD",
                     help="acquisition date of the scenes whose tags and file names carry "
                          "none (scenes that do carry one keep theirs)")
    loc.add_argument("--s2-band-names", metavar="B1,B2,...",
                     help="band order of stacked Sentinel-2 files without band descriptions "
                          "(never guessed for 12 bands), e.g. B1,B2,B3,B4,B5,B6,B7,B8,B8A,B9,"
                          "B11,B12; checked against the pixels before any work")
    loc.add_argument("--trust-band-names", action="store_true", default=None,
                     help="use --s2-band-names even where the band relations of typical scenes "
                          "do not hold in these pixels")
    out = p.add_argument_group("output and execution")
    out.add_argument("--out", help="dataset root: a folder or gs://bucket/prefix "
                     "(default ./data/<region>)")
    out.add_argument("--project", default=os.environ.get("EE_PROJECT"),
                     help="Google Cloud project registered for Earth Engine (env EE_PROJECT)")
    out.add_argument("--backend", default="ee", choices=("ee", "local"),
                     help="ee: Earth Engine computes the composites; local: the same recipe "
                          "on the scenes in --scenes")
    out.add_argument("--scenes", help="folder of local scenes (--backend local)")
    out.add_argument("--method", default="auto", choices=("auto", "pixels", "tasks"),
                     help="how Earth Engine delivers pixels: auto is computePixels up to "
                          "5,000 km², batch tasks above (tasks need --out gs://...)")
    out.add_argument("--workers", type=int, default=DEFAULT_WORKERS,
                     help=f"concurrent requests (max {MAX_WORKERS})")
    out.add_argument("--patches-per-tile", type=int, default=DEFAULT_PATCHES_PER_TILE,
                     help="tasks method: tile side in patch positions")
    out.add_argument("--max-pending", type=int, default=DEFAULT_MAX_PENDING,
                     help="tasks method: most batch tasks pending at once (limit 3,000)")
    out.add_argument("--min-valid-fraction", type=float, default=0.9,
                     help="share of valid pixels (image and label) a patch needs to be written")
    out.add_argument("--patch-size", type=int, default=DEFAULT_PATCH_SIZE,
                     help="patch side in pixels")
    out.add_argument("--stride", type=int, default=DEFAULT_STRIDE,
                     help="step between patch origins in pixels (below --patch-size the "
                          "patches overlap)")
    out.add_argument("--seed", type=int, default=0, help="seed of the blocked split")
    out.add_argument("--split-block", type=int, default=DEFAULT_BLOCK,
                     help="side of the split's blocks in patch positions (whole blocks go to "
                          "train, val or test; a small area needs smaller blocks to get all "
                          "three: the dry run says which)")
    out.add_argument("--latency", type=float, default=DEFAULT_LATENCY_S,
                     help="seconds per request the dry run's wall time assumes")
    add_eecu_argument(out)
    out.add_argument("--dry-run", action="store_true", help="print the plan; no Earth Engine")
    out.add_argument("--code-editor", action="store_true",
                     help="write and print a Code Editor script previewing the composites")
    out.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_runner_arguments(p)
    add_logging_arguments(p)
    return p


def _months(args: argparse.Namespace) -> tuple[str, ...]:
    if args.month and args.months:
        raise ConfigError("give --month or --months, not both")
    return parse_months(args.months or args.month or PAPER_MONTH)


def _region(args: argparse.Namespace) -> Region:
    """The area asked for; without one, the local scenes' common extent (else the paper's)."""
    if args.region is None and args.region_file is None and args.bbox is None:
        if args.backend == "local" and args.scenes:
            from gee_export.local.compositing import LocalRecipe
            from gee_export.local.extent import default_region

            return default_region(args.scenes, _months(args),
                                  reading=LocalRecipe(**_reading(args)).reading())
        return resolve_region(PAPER_REGION)
    return resolve_region(args.region, args.region_file, args.bbox)


def _local_scheme(args: argparse.Namespace) -> str:
    """The local label scheme: ``--label-map``, ``--label-scheme`` or ``--labels``, else binary."""
    scheme, labels = args.label_scheme, args.labels
    if args.label_map is not None:
        if scheme or labels:
            raise ConfigError("--label-map states what every label code means; give it without "
                              "--labels/--label-scheme")
        from gee_export.local.labels import label_map_scheme

        return label_map_scheme(args.label_map)
    if scheme and labels and ALIASES.get(scheme, scheme) != ALIASES.get(labels, labels):
        raise ConfigError(f"--labels {labels} and --label-scheme {scheme} disagree; for the "
                          "local backend they name the same thing: give one of them")
    return scheme or labels or DEFAULT_LOCAL_LABELS


def _labels(args: argparse.Namespace):
    """The parsed Earth Engine label source, or None for the local backend.

    The local backend's scheme is checked here too, so a typo fails before any work.
    """
    if args.backend == "local" and not args.code_editor:
        from gee_export.local.labels import get_scheme

        get_scheme(_local_scheme(args))
        return None
    return parse_label_source(args.labels or DEFAULT_EE_LABELS)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status (2 for user errors)."""
    args = build_parser().parse_args(attach_values(argv, NEGATIVE_VALUE_OPTIONS))
    configure_logging(args.verbose, args.quiet, args.debug)
    return run_command("isamap-export", lambda: run(args), debug=args.debug,
                       writes_to=[args.out or "."])


def check_arguments(args: argparse.Namespace) -> None:
    """Every bound of every flag, for the dry run and the real run alike (one place)."""
    check_workers(args.workers)
    check_range("--min-valid-fraction", args.min_valid_fraction, 0.0, 1.0,
                "it is the share of valid pixels a patch needs")
    if args.fine_scale is not None and args.fine_scale not in FINE_SCALES:
        raise ConfigError(f"--fine-scale must be one of {', '.join(map(str, FINE_SCALES))} (the "
                          f"fine label's pixels are 10 m / factor), got {args.fine_scale}")
    check_range("--patches-per-tile", args.patches_per_tile, 1)
    check_range("--max-pending", args.max_pending, 1, MAX_PENDING_TASKS)
    check_range("--patch-size", args.patch_size, 1)
    if args.resolution <= 0:
        raise ConfigError(f"--resolution must be a positive pixel size in metres, got "
                          f"{args.resolution:g}")
    check_range("--stride", args.stride, 1, args.patch_size,
                "a stride above the patch size would leave gaps between patches")
    check_range("--split-block", args.split_block, 1)
    if not args.latency > 0:
        raise ConfigError(f"--latency must be a positive number of seconds, got "
                          f"{args.latency:g}")
    if args.max_eecu_hours is not None:
        check_max_eecu_hours(args.max_eecu_hours)
        if args.backend == "local":
            raise ConfigError("--max-eecu-hours bounds Earth Engine compute; the local "
                              "backend uses none: leave it out with --backend local")
    check_range("--cloud-threshold", args.cloud_threshold, 0.0, 1.0,
                "it is the Cloud Score+ cs_cdf a pixel needs to count as clear")
    check_range("--s2-max-widen-days", args.s2_max_widen_days, 0)
    if args.backend == "local":
        if not args.scenes:
            raise ConfigError("--backend local needs --scenes DIR (Sentinel-1/2 scenes and a "
                              "labels/label.tif); `make demo` shows the layout on a synthetic "
                              "scene")
        if not Path(args.scenes).exists():
            raise InputDataError(f"--scenes {args.scenes} does not exist; give the folder of "
                                 "local Sentinel-1/2 scenes")
        _reading(args)
        _scl_mask(args)
    else:
        if args.scl_mask is not None:
            raise ConfigError("--scl-mask chooses what a local composite masks: use it with "
                              "--backend local (Earth Engine composites take --cloud-mask)")
        given = [flag for flag, value in (("--boa-add-offset", args.boa_add_offset),
                                          ("--label-map", args.label_map),
                                          ("--scene-date", args.scene_date),
                                          ("--s2-band-names", args.s2_band_names))
                 if value is not None]
        if given:
            raise ConfigError(f"{', '.join(given)} describe local scene files: use them with "
                              "--backend local")


def _scl_mask(args: argparse.Namespace) -> dict:
    """``--scl-mask`` checked, as a ``LocalRecipe`` field (none given: the recipe's default)."""
    from gee_export.local.stack import scl_mask_classes

    return {} if args.scl_mask is None else {"scl_masked": scl_mask_classes(args.scl_mask)}


def _reading(args: argparse.Namespace) -> dict:
    """``--scene-date`` and ``--s2-band-names`` checked, as ``LocalRecipe`` fields."""
    from gee_export.local.compositing import reading_options

    return reading_options(args.scene_date, args.s2_band_names)


def make_grid(region: Region, args: argparse.Namespace) -> Grid:
    """The region's grid, refused when it holds no patch; warns when UTM is a poor choice."""
    crs = projected_crs(args.crs) if args.crs else None
    if crs is None:
        caveat = utm_caveat(region.bbox)
        if caveat:
            log.warning("%s", caveat)
    grid = Grid.from_lonlat_bounds(region.bbox, crs, resolution=args.resolution,
                                   patch_size=args.patch_size, stride=args.stride)
    if grid.patch_count == 0:
        raise GridError(
            f"the area {region.name!r} is {grid.width} x {grid.height} px at "
            f"{grid.resolution:g} m, smaller than one {grid.patch_size} px patch; give a larger "
            "--bbox/--region-file or a smaller --patch-size")
    return grid


def run(args: argparse.Namespace) -> int:
    check_arguments(args)
    region = _region(args)
    months = _months(args)
    bands = band_registry.parse_band_list(args.bands)
    for warning in check_archive_months(months, bands):  # dry run or not: the same months
        log.warning("%s", warning)
    label = _labels(args)
    check_product_band(bands, (args.labels or DEFAULT_EE_LABELS) if label is not None
                       else _local_scheme(args))
    grid = make_grid(region, args)
    out = args.out or str(Path("data") / region.name)
    if args.code_editor or not args.dry_run:  # a dry run writes nothing
        check_output_folder("--out", out)
    runner = _runner(args, out)
    method = "pixels" if runner else choose_method(args.method, grid, out)
    s1 = S1Recipe(orbit_pass=args.orbit_pass, speckle=args.speckle,
                  terrain_flattening=args.terrain_flattening, dem=args.dem)
    s2 = S2Recipe(cloud_mask=args.cloud_mask, cs_threshold=args.cloud_threshold,
                  max_widen_days=args.s2_max_widen_days)

    if args.code_editor:
        from gee_export.ee.code_editor import render, write_script

        for month in months:
            window = month_window(month)
            text = render(region, grid, window, window, label, s2)
            path = write_script(Path(out if not out.startswith("gs://") else ".")
                                / f"code_editor_{region.name}_{month}.js", text)
            print(text)
            print(f"// written to {path}", file=sys.stderr)
        return 0
    if args.dry_run and args.backend == "local":
        from gee_export.local.compositing import LocalRecipe
        from gee_export.local.plan import format_local_plan, make_local_plan

        reading = LocalRecipe(**_reading(args)).reading()
        local_plan = make_local_plan(args.scenes, region.name, grid, months, bands, out,
                                     reading=reading, seed=args.seed, block=args.split_block)
        print(format_local_plan(local_plan))
        _warn_about_split(grid, dict(local_plan.per_split), args)  # as the export warns
        if local_plan.problems():
            raise InputDataError(f"the real run would stop: {local_plan.problems()[0]}; add "
                                 "scenes of that month to --scenes or choose other months")
        return 0
    if args.dry_run:
        workers = runner.workers * runner.threads if runner else args.workers
        labels = args.labels or (DEFAULT_EE_LABELS if label is not None else
                                 _local_scheme(args))
        plan = make_plan(region, grid, months, bands, labels, args.fine_scale, method, out,
                         workers, args.patches_per_tile, seed=args.seed,
                         block=args.split_block, latency_s=args.latency,
                         max_eecu_hours=args.max_eecu_hours)
        print(format_plan(plan))
        if runner:
            runner.pipeline_options()  # Beam's validation, offline in a dry run
            print(runner.describe())
        return 0
    # a small area can leave whole splits empty: say so before the work, with the remedy
    _warn_about_split(grid, split_counts(assign_splits(grid, None, DEFAULT_RATIOS, args.seed,
                                                        args.split_block)), args)
    if args.backend == "local":
        return _run_local(args, region, grid, months, bands, out)
    return _run_ee(args, region, grid, months, bands, label, s1, s2, out, method, runner)


def _runner(args: argparse.Namespace, out: str) -> RunnerConfig | None:
    """The Beam runner asked for, checked before anything is fetched (None: this process)."""
    runner = runner_config(args, dry_run=args.dry_run)
    if runner is None:
        return None
    if args.backend != "ee":
        raise ConfigError("--runner runs the Earth Engine export as a Beam pipeline; the local "
                          "backend runs in this process (drop --runner)")
    if args.method == "tasks":
        raise ConfigError("--runner fetches patches with computePixels; batch tasks "
                          "(--method tasks) already run on Earth Engine's machines")
    if runner.runner == "dataflow" and not out.startswith("gs://"):
        raise ConfigError("--runner dataflow writes from Google Cloud workers: give --out "
                          "gs://bucket/prefix")
    runner.check()
    return runner.for_workers(needs_torch=False)  # no torch, the versions constraints.txt pins


def _warn_about_split(grid: Grid, counts: dict[str, int], args: argparse.Namespace) -> None:
    """Warn once per distinct problem: an empty split of positions, then of written patches."""
    missing = tuple(empty_splits(counts, DEFAULT_RATIOS))
    if missing and missing != getattr(args, "_split_warned", None):
        log.warning("%s", split_advice(grid, counts, DEFAULT_RATIOS, args.seed, args.split_block))
        args._split_warned = missing


def _budget(args: argparse.Namespace, region: Region, grid: Grid, months: tuple[str, ...],
            bands: tuple[str, ...], method: str, out: str):
    """``--max-eecu-hours`` as a :class:`ComputeBudget` at the plan's estimate (None: none)."""
    if args.max_eecu_hours is None:
        return None
    from gee_export.ee.plan import Method

    how: Method = "tasks" if method == "tasks" else "pixels"  # the parser's two choices
    plan = make_plan(region, grid, months, bands, "", args.fine_scale, how, out,
                     args.workers, args.patches_per_tile, seed=args.seed,
                     block=args.split_block)
    return compute_budget(args.max_eecu_hours, plan.compute)


def _run_ee(args, region, grid, months, bands, label, s1, s2, out, method, runner) -> int:
    from gee_export.ee.export import export_pixels
    from gee_export.ee.names import default_workload_tag
    from gee_export.ee.prediction_stack import DateRecipe, composite_windows
    from gee_export.ee.recipe import EERecipe, build_fine_label, build_stack
    from gee_export.ee.request_region import request_geometry
    from gee_export.ee.session import EESession
    from gee_export.ee.tasks import export_tasks

    recipe = EERecipe(bands=bands, s1=s1, s2=s2, label=label, fine_scale=args.fine_scale)
    spec = DatasetSpec(grid, bands, seed=args.seed, block=args.split_block,
                       min_valid_fraction=args.min_valid_fraction, fine_scale=args.fine_scale,
                       backend="ee", region=region.name, recipe=recipe.to_dict(),
                       classes=label.classes, label_scheme=label.label_scheme)
    check_compatible(open_store(out), spec)  # before any Earth Engine call
    budget = _budget(args, region, grid, months, bands, method, out)
    session = EESession(project=args.project,
                        workload_tag=default_workload_tag("isamap-export")).initialize()

    geometry = request_geometry(region)  # the box, not the outline: requests stay small
    for month in months:  # the map's rule: an S1-only export asks nothing of Sentinel-2
        date = composite_windows(session, geometry, region.name,
                                 DateRecipe(recipe, None, month_window(month)))
        s2_window, s1_window = date.s2_window or month_window(month), date.s1_window
        image = build_stack(grid, s2_window, recipe, geometry, s1_window)
        fine = build_fine_label(grid, s2_window, recipe, geometry) if args.fine_scale else None
        job = ExportJob(spec, month, sources={"s2_window": s2_window.to_dict(),
                                              "s1_window": s1_window.to_dict(),
                                              "method": method})
        if runner is not None:
            from gee_export.ee.beam_export import EarthEngineProject, export_pipeline

            workers = EarthEngineProject(args.project,
                                         application_default=runner.runner == "dataflow",
                                         workload_tag=session.workload_tag)
            summary = export_pipeline(workers, image, job, out, runner, fine_label=fine,
                                      budget=budget)
        elif method == "tasks":
            summary = export_tasks(session, image, job, out, fine_label=fine,
                                   patches_per_tile=args.patches_per_tile,
                                   max_pending=args.max_pending, progress=not args.no_progress,
                                   budget=budget)
        else:
            summary = export_pixels(session, image, job, out, fine_label=fine,
                                    workers=args.workers, progress=not args.no_progress,
                                    budget=budget)
        print(json.dumps(summary.to_dict()))
        _warn_about_split(grid, summary.per_split, args)
    print(f"dataset: {out} (manifest.json, index.jsonl, patches/)")
    return 0


def _run_local(args, region, grid, months, bands, out) -> int:
    """Local scenes -> stacks -> patches, every check done before the first stack is written.

    The dataset's parameters (grid, bands, split, recipe) are checked against the manifest,
    then every month's inputs are found and digested and checked against the month's recorded
    fingerprint, all before a stack file is (re)written: a refused run leaves the dataset and
    its stacks as they were, and an identical command always resumes.
    """
    from contract.patches import patch_stack
    from gee_export.local.labels import get_scheme
    from gee_export.local.stack import LocalRecipe, plan_local_stack, write_local_stack

    labels = _local_scheme(args)
    mapping = get_scheme(labels)  # an unknown scheme fails before any pixel is read
    store = open_store(out)
    stack_dir = Path(args.scenes).resolve().parent / "isamap_stacks" if store.is_remote \
        else Path(out) / "stacks"
    recipe = LocalRecipe(speckle=args.speckle, allow_l1c=args.allow_l1c, s1_unit=args.s1_unit,
                         label_scheme=labels, boa_add_offset=args.boa_add_offset,
                         trust_band_names=args.trust_band_names, **_scl_mask(args),
                         **_reading(args))
    spec = DatasetSpec(grid, bands, seed=args.seed, block=args.split_block,
                       min_valid_fraction=args.min_valid_fraction, fine_scale=args.fine_scale,
                       backend="local", region=region.name, recipe=recipe.to_dict(),
                       classes=mapping.manifest_classes(), label_scheme=mapping.scheme)
    with hold_output(store), hold_output(stack_dir):
        check_compatible(store, spec)
        stack_dir.mkdir(parents=True, exist_ok=True)
        removed = LocalStore(stack_dir).remove_temporaries()  # what killed builds left
        if removed:
            log.info("removed %d temporary file(s) left in %s by a killed run", removed,
                     stack_dir)
        plans = []
        for month in months:
            plan = plan_local_stack(args.scenes, grid, month, bands, fine_scale=args.fine_scale,
                                    speckle=args.speckle, out_dir=stack_dir, recipe=recipe)
            check_compatible(store, spec, month=month, fingerprint=plan.fingerprint)
            plans.append(plan)
        for plan in plans:
            stack = write_local_stack(plan, progress=not args.no_progress)
            summary = patch_stack(stack, store, min_valid_fraction=args.min_valid_fraction,
                                  seed=args.seed, block=args.split_block, backend="local",
                                  region=region.name, recipe=plan.recipe.to_dict(),
                                  sources={"scenes": plan.scene_list()},
                                  classes=mapping.manifest_classes(),
                                  label_scheme=mapping.scheme,
                                  progress=not args.no_progress)
            print(json.dumps(summary.to_dict()))
            _warn_about_split(grid, summary.per_split, args)
    print(f"dataset: {out} (manifest.json, index.jsonl, patches/)")
    return 0


if __name__ == "__main__":  # ``python -m cli.export``, the same as isamap-export
    raise SystemExit(main())
