"""A synthetic scene whose label raster holds NLCD codes on 30 m cells (the coarse product)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from affine import Affine

#: NLCD codes drawn on the cells: water, the four developed classes, forest, pasture, grassland
CODES = (11, 21, 22, 23, 24, 41, 42, 81, 71)


def nlcd_scene(root: Path, size: int = 96, seed: int = 3):
    """``generate_scene`` with its label replaced by NLCD codes; (scene, the cells' codes)."""
    from gee_export.local.synthetic import generate_scene

    scene = generate_scene(root, width=size, height=size, fine_scale=2, progress=False)
    scene.label_fine.unlink()
    cells = -(-size * 10 // 30)
    codes = np.random.default_rng(seed).choice(CODES, size=(cells, cells)).astype(np.uint8)
    x0, y0 = scene.grid.transform.c, scene.grid.transform.f
    with rasterio.open(scene.label, "w", driver="GTiff", width=cells, height=cells, count=1,
                       dtype="uint8", nodata=None, crs=scene.grid.crs,
                       transform=Affine(30.0, 0, x0, 0, -30.0, y0)) as dst:
        dst.write(codes[None])
    return scene, codes
