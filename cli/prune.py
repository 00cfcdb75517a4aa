"""Console script ``isamap-prune``: FPGM filter pruning of a trained model file."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from core.commands import (
    add_logging_arguments,
    claim_output_folder,
    configure_logging,
    run_command,
)
from core.environment import check_apart
from core.parsers import command_parser, seed
from engine.allocator import CHECKS
from engine.devices import add_device_arguments

MODEL_RECIPE = "(default: the model file's recorded recipe)"
PRUNE_EXAMPLES = (
    ("remove 40 % of the filters of an HRNet, fine-tuning for 10 epochs",
     "isamap-prune --model runs/hrnet/model.pt --data data/landcover --out runs/hrnet-pruned "
     "--rate 0.4 --epochs 10"),
    ("continue an interrupted pruning run",
     "isamap-prune --model runs/hrnet/model.pt --data data/landcover --out runs/hrnet-pruned "
     "--resume"),
)


def prune_parser() -> argparse.ArgumentParser:
    p = command_parser("isamap-prune", (
        "FPGM filter pruning (land-cover paper, section 3.4): fine-tune a trained model, "
        "zeroing each epoch the --rate of filters per prunable layer nearest the layer's "
        "geometric median, then save a genuinely smaller network (<out>/pruned.pt) that "
        "isamap-predict loads. The fine-tuning uses the model's own recorded recipe; the "
        "options below override it."), PRUNE_EXAMPLES)
    a = p.add_argument
    a("--model", required=True, help="trained model file (isamap-train's model.pt)")
    a("--data", required=True, help="patch dataset root to fine-tune on")
    a("--out", required=True, help="run folder")
    a("--rate", type=float, default=0.4, help="share of filters removed per layer")
    a("--epochs", type=int, help="fine-tuning epochs (default: the model's)")
    a("--max-iterations", type=int, help="total fine-tuning iterations (replaces --epochs)")
    a("--batch-size", type=int, help=f"patches per fine-tuning step {MODEL_RECIPE}")
    a("--lr", type=float, help=f"fine-tuning learning rate {MODEL_RECIPE}")
    a("--optimizer", choices=["adam", "sgd"], help=f"fine-tuning optimiser {MODEL_RECIPE}")
    a("--momentum", type=float, help=f"SGD momentum {MODEL_RECIPE}")
    a("--crop-size", type=int, help=f"random square training crops in pixels {MODEL_RECIPE}")
    a("--seed", type=seed, help=f"seed of the fine-tuning {MODEL_RECIPE}")
    a("--workers", dest="num_workers", type=int, help="data-loader worker processes")
    a("--flops-size", type=int, default=256, help="input side of the reported FLOP counts")
    add_device_arguments(p, device=None, precision=None, channels_last=None,
                         unset_from="the model file's recorded one")
    a("--resume", action="store_const", const=True, help="continue the run in --out")
    a("--no-progress", dest="progress", action="store_const", const=False,
      help="no progress bars")
    add_logging_arguments(p)
    return p


def prune_main(argv: Sequence[str] | None = None) -> int:
    args = vars(prune_parser().parse_args(argv))
    verbose, quiet, debug = args.pop("verbose"), args.pop("quiet"), args.pop("debug")
    configure_logging(verbose, quiet, debug)
    return run_command("isamap-prune", lambda: _prune(args), debug=debug,
                       writes_to=[args.get("out")], checks=CHECKS)


def _prune(args: dict) -> int:
    # imported when the command runs: torch and the models take seconds to import, and
    # --help and a refused option answer without them
    from training.prune_run import run_files
    from training.pruning import prune

    model, data, out = args.pop("model"), args.pop("data"), args.pop("out")
    claim_output_folder("--out", out)  # one run per folder: a second is refused
    check_apart(("--out", out), run_files(out), [("--model", model)])  # the run's model.pt
    rate, size = args.pop("rate"), args.pop("flops_size")
    overrides = {k: v for k, v in args.items() if v is not None}
    result = prune(model, data, out, rate, overrides, size)
    s = result.summary
    if not result.redone:
        print(f"the pruning run in {out} is finished: nothing redone, its files are kept as "
              "they are")
    print(f"parameters {s['before']['parameters']:,} -> {s['after']['parameters']:,}; "
          f"FLOPs at {size} px {s['before']['flops'] / 1e9:.2f} G -> "
          f"{s['after']['flops'] / 1e9:.2f} G\ncompact model: {result.pruned_path}\n"
          f"masked model: {result.masked_path}\nsummary: {result.summary_path}")
    return 0


if __name__ == "__main__":  # ``python -m cli.prune``, the same as isamap-prune
    raise SystemExit(prune_main())
