"""The image/mask pairs of another project's patch folder, found by name.

Either layout: ``images/<name>.tif`` with ``masks/<name>.tif`` (or ``labels/``...), or
``<name>.tif`` beside ``<name>_mask.tif`` / ``<name>_label.tif``. What
``isamap-import-patches`` reads (:mod:`gee_export.imported.patches`), with their headers
(:func:`read_header`) and the rule that their CRS be metres (:func:`check_metres`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import rasterio

from contract.bands import find_band
from contract.grid import metre_crs_problem, utm_epsg
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


def check_metres(image: Path, head: dict[str, Any]) -> None:
    """Refuse patches whose CRS is not in metres (degrees), naming the UTM zone to use.

    A dataset's grid is metres (:func:`contract.grid.metre_crs_problem`, the rule ``--crs``
    follows); a model trained on degree pixels could map nothing isamap makes.
    """
    problem = metre_crs_problem(str(head["crs"]))
    if problem is None:
        return
    zone = "a UTM zone EPSG:326xx/327xx"
    if head["crs"].is_geographic:
        t = head["transform"]
        zone = f"EPSG:{utm_epsg(t.c + t.a * head['width'] / 2, t.f + t.e * head['height'] / 2)}"
    raise InputDataError(f"{image.name} is in {head['crs']}, which {problem}; a dataset's "
                         f"pixels are metres: reproject the patches to {zone} (e.g. gdalwarp "
                         f"-t_srs {zone.split(' ')[-1]} -tr 10 10 on the scene they were cut "
                         "from, then cut it again) and import them")


def read_header(path: Path) -> dict[str, Any]:
    """A GeoTIFF's size, transform, CRS, band count and band descriptions (no pixels)."""
    try:
        with rasterio.open(path) as ds:
            return {"width": ds.width, "height": ds.height, "transform": ds.transform,
                    "crs": ds.crs, "count": ds.count, "descriptions": ds.descriptions}
    except rasterio.errors.RasterioError as exc:
        raise InputDataError(f"{path} cannot be read as a GeoTIFF ({exc})") from None


def band_names_of(pair: PatchPair, head: dict[str, Any],
                  bands: Sequence[str] | None) -> tuple[str, ...]:
    """The bands of a pair's image as isamap names them (``B02``: ``B2``).

    ``bands`` (``--bands``), else the image's band descriptions; refused where neither names
    every band, or two names name one band.
    """
    if bands:
        if len(bands) != head["count"]:
            raise InputDataError(f"--bands names {len(bands)} bands, {pair.image.name} has "
                                 f"{head['count']}")
        return _canonical(bands, "--bands")
    if all(head["descriptions"]):
        return _canonical(head["descriptions"], f"{pair.image.name}'s band descriptions")
    raise InputDataError(f"{pair.image.name} does not name its bands; give them in file order "
                         "with --bands (e.g. --bands B2,B3,B4,B8)")


def _canonical(names: Sequence[str], given: str) -> tuple[str, ...]:
    """The bands as isamap names them (``B02``: ``B2``); two names of one band are refused."""
    canonical = tuple(spec.name if (spec := find_band(n)) else n for n in names)
    for name in dict.fromkeys(canonical):
        same = [n for n, c in zip(names, canonical, strict=True) if c == name]
        if len(same) > 1:
            raise InputDataError(f"band {name} is named {len(same)} times in {given} "
                                 f"({', '.join(same)}); give each of the images' bands its "
                                 "own name, in file order, with --bands")
    return canonical
