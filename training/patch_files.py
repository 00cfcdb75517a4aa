"""A patch dataset's files: its manifest, class names, rasters, patch ids and scenes.

Reading goes through the dataset contract's readers (``contract.dataset``) and so the one
storage seam (``core.storage``): local folders and ``gs://`` datasets behave alike and retries
live in one place. What the rasters hold is read by :class:`training.data.PatchDataset`.

May import: ``core``, ``contract``.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import rasterio

from contract import dataset as _dataset
from core.errors import InputDataError
from core.storage import open_store
from core.storage.gdal_auth import gdal_env


def read_manifest(root: str | os.PathLike) -> dict:
    """The dataset manifest, refused when it lists no bands (nothing to train on)."""
    manifest = _dataset.read_manifest(root, missing_ok=True)
    if not manifest:
        raise InputDataError(f"no manifest.json in {root}; is it a patch dataset root "
                             "(manifest.json + index.jsonl written by isamap-export)?")
    if not manifest.get("bands"):
        raise InputDataError(f"{root}/manifest.json lists no bands")
    return manifest


def raster_path(root: str, rel: str) -> str:
    """What rasterio opens: a local path, or GDAL's ``/vsigs/`` path of a gs:// object."""
    return open_store(root).gdal_path(rel)


@contextmanager
def open_raster(path: str) -> Iterator[Any]:
    """``rasterio.open`` with the Cloud Storage credentials when ``path`` is ``/vsigs/``."""
    with gdal_env(path), rasterio.open(path) as src:
        yield src


def class_names_of(manifest: dict) -> tuple[str, ...]:
    """Class names from ``manifest["label"]["classes"]`` (list or {value: name}), else ISA."""
    classes = (manifest.get("label") or {}).get("classes")
    if isinstance(classes, dict):
        values = sorted(int(v) for v in classes)
        if values != list(range(len(values))):
            raise InputDataError(f"label classes {values} are not 0..K-1; the models need "
                                 "contiguous class values (remap the labels)")
        return tuple(str(classes[k]) for k in sorted(classes, key=lambda v: int(v)))
    if isinstance(classes, list) and classes:
        return tuple(str(c["name"]) if isinstance(c, dict) else str(c) for c in classes)
    return ("pervious", "impervious")


def patch_key(record: dict) -> str:
    """The id of a patch across months: ``"<month>/<id>"`` (what items and filters use)."""
    return f"{record.get('month', '')}/{record['id']}"


def scene_key(record: dict) -> str:
    """The scene a patch was cut from: its image's folder (``[part/]patches/<month>``).

    One month of one export is one stack on one grid (docs/data-contract.md), and a dataset
    merged from several exports keeps each part's files under the part's name, so the folder
    tells the scenes apart.
    """
    return posixpath.dirname(str(record["image"]))
