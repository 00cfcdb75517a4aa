"""Console script ``isamap-assess``: reference sample designs and accuracy/area reports.

``design`` draws a stratified random sample of a class (or change) COG and writes the files
people label with (CSV, GeoJSON, KML, a Collect Earth Online plot file, a Code Editor
labelling app); ``score`` reads the labelled points back and writes accuracy and area with
95 % intervals for the map and any product compared on the same points (docs/accuracy.md).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
from collections.abc import Sequence
from pathlib import Path

from core.commands import (
    add_logging_arguments,
    claim_output_folder,
    configure_logging,
    run_command,
)
from core.errors import ConfigError
from core.parsers import add_subcommand, command_parser, seed
from core.storage import files
from inference.assess.products import parse_comparison
from inference.publish.asset_manifest import asset_name_problem

DESIGN_EXAMPLES = (
    ("600 points of a class map, stratified by its classes",
     "isamap-assess design --map maps/wuhan_2023-06_class.tif --n 600 --seed 1 "
     "--out assess/wuhan"),
    ("as many points as a 1 % standard error of overall accuracy needs",
     "isamap-assess design --map maps/wuhan_2023-06_class.tif --target-se 0.01 "
     "--expected-ua 0.95,0.85 --seed 1 --out assess/wuhan"),
)
SCORE_EXAMPLES = (
    ("score the map on the labelled points (sample.csv with its reference column filled)",
     "isamap-assess score --map maps/wuhan_2023-06_class.tif "
     "--reference assess/wuhan/sample.csv --out assess/wuhan/score"),
    ("score ESA WorldCover on the same points too",
     "isamap-assess score --map maps/wuhan_2023-06_class.tif "
     "--reference assess/wuhan/sample.csv --compare wc=worldcover:2021 --project my-project "
     "--out assess/wuhan/score"),
)


DESIGN_TEXT = (
    "Draw a stratified random sample of a class COG (or of a change COG with --strata) and "
    "write the files people label it with: sample.csv, GeoJSON, KML, a Collect Earth Online "
    "plot file and a Code Editor labelling app. Give the sample size (--n) or the precision "
    "it must reach (--target-se).")
SCORE_TEXT = (
    "Read the labelled points back and write accuracy (overall, user's, producer's, F1) and "
    "the area of each class in km² with 95 % confidence intervals (Olofsson et al. 2014) for "
    "the map and every product compared on the same points: report.md, report.json, "
    "report.png.")

SCORE_WITHOUT_ACCOUNT = """No account? Score without Earth Engine: compare the products you hold
as rasters, isamap-assess score ... --compare NAME=PATH (or NAME=PATH:CODE,... naming their
impervious codes); designing and labelling need no account either."""


def build_parser() -> argparse.ArgumentParser:
    p = command_parser(
        "isamap-assess",
        "Accuracy assessment with reference points: design a stratified random sample of a "
        "map, label it (Code Editor app, Google Earth, Collect Earth Online), then score the "
        "map and other products on the same points with 95 % confidence intervals of "
        "accuracy and area in km² (Olofsson et al. 2014). `isamap-assess design --help` and "
        "`isamap-assess score --help` list each step's options.",
        (*DESIGN_EXAMPLES[:1], *SCORE_EXAMPLES[:1]))
    sub = p.add_subparsers(dest="command", required=True, title="steps",
                           help="design the sample, then score the labelled points")
    d = add_subcommand(sub, "design", "draw a stratified random sample and write the files to "
                       "label it with", DESIGN_TEXT, DESIGN_EXAMPLES)
    d.add_argument("--map", help="class COG (the strata are its classes); optional with "
                                 "--strata")
    d.add_argument("--strata", help="change COG whose classes are the strata instead (stable "
                                    "pervious, stable impervious, gain, loss)")
    size = d.add_mutually_exclusive_group(required=True)
    size.add_argument("--n", type=int, help="number of points")
    size.add_argument("--target-se", type=float, help="target standard error: of overall "
                      "accuracy (a fraction, e.g. 0.01), or with --target-class of that class's "
                      "area in km²")
    d.add_argument("--target-class", help="size the sample for this class's area (with "
                                          "--target-se in km²)")
    d.add_argument("--expected-ua", help="expected user's accuracy per stratum, comma-separated "
                                         "(default 0.8 each), for --target-se")
    d.add_argument("--min-per-stratum", type=int, default=50,
                   help="at least this many points per stratum (default 50)")
    d.add_argument("--seed", type=seed, default=0, help="the same seed draws the same points")
    d.add_argument("--asset", help="table asset the labelling app exports to (besides Drive)")
    d.add_argument("--show-map-class", action="store_true",
                   help="write each point's map class into sample.csv/.geojson: for training "
                        "labels only, the report marks the assessment as not blind")
    d.add_argument("--out", required=True, help="output folder")
    s = add_subcommand(sub, "score", "accuracy and area with 95 %% intervals from labelled "
                       "points", SCORE_TEXT, SCORE_EXAMPLES)
    s.add_argument("--map", required=True, help="class COG that was assessed")
    s.add_argument("--reference", required=True, action="append",
                   help="labelled points: CSV or GeoJSON with a reference column of class "
                        "names or codes, or a Collect Earth Online sample export (repeatable: "
                        "one per CEO project of a split design)")
    s.add_argument("--reference-column", default="reference",
                   help="the column holding the labels (a CEO export: the question's text)")
    s.add_argument("--design", help="the design folder (its design_points.csv gives each "
                                    "point's stratum; recommended)")
    s.add_argument("--strata", help="the raster that drew the sample, when not --map (a change "
                                    "COG)")
    s.add_argument("--compare", action="append", default=[], metavar="NAME=SOURCE",
                   help="another product on the same points: a raster (PATH, or PATH:CODE,... "
                        "for its impervious codes), worldcover[:YEAR], dynamicworld:YEAR, "
                        "ghsl:YEAR[:FRACTION] or ee:ASSET[:BAND[:CODE,...]] (repeatable)")
    s.add_argument("--isa-class", type=int, help="index of the impervious class (default: by "
                                                 "name)")
    s.add_argument("--project", default=os.environ.get("EE_PROJECT"),
                   help="Cloud project registered for Earth Engine (Earth Engine products)")
    s.add_argument("--out", required=True, help="output folder")
    for sp in (d, s):
        add_logging_arguments(sp)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``isamap-assess``; returns the exit status."""
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose, args.quiet, args.debug)
    run = _design if args.command == "design" else _score
    return run_command(f"isamap-assess {args.command}", lambda: run(args), debug=args.debug)


def _ua(text: str | None) -> tuple[float, ...] | None:
    if not text:
        return None
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"--expected-ua {text!r} must be numbers, e.g. 0.9,0.7") from None


def _design(args: argparse.Namespace) -> int:
    # lazy: the design's modules load inside the command's work, where its Ctrl-C and SIGTERM
    # handlers are set (tests/cli/test_assess.py signals the run once they have loaded)
    from inference.assess.point_files import write_design

    claim_output_folder("--out", args.out)
    if not (args.map or args.strata):
        raise ConfigError("give --map CLASS_COG, or --strata CHANGE_COG to sample a change map")
    for flag, path in (("--map", args.map), ("--strata", args.strata)):
        problem = path and files.file_problem(flag, path, "the map's _class.tif"
                                              if flag == "--map" else "a change COG")
        if problem:
            raise ConfigError(problem)
    _check_asset(args.asset)
    written = write_design(args.strata or args.map, Path(args.out), n=args.n,
                           target_se=args.target_se, target_class=args.target_class,
                           expected_ua=_ua(args.expected_ua), seed=args.seed,
                           minimum=args.min_per_stratum, asset_id=args.asset,
                           map_path=args.map, show_map_class=args.show_map_class)
    print(json.dumps({k: str(v) for k, v in written.files.items()} | {
        "n": int(written.design.stratum.size),
        "allocation": dict(zip(written.design.strata.classes, written.design.allocation,
                               strict=True))}, indent=1))
    return 0


def _check_asset(asset: str | None) -> None:
    """Refuse an ``--asset`` the labelling app could not export to, before any work."""
    if asset is None:
        return
    text = asset.strip()
    name = f"projects/earthengine-legacy/assets/{text}" if text.startswith("users/") else text
    problem = asset_name_problem(name) if text else "it is empty"
    if problem:
        raise ConfigError(f"--asset {asset!r} is not an Earth Engine table asset id: {problem}; "
                          "give the full id, e.g. --asset projects/my-project/assets/labels")


def _score(args: argparse.Namespace) -> int:
    from inference.assess.report import score  # lazy: as the design's modules, in the work

    claim_output_folder("--out", args.out)
    remote = [c.name for c in map(parse_comparison, args.compare) if c.on_earth_engine]
    if remote and not args.project:
        raise ConfigError(f"--compare {', '.join(remote)} reads Earth Engine: give --project "
                          "(or set EE_PROJECT). " + " ".join(SCORE_WITHOUT_ACCOUNT.split()))
    files.require("--map", args.map, "the class COG that was assessed", error=ConfigError)

    @functools.cache  # one Earth Engine session for every product
    def session():
        # lazy: looked up when a product needs Earth Engine (the seam tests replace)
        from gee_export.ee.session import EESession

        return EESession(args.project, without_account=SCORE_WITHOUT_ACCOUNT,
                         purpose="read --compare products from Earth Engine").initialize()

    if args.design and not Path(args.design).exists():
        raise ConfigError(f"--design {args.design} does not exist")
    result = score(args.map, args.reference, Path(args.out), strata_path=args.strata,
                   design=args.design, reference_column=args.reference_column,
                   compare=args.compare, isa_class=args.isa_class, session_factory=session)
    print(result.markdown.read_text())
    return 0


if __name__ == "__main__":  # ``python -m cli.assess``, the same as isamap-assess
    raise SystemExit(main())
