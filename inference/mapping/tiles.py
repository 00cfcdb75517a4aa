"""A map as independent tiles: plan, fetch, predict and mosaic one tile at a time.

The streaming predictor (:mod:`inference.predict.raster`) maps a region in one process, row after
row. A distributed runner (Beam, a batch of cloud workers) needs the same map as independent units
of work instead; these functions are those units, each pure apart from its inputs:

1. :func:`plan_tiles`: the map's grid cut into cores (the output pixels a tile owns) with a halo
   of context around each (what is fetched and predicted);
2. :func:`fetch_tile`: one tile's input bands with ``computePixels`` through the Earth Engine
   session (any window, also past the grid's edge: NaN there);
3. :func:`predict_tile`: one forward pass over core + halo, keeping the core, encoded exactly
   like the streaming predictor's outputs (uint8 classes, probability x250, 255 nodata);
4. :func:`write_tile` / :func:`mosaic`: the cores as small GeoTIFFs, then one VRT over them and
   the two COGs (:func:`inference.predict.cog.write_cog`).

The halo replaces the streaming predictor's blending: a core pixel sees at least ``halo`` pixels
of real context on every side, so tile edges do not show for a halo of the network's receptive
field (64 px is plenty for the models here). Per-pixel models give the streaming result exactly.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio

from gee_export.contract.grid import Grid, Window
from gee_export.contract.vrt import Piece, VrtBand, mosaic_vrt
from gee_export.core.errors import ConfigError
from gee_export.core.storage import atomic_path, files
from inference.predict import cog
from inference.predict.blending import Accumulator, invalid_mask
from inference.predict.cog import NODATA, OutputInfo
from inference.predict.runtime import TilePredictor


@dataclass(frozen=True)
class MapTile:
    """One unit of work: the output pixels it owns and the window it reads around them."""

    row: int
    col: int
    core: Window  # on the map's grid
    padded: Window  # core grown by the halo (may reach past the grid's edge)

    @property
    def name(self) -> str:
        return f"tile_r{self.row:04d}_c{self.col:04d}"


def plan_tiles(grid: Grid, core: int = 448, halo: int = 32) -> list[MapTile]:
    """Cores of ``core`` px with ``halo`` px of context around each.

    Cores at the grid's right and bottom edges are smaller; every pixel of the grid belongs to
    exactly one core. Every padded window is ``core + 2 * halo`` px square.
    """
    if core < 16 or halo < 0:
        raise ConfigError(f"tile core must be >= 16 px and halo >= 0, got {core}, {halo}")
    tiles = []
    for i, r in enumerate(range(0, grid.height, core)):
        for j, c in enumerate(range(0, grid.width, core)):
            window = Window(row_off=r, col_off=c, height=min(core, grid.height - r),
                            width=min(core, grid.width - c))
            # the padded window keeps the full size at the grid's edges (the part past the
            # edge arrives as nodata), so every forward pass sees the same shape: models whose
            # sizes must divide by their stride (U-Net: 16) take edge tiles too
            full = Window(row_off=r, col_off=c, height=core, width=core)
            tiles.append(MapTile(i, j, window, full.padded(halo)))
    return tiles


def fetch_tile(session: Any, image: Any, grid: Grid, tile: MapTile,
               bands: Sequence[str]) -> np.ndarray:
    """``(bands, h, w)`` float32 of the tile's padded window (NaN = nodata)."""
    from gee_export.ee.export import fetch_window

    return fetch_window(session, image, grid, tile.padded, tuple(bands))[0]


def predict_tile(predictor: TilePredictor, data: np.ndarray, tile: MapTile,
                 isa_class: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Classes and ISA probability (uint8, 255 nodata) of the tile's core, at the model's scale.

    Args:
        predictor: the model with its normalisation.
        data: :func:`fetch_tile`'s array of the padded window.
        tile: the tile.
        isa_class: index of the impervious class.
    """
    s = predictor.scale
    expected = (predictor.channels, tile.padded.height, tile.padded.width)
    if data.shape != expected:
        raise ConfigError(f"tile {tile.name} data has shape {data.shape}, expected {expected}")
    probs = predictor(data[None], compact=True)[0]
    r0, c0 = tile.core.row_off - tile.padded.row_off, tile.core.col_off - tile.padded.col_off
    h, w = tile.core.height, tile.core.width
    core = probs[:, r0 * s:(r0 + h) * s, c0 * s:(c0 + w) * s]
    invalid = invalid_mask(data[:, r0:r0 + h, c0:c0 + w], [None] * data.shape[0])
    if s > 1:
        invalid = invalid.repeat(s, axis=0).repeat(s, axis=1)
    acc = Accumulator(core.shape[0], h * s, w * s, 0)
    acc.add(core, np.ones((h * s, w * s), np.float32), 0, 0)
    acc.mark_invalid(invalid, 0)
    return acc.take(h * s, isa_class)


def write_tile(path: str | os.PathLike, classes: np.ndarray, prob: np.ndarray, grid: Grid,
               tile: MapTile, scale: int = 1) -> Path:
    """The core's two bands (classes, probability) as a small GeoTIFF, atomically."""
    out = grid.scaled(scale) if scale > 1 else grid
    transform = out.window_transform(Window(row_off=tile.core.row_off * scale,
                                            col_off=tile.core.col_off * scale,
                                            height=classes.shape[0], width=classes.shape[1]))
    profile = {"driver": "GTiff", "width": classes.shape[1], "height": classes.shape[0],
               "count": 2, "dtype": "uint8", "crs": grid.crs, "transform": transform,
               "nodata": NODATA, "compress": "ZSTD"}
    with atomic_path(path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        dst.write(classes, 1)
        dst.write(prob, 2)
    return Path(path)


def mosaic(parts: Sequence[tuple[str | os.PathLike, MapTile]], grid: Grid, out_prefix: str,
           info: OutputInfo, work: str | os.PathLike, *, scale: int = 1,
           compress: cog.Compression = "DEFLATE") -> tuple[str, str]:
    """The class and probability COGs (``<out_prefix>_class.tif``/``_prob.tif``) of the tiles.

    Args:
        parts: ``(path, tile)`` of every tile written by :func:`write_tile` (missing tiles are
            nodata in the COGs).
        grid: the map's grid.
        out_prefix: local or gs:// prefix.
        info: model, bands, classes and month recorded in the COGs.
        work: local folder for the VRTs (the tile files are referenced by absolute path).
        scale: the model's output scale.
        compress: COG compression.
    """
    out = grid.scaled(scale) if scale > 1 else grid
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    pieces = [Piece(str(Path(p).resolve()), t.core.row_off * scale, t.core.col_off * scale,
                    t.core.height * scale, t.core.width * scale, relative=False)
              for p, t in parts]
    tags = cog.output_tags(info, "tiles", 0, 0, scale)
    paths = []
    for kind, band, suffix in (("class", 1, "class"), ("probability", 2, "prob")):
        vrt = work / f"{kind}.vrt"
        vrt.write_text(mosaic_vrt(out.width, out.height, out.transform, out.crs,
                                  [VrtBand(band, "uint8", NODATA)], pieces))
        target = f"{out_prefix}_{suffix}.tif"
        files.put_output(lambda local, v=vrt, k=kind: cog.write_cog(v, local, k, tags,
                                                                   compress=compress),
                         target, work)
        paths.append(target)
    return paths[0], paths[1]
