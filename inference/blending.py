"""Tile placement and blending weights for sliding-window inference (pure array maths).

Tiles are placed evenly along each axis so that consecutive tiles overlap by at least the
requested overlap and the last tile ends exactly on the raster edge (no tile hangs over the edge
unless the raster is smaller than one tile). Each tile's prediction is weighted by a separable
tapered-cosine (Tukey) window whose flanks are half Hann windows as long as the overlap: two
flanks that overlap by exactly that length sum to one, so the weights form a partition of unity
and a model with no edge effects is reproduced exactly, while edge effects of a real network
(zero padding, missing context) fade out smoothly instead of leaving a seam. Flanks that lie on
the raster border are left at one, because no neighbouring tile exists there to blend with.
"""

from __future__ import annotations

import functools
import math
from typing import Literal

import numpy as np

from gee_export.core.errors import ConfigError

Blend = Literal["cosine", "uniform"]


def tile_starts(extent: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of the tiles covering ``[0, extent)`` along one axis.

    Args:
        extent: raster size along the axis, in pixels.
        tile: tile size in pixels.
        overlap: minimum overlap between consecutive tiles, in pixels.

    Returns:
        Increasing offsets; ``[0]`` when the raster is not larger than one tile (the tile is
        then padded). Otherwise the first is 0, the last is ``extent - tile`` and the spacing
        is at most ``tile - overlap``, so every pair of neighbours overlaps by >= ``overlap``.
    """
    if extent <= 0:
        raise ConfigError(f"raster extent must be positive, got {extent}")
    check_tiling(tile, overlap)
    if extent <= tile:
        return [0]
    stride = tile - overlap
    gaps = math.ceil((extent - tile) / stride)
    return [round(i * (extent - tile) / gaps) for i in range(gaps + 1)]


def check_tiling(tile: int, overlap: int) -> None:
    """Raise ConfigError unless ``tile`` and ``overlap`` describe a usable tiling."""
    if tile < 8:
        raise ConfigError(f"tile size must be at least 8 pixels, got {tile}")
    if not 0 <= overlap <= tile // 2:
        raise ConfigError(
            f"overlap must be between 0 and half the tile size ({tile // 2}), got {overlap}; "
            "larger overlaps waste compute without improving the blend"
        )


def taper(length: int, flank: int, left: bool, right: bool, blend: Blend = "cosine") -> np.ndarray:
    """1-D weights of one tile: ones, with half-Hann flanks of ``flank`` pixels where asked.

    Sample ``i`` of a rising flank is ``sin²(π/2 · (i + 0.5) / flank)``: strictly positive (so
    every pixel keeps some weight) and the mirror image of the falling flank of the neighbour,
    which makes overlapping flanks sum to exactly one.
    """
    weights = np.ones(length, dtype=np.float32)
    if blend == "uniform" or flank <= 0:
        return weights
    flank = min(flank, length // 2)
    rise = np.sin(0.5 * np.pi * (np.arange(flank, dtype=np.float64) + 0.5) / flank) ** 2
    if left:
        weights[:flank] = rise
    if right:
        weights[length - flank:] = rise[::-1]
    return weights


@functools.lru_cache(maxsize=32)
def tile_weights(tile: int, flank: int, *, top: bool, bottom: bool, left: bool, right: bool,
                 blend: Blend = "cosine") -> np.ndarray:
    """2-D weights ``(tile, tile)``: the outer product of the two axis tapers.

    A side is tapered only where a neighbouring tile exists on it (``top`` etc.). The result
    is cached (there are at most 16 variants per run) and must not be modified.
    """
    weights = np.outer(taper(tile, flank, top, bottom, blend),
                       taper(tile, flank, left, right, blend))
    weights.setflags(write=False)
    return weights


def strip_bounds(height: int, strip: int) -> list[tuple[int, int]]:
    """``(row0, row1)`` of the output strips written one by one (the last may be shorter)."""
    return [(r, min(r + strip, height)) for r in range(0, height, strip)]
