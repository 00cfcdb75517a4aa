"""The image/mask pairs of another project's patch folder, found by name.

Either layout: ``images/<name>.tif`` with ``masks/<name>.tif`` (or ``labels/``...), or
``<name>.tif`` beside ``<name>_mask.tif`` / ``<name>_label.tif``. What
``isamap-import-patches`` reads (:mod:`contract.foreign_patches`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from core.errors import InputDataError

MASK_SUFFIXES = ("_mask", "_label", "_labels", "_gt")
MASK_FOLDERS = ("masks", "labels", "mask", "label", "gt")
IMAGE_SUFFIXES = (".tif", ".tiff")


@dataclass(frozen=True)
class PatchPair:
    """One patch of the source: its image and its mask."""

    name: str
    image: Path
    mask: Path


def find_pairs(src: str | os.PathLike[str]) -> list[PatchPair]:
    """The image/mask pairs of ``src`` (either layout of the module docstring), by name.

    Raises:
        InputDataError: no pair, or an image without its mask.
    """
    root = Path(src)
    if not root.is_dir():
        raise InputDataError(f"{root} is not a folder; give the folder of image/mask pairs")
    images_dir = root / "images"
    pairs, orphans = [], []
    if images_dir.is_dir():
        masks_dir = next((root / d for d in MASK_FOLDERS if (root / d).is_dir()), None)
        if masks_dir is None:
            raise InputDataError(f"{root} has images/ but no {'/, '.join(MASK_FOLDERS)}/ "
                                 "folder of masks beside it")
        for image in sorted(p for p in images_dir.iterdir() if p.suffix in IMAGE_SUFFIXES):
            mask = next((masks_dir / f"{image.stem}{s}{image.suffix}"
                         for s in ("", *MASK_SUFFIXES)
                         if (masks_dir / f"{image.stem}{s}{image.suffix}").exists()), None)
            if mask is None:
                orphans.append(image.name)
            else:
                pairs.append(PatchPair(image.stem, image, mask))
    else:
        files = sorted(p for p in root.iterdir() if p.suffix in IMAGE_SUFFIXES)
        names = {p.name for p in files}
        for image in files:
            if any(image.stem.endswith(s) for s in MASK_SUFFIXES):
                continue
            mask = next((image.with_name(f"{image.stem}{s}{image.suffix}")
                         for s in MASK_SUFFIXES if f"{image.stem}{s}{image.suffix}" in names),
                        None)
            if mask is None:
                orphans.append(image.name)
            else:
                pairs.append(PatchPair(image.stem, image, mask))
    if orphans:
        raise InputDataError(f"{len(orphans)} image(s) in {root} have no mask (e.g. "
                             f"{orphans[0]}); name masks <name>_mask.tif beside the images, or "
                             "put them in masks/ under the images' names")
    if not pairs:
        raise InputDataError(f"no image/mask GeoTIFF pairs in {root}: expected images/ and "
                             "masks/ with the same names, or <name>.tif beside <name>_mask.tif")
    return pairs
