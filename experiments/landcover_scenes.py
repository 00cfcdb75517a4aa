"""The land-cover experiment's folds: which scenes train and which pixels are held out.

Apart from :mod:`experiments.landcover` (its settings, arms and command) so that each stays
small. ``cfg`` is :class:`experiments.landcover_config.LandCoverConfig` (typed ``Any`` here).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from contract.label_schemes import SCHEMES
from core.errors import ConfigError, InputDataError
from experiments.chesapeake_nlcd import (
    composition_labels,
    patch_files,
    product_channels,
    read_patch,
)
from experiments.coarse_products import confusion_product, mode_product
from experiments.landcover_train import Scene, image_digest, quadrant_holdout
from experiments.naip import read_naip_tile

#: the training labels of label super-resolution (``Scene.soft``)
SOFT = "NLCD, developed as impervious fractions"


def nlcd_folds(cfg: Any) -> list[list[Scene]]:
    """The Chesapeake patches, once per fold of ``cfg.split`` (or ``test_dir``: one fold)."""
    files = patch_files(cfg.data_dir)
    if cfg.test_dir:
        test_files = patch_files(cfg.test_dir)
        train = [read_patch(p) for p in files]
        test = [read_patch(p) for p in test_files]
        seen = {image_digest(p.image) for p in train}
        overlap = [p.id for p in test if image_digest(p.image) in seen]
        if overlap:
            raise InputDataError(f"held-out patches {overlap[:3]} are also in --data-dir; give "
                                 "--test a folder of patches that are not trained on")
        return [[_scene(p, False) for p in train] + [_scene(p, True) for p in test]]
    if cfg.split == "quadrants":
        patches = [read_patch(p) for p in files]
        return [[_scene(p, quadrant_holdout(p.truth.shape, f + i)) for i, p in
                 enumerate(patches)] for f in range(4)]
    flat = [i for g in cfg.groups for i in g]
    bad = [i for i in flat if not 0 <= i < len(files)]
    if bad or len(set(flat)) != len(flat) or any(len(g) >= len(files) for g in cfg.groups):
        raise ConfigError(f"--groups takes groups of positions among the {len(files)} patches "
                          f"of {cfg.data_dir} (0-based, each once, every group leaving a patch "
                          f"to train on), got {[list(g) for g in cfg.groups]}")
    patches = [read_patch(p) for p in files]
    return [[_scene(p, i in g) for i, p in enumerate(patches)] for g in cfg.groups]


def _scene(patch, held_out: bool | np.ndarray) -> Scene:
    return Scene(patch.id, patch.image, patch.truth, {"NLCD": patch.product},
                 np.broadcast_to(held_out, patch.truth.shape).copy(),
                 {SOFT: composition_labels(patch)}, product_channels(patch))


def naip_folds(cfg: Any) -> list[list[Scene]]:
    """The GeoBench tiles, south-east quadrant held out, with both synthetic products."""
    paths = sorted(Path(cfg.naip_dir).glob("id_*.hdf5"))
    if not paths:
        raise InputDataError(f"no id_*.hdf5 NAIP tiles in {cfg.naip_dir}; pass --naip-dir")
    tiles = []
    for path in paths:
        bands, codes = read_naip_tile(path)
        tiles.append((path.stem, bands, SCHEMES["chesapeake"].apply(codes)))
    confused = confusion_product([t for _, _, t in tiles], cfg.product_oa, cfg.cell,
                                 cfg.product_region, cfg.product_seed)
    scenes = []
    for (name, bands, truth), product in zip(tiles, confused.maps, strict=True):
        half = -(-min(truth.shape) // 2 // cfg.cell) * cfg.cell  # 130 for 256 px, 10 px cells
        test = np.zeros(truth.shape, bool)
        test[half:, half:] = True
        scenes.append(Scene(name, bands, truth, {"confusion product": product,
                                                 "mode product": mode_product(truth, cfg.cell)},
                            test))
    return [scenes]
