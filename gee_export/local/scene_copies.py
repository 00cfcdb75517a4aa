"""One acquisition read once: copies of a scene under other names are left out of a composite.

A folder of scenes can hold the same acquisition twice (a download unpacked into two folders,
a copy renamed): each copy counted as one more observation, and a new user's composite read 8
scenes, each twice, with no word. Names cannot tell a copy (it can be renamed), so a scene is
a copy of an earlier one when the pixels say so: the same sensor and acquisition date, the
same first band on the same footprint (CRS, bounds, size), and the same pixels in a window at
its centre. Two acquisitions of one day over one footprint (two passes over a fixed tile) do
not share their pixels, so both are kept. A centre window without a valid pixel (outside both
swaths) tells nothing: such scenes are copies only where their first band's files hold the
same bytes, else both are kept.
"""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
import rasterio
from rasterio.windows import Window

from core.digest import file_sha256


class _BandRef(Protocol):
    @property
    def path(self) -> Path: ...
    @property
    def index(self) -> int: ...


class _Scene(Protocol):
    """What is read of a :class:`gee_export.local.scenes.Scene` (which imports this module)."""

    @property
    def sensor(self) -> str: ...
    @property
    def product(self) -> str: ...
    @property
    def date(self) -> dt.date: ...
    @property
    def bands(self) -> tuple[tuple[str, _BandRef], ...]: ...


SceneT = TypeVar("SceneT", bound=_Scene)

#: side of the centre window whose pixels a copy must share (px)
SAMPLE = 64


def _footprint(scene: _Scene) -> tuple[tuple[Any, ...], np.ndarray, bool]:
    """The scene's key (sensor, date, first band, CRS, bounds, size) and its centre pixels.

    The third value says whether those pixels hold a valid one (:func:`_any_valid`).
    """
    name, ref = scene.bands[0]
    with rasterio.open(ref.path) as ds:
        h, w = min(SAMPLE, ds.height), min(SAMPLE, ds.width)
        window = Window((ds.width - w) // 2, (ds.height - h) // 2, w, h)
        pixels = ds.read(ref.index, window=window)
        key = (scene.sensor, scene.date, name, str(ds.crs),
               tuple(round(v, 3) for v in ds.bounds), (ds.height, ds.width))
        valid = _any_valid(pixels, ds.nodatavals[ref.index - 1])
    return key, pixels, valid


def _any_valid(pixels: np.ndarray, nodata: float | None) -> bool:
    """Whether a window holds a pixel with data.

    One that is finite, not the band's declared nodata and not 0 (the fill of Sentinel-2 DNs
    and of Sentinel-1 backscatter, declared or not).
    """
    valid = pixels != 0
    if pixels.dtype.kind == "f":
        valid &= np.isfinite(pixels)
    if nodata is not None and not np.isnan(nodata):
        valid &= pixels != nodata
    return bool(valid.any())


def drop_copies(scenes: Sequence[SceneT]) -> list[SceneT]:
    """``scenes`` without those that are an earlier one's acquisition again (each warned).

    The first of each acquisition in the order found is kept (the first of the sources
    given, a folder's files in name order). Where the centre windows compared hold no valid
    pixel, the first bands' files are compared by their bytes (read only then).
    """
    kept: list[SceneT] = []
    seen: dict[tuple[Any, ...], list[tuple[SceneT, np.ndarray]]] = {}
    digests: dict[Path, str] = {}

    def same_file(a: _Scene, b: _Scene) -> bool:
        paths = [s.bands[0][1].path for s in (a, b)]
        for path in paths:
            if path not in digests:
                digests[path] = file_sha256(path)
        return digests[paths[0]] == digests[paths[1]]

    for scene in scenes:
        key, pixels, valid = _footprint(scene)
        first = next((s for s, p in seen.get(key, [])
                      if np.array_equal(p, pixels, equal_nan=p.dtype.kind == "f")
                      and (valid or same_file(s, scene))), None)
        if first is None:
            seen.setdefault(key, []).append((scene, pixels))
            kept.append(scene)
            continue
        warnings.warn(f"{scene.sensor} scene {scene.product} ({scene.bands[0][1].path.parent}) "
                      f"is {first.product} ({first.bands[0][1].path.parent}) again: acquired "
                      f"{scene.date} on the same footprint with the same pixels; read once, "
                      f"{scene.product} left out (remove the copy from --scenes)", stacklevel=3)
    return kept
