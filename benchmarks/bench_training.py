"""Training and inference throughput per model at 128 px on CPU, eager fp32 vs
channels_last + bf16 autocast, and data-loader throughput next to the training step rate.

Run: .venv/bin/python benchmarks/bench_training.py [--batch 4] [--steps 3] [--models ...]
Absolute numbers depend on the (shared) machine; the ratios are measured side by side.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from pathlib import Path

import torch

from gee_export.contract.patches import patch_stack
from gee_export.local.stack import build_local_stack
from gee_export.local.synthetic import generate_scene
from training.data import Augment, PatchDataset, compute_norm_stats, make_loader
from training.losses import build_loss, default_loss_for, main_output
from training.models import create_model

BANDS = ["B2", "B3", "B4", "B8", "VV", "VH"]


def synthetic_dataset(folder: Path, size: int = 768) -> Path:
    """About 80 patches of 128 px through the package: synthetic scene, local stack, patches."""
    scene = generate_scene(folder / "scene", width=size, height=size)
    stack = build_local_stack(scene.root, scene.grid, scene.month, BANDS, label=scene.label,
                              speckle="boxcar", out_dir=folder / "stack", progress=False)
    patch_stack(stack, folder / "ds", min_valid_fraction=0.0, ratios=(1, 0, 0), progress=False)
    return folder / "ds"


def _mode(model, x, fast: bool):
    if fast:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
        ctx = torch.autocast("cpu", dtype=torch.bfloat16)
    else:
        model = model.to(memory_format=torch.contiguous_format)
        x = x.contiguous()
        ctx = contextlib.nullcontext()
    return model, x, ctx


def bench_model(name: str, batch: int, steps: int, fast: bool) -> tuple[float, float]:
    torch.manual_seed(0)
    model = create_model(name, len(BANDS), 2, bands=BANDS)
    x = torch.randn(batch, len(BANDS), 128, 128)
    y = torch.randint(0, 2, (batch, 128, 128))
    loss_fn = build_loss(default_loss_for(name))
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    model, x, ctx = _mode(model, x, fast)
    model.train()

    def step():
        with ctx:
            loss = loss_fn(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # warm-up (allocations, kernel selection)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    train_ps = batch * steps / (time.perf_counter() - t0)
    model.eval()
    with torch.no_grad(), ctx:
        main_output(model(x))
        t0 = time.perf_counter()
        for _ in range(steps):
            main_output(model(x))
        infer_ps = batch * steps / (time.perf_counter() - t0)
    return train_ps, infer_ps


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
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--models", default="unet,unet-s2,unet-s1,crofusenet,runetpp")
    p.add_argument("--threads", type=int, default=1,
                   help="torch intra-op threads (1 keeps a shared machine's timings stable)")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}; batch {a.batch}, 128 px, 6 bands")
    print(f"{'model':<12}{'train eager':>13}{'train cl+bf16':>15}{'ratio':>7}"
          f"{'infer eager':>13}{'infer cl+bf16':>15}{'ratio':>7}   (patches/s)")
    rates = {}
    for name in a.models.split(","):
        te, ie = bench_model(name, a.batch, a.steps, fast=False)
        tf, inf = bench_model(name, a.batch, a.steps, fast=True)
        rates[name] = max(te, tf)
        print(f"{name:<12}{te:>13.2f}{tf:>15.2f}{tf / te:>7.2f}{ie:>13.2f}{inf:>15.2f}"
              f"{inf / ie:>7.2f}")
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
