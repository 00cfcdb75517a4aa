"""Console script ``isamap-map``: region + dates + model -> ISA maps (and an EE series)."""

from __future__ import annotations

import argparse
import functools
import json
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from contract.grid import projected_crs
from contract.publishing import PublishOptions
from contract.regions import Region, resolve_region
from core.commands import (
    add_logging_arguments,
    attach_values,
    check_output_folder,
    configure_logging,
    run_command,
)
from core.config_file import add_config_argument, config_file_errors, parse_with_config
from core.environment import check_apart
from core.errors import ConfigError, ModelError
from core.parsers import command_parser
from core.pipeline_options import add_runner_arguments, runner_config
from core.storage import files
from engine.allocator import CHECKS
from engine.devices import add_device_arguments
from gee_export.ee.budget import add_eecu_argument
from gee_export.local.export_command import add_scene_file_arguments, scene_file_options
from gee_export.local.extent import default_region
from inference.predict.change.arrays import DEFAULT_CHANGE_MARGIN, DEFAULT_SPECTRAL_THRESHOLD
from inference.predict.change.consistency import TEMPORAL_RULES
from inference.predict.config import add_window_arguments, window_options
from inference.predict.postprocess import add_postprocess_arguments, postprocess_options
from inference.predict.vectors import add_vector_arguments, vector_options
from inference.predict.zone_names import add_zone_arguments

if TYPE_CHECKING:
    from inference.mapping.dates import DateResult
    from inference.mapping.region import MapResult
    from inference.mapping.request import MapOutputs, MapRequest, ModelDataset
    from training.modelfile import LoadedModel

# The library modules that import torch are imported where a run needs them, so that --help
# and a refused flag answer without loading torch (seconds).

EXAMPLES = (
    ("the plan and cost of a two-date map, offline",
     "isamap-map --bbox -7.45,52.63,-7.43,52.65 --months 2019-06,2021-06 --model m.pt "
     "--out maps --dry-run"),
    ("every second year of Wuhan from Earth Engine, with ISA km² per district",
     "isamap-map --region wuhan --years 2017:2023:2 --model runs/cfn/model.pt "
     "--out gs://my-bucket/maps/wuhan --project my-project --zones districts.geojson"),
    ("from local scenes instead of Earth Engine, over the area they cover in common",
     "isamap-map --backend local --scenes scenes/ --months 2019-06 --model m.pt --out maps"),
)


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``isamap-map``, one argument group at a time."""
    p = command_parser(
        "isamap-map",
        "Map impervious surface over a region for one or more dates with a trained model: "
        "inputs streamed from Earth Engine (or local scenes) with the model's own recipe, "
        "class/probability COGs per date, change maps, per-zone ISA km² over time, STAC "
        "metadata, optionally an Earth Engine ImageCollection. Interrupted runs resume; "
        "finished dates are skipped.", EXAMPLES)
    add_config_argument(p)
    area = p.add_argument_group(
        "area and dates", "the area: one of --region, --region-file, --bbox; with --backend "
        "local and none of them, what the scenes of the dates cover in common")
    area.add_argument("--region", help="built-in region name")
    area.add_argument("--region-file", help="GeoJSON polygon in EPSG:4326")
    area.add_argument("--bbox", help="WEST,SOUTH,EAST,NORTH in degrees (negative values work "
                      "as --bbox -7.45,52.63,-7.43,52.65)")
    area.add_argument("--crs", help="projected CRS of the map in metres, e.g. EPSG:6933 for an "
                      "area over several UTM zones (default: the UTM zone of its centre)")
    area.add_argument("--months", help="dates YYYY-MM,YYYY-MM,...")
    area.add_argument("--years", help="FIRST:LAST[:STEP], the month taken from the model's "
                      "dataset (e.g. 2017:2023:2)")
    p.add_argument("--model", required=True, help="model file written by isamap-train")
    p.add_argument("--out", required=True, help="output folder or gs://bucket/prefix")
    _input_arguments(p)
    _scene_arguments(p)
    pred = _prediction_arguments(p)
    _change_arguments(pred)
    pred.add_argument("--local-dir", help="folder of PNGs, tables and publication files "
                      "(default: --out when local, else ./<last part of a gs:// --out>; STAC "
                      "files lie beside the COGs)")
    add_postprocess_arguments(p)
    add_vector_arguments(p)
    _publish_arguments(p)
    p.add_argument("--dry-run", action="store_true",
                   help="print the plan, the manifests and the app script; no Earth Engine call")
    p.add_argument("--latency", type=float, default=0.4,
                   help="computePixels seconds per tile assumed by the dry run's estimate")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_runner_arguments(p, gpu=True)
    add_logging_arguments(p)
    return p


def _input_arguments(p: argparse.ArgumentParser) -> None:
    """Where each date's inputs come from: Earth Engine or local scenes, with the recipe."""
    src = p.add_argument_group("inputs")
    src.add_argument("--backend", choices=("ee", "local"), default="ee",
                     help="ee: inputs from Earth Engine; local: from the scenes in --scenes")
    src.add_argument("--scenes", help="folder of local Sentinel-1/2 scenes (--backend local)")
    src.add_argument("--method", choices=("pixels", "tasks"), default="pixels",
                     help="pixels: computePixels tiles streamed to the predictor; tasks: the "
                          "stack exported as GeoTIFF tiles to --out gs://... (very large areas)")
    src.add_argument("--workers", type=int, default=16,
                     help="concurrent computePixels requests (1..40)")
    src.add_argument("--project", default=os.environ.get("EE_PROJECT"),
                     help="Cloud project registered for Earth Engine (env EE_PROJECT)")
    add_eecu_argument(src)
    src.add_argument("--dataset", help="the model's patch dataset, when its model file does not "
                     "record the recipe")
    src.add_argument("--allow-recipe-mismatch", action="store_true",
                     help="map even when the inputs differ from the model's training data")
    src.add_argument("--allow-implausible", action="store_true",
                     help="map a date whose pixels the value rules doubt (bands that look "
                          "swapped, top-of-atmosphere values, an offset, dB shifted), when the "
                          "scene really is so; each reason is recorded in the COGs' "
                          "input_notes tag and the summary")


def _scene_arguments(p: argparse.ArgumentParser) -> None:
    """How local scenes are read, where their files cannot tell."""
    scenes = p.add_argument_group("local scenes (--backend local; default: as the model's "
                                  "training export read them)")
    scenes.add_argument("--allow-l1c", action="store_true", default=None,
                        help="composite Level-1C (top-of-atmosphere) scenes")
    add_scene_file_arguments(scenes)


def _prediction_arguments(p: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """The sliding window, the device and the zones of the area table; returns the group."""
    pred = p.add_argument_group("prediction")
    add_window_arguments(pred)
    add_device_arguments(pred, inference=True)
    add_zone_arguments(pred)
    return pred


def _change_arguments(pred: argparse._ArgumentGroup) -> None:
    """How change between dates is decided."""
    pred.add_argument("--temporal-consistency", nargs="?", const="monotone", default=None,
                      choices=TEMPORAL_RULES, metavar="RULE",
                      help="make the class maps consistent over the dates before change and "
                           "area. monotone (given without RULE): built-up surface does not "
                           "return to pervious, so isolated flips and all loss are removed; "
                           "stretches: where a pixel's bands did not change between dates "
                           "(each date's stack, the spectral rule's magnitude), one class, "
                           "its probabilities' mean (docs/mapping.md)")
    pred.add_argument("--change-rule", choices=("spectral", "encoder", "margin"), default=None,
                      help="how change between dates is decided: spectral (each date's stack "
                           "says whether a pixel changed: RMS robust z-score of its bands' "
                           "difference above --spectral-threshold; the model's probability "
                           "says which way), encoder (a model trained with --encoder: the "
                           "same score of its encoder's features, cut where it flags as many "
                           "pixels as the bands do), margin (both probabilities, "
                           "--change-margin). "
                           "Default: spectral where the run keeps each date's stack (--backend "
                           "local, --method tasks), margin with --method pixels, --runner, "
                           "--change-margin or --temporal-consistency")
    pred.add_argument("--spectral-threshold", type=float, default=None,
                      metavar="K", help="the spectral rule's robust z-score threshold (> 0; "
                                        f"default {DEFAULT_SPECTRAL_THRESHOLD:g})")
    pred.add_argument("--change-margin", type=float, default=None, metavar="M",
                      help="decide change between dates on both probabilities (the margin "
                           "rule): gain only where the earlier is below 0.5 - M and the later "
                           "above 0.5 + M, loss the other way round; 0: the class maps "
                           f"differenced (default: {DEFAULT_CHANGE_MARGIN:g}, or 0 with "
                           "--temporal-consistency; docs/real-data.md measures it)")


def _publish_arguments(p: argparse.ArgumentParser) -> None:
    """Where and how the series is published as an Earth Engine ImageCollection."""
    pub = p.add_argument_group("publishing")
    pub.add_argument("--publish", metavar="ASSET_PARENT",
                     help="publish the series as <ASSET_PARENT>/isa_<region> ImageCollection")
    pub.add_argument("--gcs-prefix", help="gs://bucket/prefix to upload local COGs to")
    pub.add_argument("--public", action="store_true", help="readable by everyone")
    pub.add_argument("--reader", action="append", default=[], metavar="MEMBER",
                     help="extra reader, e.g. user:a@b.com (repeatable)")
    pub.add_argument("--overwrite", action="store_true", help="replace existing images")
    pub.add_argument("--wait", action="store_true", help="wait for the ingestion tasks")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``isamap-map``; returns the exit status."""
    args = parse_with_config(build_parser(), attach_values(argv, ("--bbox",)))
    configure_logging(args.verbose, args.quiet, args.debug)
    return run_command("isamap-map", lambda: _map(args), debug=args.debug, checks=CHECKS)


def _map(args: argparse.Namespace) -> int:
    from inference.mapping.region import map_region  # lazy: torch

    with config_file_errors(args):  # tile: -256 in FILE is told as FILE's key, not --tile
        check_output_folder("--out", args.out, remote=True)
        check_output_folder("--local-dir", args.local_dir)
        for flag, folder in (("--out", args.out), ("--local-dir", args.local_dir)):
            if folder is not None:  # a dry run too: the next run would read its outputs
                check_apart((flag, folder), [folder], [("--scenes", args.scenes)])
        model = functools.cache(lambda: _load_model(args))  # read and hashed once a run
        request = map_request(args, model)
        result = map_region(request, model(), echo=print)
    print(json.dumps(result.plan.to_dict() if result.plan is not None
                     else _summary(request, result), indent=1))
    return 0


def _load_model(args: argparse.Namespace) -> LoadedModel:
    """``--model``, read; a dry run says what it reads the model for when there is none."""
    from training.modelfile import load_model  # lazy: torch

    if args.dry_run and not files.is_gcs(args.model) and not os.path.exists(args.model):
        raise ModelError(f"--model {args.model} does not exist, and a dry run plans from the "
                         "model (its bands, its dataset's month, its speed here): train one "
                         "first (isamap-train --config configs/train-*.yaml) or give another")
    return load_model(args.model)


def map_request(args: argparse.Namespace, model: Callable[[], LoadedModel]) -> MapRequest:
    """Every option of the command as the one value the library maps.

    ``model``: the model file, read on first use and once.
    """
    from inference.mapping import request as parts  # lazy: torch
    from inference.predict.runtime import RuntimeOptions  # lazy: torch

    dataset = functools.cache(lambda: parts.model_dataset(model().meta, args.dataset))
    dates = parts.parse_dates(args.months, args.years, lambda: dataset().month_of_year())
    reading = _scene_reading(args)
    runner = runner_config(args, dry_run=args.dry_run)  # --setup-file: a package with torch
    how = [f"--{n.replace('_', '-')}" for n in ("public", "reader", "gcs_prefix", "overwrite",
                                                 "wait") if getattr(args, n)]
    if how and args.publish is None:
        raise ConfigError(f"{', '.join(how)}: how the series is published, and this run "
                          "publishes nothing; give --publish ASSET_PARENT too, or leave "
                          f"{'it' if len(how) == 1 else 'them'} out")
    request = parts.MapRequest(
        parts.MapExtent(_region(args, dates, dataset, reading), dates,
                        crs=projected_crs(args.crs) if args.crs else None),
        parts.MapOutputs(args.out, args.local_dir, args.zones, args.zones_name,
                         vector_options(args)),
        parts.MapInputs(args.backend, args.scenes, args.method, args.workers, args.project,
                        args.dataset, args.allow_recipe_mismatch, args.allow_implausible,
                        tuple(sorted(reading.items())), args.max_eecu_hours),
        parts.map_window(**window_options(args), **postprocess_options(args)),
        RuntimeOptions(device=args.device, precision=args.precision,
                       channels_last=args.channels_last, autotune_cache=args.autotune_cache),
        parts.ChangeOptions(args.temporal_consistency, args.change_margin, args.change_rule,
                            DEFAULT_SPECTRAL_THRESHOLD if args.spectral_threshold is None
                            else args.spectral_threshold),
        None if args.publish is None else parts.MapPublication(args.publish, PublishOptions(
            args.project, args.gcs_prefix, args.public, tuple(args.reader), args.overwrite,
            args.wait)), runner and runner.for_workers(needs_torch=True), args.dry_run,
        args.latency, not args.no_progress)
    if args.spectral_threshold is not None and request.rule() not in ("spectral", "encoder") \
            and args.temporal_consistency != "stretches":
        raise ConfigError(f"--spectral-threshold is the spectral and encoder change rules' (and "
                          f"--temporal-consistency stretches'), and this run decides change by "
                          f"the {request.rule()} rule; drop it, or ask for --change-rule "
                          "spectral where the run keeps each date's stack")
    return request


def _scene_reading(args: argparse.Namespace) -> dict[str, Any]:
    """The local scene-reading options given (none unless ``--backend local``)."""
    given = scene_file_options(args, args.backend, also=(("--allow-l1c", args.allow_l1c),))
    local = {"allow_l1c": args.allow_l1c,
             "allow_implausible": args.allow_implausible or None if args.backend == "local"
             else None}
    return {**given, **{k: v for k, v in local.items() if v is not None}}


def _region(args: argparse.Namespace, dates: tuple[str, ...],
            dataset: Callable[[], ModelDataset], reading: dict[str, Any]) -> Region:
    """The area: --region, --region-file or --bbox.

    With --backend local and none of them: what the scenes of the dates cover in common.
    """
    from inference.mapping.dates import local_recipe  # lazy: torch

    if args.backend == "local" and args.scenes and (args.region, args.region_file,
                                                    args.bbox) == (None, None, None):
        return default_region(args.scenes, dates, with_label=False,
                              reading=local_recipe(dataset(), reading).reading())
    return resolve_region(args.region, args.region_file, args.bbox)


def _summary(request: MapRequest, result: MapResult) -> dict[str, Any]:
    """What the command prints of a finished run: grid, dates, series, publication."""
    from inference.predict.change.encoder import fits_key, summary_fits  # lazy: torch

    shown, change, rule = functools.partial(_shown, request.outputs), request.change, request.rule()
    summary: dict[str, Any] = {"grid": result.grid.to_dict(),
                               "dates": {r.month: _date_summary(r, shown) for r in result.dates}}
    if result.series:
        summary.update(change_maps=[shown(c.cog) for c in result.series.changes],
                       temporal_consistency=change.temporal_consistency, change_rule=rule,
                       **({"spectral_threshold": change.spectral_threshold,
                           fits_key(rule): summary_fits(rule, {
                               f"{c.date_from}/{c.date_to}": c.fit
                               for c in result.series.changes})}
                          if rule in ("spectral", "encoder")
                          else {"change_margin": change.margin_in_force()}),
                       area_csv=shown(result.series.area_csv),
                       **({"change_csv": shown(result.series.change_csv)}
                          if result.series.change_csv else {}),
                       plot=shown(result.series.plot), stac=[shown(p) for p in result.stac])
    if result.publication:
        summary.update(collection=result.publication.collection,
                       tasks=result.publication.task_ids)
    return summary


def _shown(outputs: MapOutputs, path: str | os.PathLike[str]) -> str:
    """A file of the run as the summary prints it: as the user gave its folder.

    Under the product folder or ``--out``, the folder as given (relative stays relative) and
    the path inside it; a ``gs://`` address or any other path as it is.
    """
    text = os.fspath(path)
    folders = [os.fspath(outputs.product_dir()),
               *([] if files.is_gcs(outputs.out) else [outputs.out])]
    for folder in folders:
        inside = os.path.relpath(os.path.abspath(text), os.path.abspath(folder))
        if not files.is_gcs(text) and not inside.startswith(os.pardir):
            return os.path.join(folder, inside)
    return text


def _date_summary(result: DateResult, shown: Callable[[str], str]) -> dict[str, Any]:
    """What the command prints of one date: its COGs, or why it was skipped."""
    if result.skipped or result.outputs is None:
        return {"skipped": result.skipped}
    prediction = result.outputs.prediction
    notes = list(result.outputs.input_notes)
    return {"class_cog": shown(prediction.class_path), "prob_cog": shown(prediction.prob_path),
            "skipped": prediction.skipped, **({"input_notes": notes} if notes else {})}


if __name__ == "__main__":  # ``python -m cli.map``, the same as isamap-map
    raise SystemExit(main())
