"""A plain PyTorch training loop over an isamap patch dataset: the peer of ``isamap-train``.

What a user writes without the library: read the training and validation patches with
rasterio, normalise each band by the training split's mean and standard deviation, train the
same network (``training.models.create_model``) with Adam and cross-entropy in fp32 NCHW,
report the validation loss and pixel accuracy after each epoch, save the weights. No run
folder, no resuming, no checks, no runtime measuring, no calibration, no plots.
``benchmarks/bench_training.py --whole-process`` times it as a whole process beside
``isamap-train``.

Run: .venv/bin/python benchmarks/plain_train_loop.py DATA OUT [--model unet] [--epochs 4]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import rasterio
import torch

from training.models import create_model


def read_split(root: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, C, H, W) float32 and labels (N, H, W) int64 of one split."""
    rows = [json.loads(line) for line in (root / "index.jsonl").read_text().splitlines()]
    images, labels = [], []
    for row in rows:
        if row["split"] != split:
            continue
        with rasterio.open(root / row["image"]) as src:
            images.append(src.read().astype(np.float32))
        with rasterio.open(root / row["label"]) as src:
            labels.append(src.read(1).astype(np.int64))
    return torch.from_numpy(np.stack(images)), torch.from_numpy(np.stack(labels))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("data", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--model", default="unet")
    p.add_argument("--widths", default="8,16,32,64,128")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    a = p.parse_args(argv)
    torch.manual_seed(0)
    x, y = read_split(a.data, "train")
    vx, vy = read_split(a.data, "val")
    x = torch.nan_to_num(x)
    vx = torch.nan_to_num(vx)
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    std = x.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
    x, vx = (x - mean) / std, (vx - mean) / std
    classes = len(json.loads((a.data / "manifest.json").read_text())["label"]["classes"])
    model = create_model(a.model, x.shape[1], classes,
                         widths=[int(w) for w in a.widths.split(",")])
    optimizer = torch.optim.Adam(model.parameters(), lr=a.lr)
    loss_fn = torch.nn.CrossEntropyLoss(ignore_index=255)
    start = time.perf_counter()
    for epoch in range(a.epochs):
        model.train()
        for pick in torch.randperm(len(x)).split(a.batch):
            loss = loss_fn(model(x[pick]), y[pick])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            out = model(vx)
            valid = vy != 255
            accuracy = float((out.argmax(1) == vy)[valid].float().mean())
            print(f"epoch {epoch + 1}: val loss {float(loss_fn(out, vy)):.4f}, "
                  f"pixel accuracy {accuracy:.3f}")
    a.out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), a.out / "model.pt")
    print(f"{a.epochs} epochs in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
