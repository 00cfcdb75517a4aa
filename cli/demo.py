"""Console script ``isamap-demo``: the whole chain on a SYNTHETIC scene (inference/demo/)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from core.commands import (
    add_logging_arguments,
    check_range,
    claim_output_folder,
    configure_logging,
    run_command,
)
from core.errors import ConfigError
from core.parsers import command_parser, seed
from engine.allocator import CHECKS
from inference.demo.steps import STEPS, DemoContext, run_demo

DEMO_SIZES = (384, 2048)  # smaller leaves a split empty; the 1 m class map grows with size^2
DEMO_MAX_EPOCHS = 1000
EXAMPLES = (
    ("the whole chain: scene, stack, patches, model, maps, accuracy",
     "isamap-demo --out demo_output"),
    ("a larger scene with another seed, stopping after the patches",
     "isamap-demo --out demo_big --size 1024 --seed 3 --until patches"),
)


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``isamap-demo``."""
    parser = command_parser(
        "isamap-demo",
        "Run isamap end to end on a SYNTHETIC scene (no account, no network): draw the scene, "
        "composite it, cut patches, train a small CroFuseNet, map two dates and assess the map "
        "with reference points. Every picture it writes is marked synthetic.", EXAMPLES)
    parser.add_argument("--out", default="demo_output", help="output folder")
    parser.add_argument("--seed", type=seed, default=0, help="seed of the synthetic scene")
    parser.add_argument("--size", type=int, default=768,
                        help=f"scene width and height in 10 m pixels, even, from "
                             f"{DEMO_SIZES[0]} to {DEMO_SIZES[1]}")
    parser.add_argument("--workers", type=int, default=2, help="threads writing patches")
    parser.add_argument("--epochs", type=int, default=15,
                        help=f"training epochs of the demo model (1 to {DEMO_MAX_EPOCHS})")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads for training (default: torch's own choice)")
    parser.add_argument("--until", choices=[name for name, _ in STEPS], default=STEPS[-1][0],
                        help="stop after this step (default: run the whole chain)")
    add_logging_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``isamap-demo``; returns the exit status."""
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose, args.quiet, args.debug)
    return run_command("isamap-demo", lambda: _run(args), debug=args.debug,
                       writes_to=[args.out], checks=CHECKS)


def check_demo_arguments(args: argparse.Namespace) -> None:
    """Bounds of the demo's numbers, checked before the scene is drawn."""
    check_range("--size", args.size, *DEMO_SIZES, "the scene's side in 10 m pixels")
    if args.size % 2:
        raise ConfigError(f"--size must be even (the 20 m bands tile it), got {args.size}")
    check_range("--epochs", args.epochs, 1, DEMO_MAX_EPOCHS)
    check_range("--workers", args.workers, 1, 64)
    check_range("--threads", args.threads, 1, 1024)


def _run(args: argparse.Namespace) -> int:
    check_demo_arguments(args)
    claim_output_folder("--out", args.out)  # one run per folder: a second is refused
    ctx = DemoContext(Path(args.out).resolve(), args.seed, args.size, args.workers,
                      args.epochs, args.threads, progress=not args.quiet)
    run_demo(ctx, args.until)
    return 0


if __name__ == "__main__":
    sys.exit(main())
