"""Small patch datasets written in the documented format (docs/data-contract.md) with rasterio.

The scenes are learnable on purpose: impervious blobs are bright in the optical bands and
in the SAR bands, with noise, so a tiny model can overfit a few patches.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from scipy.ndimage import gaussian_filter

BANDS = ["B2", "B3", "B4", "B8", "VV", "VH"]


def write_patch_dataset(root: Path, n: int = 10, size: int = 32, bands=BANDS, seed: int = 0,
                        splits=None, fine_scale: int | None = None,
                        nan_patch: bool = False) -> Path:
    """Write ``n`` patches (image + label) plus index.jsonl and manifest.json under ``root``."""
    rng = np.random.default_rng(seed)
    splits = splits or (["train"] * (n - 4) + ["val"] * 2 + ["test"] * 2)
    root.mkdir(parents=True, exist_ok=True)
    month = "2024-06"
    (root / "patches" / month).mkdir(parents=True, exist_ok=True)
    records = []
    for i in range(n):
        field = gaussian_filter(rng.normal(size=(size, size)), 3)
        label = (field > np.quantile(field, 0.6)).astype(np.uint8)
        isa = label.astype(np.float32)
        img = np.empty((len(bands), size, size), np.float32)
        for b, name in enumerate(bands):
            if name.startswith("V"):
                img[b] = -15 + 8 * isa + rng.normal(0, 1.5, label.shape)
            else:
                img[b] = 0.05 + 0.1 * isa + 0.01 * b + rng.normal(0, 0.02, label.shape)
        if nan_patch and i == 0:
            img[:, :4, :4] = np.nan
        pid = f"r0_c{i}"
        transform = Affine(10, 0, 500000 + 320 * i, 0, -10, 3400000)
        prof = dict(driver="GTiff", width=size, height=size, crs="EPSG:32650",
                    transform=transform)
        rel_img = f"patches/{month}/{pid}.tif"
        rel_lab = f"patches/{month}/{pid}_label.tif"
        with rasterio.open(root / rel_img, "w", count=len(bands), dtype="float32",
                           nodata=float("nan"), **prof) as dst:
            dst.write(img)
            dst.descriptions = tuple(bands)
        with rasterio.open(root / rel_lab, "w", count=1, dtype="uint8", nodata=255,
                           **prof) as dst:
            dst.write(label[None])
        rec = {"id": pid, "month": month, "row": 0, "col": i, "bounds": [0, 0, 1, 1],
               "valid_fraction": 1.0, "isa_fraction": float(label.mean()), "split": splits[i],
               "image": rel_img, "label": rel_lab}
        if fine_scale:
            k = fine_scale
            fine = np.kron(label, np.ones((k, k), np.uint8))
            rel_fine = f"patches/{month}/{pid}_label_x{k}.tif"
            with rasterio.open(root / rel_fine, "w", driver="GTiff", width=size * k,
                               height=size * k, count=1, dtype="uint8", nodata=255,
                               crs="EPSG:32650",
                               transform=Affine(10 / k, 0, 500000 + 320 * i, 0, -10 / k,
                                                3400000)) as dst:
                dst.write(fine[None])
            rec["label_fine"] = rel_fine
        records.append(rec)
    (root / "index.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    manifest = {"format": "isamap-patches/1", "code_version": "test", "created": "2026-01-01",
                "backend": "synthetic", "region": "test", "grid": {}, "months": [month],
                "bands": list(bands),
                "label": {"scheme": "isa", "classes": ["pervious", "impervious"],
                          "nodata": 255, "fine_scale": fine_scale},
                "recipe": {}, "split": {"ratios": [8, 1, 1], "seed": 0},
                "min_valid_fraction": 0.5, "counts": {"patches": n}}
    (root / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return root


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """One intra-op thread per pytest worker: ``-n 2`` on 2 cores must not oversubscribe
    (OpenMP threads spinning against each other make small convolutions 50x slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def patch_root(tmp_path_factory) -> Path:
    """A 10-patch, 32 px, six-band (B2 B3 B4 B8 VV VH) dataset: 6 train, 2 val, 2 test."""
    return write_patch_dataset(tmp_path_factory.mktemp("patches") / "ds")
