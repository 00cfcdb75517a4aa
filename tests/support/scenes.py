"""Synthetic local scenes for tests: two months in one scenes folder, scenes without dates."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import rasterio

from gee_export.local.synthetic import generate_scene

DATE = re.compile(r"\d{8}T\d{6}")


def june_and_may(tmp: Path) -> Any:
    """June and May scenes of one 64 px synthetic town in ``tmp/scenes`` (May's seed 3).

    Returns June's scene (its ``root`` holds both months' Sentinel-1/2 products; its label is
    June's).
    """
    june = generate_scene(tmp / "scenes", width=64, height=64, fine_scale=2, progress=False)
    may = generate_scene(tmp / "may", width=64, height=64, fine_scale=2, month="2019-05",
                         seed=3, progress=False)
    for sensor in ("S2", "S1"):
        for product in (may.root / sensor).iterdir():
            shutil.copytree(product, june.root / sensor / product.name)
    return june


def undated_copy(scene: Path, target: Path) -> Path:
    """A copy of the scene folder ``scene`` at ``target``, dates taken out of names and tags.

    What a folder of scenes whose files carry no date looks like: reading it needs
    ``--scene-date``.
    """
    shutil.copytree(scene, target)
    codes: dict[str, str] = {}  # a date -> one name for it: a product's files stay one product

    def code(date: re.Match) -> str:
        return codes.setdefault(date.group(0), f"S{len(codes):03d}")

    for path in sorted(target.rglob("*"), key=lambda p: -len(p.parts)):
        if path.suffix == ".tif":
            with rasterio.open(path) as src:
                data, profile = src.read(), src.profile
                tags = {k: v for k, v in src.tags().items() if k != "ACQUISITION_DATE"}
            path.unlink()
            with rasterio.open(path, "w", **profile) as dst:
                dst.write(data)
                dst.update_tags(**tags)
        if DATE.search(path.name):
            path.rename(path.with_name(DATE.sub(code, path.name)))
    return target
