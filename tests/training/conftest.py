"""Small patch datasets written by the real patch writer (docs/data-contract.md).

``gee_export.patches.PatchWriter`` writes the files and ``gee_export.dataset.commit_month`` the
index and manifest, so the training tests read exactly what the exporters produce.

The scenes are learnable on purpose: impervious blobs are bright in the optical bands and
in the SAR bands, with noise, so a tiny model can overfit a few patches.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from gee_export.dataset import DatasetSpec, commit_month
from gee_export.grid import Grid
from gee_export.patches import PatchWriter
from gee_export.storage import LocalStore

BANDS = ["B2", "B3", "B4", "B8", "VV", "VH"]


def write_patch_dataset(root: Path, n: int = 10, size: int = 32, bands=BANDS, seed: int = 0,
                        splits=None, fine_scale: int | None = None,
                        nan_patch: bool = False) -> Path:
    """Write ``n`` patches (one grid row of ``size`` px patches) as a patch dataset at ``root``.

    ``splits`` gives each patch's split in column order (default: all but four train, then two
    val, two test); ``fine_scale`` adds the label at that factor (block-replicated).
    """
    rng = np.random.default_rng(seed)
    splits = splits or (["train"] * (n - 4) + ["val"] * 2 + ["test"] * 2)
    month = "2024-06"
    grid = Grid("EPSG:32650", 500000.0, 3400000.0, size * n, size, 10.0, size, size)
    store = LocalStore(root)
    writer = PatchWriter(store, grid, bands, month, fine_scale=fine_scale,
                         splits={(0, i): split for i, split in enumerate(splits)})
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
        fine = np.kron(label, np.ones((fine_scale, fine_scale), np.uint8)) if fine_scale else None
        records.append(writer.write(0, i, img, label, label_fine=fine))
    spec = DatasetSpec(grid, tuple(bands), fine_scale=fine_scale, backend="synthetic",
                       region="test", min_valid_fraction=0.5)
    commit_month(store, spec, month, records, complete=True)
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
