"""Regions labelled by a land-cover product, added to every fold of the leave-one-tile-out judge.

The Dynamic World sample holds three hand-labelled tiles, so each fold of
:mod:`experiments.builtup_loto` trains on two: one town on Java and one rural Ghana tile when
``ghana_a`` is held out. The TerraMesh sample (``terramesh_s1s2`` in the sample data root)
adds four more places: the Parana coast of Brazil, Tanzania, Araucania in Chile (23 % built)
and Hudson Bay under snow, each a 224 x 224 px cell labelled by the ESRI / Impact Observatory
10 m land-cover product (5 = built area). That product is a model's output, coarse where
built ground is: its cells never score a map here, they only widen what every fold trains on.
Each cell is exported as :mod:`experiments.terramesh` exports it (its S2 band names checked
against the pixels, ``--label-map 5=1,0=255,8=255,*=0``), with the judge's bands and patch
layout, and joins each fold's training set as ``tm_<cell>``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core.errors import ConfigError
from experiments import terramesh

#: the name of a cell's export in each fold's merged training set
PREFIX = "tm_"
#: the sample set the judge adds by default (``--terramesh``)
FOLDER = "terramesh_s1s2"


def terramesh_exports(folder: Path, out: Path, bands: Sequence[str],
                      budget: Any) -> dict[str, Path]:
    """Every cell in ``folder`` exported under ``out/<cell>``, by its training-set name.

    ``budget``: the judge's (:class:`experiments.builtup_commands.Budget`): its patch size,
    stride, split block and seed lay the cells' patches out as the tiles' are. An export
    already made is resumed by the export itself, not redone.

    Raises:
        InputDataError: ``folder`` holds no cell, or a cell lacks a file.
    """
    layout = terramesh.Budget(patch=budget.patch, stride=budget.stride,
                              split_block=budget.split_block, seed=budget.seed)
    exports = {}
    for cell in terramesh.find_cells(folder):
        scenes = terramesh.scene_folder(cell, out / "scenes")
        terramesh.export(cell, scenes, out / cell.name, bands, layout)
        exports[f"{PREFIX}{cell.name}"] = out / cell.name
    return exports


def extra_names(folder: Path | None) -> list[str]:
    """The training-set names of the cells in ``folder`` (none without one), sorted."""
    return sorted(f"{PREFIX}{c.name}" for c in terramesh.find_cells(folder)) if folder else []


def check_same_training(out: Path, names: list[str]) -> None:
    """Refuse an ``--out`` whose maps were trained with other added regions (one line).

    Its maps would be scored again, not retrained, as if trained on this run's sets.

    Raises:
        ConfigError: ``out/loto.json`` records other ``extra_training`` regions (none: a run
            from before they were added, or one given ``--terramesh none``).
    """
    report = out / "loto.json"
    if not report.is_file():
        return
    recorded = json.loads(report.read_text()).get("extra_training", [])
    if recorded != names:
        raise ConfigError(f"--out {out} holds maps trained with added regions "
                          f"{', '.join(recorded) or 'none'}, not {', '.join(names) or 'none'} "
                          "(--terramesh): give a new --out")
