"""CroFuseNet's classifier head as printed (3x3 conv + BN + ReLU) against a linear 1x1 head.

``python -m experiments.headcompare --data demo=demo_output/patches --data s1f11=PATH --out DIR``

Seed 002 line 107 ends every branch with "a 3x3 convolution, BN and a rectified linear unit
(ReLU) layer" producing the 2-class output. A ReLU on logits makes every logit >= 0: where both
pre-activations are negative the two logits tie at 0 (argmax then says class 0) and no gradient
flows back through them. This module measures what that costs: for every dataset and seed it
trains the same reduced-width CroFuseNet twice through ``training.run.patch_training.train``
— once with ``head="paper"``, once with ``head="linear"`` (same seed, data, augmentation
draws, budget, validation-based selection) — evaluates both on the test split with
``inference.assess.evaluate.evaluate`` and counts the test pixels whose logits all tie (decided by
the tie-break, not by the model). Finished runs are reused, so an interrupted comparison is
resumed by the same command. The benchmark ``benchmarks/bench_crofusenet_head.py`` builds the
demo and Sen1Floods11 datasets and calls :func:`compare_heads`.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from contract.dataset import read_manifest
from core.commands import (
    add_logging_arguments,
    check_output_folder,
    configure_logging,
    run_command,
)
from core.errors import ConfigError
from core.parsers import CommandParser
from core.storage import atomic_write
from engine.outputs import main_output
from experiments.threads import add_threads_argument, use_threads
from inference.assess.evaluate import EvaluateConfig, evaluate
from training.config import TrainConfig
from training.data import NormStats, PatchDataset
from training.modelfile import load_model_file
from training.run.patch_training import train

HEADS = ("paper", "linear")
METRICS = ("miou", "iou1", "f1_1", "oa", "tied")


@dataclass(frozen=True)
class HeadBudget:
    """The small, equal budget every run gets (the demo's settings: inference/demo/training.py)."""

    iterations: int = 60
    batch_size: int = 8
    lr: float = 1e-3
    widths: tuple[int, ...] = (8, 16, 32, 64, 128)

    def __post_init__(self) -> None:
        if self.iterations < 1 or self.batch_size < 1 or self.lr <= 0 or not self.widths:
            raise ConfigError("iterations and batch size must be >= 1, lr > 0, widths given")


def tied_fraction(model_path: Path, data: str, split: str = "test") -> float:
    """Share of valid pixels of ``split`` where every logit of the prediction is equal."""
    model, meta = load_model_file(model_path)
    ds = PatchDataset(data, split, bands=meta.bands,
                      norm=NormStats(meta.bands, meta.norm_mean, meta.norm_std))
    tied = valid = 0
    with torch.no_grad():
        for i in range(len(ds)):
            item = ds[i]
            out = main_output(model(item["image"][None]))[0]
            ok = item["label"] != 255
            same = out.amax(0) == out.amin(0)
            tied += int((same & ok).sum())
            valid += int(ok.sum())
    return tied / max(valid, 1)


def run_one(name: str, data: str, head: str, seed: int, budget: HeadBudget, out: Path) -> dict:
    """Train and evaluate one (dataset, head, seed); reuse a finished run's results."""
    run = out / name / f"{head}_seed{seed}"
    done = run / "result.json"
    key = {"data": data, "head": head, "seed": seed, **asdict(budget)}
    if done.exists():
        previous = json.loads(done.read_text())
        if previous.get("key") == json.loads(json.dumps(key)):
            return previous
    cfg = TrainConfig.of(data=data, out_dir=str(run / "train"), model="crofusenet",
                         model_kwargs={"head": head, "widths": list(budget.widths)},
                         max_iterations=budget.iterations, batch_size=budget.batch_size,
                         lr=budget.lr, patience=10 ** 6, seed=seed, precision="fp32",
                         channels_last=False, device="cpu", num_workers=0, cache=True,
                         resume=True, progress=False)
    result = train(cfg)
    ev = evaluate(EvaluateConfig(result.model_path, data, run / "test", "test", progress=False))
    pixel = ev.metrics["pixel"]
    record = {"key": key, "dataset": name, "head": head, "seed": seed,
              "best_epoch": result.best_epoch, "miou": pixel["miou"], "iou1": pixel["iou"][1],
              "f1_1": pixel["f1"][1], "oa": pixel["oa"],
              "tied": tied_fraction(result.model_path, data)}
    text = json.dumps(record, indent=2, allow_nan=True)
    atomic_write(done, lambda fh: fh.write(text.encode()))
    return record


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    a = np.array([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if not a.size:
        return math.nan, math.nan
    return float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else 0.0


def compare_heads(datasets: Mapping[str, str], seeds: Sequence[int], out: str | Path,
                  budget: HeadBudget | None = None) -> tuple[list[dict], str]:
    """Every (dataset, seed, head) run, and a table of mean ± sample std over seeds."""
    budget = budget or HeadBudget()
    out = Path(out)
    records = [run_one(name, str(root), head, seed, budget, out)
               for name, root in datasets.items() for seed in seeds for head in HEADS]
    lines = [f"CroFuseNet head, test split, widths {list(budget.widths)}, {budget.iterations} "
             f"iterations of batch {budget.batch_size}, Adam {budget.lr:g}, seeds "
             f"{list(seeds)}; mean ± std (%)",
             f"{'dataset':<14}{'head':<8}{'MIoU':>14}{'IoU cls 1':>14}{'F1 cls 1':>14}"
             f"{'OA':>14}{'tied px':>14}"]
    for name in datasets:
        for head in HEADS:
            rows = [r for r in records if r["dataset"] == name and r["head"] == head]
            cells = "".join(f"{100 * m:>8.2f} ±{100 * s:>4.1f}" for m, s in
                            (_mean_std([r[k] for r in rows]) for k in METRICS))
            lines.append(f"{name:<14}{head:<8}{cells}")
    for name in datasets:
        wins = sum(1 for s in seeds if _pick(records, name, "linear", s)["miou"]
                   > _pick(records, name, "paper", s)["miou"])
        lines.append(f"{name}: linear head has the higher test MIoU on {wins} of {len(seeds)} "
                     "seeds")
    table = "\n".join(lines)
    atomic_write(out / "summary.txt", lambda fh: fh.write((table + "\n").encode()))
    text = json.dumps({"budget": asdict(budget), "runs": records}, indent=2)
    atomic_write(out / "summary.json", lambda fh: fh.write(text.encode()))
    return records, table


def _pick(records: list[dict], name: str, head: str, seed: int) -> dict:
    return next(r for r in records if r["dataset"] == name and r["head"] == head
                and r["seed"] == seed)


def main(argv: Sequence[str] | None = None) -> int:
    p = CommandParser(  # exact option names only
        allow_abbrev=False, prog="python -m experiments.headcompare", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", action="append", required=True, metavar="NAME=ROOT",
                   help="a patch dataset to compare on (repeatable)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--iterations", type=int, default=HeadBudget.iterations)
    p.add_argument("--batch-size", type=int, default=HeadBudget.batch_size)
    p.add_argument("--lr", type=float, default=HeadBudget.lr)
    add_threads_argument(p)
    p.add_argument("--out", default="headcompare_output")
    add_logging_arguments(p)
    a = p.parse_args(argv)
    configure_logging(a.verbose, a.quiet, a.debug)
    return run_command("python -m experiments.headcompare", lambda: _compare(a), debug=a.debug,
                       writes_to=[a.out])


def _compare(a: argparse.Namespace) -> int:
    datasets = {}
    for item in a.data:
        name, sep, root = item.partition("=")
        if not sep or not name or not root:
            raise ConfigError(f"--data takes NAME=ROOT, got {item!r}")
        if not read_manifest(root, missing_ok=True):  # all checked before the first run
            raise ConfigError(f"--data {item}: no manifest.json in {root}; give the folder of "
                              "a patch dataset (isamap-export or isamap-demo --until patches)")
        datasets[name] = root
    check_output_folder("--out", a.out)
    budget = HeadBudget(a.iterations, a.batch_size, a.lr)
    use_threads(a.threads)
    _, table = compare_heads(datasets, a.seeds, a.out, budget)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
