"""The Chesapeake NAIP tiles as an isamap patch dataset (coarse image, fine label and image).

``python -m experiments.naip_patches --out naip_x8 [--scale 8]``
(``--naip`` defaults to ``geobench_chesapeake_naip`` in the sample data, ``--data-root``)

``experiments.srcompare --data chesapeake`` reads the tiles in memory; this writes the same
samples (:func:`experiments.naip.naip_samples`: block-mean coarse image, 1 m ISA label,
1 m bands as the reconstruction target) through the exporters' writer
(``contract.patch_writer.PatchWriter`` and ``commit_month``), so that the whole
command-line path — ``isamap-train --model srseg``, ``isamap-evaluate`` — runs on them
exactly as on an exported dataset. Each tile quadrant is one patch; quadrant 3 (south-east)
is the test split as in the comparison, quadrant 2 the validation split ``isamap-train``
needs, quadrants 0 and 1 train.

The tiles carry no coordinates, so they are laid side by side on a made-up local grid
(EPSG:32618, one tile every three patch columns): the geometry inside a tile is exact (the fine
rasters sit on ``grid.scaled(k)``), the positions between tiles mean nothing. Bands keep their
NAIP names (Red, Green, Blue, NearInfrared): the input is a block-averaged NAIP image, not
Sentinel-2. The coarse label is the majority of the valid fine labels of each coarse pixel
(255 where none is valid); srseg trains on ``label_fine``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from contract.bands import LABEL_NODATA, check_fine_scale
from contract.dataset import MANIFEST, DatasetSpec, commit_month
from contract.grid import Grid
from contract.patch_writer import PatchWriter
from core.commands import (
    add_logging_arguments,
    check_output_folder,
    configure_logging,
    run_command,
)
from core.errors import ConfigError
from core.parsers import CommandParser
from core.storage import LocalStore
from experiments.data import add_data_root_argument, existing_folder, sample_folder
from experiments.naip import NAIP_BANDS, NAIP_FOLDER, naip_samples

MONTH = "2013-06"  # NAIP over the Chesapeake Bay: 2013-2014 (no date is stored in the tiles)


def coarse_label(fine: np.ndarray, scale: int) -> np.ndarray:
    """Majority class of the valid fine pixels of every coarse pixel (255 when none is)."""
    h, w = fine.shape[0] // scale, fine.shape[1] // scale
    blocks = fine.reshape(h, scale, w, scale).transpose(0, 2, 1, 3).reshape(h, w, -1)
    valid = (blocks != LABEL_NODATA).sum(-1)
    isa = (blocks == 1).sum(-1)
    out = (2 * isa >= np.maximum(valid, 1)).astype(np.uint8)
    out[valid == 0] = LABEL_NODATA
    return out


def write_naip_patch_dataset(naip: str | Path, out: str | Path, scale: int = 8) -> Path:
    """Write the NAIP quadrants as a patch dataset at ``out`` (fine scale ``scale``)."""
    check_fine_scale(scale, required=True)
    root = Path(out)
    if (root / MANIFEST).exists():
        raise ConfigError(f"{root} already holds a dataset; choose another --out")
    samples = naip_samples(naip, scale, test_quadrant=3, val_quadrant=2)
    size = samples[0].image.shape[-1]
    if any(s.image.shape[1:] != (size, size) for s in samples):
        raise ConfigError("NAIP quadrants of different sizes cannot share one patch grid")
    tiles = len(samples) // 4
    # Each tile takes three patch columns: its two quadrant columns and an empty one, so no
    # two tiles touch (the split assignment is given per position, not by blocks).
    grid = Grid("EPSG:32618", 400000.0, 4300000.0, tiles * 3 * size, 2 * size, float(scale),
                size, size)
    positions = {(q // 2, 3 * t + q % 2): samples[4 * t + q]
                 for t in range(tiles) for q in range(4)}
    store = LocalStore(root)
    writer = PatchWriter(store, grid, NAIP_BANDS, MONTH, fine_scale=scale,
                         splits={pos: s.split for pos, s in positions.items()})
    records = [writer.write(row, col, s.image, coarse_label(s.label, scale), label_fine=s.label,
                            image_fine=s.image_fine)
               for (row, col), s in sorted(positions.items())]
    spec = DatasetSpec(grid, NAIP_BANDS, fine_scale=scale, backend="synthetic",
                       region="chesapeake-naip", min_valid_fraction=0.0,
                       recipe={"source": str(naip), "adapter": "experiments.naip_patches",
                               "coarse": f"{scale}x{scale} block mean of the 1 m bands"})
    commit_month(store, spec, MONTH, records, complete=True)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    p = CommandParser(  # exact option names only
        allow_abbrev=False, prog="python -m experiments.naip_patches", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--naip", help=f"folder of the GeoBench Chesapeake id_*.hdf5 tiles "
                   f"(default: {NAIP_FOLDER} in the --data-root)")
    add_data_root_argument(p)
    p.add_argument("--out", required=True)
    p.add_argument("--scale", type=int, default=8)
    add_logging_arguments(p)
    a = p.parse_args(argv)
    configure_logging(a.verbose, a.quiet, a.debug)

    def action() -> int:
        check_output_folder("--out", a.out)
        naip = existing_folder(a.naip or sample_folder(NAIP_FOLDER, a.data_root),
                               "GeoBench Chesapeake NAIP", "--naip")
        root = write_naip_patch_dataset(naip, a.out, a.scale)
        print(f"dataset: {root} (manifest.json, index.jsonl, patches/)")
        return 0

    return run_command("python -m experiments.naip_patches", action, debug=a.debug,
                       writes_to=[a.out])


if __name__ == "__main__":
    raise SystemExit(main())
