"""Fixtures for gee_export tests: small real GeoTIFF stacks on a known grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gee_export.geotiff import write_geotiff
from gee_export.grid import Grid
from gee_export.patches import StackPaths

BANDS = ("B2", "B3", "B4", "B8", "VV", "VH")


def make_stack(folder: Path, width: int = 448, height: int = 448, fine_scale: int | None = 2,
               seed: int = 0, month: str = "2019-06") -> tuple[StackPaths, dict[str, np.ndarray]]:
    """Write an image stack, label and fine label with a NaN area and an unlabelled area."""
    rng = np.random.default_rng(seed)
    grid = Grid("EPSG:32650", 238000.0, 3385000.0, width, height)
    image = rng.normal(0.1, 0.02, (len(BANDS), height, width)).astype(np.float32)
    image[:, : height // 4, : width // 4] = np.nan  # a no-data corner
    image[2, height // 2, width // 2] = np.inf  # a single non-finite pixel
    cells = rng.integers(0, 2, (height // 16 + 1, width // 16 + 1), dtype=np.uint8)
    label = np.kron(cells, np.ones((16, 16), np.uint8))[:height, :width].copy()
    label[-height // 5:, -width // 5:] = 255  # an unlabelled corner
    folder.mkdir(parents=True, exist_ok=True)
    write_geotiff(folder / "image.tif", image, grid.transform, grid.crs, float("nan"),
                  descriptions=list(BANDS))
    write_geotiff(folder / "label.tif", label, grid.transform, grid.crs, 255,
                  descriptions=["label"])
    arrays = {"image": image, "label": label}
    label_fine_path = None
    if fine_scale:
        fine = np.kron(label, np.ones((fine_scale, fine_scale), np.uint8))
        label_fine_path = str(folder / f"label_x{fine_scale}.tif")
        write_geotiff(label_fine_path, fine, grid.scaled(fine_scale).transform, grid.crs, 255,
                      descriptions=["label"])
        arrays["label_fine"] = fine
    stack = StackPaths(grid, BANDS, month, str(folder / "image.tif"), str(folder / "label.tif"),
                       label_fine=label_fine_path, fine_scale=fine_scale)
    return stack, arrays


@pytest.fixture
def small_stack(tmp_path) -> tuple[StackPaths, dict[str, np.ndarray]]:
    return make_stack(tmp_path / "stack")
