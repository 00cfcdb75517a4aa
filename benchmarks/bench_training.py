"""``isamap-train`` at its defaults against a plain torch loop, and ``auto``'s measuring time.

With ``--whole-process``, one figure: **isamap-train / plain loop, whole process**: the wall
and CPU (user + system, every thread) seconds of an ``isamap-train`` process (imports, checks,
``auto`` with a fresh cache, as a user's first run, the epochs, validation, checkpoints,
calibration, the plot) against a plain PyTorch loop as a process of its own
(``benchmarks/plain_train_loop.py``: rasterio, the same network, Adam, fp32 NCHW, a validation
pass per epoch, the weights saved), both ``--epochs`` epochs on the same patches, in pairs
taken in turns ABBA (``--rounds`` pairs, 8 by default), so a load that drifts slows both
alike. Printed: each pair's ratios, then the median of the pairs' ratios with their quartiles
and range, for the wall and the CPU time (the steadier of the two on a shared machine: it
leaves out the time the process waited for a core), and each side's fixed seconds (the
process's wall time outside its epochs, validation included in the epochs). The target is at
most 1.2 for a 4-epoch run.

Otherwise three figures, each measured side by side in one run:

- **trainer / plain loop**: the training epoch rate (patches per second of the training
  phase, ``train_patches_per_s`` of the history) of ``training.run.patch_training.train`` at its
  defaults (data path, precision and layout chosen by the library) against a plain loop over the
  same decoded patches, in the precision and layout the trainer chose, with the same model,
  loss and optimizer. The two take turns epoch by epoch inside one training run (the plain
  loop's epochs run from the trainer's ``epoch_end``, outside its timed epochs), in the order
  ABBA, so a machine whose load changes slows both alike; each one's first epoch warms up
  (it decodes the patches it caches) and is not counted. The figure is the median of the
  later epochs' ratios. At least 0.9 is the library's promise.
- **auto measuring / budget**: the seconds ``--precision auto`` spent measuring the training
  step (the choice's ``seconds``) against its budget (``engine.autotune.DEFAULT_BUDGET_S``);
  the default 8 epochs of the demo's 49 patches are long enough for the run's share to pay
  for measuring (a run of fewer than 260 samples trains unmeasured).
- **loader / step**: the data loader with its workers (GeoTIFF, normalisation,
  flips/rotations/blur) against the training step, for datasets too large to cache.

The patches are the demo's (``isamap-demo --until patches``, 768² scene, 128 px patches),
made in a temporary folder unless ``--data`` names a patch dataset.

Run: .venv/bin/python benchmarks/bench_training.py [--models unet,crofusenet] [--rounds 2]
     .venv/bin/python benchmarks/bench_training.py --whole-process [--models unet] [--rounds 8]
Absolute rates depend on the machine and its load; the ratios are measured side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from cli.demo import main as demo_main
from engine import autotune
from inference.demo.training import DEMO_WIDTHS
from training.config import TrainConfig
from training.data import Augment, PatchDataset, compute_norm_stats
from training.loader import make_loader
from training.models import create_model, model_loss, recipe_for
from training.run.patch_training import train


def demo_patches(folder: Path) -> Path:
    """The demo's patch dataset, made by the demo command itself."""
    if demo_main(["--out", str(folder), "--until", "patches", "-q"]) != 0:
        raise SystemExit("the demo could not make its patches")
    return folder / "patches"


class PlainLoop:
    """A plain torch loop: decoded patches in memory, shuffle, step; the trainer's model."""

    def __init__(self, root: Path, model_name: str, batch: int, precision: str,
                 channels_last: bool) -> None:
        raw = PatchDataset(root, "train")
        ds = PatchDataset(root, "train", norm=compute_norm_stats(raw, 8))
        items = [ds[i] for i in range(len(ds))]
        self.images = torch.stack([torch.as_tensor(it["image"]) for it in items])
        self.labels = torch.stack([torch.as_tensor(it["label"]) for it in items])
        torch.manual_seed(0)
        kwargs = {**recipe_for(model_name).model_kwargs, "widths": list(DEMO_WIDTHS)}
        model = create_model(model_name, self.images.shape[1], len(ds.class_names),
                             bands=list(ds.bands), **kwargs)  # the trainer's model and head
        self.fmt = torch.channels_last if channels_last else torch.contiguous_format
        self.model = model.to(memory_format=self.fmt).train()
        self.loss_fn = model_loss(model_name, ds.class_names)  # the recipe's, aux heads too
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        self.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
        self.batch = batch

    def epoch(self) -> float:
        order = torch.randperm(len(self.images))
        t0, seen = time.perf_counter(), 0
        for start in range(0, len(order), self.batch):
            pick = order[start:start + self.batch]
            x = self.images[pick].contiguous(memory_format=self.fmt)
            y = self.labels[pick]
            with torch.autocast("cpu", dtype=self.dtype, enabled=self.dtype is not None):
                out = self.model(x)
                loss = self.loss_fn(out, y)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            seen += len(pick)
        return seen / (time.perf_counter() - t0)


def loader_rate(root: Path, batch: int, workers: int, batches: int) -> float:
    raw = PatchDataset(root, "train")
    ds = PatchDataset(root, "train", norm=compute_norm_stats(raw, 8), augment=Augment())
    loader = make_loader(ds, batch, True, 0, workers)
    loader.sampler.set_epoch(0)
    it = iter(loader)
    next(it)  # worker start-up is paid once per run (persistent workers)
    t0, n = time.perf_counter(), 0
    for _ in range(batches):
        try:
            n += next(it)["image"].shape[0]
        except StopIteration:
            break
    return n / (time.perf_counter() - t0)


def load() -> str:
    """The 1, 5 and 15-minute load averages: how busy the machine was (rates depend on it)."""
    return "load average " + ", ".join(f"{v:.1f}" for v in os.getloadavg())


def compare(root: Path, out: Path, name: str, epochs: int, batch: int
            ) -> tuple[list[tuple[float, float]], float, str]:
    """One run: (trainer, plain) epoch rates after the first epoch, auto's seconds, label."""
    cfg = TrainConfig.of(data=str(root), out_dir=str(out), model=name,
                         model_kwargs={"widths": list(DEMO_WIDTHS)}, epochs=epochs,
                         batch_size=batch, lr=1e-3, patience=epochs, progress=False,
                         autotune_cache=False)  # measured in every round: its time is a figure
    plain: dict[int, float] = {}
    loop: list[PlainLoop] = []

    def between(model: torch.nn.Module, epoch: int) -> None:
        """Plain epochs, after the trainer's first (the checkpoint names its choice by then).

        ``T0 | T1 Pw P1 | T2 P2 P3 | T3 | T4 P4 P5 | T5``: pair k is ``(Tk, Pk)``, the plain
        epoch after the trainer's in even pairs and before it in odd ones from 3 on (ABBA);
        ``Pw`` warms the plain loop up.
        """
        if epoch == 0:
            return
        if not loop:
            setting = torch.load(out / "checkpoint.pt", weights_only=True)["runtime"]["setting"]
            loop.append(PlainLoop(root, name, batch, setting["precision"],
                                  bool(setting["channels_last"])))
            loop[0].epoch()
        for k in (epoch, epoch + 1) if epoch % 2 == 0 else (epoch,):
            if k not in plain and k < epochs:
                plain[k] = loop[0].epoch()

    result = train(cfg, epoch_end=between)
    rows = [json.loads(line) for line in result.history_path.read_text().splitlines()]
    runtime = torch.load(result.checkpoint_path, weights_only=True)["runtime"]
    pairs = [(float(rows[k]["train_patches_per_s"]), plain[k]) for k in sorted(plain)]
    return pairs, float(runtime.get("seconds") or 0.0), runtime.get("label") or "?"


def process_seconds(command: list[str], env: dict[str, str] | None = None
                    ) -> tuple[float, float, str]:
    """Wall and CPU (user + system, children) seconds of one process run to its end, and
    what it printed."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, check=True, stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, text=True, env=env)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done.stdout


def spread(values: list[float]) -> str:
    """The median of ``values`` with their quartiles and range, as the figure's line says it."""
    ordered = sorted(values)
    if len(ordered) < 2:
        return f"{ordered[0]:.2f}"
    q1, _, q3 = statistics.quantiles(ordered, n=4, method="inclusive")
    return (f"{statistics.median(ordered):.2f} (quartiles {q1:.2f}-{q3:.2f}, range "
            f"{ordered[0]:.2f}-{ordered[-1]:.2f}, {len(ordered)} pairs)")


def epoch_seconds(kind: str, out: Path, printed: str) -> float:
    """Seconds a run spent in its epochs (training and validation), as it recorded them."""
    if kind == "isamap-train":
        rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        return sum(float(row["seconds"]) for row in rows)
    return float(printed.rsplit(" epochs in ", 1)[1].split(" s", 1)[0])


def whole_process(root: Path, work: Path, name: str, epochs: int, batch: int,
                  rounds: int) -> None:
    """``isamap-train`` against the plain loop, each a whole process, in pairs ABBA."""
    widths = ",".join(map(str, DEMO_WIDTHS))
    train = [sys.executable, "-m", "cli.train", "--data", str(root), "--model", name,
             "--model-kwargs", json.dumps({"widths": list(DEMO_WIDTHS)}), "--epochs",
             str(epochs), "--batch-size", str(batch), "--lr", "1e-3", "--no-progress", "-q"]
    script = str(Path(__file__).with_name("plain_train_loop.py"))
    runs: dict[str, list[tuple[float, float, float]]] = {"isamap-train": [], "plain loop": []}
    loads: list[float] = []
    for r in range(rounds):
        order = ["isamap-train", "plain loop"]
        for kind in order if r % 2 == 0 else order[::-1]:
            out = work / f"{name}-{kind.replace(' ', '-')}-{r}"
            env = {**os.environ, "XDG_CACHE_HOME": str(work / f"cache-{name}-{r}")}
            command = ([*train, "--out", str(out)] if kind == "isamap-train" else
                       [sys.executable, script, str(root), str(out), "--model", name,
                        "--widths", widths, "--epochs", str(epochs), "--batch", str(batch)])
            wall, cpu, printed = process_seconds(command, env)
            fixed = wall - epoch_seconds(kind, out, printed)
            runs[kind].append((wall, cpu, fixed))
            loads.append(os.getloadavg()[0])
            print(f"pair {r + 1} {kind:<12} {wall:7.2f} s wall {cpu:7.2f} s CPU, {fixed:6.2f} s "
                  f"outside the epochs; {load()}", flush=True)
        t, q = runs["isamap-train"][-1], runs["plain loop"][-1]
        print(f"pair {r + 1} isamap-train / plain loop: wall {t[0] / q[0]:.2f}, CPU "
              f"{t[1] / q[1]:.2f}", flush=True)
    pairs = list(zip(runs["isamap-train"], runs["plain loop"], strict=True))
    for i, clock in enumerate(("wall", "CPU")):
        print(f"{name}: isamap-train / plain loop, whole process, {epochs} epochs, {clock}: "
              f"{spread([t[i] / q[i] for t, q in pairs])}; isamap-train "
              f"{statistics.median(t[i] for t, _ in pairs):.1f} s, plain loop "
              f"{statistics.median(q[i] for _, q in pairs):.1f} s (medians)")
    print(f"{name}: seconds outside the epochs (median): isamap-train "
          f"{statistics.median(t[2] for t, _ in pairs):.1f}, plain loop "
          f"{statistics.median(q[2] for _, q in pairs):.1f}; 1-minute load "
          f"{min(loads):.1f}-{max(loads):.1f}")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", type=Path, help="a patch dataset (default: the demo's patches)")
    p.add_argument("--models", default="unet,crofusenet")
    p.add_argument("--epochs", type=int, help=(
        "epochs per run (default 8: long enough for auto to measure; with --whole-process 4, "
        "the short run the target is for)"))
    p.add_argument("--rounds", type=int, help="fresh runs, auto measured in each (default 2); "
                   "with --whole-process the pairs (default 8)")
    p.add_argument("--batch", type=int, default=16, help="the demo's batch size")
    p.add_argument("--workers", type=int, default=1, help="loader workers for loader / step")
    p.add_argument("--whole-process", action="store_true",
                   help="isamap-train against the plain loop, each a whole process")
    a = p.parse_args()
    if a.whole_process:
        with tempfile.TemporaryDirectory() as tmp:
            rounds, epochs = a.rounds or 8, a.epochs or 4
            root = a.data or demo_patches(Path(tmp) / "demo")
            print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; batch "
                  f"{a.batch}; {load()}")
            for name in a.models.split(","):
                whole_process(root, Path(tmp), name, epochs, a.batch, rounds)
        return
    a.rounds, a.epochs = a.rounds or 2, a.epochs or 8
    if a.epochs < 2:
        p.error("--epochs must be at least 2 (the first epoch of each run warms up)")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; batch {a.batch}; "
          f"auto's budget {autotune.DEFAULT_BUDGET_S:g} s; {load()}")
    with tempfile.TemporaryDirectory() as tmp:
        root = a.data or demo_patches(Path(tmp) / "demo")
        print(f"patches: {root} ({len(PatchDataset(root, 'train'))} training patches)")
        fastest = 0.0
        for name in a.models.split(","):
            ratios, measuring, trainer, plain = [], [], [], []
            for r in range(a.rounds):
                pairs, seconds, label = compare(root, Path(tmp) / f"{name}-{r}", name,
                                                a.epochs, a.batch)
                ratios += [t / q for t, q in pairs]
                trainer += [t for t, _ in pairs]
                plain += [q for _, q in pairs]
                measuring.append(seconds)
                fastest = max(fastest, *(t for t, _ in pairs))
                print(f"{name:<11} round {r + 1} at {label}: trainer/plain patches/s by epoch "
                      + ", ".join(f"{t:.1f}/{q:.1f} = {t / q:.2f}" for t, q in pairs)
                      + f"; {load()}")
            print(f"{'':<11} trainer / plain loop = {statistics.median(ratios):.2f} "
                  f"(median of {len(ratios)} epoch pairs; promise >= 0.9); best epoch / best "
                  f"epoch = {max(trainer) / max(plain):.2f}")
            worst = max(measuring)
            print(f"{'':<11} auto measuring {', '.join(f'{s:.1f}' for s in measuring)} s; "
                  f"longest / budget = {worst / autotune.DEFAULT_BUDGET_S:.2f}")
        print(load())
        lp = loader_rate(root, 4, a.workers, 14)
        print(f"data loader ({a.workers} worker, GeoTIFF, normalise + flip/rotate/blur): "
              f"{lp:.1f} patches/s; loader / fastest step = {lp / fastest:.1f}")


if __name__ == "__main__":
    main()
