"""Panels: a map cut into blocks of tile columns, each mapped top to bottom before the next.

The sliding window (:mod:`inference.predict.sliding_window`) holds, per panel, an accumulator
of the rows still open and a strip's output, so nothing it holds grows with the raster's
width (nor with its height). A panel is a run of the lattice's tile columns
(:mod:`inference.predict.lattice`) read in blocks of whole batches (:func:`column_blocks`:
the batches stay the row's runs of ``batch_size`` from its first column, so cutting the row
changes no forward pass). Panel ``p`` gives the map the output columns from its first tile's
start to the next panel's (:attr:`Panel.cols`); its last tile reaches past that by the
overlap (the core blend: by half of it), and those contributions wait for the next panel in
*seams* (:mod:`inference.predict.writer`), which the next panel adds first in each tile
row. A pixel's contributions are thus summed in the lattice's row-major order whatever the
panels, so a map in panels has every bit of the map in one panel of the whole width.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from inference.predict.lattice import AxisTile


@dataclass(frozen=True)
class Panel:
    """One panel: its blocks of tile columns and the output columns its strips hold.

    Attributes:
        index: position from the left.
        blocks: indexes of its column blocks (each read at once) in :func:`panels`' blocks.
        cols: ``(first, stop)`` output columns the panel gives the map.
    """

    index: int
    blocks: tuple[int, ...]
    cols: tuple[int, int]

    @property
    def width(self) -> int:
        return self.cols[1] - self.cols[0]


def column_blocks(cols: list[AxisTile], batch_size: int, stride: int,
                  block_px: int | None) -> list[list[AxisTile]]:
    """The tile columns of a tile row in blocks read at once: whole batches, ~``block_px`` wide.

    A block holds a whole number of batches (the batches stay the row's runs of
    ``batch_size`` from its first column, :func:`inference.predict.lattice.batches`), so
    blocking changes no forward pass. ``block_px`` None: the whole row in one block.
    """
    per = len(cols) if block_px is None else batch_size * max(1, block_px // (stride *
                                                                              batch_size))
    return [cols[i:i + per] for i in range(0, len(cols), max(per, 1))]


def panels(blocks: Sequence[Sequence[AxisTile]], width: int, scale: int,
           whole: bool) -> list[Panel]:
    """The panels of a raster ``width`` input pixels wide read in ``blocks``.

    One panel per block; ``whole``: one panel of the whole width (every block), for work
    that needs whole rows (CLAHE, the keep rule's windows, a source fetched by whole rows).
    A block whose first tile starts left of the raster joins the panel before it (its
    columns would give the map none).
    """
    groups: list[list[int]] = []
    for i, block in enumerate(blocks):
        if groups and (whole or block[0].start <= 0):
            groups[-1].append(i)
        else:
            groups.append([i])
    bounds = [0, *(blocks[g[0]][0].start * scale for g in groups[1:]), width * scale]
    return [Panel(p, tuple(g), (bounds[p], bounds[p + 1])) for p, g in enumerate(groups)]
