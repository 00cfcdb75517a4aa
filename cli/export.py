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
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from contract import bands as band_registry
from contract.archive import check_months as check_archive_months
from contract.bands import FINE_SCALES
from contract.export_options import (
    SERIES_MONTHS_RANGE,
    ExportTarget,
    check_series_months,
    series_stack_bands,
)
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
from core.environment import check_apart
from core.errors import ConfigError, GridError, InputDataError
from core.months import parse_months
from core.parsers import command_parser, seed
from core.pipeline_options import RunnerConfig, add_runner_arguments
from gee_export.ee.budget import add_eecu_argument
from gee_export.ee.code_editor import month_scripts
from gee_export.ee.export import DEFAULT_WORKERS, MAX_WORKERS
from gee_export.ee.export_command import (
    add_recipe_arguments,
    check_ee_arguments,
    ee_delivery,
    ee_dry_run,
    ee_recipe,
    ee_runner,
    run_ee_export,
    s2_recipe,
)
from gee_export.ee.labels import LabelSource, parse_label_source
from gee_export.ee.plan import DEFAULT_LATENCY_S
from gee_export.ee.tasks import DEFAULT_MAX_PENDING, DEFAULT_PATCHES_PER_TILE
from gee_export.local.compositing import LocalRecipe, reading_options
from gee_export.local.export_command import (
    add_local_arguments,
    check_local_arguments,
    local_dry_run,
    local_recipe,
    local_scheme,
    run_local_export,
)
from gee_export.local.extent import check_earlier_grid, default_region
from gee_export.local.labels import get_scheme

log = logging.getLogger(__name__)
PAPER_MONTH = "2019-06"
PAPER_REGION = "wuhan"
DEFAULT_EE_LABELS = "worldcover"  # ESA WorldCover built-up, the CroFuseNet-style ISA label
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
    _area_arguments(p.add_argument_group("area"))
    _time_arguments(p.add_argument_group("time and bands"))
    add_recipe_arguments(p.add_argument_group("recipe"))
    add_local_arguments(p.add_argument_group("local backend inputs"))
    _output_arguments(p.add_argument_group("output and execution"))
    add_runner_arguments(p)
    add_logging_arguments(p)
    return p


def _area_arguments(g: argparse._ArgumentGroup) -> None:
    """Where: a built-in region, a GeoJSON file or a box, and the grid's CRS."""
    g.add_argument("--region", help="built-in region name (default when no "
                       "--region-file/--bbox is given: with --backend local the area the "
                       f"scenes cover in common, else {PAPER_REGION!r})")
    g.add_argument("--region-file", help="GeoJSON polygon in EPSG:4326")
    g.add_argument("--bbox", help="WEST,SOUTH,EAST,NORTH in degrees (a leading minus "
                       "is fine: --bbox -7.45,52.63,-7.43,52.65)")
    g.add_argument("--crs", help="projected CRS of the grid in metres, e.g. EPSG:32650 "
                       "(default: the UTM zone of the area's centre)")


def _time_arguments(g: argparse._ArgumentGroup) -> None:
    """When and what: months, bands, labels, resolution."""
    g.add_argument("--month", help=f"one month YYYY-MM (default {PAPER_MONTH})")
    g.add_argument("--months", help="several months, comma-separated (e.g. 2019-06,2019-07)")
    g.add_argument("--bands", default=",".join(band_registry.DEFAULT_IMAGE_BANDS),
                      help="image bands in order (quality bands s2_clear_count, "
                           "s1_scene_count may be added)")
    g.add_argument("--series-months", type=int, default=1, metavar="N",
                      help="a series stack: after the month's own bands, its Sentinel-1/2 "
                           "bands composited for each of the N-1 months before (B4_m1, B4_m2, "
                           f"...), same recipe and grid; {SERIES_MONTHS_RANGE} (default 1: "
                           "the month alone)")
    g.add_argument("--labels", help=(
        "ee backend (default worldcover): worldcover | dynamicworld | ghsl[:THRESHOLD] | "
        "asset:<id>[:band]; local backend (default binary): binary | worldcover | "
        "dynamicworld | eolearn_lulc. Both: landcover:<source> for the seven land-cover "
        "classes, source worldcover | dynamicworld | fromglc10 | eolearn_lulc | chesapeake | nlcd "
        "(ee: landcover:<source>:<asset id>[:band] for sources outside the catalogue)"))
    g.add_argument("--fine-scale", type=int, help="also export the label at this integer "
                      "factor finer (super-resolution target), e.g. 4; local: label_x<k>.tif, "
                      "else a finer label_x<j> by mode, else a coarser label nearest-upsampled "
                      "(warned)")
    g.add_argument("--resolution", type=float, default=10.0,
                      help="pixel size of the grid in metres; a label coarser than it is "
                      "nearest-upsampled onto the grid")


def _output_arguments(g: argparse._ArgumentGroup) -> None:
    """Where the dataset goes and how it is made."""
    g.add_argument("--out", help="dataset root: a folder or gs://bucket/prefix "
                     "(default ./data/<region>)")
    g.add_argument("--project", default=os.environ.get("EE_PROJECT"),
                     help="Google Cloud project registered for Earth Engine (env EE_PROJECT)")
    g.add_argument("--backend", default="ee", choices=("ee", "local"),
                     help="ee: Earth Engine computes the composites; local: the same recipe "
                          "on the scenes in --scenes")
    g.add_argument("--scenes", help="folder of local scenes (--backend local)")
    g.add_argument("--method", default="auto", choices=("auto", "pixels", "tasks"),
                     help="how Earth Engine delivers pixels: auto is computePixels up to "
                          "5,000 km², batch tasks above (tasks need --out gs://...)")
    g.add_argument("--workers", type=int, default=DEFAULT_WORKERS,
                     help=f"concurrent requests (max {MAX_WORKERS})")
    g.add_argument("--patches-per-tile", type=int, default=DEFAULT_PATCHES_PER_TILE,
                     help="tasks method: tile side in patch positions")
    g.add_argument("--max-pending", type=int, default=DEFAULT_MAX_PENDING,
                     help="tasks method: most batch tasks pending at once (limit 3,000)")
    g.add_argument("--min-valid-fraction", type=float, default=0.9,
                     help="share of valid pixels (image and label) a patch needs to be written")
    g.add_argument("--patch-size", type=int, default=DEFAULT_PATCH_SIZE,
                     help="patch side in pixels")
    g.add_argument("--stride", type=int, default=DEFAULT_STRIDE,
                     help="step between patch origins in pixels (below --patch-size the "
                          "patches overlap)")
    g.add_argument("--seed", type=seed, default=0, help="seed of the blocked split")
    g.add_argument("--split-block", type=int, default=DEFAULT_BLOCK,
                     help="side of the split's blocks in patch positions (whole blocks go to "
                          "train, val or test; a small area needs smaller blocks to get all "
                          "three: the dry run says which)")
    g.add_argument("--latency", type=float, default=DEFAULT_LATENCY_S,
                     help="seconds per request the dry run's wall time assumes")
    add_eecu_argument(g)
    g.add_argument("--dry-run", action="store_true", help="print the plan; no Earth Engine")
    g.add_argument("--code-editor", action="store_true",
                     help="write and print a Code Editor script previewing the composites")
    g.add_argument("--no-progress", action="store_true", help="no progress bars")


def _months(args: argparse.Namespace) -> tuple[str, ...]:
    if args.month and args.months:
        raise ConfigError("give --month or --months, not both")
    return parse_months(args.months or args.month or PAPER_MONTH)


def _region(args: argparse.Namespace) -> Region:
    """The area asked for; without one, the local scenes' common extent (else the paper's)."""
    if args.region is None and args.region_file is None and args.bbox is None:
        if args.backend == "local" and args.scenes:
            return default_region(args.scenes, _months(args), reading=LocalRecipe(
                **reading_options(args.scene_date, args.s2_band_names)).reading())
        return resolve_region(PAPER_REGION)
    return resolve_region(args.region, args.region_file, args.bbox)


def _labels(args: argparse.Namespace) -> LabelSource | None:
    """The parsed Earth Engine label source, or None for the local backend.

    The local backend's scheme is checked here too, so a typo fails before any work.
    """
    if args.backend == "local" and not args.code_editor:
        get_scheme(local_scheme(args))
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
    check_range("--min-valid-fraction", args.min_valid_fraction, 0.0, 1.0,
                "it is the share of valid pixels a patch needs")
    if args.fine_scale is not None and args.fine_scale not in FINE_SCALES:
        raise ConfigError(f"--fine-scale must be one of {', '.join(map(str, FINE_SCALES))} (the "
                          f"fine label's pixels are 10 m / factor), got {args.fine_scale}")
    check_range("--patch-size", args.patch_size, 1)
    check_series_months(args.series_months)
    if args.resolution <= 0:
        raise ConfigError(f"--resolution must be a positive pixel size in metres, got "
                          f"{args.resolution:g}")
    check_range("--stride", args.stride, 1, args.patch_size,
                "a stride above the patch size would leave gaps between patches")
    check_range("--split-block", args.split_block, 1)
    if not args.latency > 0:
        raise ConfigError(f"--latency must be a positive number of seconds, got "
                          f"{args.latency:g}")
    check_ee_arguments(args)
    check_local_arguments(args)


def make_grid(region: Region, args: argparse.Namespace) -> Grid:
    """The region's grid, refused when it holds no patch; warns when UTM is a poor choice."""
    crs = projected_crs(args.crs) if args.crs else None
    if crs is None:
        caveat = utm_caveat(region.bbox)
        if caveat:
            log.warning("%s", caveat)
    grid = Grid.from_lonlat_bounds(region.bbox, crs, resolution=args.resolution,
                                   patch_size=args.patch_size, stride=args.stride,
                                   inside=region.covered)
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
    bands = series_stack_bands(band_registry.parse_band_list(args.bands), args.series_months)
    for warning in check_archive_months(months, bands,  # dry run or not: the same months
                                        earth_engine=args.backend == "ee"):
        log.warning("%s", warning)
    label = _labels(args)
    check_product_band(bands, (args.labels or DEFAULT_EE_LABELS) if label is not None
                       else local_scheme(args))
    grid = make_grid(region, args)
    out = args.out or str(Path("data") / region.name)
    check_earlier_grid(region, grid, out)  # the grid a scenes' extent makes changed
    if args.code_editor or not args.dry_run:  # a dry run writes nothing
        check_output_folder("--out", out, remote=True)
    runner = ee_runner(args, out)
    check_apart(("--out", out), [out], [("--scenes", args.scenes)])  # the dry run's too
    local = args.backend == "local"
    target = ExportTarget(region, grid, months, bands, out,
                          local_scheme(args) if local else args.labels or DEFAULT_EE_LABELS,
                          args.fine_scale, args.seed, args.split_block, args.min_valid_fraction)
    if args.code_editor:  # a preview of each month's composites
        for text, path in month_scripts(target, s2_recipe(args), label):
            print(text)
            print(f"// written to {path}", file=sys.stderr)
        return 0
    if args.dry_run:
        return _dry_run(args, target, runner)
    # a small area can leave whole splits empty: say so before the work, with the remedy
    _warn_about_split(grid, split_counts(assign_splits(grid, None, DEFAULT_RATIOS, args.seed,
                                                        args.split_block)), args, out=out)

    def report(summary: Any) -> None:
        print(json.dumps(summary.to_dict()))
        _warn_about_split(grid, summary.per_split, args,  # where data are, or would be
                          getattr(summary, "valid_positions", None)
                          or getattr(summary, "written_positions", None), out,
                          len(getattr(summary, "unread_positions", ())))

    if local:
        run_local_export(target, local_recipe(args, target.labels), args.scenes,
                         progress=not args.no_progress, on_month=report)
    else:
        run_ee_export(target, ee_recipe(args, target), ee_delivery(args, target, runner),
                      on_month=report)
    print(f"dataset: {out} (manifest.json, index.jsonl, patches/)")
    return 0


def _dry_run(args: argparse.Namespace, target: ExportTarget, runner: RunnerConfig | None) -> int:
    """Print the plan of the export (Earth Engine requests, or the local scenes per month)."""
    if args.backend == "local":
        # the real run's checks, before its composite
        local_plan = local_dry_run(target, local_recipe(args, target.labels), args.scenes, print)
        _warn_about_split(target.grid, dict(local_plan.per_split), args)  # as the export warns
        if local_plan.stop_line():
            raise InputDataError(local_plan.stop_line())
        return 0
    ee_dry_run(target, ee_recipe(args, target), ee_delivery(args, target, runner), args.latency,
               print)
    return 0


def _warn_about_split(grid: Grid, counts: dict[str, int], args: argparse.Namespace,
                      holding: Collection[tuple[int, int]] | None = None,
                      out: str | None = None, unread: int = 0) -> None:
    """Warn once per distinct problem: an empty split of positions, then of written patches.

    A run that writes to ``out`` adds that the advice is followed into a new ``--out``: the
    folder keeps the split and area it was made with and refuses another.
    """
    missing = tuple(empty_splits(counts, DEFAULT_RATIOS))
    if missing and missing != getattr(args, "_split_warned", None):
        advice = split_advice(grid, counts, DEFAULT_RATIOS, args.seed, args.split_block,
                              counted=holding, unread=unread)
        if out is not None:
            advice = (f"{advice}; run it into a new --out folder (or delete {out} first): a "
                      "dataset keeps the split and area it was made with")
        log.warning("%s", advice)
        args._split_warned = missing


if __name__ == "__main__":  # ``python -m cli.export``, the same as isamap-export
    raise SystemExit(main())
