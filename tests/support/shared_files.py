"""Scan an output folder for what must not travel in a shared file: local paths, the home."""

from __future__ import annotations

import json
from pathlib import Path

import rasterio

TEXT_SUFFIXES = {".json", ".jsonl", ".md", ".txt", ".csv", ".geojson", ".kml", ".js", ".html",
                 ".vrt", ".xml"}
"""Files read as text; GeoTIFFs are read by their tags (every namespace), PNGs by their text
chunks."""

MODEL_SUFFIX = ".pt"
"""Model files are shared (published, sent to colleagues): their description is scanned.
Training checkpoints (the same suffix) are resume records that stay on the maker's machine,
and are not."""

PRIVATE_NAMES = {"config.yaml"}
"""A training run's resume record: it names the dataset and run folder it resumes from."""


def shared_files(folder: Path) -> list[Path]:
    """Every file under ``folder`` a user may share: all but hidden ones and private records
    (checkpoints, a run's ``config.yaml``)."""
    return sorted(p for p in folder.rglob("*") if p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts)
                  and not (p.suffix == MODEL_SUFFIX and _model_text(p) is None)
                  and p.name not in PRIVATE_NAMES)


def _model_text(path: Path) -> str | None:
    """A model file's description as text; None for any other torch file (a checkpoint)."""
    import torch

    from training.modelfile import FORMAT

    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        return None
    return json.dumps(payload.get("meta"), default=str)


def _tif_text(path: Path) -> str:
    with rasterio.open(path) as ds:
        # DERIVED_SUBDATASETS is GDAL naming the open file, not anything the file holds
        texts = [str(ds.tags())] + [str(ds.tags(ns=ns)) for ns in ds.tag_namespaces()
                                    if ns != "DERIVED_SUBDATASETS"]
        texts += [str(ds.tags(i)) for i in range(1, ds.count + 1)]
    return "\n".join(texts)


def _png_text(path: Path) -> str:
    from PIL import Image

    with Image.open(path) as image:
        return str(image.info)


def private_strings(folder: Path, private: list[str]) -> list[str]:
    """``file: string`` for each of ``private`` found in a shared file under ``folder``.

    A shared file of a kind this scan cannot read is reported too (``file: not scanned``), so
    a new kind of output is looked at rather than passed unread.
    """
    found = []
    for path in shared_files(folder):
        if path.suffix in TEXT_SUFFIXES:
            text = path.read_text(encoding="utf-8", errors="replace")
        elif path.suffix in (".tif", ".tiff"):
            text = _tif_text(path)
        elif path.suffix == ".png":
            text = _png_text(path)
        elif path.suffix == MODEL_SUFFIX:
            text = _model_text(path) or ""
        else:
            found.append(f"{path.relative_to(folder)}: not scanned")
            continue
        found += [f"{path.relative_to(folder)}: {s}" for s in private if s and s in text]
    return found
