"""Data-loader throughput next to the training step it must feed (the step at ``auto``).

The per-model speed of training and inference, every configuration next to ``auto`` and as a
fraction of the machine's peak, is ``bench_models.py``; this benchmark checks that the loader
(GeoTIFF patches, normalisation, flips/rotations/blur in worker processes) outruns the fastest
model's training step by a margin.

Run: .venv/bin/python benchmarks/bench_training.py [--batch 4] [--models ...]
Absolute numbers depend on the (shared) machine; the ratio is measured side by side.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from engine import autotune
from gee_export.contract.patches import patch_stack
from gee_export.local.stack import build_local_stack
from gee_export.local.synthetic import generate_scene
from training.data import Augment, PatchDataset, compute_norm_stats, make_loader
from training.models import create_model, model_loss

BANDS = ["B2", "B3", "B4", "B8", "VV", "VH"]


def synthetic_dataset(folder: Path, size: int = 768) -> Path:
    """About 80 patches of 128 px through the package: synthetic scene, local stack, patches."""
    scene = generate_scene(folder / "scene", width=size, height=size)
    stack = build_local_stack(scene.root, scene.grid, scene.month, BANDS, label=scene.label,
                              speckle="boxcar", out_dir=folder / "stack", progress=False)
    patch_stack(stack, folder / "ds", min_valid_fraction=0.0, ratios=(1, 0, 0), progress=False)
    return folder / "ds"


def step_rate(name: str, batch: int) -> tuple[float, str]:
    """Training patches/s of ``name`` at 128 px in the configuration ``auto`` picks."""
    torch.manual_seed(0)
    model = create_model(name, len(BANDS), 2, bands=BANDS)
    x = torch.randn(batch, len(BANDS), 128, 128)
    loss_fn = model_loss(name)  # the loss and arguments of the model's recipe
    step = autotune.TrainStep(lambda out, b: loss_fn(out, b["label"]),
                              lambda p: torch.optim.Adam(p, lr=1e-4),
                              {"label": torch.randint(0, 2, (batch, 128, 128))})
    cpu = torch.device("cpu")
    choice = autotune.choose(model, x, cpu, mode="training", step=step)
    seconds = autotune.time_settings(model, x, cpu, [choice.setting], mode="training",
                                     step=step)[choice.setting]
    return batch / seconds, choice.label


def bench_loader(root: Path, batch: int, workers: int, batches: int) -> float:
    raw = PatchDataset(root, "train")
    ds = PatchDataset(root, "train", norm=compute_norm_stats(raw, 8), augment=Augment())
    loader = make_loader(ds, batch, True, 0, workers)
    loader.sampler.set_epoch(0)
    it = iter(loader)
    next(it)  # worker start-up is paid once per run (persistent workers)
    t0 = time.perf_counter()
    n = 0
    for _ in range(batches):
        try:
            n += next(it)["image"].shape[0]
        except StopIteration:
            break
    return n / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--models", default="unet-s1,unet",
                   help="the step to compare with is the fastest of these")
    a = p.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; batch {a.batch}, "
          "128 px, 6 bands")
    rates = {}
    for name in a.models.split(","):
        rates[name], label = step_rate(name, a.batch)
        print(f"{name:<12} training step at auto ({label}): {rates[name]:.2f} patches/s")
    with tempfile.TemporaryDirectory() as tmp:
        root = synthetic_dataset(Path(tmp))
        lp = bench_loader(root, a.batch, a.workers, 14)
    fastest = max(rates.values())
    print(f"\ndata loader ({a.workers} worker, 128 px patches from GeoTIFF, normalise + "
          f"flip/rotate/blur): {lp:.1f} patches/s")
    print(f"fastest training step ({max(rates, key=rates.get)}): {fastest:.2f} patches/s")
    print(f"loader / fastest step = {lp / fastest:.1f}x (bar: >= 3x)")


if __name__ == "__main__":
    main()
