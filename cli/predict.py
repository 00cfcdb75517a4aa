"""Console script ``isamap-predict``: one stack and one model file to map COGs."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from contract.bands import band_list
from core.commands import (
    add_logging_arguments,
    check_output_folder,
    configure_logging,
    run_command,
)
from core.environment import check_apart, same_path
from core.errors import ConfigError, InputDataError
from core.parsers import command_parser
from core.storage import files
from engine.allocator import CHECKS
from engine.devices import add_device_arguments
from inference.predict.change.arrays import DEFAULT_CHANGE_MARGIN, DEFAULT_SPECTRAL_THRESHOLD
from inference.predict.change.spectral import check_threshold
from inference.predict.config import PredictConfig, add_window_arguments, window_options
from inference.predict.job import (
    PredictChange,
    PredictInput,
    PredictJob,
    PredictOutputs,
    PredictRun,
)
from inference.predict.postprocess import add_postprocess_arguments, postprocess_options
from inference.predict.vectors import add_vector_arguments, vector_options
from inference.predict.zone_names import add_zone_arguments

if TYPE_CHECKING:
    from inference.predict.runtime import RuntimeOptions

PREDICT_EXAMPLES = (
    ("map one stack: <out>_class.tif, <out>_prob.tif, quick-looks, the ISA km² per zone and "
     "the built-up polygons of at least 1,000 m² (<out>_builtup.gpkg)",
     "isamap-predict --model runs/cfn/model.pt --input stacks/wuhan_2023-06.tif "
     "--out maps/wuhan_2023-06 --month 2023-06 --zones districts.geojson --vectors "
     "--vector-min-area 1000"),
    ("the same from and to a bucket, with a change map against an earlier date: the two "
     "dates' stacks decide whether a pixel changed, the model which way",
     "isamap-predict --model runs/cfn/model.pt --input gs://bucket/stacks/wuhan_2023-06.tif "
     "--out gs://bucket/maps/wuhan_2023-06 --compare-with maps/wuhan_2021-06_class.tif "
     "--earlier-stack gs://bucket/stacks/wuhan_2021-06.tif"),
    ("CLAHE post-processing of the impervious probability (land-cover paper, 3.3)",
     "isamap-predict --model runs/cfn/model.pt --input stacks/wuhan_2023-06.tif "
     "--out maps/wuhan_clahe --postprocess clahe"),
)


def predict_parser() -> argparse.ArgumentParser:
    p = command_parser(
        "isamap-predict",
        "Sliding-window ISA prediction of a stack into Cloud-Optimized GeoTIFFs, quick-look "
        "PNGs and area statistics (km²). Interrupted runs resume; finished runs are skipped.",
        PREDICT_EXAMPLES)
    p.add_argument("--model", required=True, help="model file written by isamap-train")
    p.add_argument("--input", required=True, help="stack GeoTIFF/VRT, local or gs://")
    p.add_argument("--bands", help="the input's band names in file order, comma-separated; "
                   "needed when the stack has no band descriptions (e.g. B2,B3,B4,B8,VV,VH)")
    p.add_argument("--out", required=True,
                   help="output prefix, local or gs:// (writes <out>_class.tif, <out>_prob.tif)")
    p.add_argument("--month", help="YYYY-MM of the composite (metadata, asset time range)")
    add_window_arguments(p)
    p.add_argument("--any-tile", action="store_true",
                   help="map on --tile even where the model records another tile (a model "
                        "that standardises each window, such as a unet-s2-window file, then "
                        "makes another map)")
    p.add_argument("--blend", choices=("cosine", "uniform", "core"), default=PredictConfig.blend,
                   help="how overlapping tiles combine: cosine (tapered weights, no seams), "
                        "uniform (plain mean), core (each pixel from the tile that owns it: "
                        "the map isamap-map makes, whoever predicts the tiles)")
    add_device_arguments(p, inference=True)
    p.add_argument("--compile", action="store_true",
                   help="run the model compiled (torch.compile, frozen weights; CPU and "
                        "CUDA) in whatever precision and layout it runs; off by default: "
                        "compiling changes output bits")
    p.add_argument("--compress", choices=("DEFLATE", "ZSTD"), default="DEFLATE",
                   help="compression of the COGs (ZSTD: smaller, needs a GDAL built with it "
                        "to read)")
    p.add_argument("--isa-class", type=int, help="index of the impervious class (default: "
                   "the model's class named impervious)")
    add_postprocess_arguments(p)
    add_zone_arguments(p)
    add_vector_arguments(p)
    p.add_argument("--compare-with",
                   help="class COG of an earlier date on the same grid: also write a change map")
    p.add_argument("--change-margin", type=float, default=None, metavar="M",
                   help="with --compare-with: gain only where the earlier probability is below "
                        "0.5 - M and the new one above 0.5 + M, loss the other way round (reads "
                        "the earlier <prefix>_prob.tif; recorded in the change COG's tags); 0: "
                        "the class maps differenced (default 0.2)")
    p.add_argument("--earlier-stack", metavar="STACK",
                   help="with --compare-with: the earlier date's stack on the same grid; change "
                        "is decided by the spectral rule: a pixel changed where its bands' "
                        "difference is an outlier of the scene's (RMS robust z-score above "
                        "--spectral-threshold), gain where the impervious probability rose "
                        "from below 0.5, loss where it fell from 0.5 or above (reads the "
                        "earlier <prefix>_prob.tif; not with --change-margin)")
    p.add_argument("--spectral-threshold", type=float, default=None, metavar="K",
                   help="with --earlier-stack: the robust z-score above which a pixel's bands "
                        f"changed (> 0; default {DEFAULT_SPECTRAL_THRESHOLD:g})")
    p.add_argument("--normalise-to", metavar="STACK",
                   help="with --compare-with: the earlier date's stack on the same grid; the "
                        "input is normalised onto it per band (a linear fit on the pixels that "
                        "changed least) before predicting (for models on fixed band "
                        "statistics; unet-s2 normalises each scene by its own, a unet-s2-window "
                        "file each window, and both are unmoved by it)")
    p.add_argument("--local-dir", help="folder for PNGs and tables (default: beside --out; "
                   "the working directory for a gs:// --out)")
    p.add_argument("--work-dir", help="checkpoint folder (must persist to resume)")
    p.add_argument("--restart", action="store_true",
                   help="discard checkpoint strips of a different earlier run")
    p.add_argument("--allow-implausible", action="store_true",
                   help="map an input whose values look like VV/VH swapped or the +0.1 "
                        "reflectance offset left in, when the scene really is so (haze, snow)")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bars (as isamap-map, isamap-fit and isamap-export)")
    add_logging_arguments(p)
    return p


def predict_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``isamap-predict``; returns the exit status."""
    args = predict_parser().parse_args(argv)
    configure_logging(args.verbose, args.quiet, args.debug)
    return run_command("isamap-predict", lambda: _predict(args), debug=args.debug,
                       writes_to=[args.out, args.local_dir, args.work_dir],
                       checks=CHECKS)


def _predict(args: argparse.Namespace) -> int:
    # imported here, not above: they import torch, which --help and a refused option never
    # need (it takes seconds to import)
    from inference.predict.runtime import RuntimeOptions
    from inference.predict.workflow import describe, predict

    job = predict_job(args, RuntimeOptions(
        device=args.device, precision=args.precision, channels_last=args.channels_last,
        compile=args.compile, autotune_cache=args.autotune_cache))
    outputs = predict(job)
    print(outputs.area_table)
    print(json.dumps(describe(outputs), indent=1))
    return 0


def predict_job(args: argparse.Namespace, options: RuntimeOptions) -> PredictJob:
    """The :class:`PredictJob` of ``isamap-predict``'s flags, checked as far as flags go.

    ``options``: how the model runs (device, precision, layout, compilation).

    Raises:
        ConfigError, InputDataError: flags that contradict each other, or name a missing file.
    """
    if args.out.endswith(("/", os.sep)):  # a folder: the maps would be named _class.tif
        raise ConfigError(f"--out {args.out} is a folder, but --out is a prefix of file names "
                          f"(<out>_class.tif, <out>_prob.tif); give e.g. --out {args.out}isa")
    if not files.is_gcs(args.out):  # --out is a prefix: its folder must be one
        check_output_folder("--out", Path(args.out).parent, given=args.out)
    check_output_folder("--local-dir", args.local_dir)
    check_output_folder("--work-dir", args.work_dir)
    outputs = PredictOutputs(args.out, args.local_dir, args.zones, args.zones_name,
                             vector_options(args))
    check_apart(("--out", args.out), outputs.written_paths(), [
        ("--input", args.input), ("--compare-with", args.compare_with),
        ("--earlier-stack", args.earlier_stack), ("--normalise-to", args.normalise_to),
        ("--zones", args.zones), ("--model", args.model)])
    if not args.compare_with and (args.change_margin is not None or args.normalise_to):
        raise ConfigError("--change-margin and --normalise-to decide a change map: give "
                          "--compare-with EARLIER_class.tif too")
    if args.normalise_to and not files.is_gcs(args.normalise_to) and \
            not Path(args.normalise_to).is_file():
        raise InputDataError(f"--normalise-to {args.normalise_to} does not exist; give the "
                             "earlier date's stack")
    change = PredictChange(
        args.compare_with, DEFAULT_CHANGE_MARGIN if args.change_margin is None
        else args.change_margin, args.normalise_to, args.earlier_stack,
        _spectral_threshold(args))
    config = PredictConfig(blend=args.blend, compress=args.compress, any_tile=args.any_tile,
                           **window_options(args), **postprocess_options(args))
    given = PredictInput(args.input, args.month,
                         list(band_list(args.bands)) if args.bands else None,
                         args.allow_implausible)
    return PredictJob(args.model, given, outputs, config, options, args.isa_class, change,
                      PredictRun(args.work_dir, args.restart,
                                 not (args.quiet or args.no_progress)))


def _spectral_threshold(args: argparse.Namespace) -> float:
    """The spectral rule's threshold, once ``--earlier-stack`` and its company are checked."""
    if args.spectral_threshold is not None and not args.earlier_stack:
        raise ConfigError("--spectral-threshold is the spectral change rule's: give "
                          "--earlier-stack EARLIER_STACK (and --compare-with) too")
    if not args.earlier_stack:
        return DEFAULT_SPECTRAL_THRESHOLD
    if args.change_margin is not None:
        raise ConfigError("--earlier-stack decides change by the spectral rule, --change-margin "
                          "by a margin on the probabilities: choose one")
    if same_path(args.earlier_stack, args.input):  # no pixel could change: exit 0, no change
        raise ConfigError(f"--earlier-stack {args.earlier_stack} is --input: give the earlier "
                          "date's stack, the one --compare-with's map was predicted from")
    if not files.is_gcs(args.earlier_stack) and not Path(args.earlier_stack).is_file():
        raise InputDataError(f"--earlier-stack {args.earlier_stack} does not exist; give the "
                             "stack the earlier date was predicted from")
    return check_threshold(DEFAULT_SPECTRAL_THRESHOLD if args.spectral_threshold is None
                           else args.spectral_threshold)


if __name__ == "__main__":  # ``python -m cli.predict``, the same as isamap-predict
    raise SystemExit(predict_main())
