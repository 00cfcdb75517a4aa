"""Regions labelled by a land-cover product, added to every fold of the leave-one-tile-out judge.

The Dynamic World sample holds three hand-labelled tiles, so each fold of
:mod:`experiments.builtup_loto` trains on two: one town on Java and one rural Ghana tile when
``ghana_a`` is held out. The TerraMesh sample (``terramesh_s1s2`` in the sample data root)
adds four more places: the Parana coast of Brazil, Tanzania, Araucania in Chile (23 % built)
and Hudson Bay under snow, each a 224 x 224 px cell labelled by the ESRI / Impact Observatory
10 m land-cover product (5 = built area). That product is a model's output, coarse where
built ground is: its cells never score a map here, they only widen what every fold learns
from. Each cell is exported as :mod:`experiments.terramesh` exports it (its S2 band names
checked against the pixels, ``--label-map 5=1,0=255,8=255,*=0``), with the judge's bands and
patch layout, and joins each fold's dataset as ``tm_<cell>``, every split of it: its
validation patches join the fold's validation split, which picks the kept weights and fits
the temperature, beside the labelled tiles'.

What a run's folds trained on is in its merged datasets (``OUT/train/<fold>``, whose
manifests name their parts, written before the first training): a run started again in the
same ``--out`` with other added regions is refused (:func:`check_same_training`), finished or
cut short, instead of scoring maps trained on other sets.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from contract.dataset import MANIFEST, read_manifest
from core.errors import ConfigError, InputDataError
from experiments import terramesh
from experiments.data import sample_folder

#: the name of a cell's export in each fold's merged training set
PREFIX = "tm_"
#: the sample set the judge adds by default (``--terramesh``)
FOLDER = "terramesh_s1s2"


def terramesh_folder(given: str | None, data_root: str | os.PathLike | None) -> Path | None:
    """The folder ``--terramesh`` names (None for ``none``; default: the sample set's).

    Raises:
        InputDataError: the folder does not exist.
    """
    if given == "none":
        return None
    folder = Path(given) if given else sample_folder(FOLDER, data_root)
    if not folder.is_dir():
        raise InputDataError(f"the TerraMesh folder {folder} does not exist; pass --terramesh "
                             "DIR, or --terramesh none to train each fold on the labelled "
                             "tiles alone")
    return folder


def find_cells(folder: Path | None) -> list[terramesh.Cell]:
    """The cells in ``folder`` (none without one)."""
    return terramesh.find_cells(folder) if folder else []


def extra_names(cells: Sequence[terramesh.Cell]) -> list[str]:
    """The training-set names of ``cells``, sorted."""
    return sorted(f"{PREFIX}{c.name}" for c in cells)


def terramesh_exports(cells: Sequence[terramesh.Cell], out: Path, bands: Sequence[str],
                      budget: Any) -> dict[str, Path]:
    """Every cell exported under ``out/<cell>``, by its training-set name.

    ``budget``: the judge's (:class:`experiments.builtup_commands.Budget`): its patch size,
    stride, split block and seed lay the cells' patches out as the tiles' are. An export
    already made is resumed by the export itself, not redone.
    """
    layout = terramesh.Budget(patch=budget.patch, stride=budget.stride,
                              split_block=budget.split_block, seed=budget.seed)
    exports = {}
    for cell in cells:
        scenes = terramesh.scene_folder(cell, out / "scenes")
        terramesh.export(cell, scenes, out / cell.name, bands, layout)
        exports[f"{PREFIX}{cell.name}"] = out / cell.name
    return exports


def trained_with(out: Path) -> list[str] | None:
    """The added regions the maps in ``out`` were trained with; None where it holds no map.

    Read from the parts its merged datasets name (every fold's, made before its first
    training); maps without a merged dataset beside them had none.
    """
    if not (out / "runs").is_dir():
        return None
    parts = merged_parts(out).values()
    return sorted({name for names in parts for name in names if name.startswith(PREFIX)})


def merged_parts(out: Path) -> dict[str, list[str]]:
    """Each fold's merged dataset's parts (``merged_from``), by the tile the fold holds out."""
    return {path.parent.name: list(read_manifest(path.parent).get("merged_from", []))
            for path in sorted((out / "train").glob(f"*/{MANIFEST}"))}


def check_same_training(out: Path, names: list[str]) -> None:
    """Refuse an ``--out`` whose maps were trained with other added regions (one line).

    Its maps would be scored again, not retrained, as if trained on this run's sets.

    Raises:
        ConfigError: ``out`` holds maps trained with other added regions (none: maps from
            before the regions were added, or of a run given ``--terramesh none``).
    """
    recorded = trained_with(out)
    if recorded is not None and recorded != names:
        raise ConfigError(f"--out {out} holds maps trained with added regions "
                          f"{', '.join(recorded) or 'none'}, not {', '.join(names) or 'none'} "
                          "(--terramesh): give a new --out")


def check_fold_parts(out: Path, tiles: Mapping[str, Sequence[str]]) -> None:
    """Refuse an ``--out`` whose maps were trained on other labelled tiles (one line).

    ``tiles``: per fold (the tile it holds out), the exports it trains on besides the added
    regions. A fold's merged dataset names its parts (``merged_from``); maps trained on
    others (another ``--tiles`` or ``--train``) would be scored again as if trained on these.

    Raises:
        ConfigError: a fold's merged dataset beside maps names other tiles.
    """
    if not (out / "runs").is_dir():
        return
    merged = merged_parts(out)
    for fold, expected in tiles.items():
        if fold not in merged:
            continue
        parts = [p for p in merged[fold] if not p.startswith(PREFIX)]
        if sorted(parts) != sorted(expected):
            raise ConfigError(f"--out {out} holds maps of the fold holding out {fold} "
                              f"trained on {', '.join(sorted(parts))}, not "
                              f"{', '.join(sorted(expected))} (--tiles, --train): give a new "
                              "--out")
