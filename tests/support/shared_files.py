"""Scan an output folder for what must not travel in a shared file: local paths, the home."""

from __future__ import annotations

from pathlib import Path

import rasterio

TEXT_SUFFIXES = {".json", ".jsonl", ".md", ".txt", ".csv", ".geojson", ".kml", ".js", ".html",
                 ".vrt", ".xml"}
"""Files read as text; GeoTIFFs are read by their tags (every namespace)."""

PRIVATE_SUFFIXES = {".pt"}
"""Model files and checkpoints record where their dataset lies on the maker's machine (so that
int8 calibration and resuming find it again); they are not scanned."""


def shared_files(folder: Path) -> list[Path]:
    """Every file under ``folder`` a user may share: all but hidden ones and model files."""
    return sorted(p for p in folder.rglob("*") if p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts)
                  and p.suffix not in PRIVATE_SUFFIXES)


def _tif_text(path: Path) -> str:
    with rasterio.open(path) as ds:
        # DERIVED_SUBDATASETS is GDAL naming the open file, not anything the file holds
        texts = [str(ds.tags())] + [str(ds.tags(ns=ns)) for ns in ds.tag_namespaces()
                                    if ns != "DERIVED_SUBDATASETS"]
        texts += [str(ds.tags(i)) for i in range(1, ds.count + 1)]
    return "\n".join(texts)


def private_strings(folder: Path, private: list[str]) -> list[str]:
    """``file: string`` for each of ``private`` found in a shared file under ``folder``."""
    found = []
    for path in shared_files(folder):
        if path.suffix in TEXT_SUFFIXES:
            text = path.read_text(encoding="utf-8", errors="replace")
        elif path.suffix in (".tif", ".tiff"):
            text = _tif_text(path)
        else:
            continue
        found += [f"{path.relative_to(folder)}: {s}" for s in private if s and s in text]
    return found
