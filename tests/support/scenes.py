"""Synthetic local scenes for tests that need more than one month in one scenes folder."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from gee_export.local.synthetic import generate_scene


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
