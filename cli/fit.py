"""Console script ``isamap-fit``: a map model from labelled points (inference.fit.job)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

from contract.bands import DEFAULT_IMAGE_BANDS, parse_band_list
from contract.export_options import SERIES_MONTHS_RANGE, check_series_months, series_stack_bands
from contract.grid import projected_crs
from contract.s2_level import ALLOW_L1C_SCOPE, check_allow_l1c_backend
from core.commands import (
    add_logging_arguments,
    check_range,
    claim_output_folder,
    configure_logging,
    run_command,
)
from core.environment import check_apart
from core.errors import ConfigError
from core.months import check_month
from core.parsers import command_parser, count, given_once, seed
from engine.allocator import CHECKS
from gee_export.local.export_command import add_scene_file_arguments, scene_file_options
from inference.fit.drawn import DEFAULT_N
from inference.fit.job import report_table, run_fit
from inference.fit.request import ISA_CLASSES, FitJob
from inference.fit.tune import WINDOW
from training.models.encoders.galileo import WINDOW as GALILEO_WINDOW
from training.models.encoders.registry import GALILEO_NANO, PRESTO, parse_encoder
from training.models.points import FEATURES
from training.points.checks import MIN_POINTS
from training.points.fit import DEFAULT_BLOCK_M, DEFAULT_FOLDS, FitOptions
from training.points.tune import DEFAULT_LR, DEFAULT_STEPS

EXAMPLES = (
    ("points labelled in a CSV (lon, lat, reference) over the stack isamap-export wrote",
     "isamap-fit --points labelled.csv --input data/stacks/stack_2023-06_image.tif "
     "--out fit_town"),
    ("then map with the model file as with any other",
     "isamap-predict --model fit_town/model.pt --input data/stacks/stack_2023-06_image.tif "
     "--out maps/town"),
    ("the network of a model file isamap-train wrote (e.g. the unet-s2 recipe's) fine-tuned "
     "on 300 points drawn from a label raster of the stack's grid (class codes 0, 1; other "
     "values skipped), stratified by class, the same points again with the same --seed; its "
     "bands and normalisation kept, its held-out score beside the base model's in "
     "OUT/fit.txt",
     "isamap-fit --from run/model.pt --points-from data/labels/label.tif --n 300 --seed 0 "
     "--input data/stacks/stack_2023-06_image.tif --out fit_tuned"),
    ("frozen Presto features over three months (July to September) of local scenes, the "
     "series stack isamap-export --series-months 3 makes; points from a Collect Earth Online "
     "export and the labelling app's CSV",
     "isamap-fit --points ceo-export.csv app-export.csv --backend local --scenes scenes/ "
     "--month 2023-09 --series-months 3 --features presto "
     "--encoder presto=weights/default_model.pt --out fit_presto"),
)


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``isamap-fit``."""
    p = command_parser(
        "isamap-fit",
        "Fit a per-pixel classifier on labelled points and save it as a model file that "
        "isamap-predict, isamap-map and the Beam map run. The features are the stack's bands "
        "or the frozen Presto encoder's; the classifier is cross-validated by spatial blocks "
        "(scores in OUT/fit.txt). With --from MODEL.pt, that model's network is fine-tuned on "
        "the points instead, scored on held-out blocks beside the base model. An accuracy "
        "assessment's points (isamap-assess design) are "
        "refused: score the map on them instead.", EXAMPLES)
    p.add_argument("--from", dest="base", metavar="MODEL.pt",
                   help="fine-tune the network of this model file (isamap-train's) on the "
                        "points instead of fitting a classifier: its bands, normalisation "
                        "and classes are kept, the loss is at the labelled pixels of "
                        f"{WINDOW} px windows around them")
    p.add_argument("--steps", type=int, metavar="N",
                   help=f"--from: Adam steps of the fine-tune (default {DEFAULT_STEPS})")
    p.add_argument("--lr", type=float, help=f"--from: Adam's learning rate (default "
                   f"{DEFAULT_LR:g})")
    p.add_argument("--points", nargs="+", metavar="FILE",
                   help="labelled points: CSV or GeoJSON with lon, lat and a class column, the "
                        "labelling app's export, or a Collect Earth Online sample export")
    p.add_argument("--points-from", metavar="LABEL.tif",
                   help="instead of --points: draw --n labelled points from a label raster "
                        "whose pixels hold the class codes (0 for the first of --classes...), "
                        "stratified by class with --seed; its nodata and other values are "
                        "never drawn")
    p.add_argument("--n", type=count, metavar="N",
                   help=f"points drawn from --points-from (default {DEFAULT_N}): an equal "
                        "share per class, a class with too few pixels giving all of them")
    p.add_argument("--input", nargs="+", metavar="STACK",
                   help="the stack(s) the points lie in (isamap-export's "
                        "stacks/stack_<month>_image.tif, or a GeoTIFF with named bands); each "
                        "point is read from the first one covering it")
    p.add_argument("--backend", choices=("ee", "local"),
                   help="instead of --input: make the stack of --month over the points with "
                        "Earth Engine or the local scenes of --scenes (written to OUT/stack/)")
    p.add_argument("--scenes", help="folder of local scenes (--backend local)")
    p.add_argument("--allow-implausible", action="store_true", help=(
        "fit on stacks whose pixels the input check doubts (bands swapped, an offset left "
        "in...), the reason recorded in the model file"))
    p.add_argument("--allow-l1c", action="store_true",
                   help="--backend local: composite Sentinel-2 Level-1C (top-of-atmosphere) "
                        "scenes instead of refusing them, as isamap-export --allow-l1c does "
                        "(recorded in the model file, so isamap-map composites them alike)")
    add_scene_file_arguments(p.add_argument_group(
        "local scene files (--backend local; read as isamap-export --backend local reads them)"))
    p.add_argument("--project", default=os.environ.get("EE_PROJECT"),
                   help="Google Cloud project for Earth Engine (--backend ee; default: "
                        "$EE_PROJECT)")
    p.add_argument("--crs", help="CRS of the stack --backend makes (default: the UTM zone of "
                   "the points' centre)")
    p.add_argument("--out", default="fit_output", help="output folder: model.pt, fit.json, "
                   "fit.txt")
    p.add_argument("--features", choices=(*FEATURES, GALILEO_NANO.name),
                   help="what the classifier reads per pixel: the bands (default), the frozen "
                        "Presto encoder's 128 features, or both (galileo-nano is refused: its "
                        "features are not a pixel's own; fine-tune a network with --from)")
    p.add_argument("--encoder", metavar="presto=PATH", action="append",
                   help=f"Presto's published file, for --features presto ({PRESTO.where()})")
    p.add_argument("--norm", choices=("scene", "training"),
                   help="normalise by each stack's own statistics (default for bands) or by "
                        "all inputs' pooled (default and only choice with Presto)")
    p.add_argument("--bands", help="bands the model reads, comma-separated (default: the "
                   "first input's Sentinel-1/2 and embedding bands)")
    p.add_argument("--classes", help="class names in code order; labels are these names (any "
                   f"case) or codes (default {','.join(ISA_CLASSES)}; with --from, the model's)")
    p.add_argument("--reference-column", default="reference",
                   help="the column holding each point's class (a CEO question's text)")
    p.add_argument("--month", help="YYYY-MM of the stack --backend makes; with --input, the "
                   "stacks' month for Presto (default: the first input's MONTH tag)")
    p.add_argument("--series-months", type=int, metavar="N",
                   help="with --backend: make a series stack, as isamap-export --series-months "
                        "N does: after --month's bands, its Sentinel-1/2 bands of each of the "
                        "N-1 months before (B4_m1, ...), which Presto reads as timesteps and "
                        f"the bands as more features; {SERIES_MONTHS_RANGE} (default 1: the "
                        "month alone)")
    p.add_argument("--hidden", type=int,
                   help="hidden units of the classifier (default 0: linear, logistic "
                        "regression)")
    p.add_argument("--folds", type=int, default=DEFAULT_FOLDS,
                   help="cross-validation folds, whole spatial blocks each")
    p.add_argument("--block", type=float, default=DEFAULT_BLOCK_M, metavar="METRES",
                   help="side of the spatial blocks of the cross-validation")
    p.add_argument("--min-points", type=int, default=MIN_POINTS,
                   help="refuse fewer labelled points than this")
    p.add_argument("--seed", type=seed, default=0, help="seed of the folds' order and of "
                   "the points drawn from --points-from")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_logging_arguments(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``isamap-fit``; returns the exit status."""
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose, args.quiet, args.debug)
    return run_command("isamap-fit", lambda: _run(args), debug=args.debug,
                       writes_to=[args.out], checks=CHECKS)


def job_of(args: argparse.Namespace) -> FitJob:
    """The checked options as one :class:`~inference.fit.request.FitJob`."""
    _check_from(args)
    check_range("--hidden", args.hidden, 0, 4096)
    check_range("--folds", args.folds, 2, 100)
    check_range("--block", args.block, 1.0, None, "metres")
    check_range("--min-points", args.min_points, 2, None)
    if args.points and args.points_from:
        raise ConfigError("give labelled points one way: --points FILE ... or --points-from "
                          "LABEL.tif --n N, not both")
    if not (args.points or args.points_from):
        raise ConfigError("give the labelled points: --points FILE ... or --points-from "
                          "LABEL.tif --n N")
    if args.n is not None and not args.points_from:
        raise ConfigError("--n is the number of points drawn from --points-from LABEL.tif; "
                          "with --points every labelled point is read: drop --n")
    if bool(args.input) == bool(args.backend):
        raise ConfigError("give the stacks the points lie in (--input STACK ...) or a backend "
                          "to make one over them (--backend ee|local with --month)")
    if args.series_months is not None:
        if not args.backend:
            raise ConfigError("--series-months is for the stack --backend ee|local makes; a "
                              "series stack given with --input (isamap-export --series-months "
                              "N) is read whole")
        check_series_months(args.series_months)
    if args.scenes and args.backend != "local":
        raise ConfigError("--scenes is read by --backend local")
    reading = scene_file_options(args, args.backend)  # the export's checks of them
    check_allow_l1c_backend(args.allow_l1c, args.backend)  # the export's refusal
    if args.allow_l1c and args.backend is None:
        raise ConfigError(f"{ALLOW_L1C_SCOPE}; a stack given with --input is read as it is: "
                          "drop --allow-l1c")
    if args.month:
        check_month(args.month)
    if args.crs:
        projected_crs(args.crs)
    if args.features == GALILEO_NANO.name:
        raise ConfigError(f"--features {GALILEO_NANO.name}: {NOT_PER_PIXEL}")
    encoder = given_once(args.encoder, "--encoder", "a model reads one encoder's features")
    if encoder:
        entry, encoder = parse_encoder(encoder)
        if entry.name != PRESTO.name:
            raise ConfigError(f"--encoder {entry.name}=PATH: {NOT_PER_PIXEL}")
        if args.features in (None, "bands"):
            raise ConfigError("--encoder is for --features presto or presto+bands")
    classes = _class_names(args.classes or ",".join(ISA_CLASSES))
    bands = parse_band_list(args.bands) if args.bands else None  # aef: the 64 embedding bands
    if (args.series_months or 1) > 1:  # the series stack's bands, refused as the export does
        bands = series_stack_bands(bands or DEFAULT_IMAGE_BANDS, args.series_months)
    options = FitOptions(hidden=args.hidden or 0, folds=args.folds, block_m=args.block,
                         seed=args.seed, min_points=args.min_points)
    return FitJob(tuple(args.points or ()), tuple(args.input or ()), args.out,
                  args.features or "bands",
                  encoder, args.norm, bands, classes, args.reference_column, args.month,
                  options, args.backend, args.scenes, args.project, args.crs,
                  progress=not (args.no_progress or args.quiet), allow_l1c=args.allow_l1c,
                  allow_implausible=args.allow_implausible, points_from=args.points_from,
                  n=args.n or DEFAULT_N, base=args.base,
                  scene_reading=tuple(sorted(reading.items())),
                  steps=DEFAULT_STEPS if args.steps is None else args.steps,
                  lr=DEFAULT_LR if args.lr is None else args.lr)


#: why Galileo nano's features are no point classifier's, and what reads them instead
NOT_PER_PIXEL = (f"Galileo nano's features of a pixel come from the {GALILEO_WINDOW} px window "
                 "around it, so a classifier of one pixel's features would map the pixel "
                 "differently in another tiling; train a network that reads them "
                 f"(isamap-train --encoder {GALILEO_NANO.name}=PATH) and fine-tune it on the "
                 "points with isamap-fit --from MODEL.pt")


#: what a fine-tune (``--from``) takes from its model file, not from these options
FROM_THE_MODEL = (("--features", "features"), ("--hidden", "hidden"), ("--norm", "norm"),
                  ("--encoder", "encoder"), ("--bands", "bands"), ("--classes", "classes"),
                  ("--month", "month"), ("--series-months", "series_months"),
                  ("--backend", "backend"))


def _check_from(args: argparse.Namespace) -> None:
    """Refuse what makes no sense with ``--from`` (or without it), before any file is read."""
    if args.base is None:
        for flag, value in (("--steps", args.steps), ("--lr", args.lr)):
            if value is not None:
                raise ConfigError(f"{flag} is for the fine-tune of a model file: give --from "
                                  f"MODEL.pt, or drop {flag}")
        return
    given = [flag for flag, key in FROM_THE_MODEL if getattr(args, key) is not None]
    if given:
        raise ConfigError(f"{given[0]} makes no sense with --from: the fine-tuned network "
                          f"reads what {args.base} reads (its bands, normalisation, classes "
                          "and layers), from the stacks given with --input; drop "
                          f"{' '.join(given)}")
    check_range("--steps", args.steps, 1, 100000)
    if args.lr is not None and not 0 < args.lr <= 1:
        raise ConfigError(f"--lr must be above 0 and at most 1, got {args.lr:g}")


def _class_names(text: str) -> tuple[str, ...]:
    """``--classes``: two or more distinct names, comma-separated."""
    classes = tuple(c.strip() for c in text.split(",") if c.strip())
    if len(classes) < 2 or len(set(classes)) != len(classes):
        raise ConfigError(f"--classes needs two or more distinct names, got {text!r}")
    return classes


def _run(args: argparse.Namespace) -> int:
    job = job_of(args)
    claim_output_folder("--out", args.out)  # one run per folder: a second is refused
    check_apart(("--out", args.out), [args.out], [("--scenes", args.scenes)])  # OUT/stack/
    result = run_fit(job)
    print(report_table(result.report))  # the result, as every command prints its own; -q
    print(f"model: {result.model}")  # quiets the log and progress bars only
    return 0


if __name__ == "__main__":  # ``python -m cli.fit``, the same as isamap-fit
    raise SystemExit(main())
