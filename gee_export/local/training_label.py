"""Can a month's label train an impervious-surface model on this grid? Asked before the composite.

An export cuts training patches only where the label has classes, and a dataset teaches
impervious surface only where some of its pixels are impervious. A folder without a label
(a BigEarthNet pair, whose labels are per image) gave 0 patches tagged complete, and a label
read with a scheme that knows its codes but not its built class (Dynamic World's training
labels, built = 7, read as eo-learn's, artificial = 8) gave 46 patches of isa_fraction 0, both
with exit 0. Both are known from the label alone: it is read onto the grid with the run's
class mapping, block by block, stopping at the first impervious pixel (one block, usually),
before any scene is composited. :func:`check_training_label` is the one check, for the real
run and its dry run alike: no label is refused; no impervious pixel is warned about, since
held-out ground without built surface, or negatives beside other datasets, are exported so.
"""

from __future__ import annotations

import numpy as np
import rasterio

from contract.bands import LABEL_NODATA
from contract.grid import Grid
from core.errors import InputDataError
from gee_export.local.compositing import grid_blocks
from gee_export.local.labels import get_scheme, label_window
from gee_export.local.scenes import BandRef
from gee_export.local.warp import overlaps

READ_BLOCK = 1024


def check_training_label(ref: BandRef | None, grid: Grid, scheme: str) -> str | None:
    """Refuse a training export without a label; say when its label holds no impervious pixel.

    Args:
        ref: the month's label raster (None: none given or found among the scenes).
        grid: the export's grid; only the label's pixels on it count.
        scheme: the run's label scheme (a preset, ``landcover:<source>`` or ``map:...``).

    Returns:
        None, or the warning that the label holds no impervious pixel on the grid after
        mapping: most often a scheme or map that misreads its codes; for held-out ground
        without built surface, or patches of negatives beside other datasets, what is meant.

    Raises:
        InputDataError: no label, or one that does not reach the grid.
    """
    if ref is None:
        raise InputDataError(
            "no label raster given or found among the scenes (labels/label.tif): an export "
            "cuts training patches from labelled pixels and would write none. Put the area's "
            "pixel label at labels/label.tif in the --scenes folder (to map scenes without "
            "labels, use isamap-map --backend local)")
    if not overlaps(ref, grid):  # a map's stack does not ask: only an export needs its label
        with rasterio.open(ref.path) as src:
            crs, bounds = src.crs, tuple(src.bounds)
        raise InputDataError(
            f"label {ref.path} does not cover the grid: its bounds "
            f"({', '.join(f'{b:.12g}' for b in bounds)}, {crs}) lie outside the area "
            f"({', '.join(f'{b:.12g}' for b in grid.bounds)}, {grid.crs}), so every "
            "position would be unlabelled; give the label of these scenes "
            "(labels/label.tif in the --scenes folder), or an area it covers (--bbox)")
    mapping = get_scheme(scheme)
    impervious = mapping.classes.index("impervious")
    labelled = 0
    for window in grid_blocks(grid, READ_BLOCK):
        values = label_window(ref, grid, window, mapping)
        if np.any(values == impervious):
            return None
        labelled += int(np.count_nonzero(values != LABEL_NODATA))
    return (f"label {ref.path} holds no impervious pixel on the grid read with the {scheme!r} "
            f"label scheme: {labelled:,} labelled pixels, none impervious, so its patches teach "
            "no impervious surface (right for held-out ground without any, or negatives beside "
            "other datasets); otherwise check which codes the label gives built surfaces and "
            "say so with --label-scheme or --label-map CODE=1,...")
