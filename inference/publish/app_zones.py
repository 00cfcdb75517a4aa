"""The zones a series app embeds: within a stated size, simplified beyond it.

The series app (:func:`inference.publish.code_editor.series_app_script`) looks up the clicked
zone on the server, so every map click sends the whole embedded FeatureCollection in its
request, and Earth Engine refuses a request over 10 MB. A zones file is embedded as it is up
to :data:`EMBED_LIMIT_BYTES` of compact GeoJSON; a larger one is embedded with its
coordinates rounded to 6 decimals (about 0.1 m), else simplified (Douglas-Peucker, in
degrees, each ring keeping at least a triangle) with the smallest tolerance of
:data:`TOLERANCES_M` that fits. Only when even the coarsest does not fit (tens of thousands
of zones) are the zones left out of the app, which then charts the whole region. The per-zone
table and chart of the map run always use the zones as given: only the app's lookup of the
clicked zone sees the simplified outlines. The choice is one line of the dry run's plan.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

EMBED_LIMIT_BYTES = 1_000_000
"""The most compact GeoJSON the app embeds: a tenth of Earth Engine's 10 MB request limit,
leaving room for the rest of the click's request (the graph and the point)."""

TOLERANCES_M = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0)
"""Simplification tolerances tried in order (metres on the ground at the equator)."""

METRES_PER_DEGREE = 111_320.0


def geojson_bytes(value: Any) -> int:
    """Size of ``value`` as the app embeds it (compact JSON)."""
    return len(json.dumps(value, separators=(",", ":")))


@dataclass(frozen=True)
class AppZones:
    """The zones the app embeds and how they were made to fit.

    Attributes:
        zones: the FeatureCollection to embed, None when it cannot fit.
        features: zones in the file.
        given_bytes: compact GeoJSON size of the zones as given.
        embedded_bytes: size of what is embedded (0 when nothing is).
        tolerance_m: simplification tolerance used (0: as given; None: not embedded).
    """

    zones: dict | None
    features: int
    given_bytes: int
    embedded_bytes: int
    tolerance_m: float | None

    def describe(self) -> str:
        """One line for the plan: sizes, the limit and what was done."""
        limit = f"limit {EMBED_LIMIT_BYTES / 1e6:g} MB"
        given = f"{self.features:,} zones, {self.given_bytes / 1e6:,.2f} MB of GeoJSON"
        if self.tolerance_m is None:
            return (f"{given}: too large for the series app even simplified to "
                    f"{TOLERANCES_M[-1]:g} m ({limit}); the app charts the whole region, the "
                    "per-zone table keeps every zone")
        if self.tolerance_m == 0.0:
            return f"{given}, embedded as given ({limit})"
        return (f"{given}: embedded simplified to {self.tolerance_m:g} m, "
                f"{self.embedded_bytes / 1e6:,.2f} MB ({limit}; the per-zone table uses the "
                "zones as given)")


def _significance(ring: np.ndarray) -> np.ndarray:
    """For each point of a closed ring, the largest Douglas-Peucker tolerance that keeps it.

    The ring is split level by level, every segment at its farthest point at once
    (vectorised); a point's significance is its distance from its segment's chord, capped by
    the significance of the segment's ends, so ``ring[significance > t]`` is exactly the
    Douglas-Peucker simplification at tolerance ``t``, for any ``t``, from one pass.
    """
    n = len(ring)
    significance = np.full(n, -1.0)
    significance[[0, int(np.argmax(np.hypot(*(ring - ring[0]).T))), n - 1]] = np.inf
    index = np.arange(n)
    while (significance < 0).any():
        kept = np.flatnonzero(significance >= 0)
        seg = np.minimum(np.searchsorted(kept, index, side="right") - 1, len(kept) - 2)
        a, b = kept[seg], kept[seg + 1]
        chord, offset = ring[b] - ring[a], ring - ring[a]
        length = np.hypot(chord[:, 0], chord[:, 1])
        cross = np.abs(chord[:, 0] * offset[:, 1] - chord[:, 1] * offset[:, 0])
        dist = np.where(length > 0, cross / np.where(length > 0, length, 1.0),
                        np.hypot(offset[:, 0], offset[:, 1]))
        dist[significance >= 0] = -1.0
        order = np.lexsort((-dist, seg))  # per segment, its farthest point first
        first = order[np.r_[True, seg[order][1:] != seg[order][:-1]]]
        first = first[dist[first] >= 0]
        significance[first] = np.minimum(dist[first], np.minimum(significance[a[first]],
                                                                 significance[b[first]]))
    return significance


def _simplified(ring: np.ndarray, significance: np.ndarray, tolerance: float) -> np.ndarray:
    """The ring at ``tolerance``: a closed ring of at least four points (a triangle)."""
    keep = significance > tolerance
    if keep.sum() < 4:
        keep[np.linspace(0, len(ring) - 1, 4).round().astype(int)] = True
    return ring[keep]


def _rings(geometry: dict) -> list[list[np.ndarray]]:
    """A Polygon's or MultiPolygon's rings as arrays, one list per polygon."""
    polygons = ([geometry["coordinates"]] if geometry["type"] == "Polygon"
                else geometry["coordinates"])
    return [[np.asarray(r, dtype=float)[:, :2] for r in polygon] for polygon in polygons]


def _geometry(kind: str, polygons: list[list[tuple[np.ndarray, np.ndarray]]],
              tolerance: float | None) -> dict:
    """The geometry of ``polygons`` rounded to 6 decimals, simplified by ``tolerance``."""
    coords = [[np.round(_simplified(r, sig, tolerance) if tolerance else r, 6).tolist()
               for r, sig in polygon] for polygon in polygons]
    return {"type": kind, "coordinates": coords[0] if kind == "Polygon" else coords}


class _Simplifier:
    """The zones' rings read once, written at any tolerance."""

    def __init__(self, zones: dict) -> None:
        self.features = zones["features"]
        self.rings = [[[(r, _significance(r) if len(r) > 4 else np.full(len(r), np.inf))
                        for r in polygon] for polygon in _rings(f["geometry"])]
                      for f in self.features]

    def collection(self, tolerance_m: float | None) -> dict:
        tolerance = tolerance_m / METRES_PER_DEGREE if tolerance_m else None
        return {"type": "FeatureCollection", "features": [
            {**feature, "geometry": _geometry(feature["geometry"]["type"], rings, tolerance)}
            for feature, rings in zip(self.features, self.rings, strict=True)]}


def app_zones(zones: dict | None, limit: int = EMBED_LIMIT_BYTES) -> AppZones | None:
    """What the app embeds of ``zones`` (a FeatureCollection in EPSG:4326), within ``limit``.

    The size falls as the tolerance grows, so the finest tolerance that fits is found by
    bisecting :data:`TOLERANCES_M` (a few simplifications, not one per tolerance).
    """
    if zones is None:
        return None
    count, given = len(zones["features"]), geojson_bytes(zones)
    if given <= limit:
        return AppZones(zones, count, given, given, 0.0)
    simplifier = _Simplifier(zones)
    rounded = simplifier.collection(None)
    if geojson_bytes(rounded) <= limit:
        return AppZones(rounded, count, given, geojson_bytes(rounded), 0.1)
    best: AppZones | None = None
    low, high = 0, len(TOLERANCES_M) - 1  # the answer lies in [low, high], if anywhere
    while low <= high:
        middle = (low + high) // 2
        candidate = simplifier.collection(TOLERANCES_M[middle])
        size = geojson_bytes(candidate)
        if size <= limit:
            best = AppZones(candidate, count, given, size, TOLERANCES_M[middle])
            high = middle - 1
        else:
            low = middle + 1
    return best or AppZones(None, count, given, 0, None)
