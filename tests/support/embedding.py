"""A stack of the Satellite Embedding's native values: what the fake server serves for it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from contract.bands import EMBEDDING, LABEL_NODATA
from contract.geotiff import write_geotiff
from contract.grid import Grid
from contract.stack import StackPaths


def unit_vectors(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """``(64, H, W)`` random unit vectors: what the embedding's native values are."""
    v = np.random.default_rng(seed).normal(size=(64, *shape))
    return (v / np.linalg.norm(v, axis=0)).astype(np.float32)


def embedding_stack(folder: Path, grid: Grid, month: str, seed: int = 3
                    ) -> tuple[StackPaths, np.ndarray]:
    """A stack of unit vectors on ``grid`` (its 5 x 5 north-west corner masked), and them.

    The label is 1 where the first axis is positive: learnable from the embedding alone.
    """
    native = unit_vectors((grid.height, grid.width), seed)
    native[:, :5, :5] = np.nan  # outside the layer: masked
    image = write_geotiff(folder / "image.tif", native, grid.transform, grid.crs, np.nan,
                          descriptions=EMBEDDING)
    label = np.where(native[0] > 0, 1, 0).astype(np.uint8)
    label[:5, :5] = LABEL_NODATA
    label_path = write_geotiff(folder / "label.tif", label, grid.transform, grid.crs,
                               LABEL_NODATA)
    return StackPaths(grid, EMBEDDING, month, str(image), str(label_path)), native
