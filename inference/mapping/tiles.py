"""A map as independent tiles: plan, fetch, predict and mosaic one tile at a time.

The streaming predictor (:mod:`inference.predict.raster`) maps a region in one process, row after
row. A distributed runner (Beam, a batch of cloud workers) needs the same map as independent units
of work instead; these functions are those units, each pure apart from its inputs:

1. :func:`plan_tiles`: the tiles of the map's lattice (:class:`inference.predict.lattice.Lattice`):
   the very windows the streaming predictor cuts, each with the core of output pixels it owns;
2. :func:`fetch_tile`: one tile's input bands with ``computePixels`` through the Earth Engine
   session, edge-padded where a grid smaller than a tile ends, as the streaming reader pads;
3. :func:`predict_tiles`: one forward pass over the tiles, keeping their cores, encoded exactly
   like the streaming predictor's outputs (uint8 classes, probability x250, 255 nodata);
4. :func:`write_tile` / :func:`mosaic`: the cores as small GeoTIFFs, then one VRT over them and
   the two COGs (:func:`inference.cog.maps.strips_cog`).

With the ``core`` blend the streaming predictor also keeps each tile's core only, so the two
give the same map for every model, also for one whose output depends on the whole tile (global
pooling): every pixel comes from the same forward pass over the same input.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio

from contract.bands import own_month
from contract.grid import Grid, Window
from contract.vrt import Piece
from core.errors import ConfigError
from core.storage import atomic_path, files
from gee_export.ee.export import fetch_window
from inference.cog import maps
from inference.cog.maps import NODATA, OutputInfo
from inference.predict.blending import Accumulator, invalid_mask
from inference.predict.lattice import Lattice, LatticeTile, grid_offset
from inference.predict.runtime import TilePredictor
from inference.predict.sliding_window import forward

#: a map's unit of work: one tile of its lattice
MapTile = LatticeTile


def plan_tiles(grid: Grid, lattice: Lattice) -> list[MapTile]:
    """The lattice's tiles on ``grid``: windows as the streaming predictor cuts them.

    Every pixel of the grid belongs to exactly one core. Windows are ``tile`` px square, on
    the lattice anchored to the CRS grid (:mod:`inference.predict.lattice`), and hang over
    the grid's edges.
    """
    if lattice.blend != "core":
        raise ConfigError(f"independent tiles keep their cores only: the lattice's blend must "
                          f"be core, got {lattice.blend}")
    return lattice.tiles(grid.height, grid.width, grid_offset(grid.transform))


def fetch_tile(session: Any, image: Any, grid: Grid, tile: MapTile,
               bands: Sequence[str]) -> np.ndarray:
    """``(bands, tile, tile)`` float32 of the tile's window (NaN = nodata).

    The whole window, past the grid's edges too: Earth Engine computes the pixels around the
    region, as the streaming predictor's fetched source asks for them
    (:class:`inference.mapping.fetched.FetchedSource`), so the model sees the same input.
    """
    return fetch_window(session, image, grid, tile.window, tuple(bands))[0]


def predict_tiles(predictor: TilePredictor, data: Sequence[np.ndarray],
                  tiles: Sequence[MapTile], isa_class: int = 1, batch_size: int = 1, *,
                  bands: Sequence[str]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Classes and ISA probability (uint8, 255 nodata) of the tiles' cores, at the model's scale.

    Several tiles go in one forward pass (one batch, in this order); ``data``: :func:`fetch_tile`'s
    arrays of the tiles' windows, ``isa_class``: index of the impervious class.

    The batches of :func:`inference.predict.lattice.batches` are the streaming predictor's own,
    and ``batch_size`` its batch size (a lone tile runs beside a copy of itself when it is
    above one, :func:`inference.predict.sliding_window.forward`), so their maps are equal
    bit for bit. ``bands`` (required, so no caller judges a series stack by every band): the
    data's band names, of which the month's own judge a pixel nodata
    (:func:`contract.bands.own_month`, as the streaming predictor judges it).
    """
    own = own_month(bands)
    for d, tile in zip(data, tiles, strict=True):
        expected = (predictor.channels, tile.window.height, tile.window.width)
        if d.shape != expected:
            raise ConfigError(f"tile {tile.name} data has shape {d.shape}, expected {expected}")
    probs = forward(predictor, list(data), batch_size)
    return [_core(predictor.scale, p, d, tile, isa_class, own)
            for p, d, tile in zip(probs, data, tiles, strict=True)]


def _core(s: int, probs: np.ndarray, data: np.ndarray, tile: MapTile, isa_class: int,
          own: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """The tile's core of its probabilities, encoded with its nodata."""
    r0, c0 = tile.core.row_off - tile.window.row_off, tile.core.col_off - tile.window.col_off
    h, w = tile.core.height, tile.core.width
    core = probs[:, r0 * s:(r0 + h) * s, c0 * s:(c0 + w) * s]
    invalid = invalid_mask(data[:, r0:r0 + h, c0:c0 + w], [None] * data.shape[0], own=own)
    if s > 1:
        invalid = invalid.repeat(s, axis=0).repeat(s, axis=1)
    acc = Accumulator(core.shape[0], h * s, w * s, 0)
    acc.add(core, None, 0, 0)
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
           info: OutputInfo, work: str | os.PathLike, *, lattice: Mapping[str, str],
           scale: int = 1, compress: maps.Compression = "DEFLATE",
           runtime: Mapping[str, str] | None = None) -> tuple[str, str]:
    """The class and probability COGs (``<out_prefix>_class.tif``/``_prob.tif``) of the tiles.

    Args:
        parts: ``(path, tile)`` of every tile written by :func:`write_tile` (missing tiles are
            nodata in the COGs).
        grid: the map's grid.
        out_prefix: local or gs:// prefix.
        info: model, bands, classes and month recorded in the COGs.
        work: local folder for the VRTs (the tile files are referenced by absolute path).
        lattice: the lattice's tags (:meth:`inference.predict.lattice.Lattice.tags`).
        scale: the model's output scale.
        compress: COG compression.
        runtime: how the tiles were predicted (``runtime*`` tags), when the caller knows.
    """
    out = grid.scaled(scale) if scale > 1 else grid
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    pieces = [Piece(str(Path(p).resolve()), t.core.row_off * scale, t.core.col_off * scale,
                    t.core.height * scale, t.core.width * scale, relative=False)
              for p, t in parts]
    tags = {**maps.output_tags(info, "tiles", lattice, scale), **(runtime or {})}
    paths = []
    outputs: tuple[tuple[maps.Kind, int, str], ...] = (("class", 1, "class"),
                                                      ("probability", 2, "prob"))
    for kind, band, suffix in outputs:
        target = f"{out_prefix}_{suffix}.tif"
        files.put_output(functools.partial(
            maps.strips_cog, pieces, band, kind=kind, tags=tags, width=out.width,
            height=out.height, transform=out.transform, crs=out.crs, compress=compress),
            target, work)
        paths.append(target)
    return paths[0], paths[1]
