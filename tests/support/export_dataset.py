"""A synthetic month exported through the fake pixel server, and the checks of its dataset.

Shared by the export tests: the local backend's stack of a synthetic scene (the pixels the fake
server answers with), and :func:`check_dataset`, which reads every patch back and compares it
with the stack's window (image, label and the x2 fine label).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from rasterio.io import MemoryFile

from contract.bands import DEFAULT_IMAGE_BANDS
from contract.dataset import read_index, read_manifest
from contract.grid import patch_id
from contract.splits import assign_splits
from contract.stack import StackPaths
from core.storage import open_store
from gee_export.local.stack import build_local_stack
from gee_export.local.synthetic import generate_scene
from tests.support.killed_export import MONTH


def synthetic_stack(root: Path) -> StackPaths:
    """A 288 px synthetic scene's stack with a x2 fine label (boxcar speckle)."""
    scene = generate_scene(root / "scene", width=288, height=288, fine_scale=2)
    return build_local_stack(root / "scene", scene.grid, MONTH, fine_scale=2, speckle="boxcar",
                             out_dir=root / "stack", progress=False)


def stack_arrays(stack):
    with rasterio.open(stack.image) as src:
        names = list(src.descriptions)
        image = src.read([names.index(b) + 1 for b in DEFAULT_IMAGE_BANDS])
    with rasterio.open(stack.label) as src:
        label = src.read(1)
    with rasterio.open(stack.label_fine) as src:
        fine = src.read(1)
    return image, label, fine


def read_tif(store, rel):
    with MemoryFile(store.read_bytes(rel)) as mem, mem.open() as src:
        return src.read(), src.transform, src.descriptions


def expected_ids(stack, invalid: set[str]) -> set[str]:
    """Ids the index must hold: every position of the split layout but the invalid ones."""
    return {patch_id(r, c) for r, c in assign_splits(stack.grid)} - invalid


def check_dataset(root, stack, expect_ids=None):
    store = open_store(root)
    records = read_index(store)
    ids = [r["id"] for r in records]
    assert len(ids) == len(set(ids)), "duplicate index entries"
    if expect_ids is not None:
        assert set(ids) == expect_ids
    image, label, fine = stack_arrays(stack)
    grid = stack.grid
    for rec in records:
        w = grid.patch_window(rec["row"], rec["col"])
        data, transform, names = read_tif(store, rec["image"])
        assert names == DEFAULT_IMAGE_BANDS
        assert transform == grid.patch_transform(rec["row"], rec["col"])
        np.testing.assert_array_equal(data, image[:, w.row_off:w.row_end, w.col_off:w.col_end])
        lab, _, _ = read_tif(store, rec["label"])
        np.testing.assert_array_equal(lab[0], label[w.row_off:w.row_end, w.col_off:w.col_end])
        flab, ftransform, _ = read_tif(store, rec["label_fine"])
        fw = grid.scaled(2).patch_window(rec["row"], rec["col"])
        assert ftransform == grid.scaled(2).patch_transform(rec["row"], rec["col"])
        np.testing.assert_array_equal(flab[0], fine[fw.row_off:fw.row_end, fw.col_off:fw.col_end])
    manifest = read_manifest(store)
    assert manifest["complete"][MONTH] is True and manifest["backend"] == "ee"
    assert manifest["counts"]["patches"] == len(records)
    return records
