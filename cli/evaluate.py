"""Console script ``isamap-evaluate``: a trained model file scored on a split of a dataset."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from contract.dataset import DATA_ROOT
from core.commands import (
    add_logging_arguments,
    check_range,
    claim_output_folder,
    configure_logging,
    run_command,
)
from core.errors import ConfigError
from core.parsers import command_parser, seed
from core.storage import files
from engine.allocator import CHECKS
from engine.devices import add_device_arguments

EVALUATE_EXAMPLES = (
    ("score the test split: metrics.json, metrics.txt, confusion_matrix.png",
     "isamap-evaluate --model runs/cfn/model.pt --data demo_output/patches --out runs/cfn/test"),
    ("add a 500-point sample assessment with area estimates in km²",
     "isamap-evaluate --model runs/cfn/model.pt --data data/wuhan --out runs/cfn/test "
     "--points 500"),
)


def evaluate_parser() -> argparse.ArgumentParser:
    p = command_parser("isamap-evaluate", (
        "Evaluate a trained model file on a split of a patch dataset: metrics.json, "
        "metrics.txt, confusion_matrix.png and reliability.png (the expected calibration "
        "error before and after the model file's calibration), with an optional point-sample "
        "assessment and Olofsson et al. (2014) area estimates in km²."), EVALUATE_EXAMPLES)
    p.add_argument("--model", required=True, help="model file written by isamap-train")
    p.add_argument("--data", required=True, help="patch dataset root")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--split", default="test", choices=["train", "val", "test"],
                   help="the dataset split scored")
    p.add_argument("--batch-size", type=int, default=16, help="patches per forward pass")
    add_device_arguments(p)
    p.add_argument("--workers", type=int, default=0,
                   help="data-loader worker processes (0: read in this process)")
    p.add_argument("--points", type=int, default=0,
                   help="sample points for the point assessment (0: none)")
    p.add_argument("--point-seed", type=seed, default=0,
                   help="seed of the point sample (the same seed draws the same points)")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bars")
    add_logging_arguments(p)
    return p


def evaluate_main(argv: Sequence[str] | None = None) -> int:
    a = evaluate_parser().parse_args(argv)
    configure_logging(a.verbose, a.quiet, a.debug)
    return run_command("isamap-evaluate", lambda: _evaluate(a), debug=a.debug,
                       writes_to=[a.out], checks=CHECKS)


def _evaluate(a: argparse.Namespace) -> int:
    check_range("--batch-size", a.batch_size, 1)
    check_range("--points", a.points, 0)
    check_range("--workers", a.workers, 0, 64)
    claim_output_folder("--out", a.out)  # one run per folder: a second is refused
    files.require("--data", a.data, DATA_ROOT, folder=True, error=ConfigError)
    # imported once the options are checked: torch and the models take seconds to import,
    # and --help and a refused option answer without them
    from inference.assess.evaluate import EvaluateConfig, evaluate

    res = evaluate(EvaluateConfig(
        model=a.model, data=a.data, out_dir=a.out, split=a.split, batch_size=a.batch_size,
        device=a.device, precision=a.precision, channels_last=a.channels_last,
        autotune_cache=a.autotune_cache, num_workers=a.workers, points=a.points,
        point_seed=a.point_seed, progress=a.progress))
    print(res.table_path.read_text())
    print(f"{'read back (the same inputs)' if res.reused else 'wrote'} {res.metrics_path}, "
          f"{res.table_path}, {res.confusion_path}, {res.reliability_path}")
    return 0


if __name__ == "__main__":  # ``python -m cli.evaluate``, the same as isamap-evaluate
    raise SystemExit(evaluate_main())
