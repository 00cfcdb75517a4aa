"""``isamap-train`` at its defaults against a plain torch loop, and ``auto``'s measuring time.

Three figures, each measured side by side in one run:

- **trainer / plain loop**: the training epoch rate (patches per second of the training
  phase, ``train_patches_per_s`` of the history) of ``training.trainer.train`` at its defaults
  (data path, precision and layout chosen by the library) against a plain torch loop over the
  same decoded patches, in the precision and layout the trainer chose, with the same model,
  loss and optimizer. Each round runs both, back to back; the best epoch of each counts, and
  the figure is the median of the rounds' ratios. At least 0.9 is the library's promise.
- **auto measuring / budget**: the seconds ``--precision auto`` spent measuring the training
  step (the choice's ``seconds``) against its budget (``engine.autotune.DEFAULT_BUDGET_S``).
- **loader / step**: the data loader with its workers (GeoTIFF, normalisation,
  flips/rotations/blur) against the training step, for datasets too large to cache.

The patches are the demo's (``isamap-demo --until patches``, 768² scene, 128 px patches),
made in a temporary folder unless ``--data`` names a patch dataset.

Run: .venv/bin/python benchmarks/bench_training.py [--models unet,crofusenet] [--rounds 2]
Absolute rates depend on the machine and its load; the ratios are measured side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from engine import autotune
from inference.demo import main as demo_main
from training.config import TrainConfig
from training.data import Augment, PatchDataset, compute_norm_stats, make_loader
from training.demo import DEMO_WIDTHS
from training.models import create_model, model_loss, recipe_for
from training.trainer import train


def demo_patches(folder: Path) -> Path:
    """The demo's patch dataset, made by the demo command itself."""
    if demo_main(["--out", str(folder), "--until", "patches", "-q"]) != 0:
        raise SystemExit("the demo could not make its patches")
    return folder / "patches"


def trainer_run(root: Path, out: Path, model: str, epochs: int, batch: int) -> dict:
    """``train`` at its defaults (auto precision/layout, data path by size); its figures."""
    cfg = TrainConfig(data=str(root), out_dir=str(out), model=model,
                      model_kwargs={"widths": list(DEMO_WIDTHS)}, epochs=epochs,
                      batch_size=batch, lr=1e-3, patience=epochs, progress=False,
                      autotune_cache=False)  # measured in every round: its time is a figure
    result = train(cfg)
    rows = [json.loads(line) for line in result.history_path.read_text().splitlines()]
    runtime = torch.load(result.checkpoint_path, weights_only=True)["runtime"]
    return {"rate": max(r["train_patches_per_s"] for r in rows), "runtime": runtime}


def plain_loop(root: Path, model_name: str, epochs: int, batch: int, precision: str,
               channels_last: bool) -> float:
    """Best epoch rate of a plain torch loop: decoded patches in memory, shuffle, step."""
    raw = PatchDataset(root, "train")
    ds = PatchDataset(root, "train", norm=compute_norm_stats(raw, 8))
    items = [ds[i] for i in range(len(ds))]
    images = torch.stack([torch.as_tensor(it["image"]) for it in items])
    labels = torch.stack([torch.as_tensor(it["label"]) for it in items])
    torch.manual_seed(0)
    kwargs = {**recipe_for(model_name).model_kwargs, "widths": list(DEMO_WIDTHS)}
    model = create_model(model_name, images.shape[1], len(ds.class_names),
                         bands=list(ds.bands), **kwargs)  # the trainer's model, recipe's head
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt).train()
    loss_fn = model_loss(model_name, ds.class_names)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    best = 0.0
    for _ in range(epochs):
        order = torch.randperm(len(images))
        t0, seen = time.perf_counter(), 0
        for start in range(0, len(order), batch):
            pick = order[start:start + batch]
            x = images[pick].contiguous(memory_format=fmt)
            y = labels[pick]
            with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
                out = model(x)
                loss = loss_fn(out, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            seen += len(pick)
        best = max(best, seen / (time.perf_counter() - t0))
    return best


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


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", type=Path, help="a patch dataset (default: the demo's patches)")
    p.add_argument("--models", default="unet,crofusenet")
    p.add_argument("--epochs", type=int, default=2, help="epochs per run (the best counts)")
    p.add_argument("--rounds", type=int, default=2, help="trainer and plain loop, in turns")
    p.add_argument("--batch", type=int, default=16, help="the demo's batch size")
    p.add_argument("--workers", type=int, default=1, help="loader workers for loader / step")
    a = p.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; batch {a.batch}; "
          f"auto's budget {autotune.DEFAULT_BUDGET_S:g} s; {load()}")
    with tempfile.TemporaryDirectory() as tmp:
        root = a.data or demo_patches(Path(tmp) / "demo")
        print(f"patches: {root} ({len(PatchDataset(root, 'train'))} training patches)")
        fastest = 0.0
        for name in a.models.split(","):
            trainer, plain, measuring, labels = [], [], [], []
            for r in range(a.rounds):
                run = trainer_run(root, Path(tmp) / f"{name}-{r}", name, a.epochs, a.batch)
                setting = run["runtime"]["setting"]
                labels.append(run["runtime"].get("label") or setting["precision"])
                trainer.append(run["rate"])
                measuring.append(float(run["runtime"].get("seconds") or 0.0))
                plain.append(plain_loop(root, name, a.epochs, a.batch, setting["precision"],
                                        bool(setting["channels_last"])))
            # each round's pair ran back to back in one setting: a ratio across rounds
            # would compare different loads (and settings, when auto chose differently)
            ratios = [t / p for t, p in zip(trainer, plain, strict=True)]
            print(f"{name:<11} trainer / plain loop by round: "
                  + ", ".join(f"{t:.1f}/{p:.1f} patches/s at {label} = {t / p:.2f}"
                              for t, p, label in zip(trainer, plain, labels, strict=True)))
            print(f"{'':<11} trainer / plain loop = {statistics.median(ratios):.2f} "
                  "(median of the rounds; promise >= 0.9)")
            worst = max(measuring)
            print(f"{'':<11} auto measuring {', '.join(f'{s:.1f}' for s in measuring)} s; "
                  f"longest / budget = {worst / autotune.DEFAULT_BUDGET_S:.2f}")
            fastest = max(fastest, max(trainer))
        print(load())
        lp = loader_rate(root, 4, a.workers, 14)
        print(f"data loader ({a.workers} worker, GeoTIFF, normalise + flip/rotate/blur): "
              f"{lp:.1f} patches/s; loader / fastest step = {lp / fastest:.1f}")


if __name__ == "__main__":
    main()
