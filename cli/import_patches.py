"""Console script ``isamap-import-patches``: another project's image/mask pairs as a dataset."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from contract.bands import band_list
from contract.sigma0 import S1_UNITS
from core.commands import (
    add_logging_arguments,
    check_output_folder,
    check_range,
    configure_logging,
    run_command,
)
from core.errors import ConfigError
from core.months import check_month
from core.parsers import command_parser, seed
from gee_export.imported.patches import IMPORT_BLOCK, ImportOptions, import_patches

EXAMPLES = (
    ("image/mask pairs (images/, masks/) of Sentinel-2 reflectance x 10000 and Sentinel-1 "
     "VV/VH in linear power (imported as dB), masks 0/1",
     "isamap-import-patches their_patches --out data/imported --month 2021-06 "
     "--bands B2,B3,B4,B8,VV,VH --scale 0.0001 --s1-unit linear"),
    ("masks of 0 and 255 (255 = built-up), nodata 99 in the masks",
     "isamap-import-patches their_patches --out data/imported --month 2021-06 "
     "--impervious-values 255 --ignore-values 99"),
    ("a small area: split blocks of 2 x 2 patches, so that val and test get patches too",
     "isamap-import-patches their_patches --out data/imported --month 2021-06 "
     "--scale 0.0001 --split-block 2"),
)


def build_parser() -> argparse.ArgumentParser:
    p = command_parser(
        "isamap-import-patches",
        "Import a folder of georeferenced image/mask GeoTIFF pairs from another project as a "
        "patch dataset isamap-train reads (docs/data-contract.md): images/<name>.tif with "
        "masks/<name>.tif (or labels/), or <name>.tif beside <name>_mask.tif. The patches must "
        "share one CRS, pixel size and patch size and lie on one lattice of whole patches; the "
        "split is spatially blocked. Everything is checked before the first patch is written; "
        "a second run writes nothing.", EXAMPLES)
    p.add_argument("src", help="the folder of image/mask pairs")
    p.add_argument("--out", required=True, help="the dataset folder (or gs://bucket/prefix)")
    p.add_argument("--month", required=True,
                   help="YYYY-MM the patches show (a dataset is keyed by month)")
    p.add_argument("--bands", help="the images' band names in file order, comma-separated "
                   "(default: the images' band descriptions)")
    p.add_argument("--trust-band-names", action="store_true",
                   help="import the bands as named even where the band-order rules (which "
                        "the export applies too) doubt them")
    p.add_argument("--allow-implausible", action="store_true", help=(
        "import images whose pixels the input check doubts (VV/VH or B2/B4 swapped, the +0.1 "
        "offset left in), the reason recorded in the dataset's manifest"))
    p.add_argument("--allow-l1c", action="store_true",
                   help="import Sentinel-2 Level-1C (top-of-atmosphere) patches instead of "
                        "refusing them (recorded in the dataset's recipe: its models map "
                        "Level-1C stacks, with a warning)")
    p.add_argument("--scale", type=float, default=1.0,
                   help="multiply the optical reflectance bands (B1..B12, and bands of names "
                        "isamap does not know) by this (0.0001 for reflectance x 10000); "
                        "Sentinel-1 VV/VH in dB are read as they are")
    p.add_argument("--s1-unit", choices=S1_UNITS, default="dB",
                   help="unit of the images' Sentinel-1 VV/VH: linear power is converted to dB "
                        "(10*log10, power <= 0 becomes nodata) as the patches are written, as "
                        "the export converts it (recorded in the dataset's recipe)")
    p.add_argument("--impervious-values", default="1", metavar="V,...",
                   help="mask values that are impervious")
    p.add_argument("--pervious-values", default="0", metavar="V,...",
                   help="mask values that are pervious")
    p.add_argument("--ignore-values", default="", metavar="V,...",
                   help="mask values that are no label, not trained on (default: none; a "
                        "mask value not named by one of these three is refused)")
    p.add_argument("--min-valid-fraction", type=float, default=0.9,
                   help="patches with a smaller share of valid pixels are left out")
    p.add_argument("--seed", type=seed, default=0, help="seed of the spatially blocked split")
    p.add_argument("--split-block", type=int, default=IMPORT_BLOCK,
                   help="side of the split's blocks in patches (whole blocks go to train, val "
                        "or test; a small area needs smaller blocks to get all three: the "
                        "import warns with the side that does)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_logging_arguments(p)
    return p


def _values(flag: str, text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"{flag} takes integers separated by commas, got {text!r}") from None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``isamap-import-patches``; returns the exit status."""
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose, args.quiet, args.debug)
    return run_command("isamap-import-patches", lambda: _run(args), debug=args.debug,
                       writes_to=[args.out])


def _run(args: argparse.Namespace) -> int:
    check_month(args.month)
    check_output_folder("--out", args.out, remote=True)
    check_range("--min-valid-fraction", args.min_valid_fraction, 0.0, 1.0,
                "it is the share of valid pixels a patch needs")
    check_range("--split-block", args.split_block, 1)
    options = ImportOptions(
        args.month, band_list(args.bands) if args.bands else None,
        impervious=_values("--impervious-values", args.impervious_values),
        pervious=_values("--pervious-values", args.pervious_values),
        ignore=_values("--ignore-values", args.ignore_values), scale=args.scale,
        seed=args.seed, block=args.split_block, min_valid_fraction=args.min_valid_fraction,
        trust_band_names=args.trust_band_names, allow_l1c=args.allow_l1c,
        allow_implausible=args.allow_implausible,
        s1_unit=args.s1_unit)
    summary = import_patches(args.src, args.out, options,
                             progress=not (args.quiet or args.no_progress))
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
