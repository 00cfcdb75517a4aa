"""Named study regions, GeoJSON files and bounding boxes, all as one ``Region`` value.

Built-in boxes are the administrative extents of the cities in the papers, rounded to about
0.01 degree (Wuhan is exactly the CroFuseNet study area). They are deliberately boxes: a user
who needs the exact boundary passes a GeoJSON file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from core.errors import ConfigError, UnknownRegionError


def _deg(value: float) -> str:
    return f"{value:g}"


def bbox_problem(west: float, south: float, east: float, north: float) -> str | None:
    """Why ``(west, south, east, north)`` is no area isamap can map (None: it is one).

    Each rule broken gets its own words: a latitude out of range or south above north names
    latitudes, not longitudes; a box whose west edge lies east of its east edge crosses the
    antimeridian (180°), which the grids (one UTM zone or one projected CRS, x growing east)
    cannot hold, so it is to be split there.
    """
    for what, value in (("south", south), ("north", north)):
        if not -90 <= value <= 90:
            return (f"{what} {_deg(value)} is no latitude (they run from -90 to 90); the box "
                    "is WEST,SOUTH,EAST,NORTH: longitudes first and third, latitudes second "
                    "and fourth")
    for what, value in (("west", west), ("east", east)):
        if not -180 <= value <= 180:
            return (f"{what} {_deg(value)} is no longitude (they run from -180 to 180); "
                    f"give it as {_deg((value + 180) % 360 - 180)}")
    if south >= north:
        return (f"south {_deg(south)} is not below north {_deg(north)}; the box is "
                "WEST,SOUTH,EAST,NORTH, south (the smaller latitude) second")
    if west == east:
        return f"west and east are both {_deg(west)}: the box has no width"
    if west > east and east + 360 - west >= 180:  # no area isamap maps is that wide: swapped
        return (f"west {_deg(west)} lies east of east {_deg(east)}; the box is "
                f"WEST,SOUTH,EAST,NORTH: did you mean --bbox={_deg(east)},{_deg(south)},"
                f"{_deg(west)},{_deg(north)}?")
    if west > east:
        return antimeridian_advice(west, south, east, north)
    return None


def antimeridian_advice(west: float, south: float, east: float, north: float,
                        why: str = "") -> str:
    """The refusal of an area across the antimeridian, with the two boxes to map instead.

    ``why``: what shows the crossing (default: the box's west edge east of its east edge).
    """
    box = ",".join(_deg(v) for v in (west, south, 180, north))
    other = ",".join(_deg(v) for v in (-180, south, east, north))
    why = why or (f"the box crosses the antimeridian (west {_deg(west)} lies east of east "
                  f"{_deg(east)})")
    return (f"{why}, which isamap does not support: split it at 180 degrees into "
            f"--bbox={box} and --bbox={other}, each with its own --out")


@dataclass(frozen=True)
class Region:
    """An area of interest in longitude/latitude (EPSG:4326).

    Attributes:
        name: short identifier used in paths and manifests.
        bbox: (west, south, east, north) in degrees.
        geometry: GeoJSON geometry dict when the region is not just its box.
        description: where the extent comes from.
        covered: the box is where the data are (the local scenes' common extent), not an area
            asked for: its grid keeps to whole pixels inside it instead of covering it.
    """

    name: str
    bbox: tuple[float, float, float, float]
    geometry: dict[str, Any] | None = field(default=None, compare=False)
    description: str = ""
    covered: bool = field(default=False, compare=False)

    def __post_init__(self) -> None:
        problem = bbox_problem(*self.bbox)
        if problem:
            raise ConfigError(f"region {self.name!r}: {problem}")

    @property
    def centroid(self) -> tuple[float, float]:
        west, south, east, north = self.bbox
        return (west + east) / 2.0, (south + north) / 2.0

    def to_geojson(self) -> dict[str, Any]:
        """The region's geometry; its box as a polygon when no finer geometry is known."""
        if self.geometry is not None:
            return self.geometry
        west, south, east, north = self.bbox
        ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
        return {"type": "Polygon", "coordinates": [ring]}


def _dms(deg: int, minutes: int) -> float:
    return round(deg + minutes / 60.0, 6)


_BUILTIN: tuple[Region, ...] = (
    Region("wuhan", (_dms(113, 41), _dms(29, 58), _dms(115, 5), _dms(31, 22)),
           description="Wuhan, Hubei: 29°58'-31°22'N, 113°41'-115°05'E (CroFuseNet / WHU-IS)"),
    Region("nanjing", (118.36, 31.23, 119.24, 32.62), description="Nanjing, Jiangsu"),
    Region("suzhou", (119.91, 30.76, 121.36, 32.04), description="Suzhou, Jiangsu"),
    Region("shanghai", (120.85, 30.67, 122.00, 31.88), description="Shanghai (mainland)"),
    Region("beijing", (115.42, 39.44, 117.51, 41.06), description="Beijing"),
    Region("baoding", (113.67, 38.17, 116.33, 40.00), description="Baoding, Hebei"),
    Region("langfang", (116.11, 38.47, 117.25, 40.10), description="Langfang, Hebei"),
    Region("urumqi", (86.62, 42.75, 88.97, 44.97), description="Urumqi, Xinjiang"),
    Region("harbin", (125.70, 44.07, 130.17, 46.67), description="Harbin, Heilongjiang"),
    Region("taiyuan", (111.52, 37.45, 113.15, 38.42), description="Taiyuan, Shanxi"),
    Region("ganzi", (97.37, 27.97, 102.50, 34.34),
           description="Garze Tibetan Autonomous Prefecture, Sichuan"),
    Region("zhaotong", (102.87, 26.57, 105.32, 28.67), description="Zhaotong, Yunnan"),
    # The ISA-1 product's area (JointSeg paper): the 11 provinces and municipalities of the
    # Yangtze River Economic Belt. The box joins their published administrative extents:
    # Yunnan's south (21°08'N), Jiangsu's north (35°08'N), Sichuan's west (97°21'E) and
    # Zhejiang's eastern islands (123°10'E). It is about twice the belt's 2.05 million km² of
    # land (the paper rounds to 2.2); pass the provinces' outline with --region-file to map
    # only the belt.
    Region("yreb", (_dms(97, 21), _dms(21, 8), _dms(123, 10), _dms(35, 8)),
           description="Yangtze River Economic Belt (Shanghai, Jiangsu, Zhejiang, Anhui, "
                       "Jiangxi, Hubei, Hunan, Chongqing, Sichuan, Guizhou, Yunnan): box of the "
                       "provinces' extents, 21°08'-35°08'N, 97°21'-123°10'E (ISA-1 / JointSeg)"),
)

REGIONS: dict[str, Region] = {r.name: r for r in _BUILTIN}


def get_region(name: str) -> Region:
    """Look up a built-in region by name (case-insensitive)."""
    try:
        return REGIONS[name.strip().lower()]
    except KeyError:
        raise UnknownRegionError(
            f"unknown region {name!r}. Known regions: {', '.join(sorted(REGIONS))}. "
            "For another area pass --region-file aoi.geojson or --bbox WEST,SOUTH,EAST,NORTH."
        ) from None


def parse_bbox(text: str, name: str = "bbox") -> Region:
    """A region from ``WEST,SOUTH,EAST,NORTH`` in degrees."""
    try:
        values = tuple(float(v) for v in text.replace(" ", "").split(","))
    except ValueError:
        values = ()
    if len(values) != 4:
        raise ConfigError(
            f"--bbox {text!r} must be four numbers WEST,SOUTH,EAST,NORTH in degrees, "
            "e.g. --bbox 114.2,30.4,114.5,30.7"
        )
    return Region(name, values, description=f"bounding box {text}")


GEOJSON_ADVICE = "give a GeoJSON FeatureCollection of polygons (or one Polygon)"


def read_geojson(path: str | os.PathLike[str], flag: str) -> dict[str, Any]:
    """The JSON object of a GeoJSON file a flag names, or a ConfigError naming that flag.

    The one reader of user-given GeoJSON files (``--region-file``, ``--zones``), so a missing
    file, a folder, text that is not JSON and JSON that is not an object are refused alike,
    in one line naming the flag as typed.
    """
    problem = None
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"{flag} {path} does not exist; {GEOJSON_ADVICE}") from None
    except IsADirectoryError:
        problem = "it is a folder"
    except UnicodeDecodeError:
        problem = "it is not text"
    except json.JSONDecodeError as exc:
        problem = str(exc)
    else:
        if not isinstance(data, dict):
            problem = f"its JSON is a {type(data).__name__}, not an object"
    if problem:
        raise ConfigError(f"{flag} {path} is not GeoJSON: {problem}; {GEOJSON_ADVICE}")
    return cast("dict[str, Any]", data)  # an object: checked above


def load_geojson(path: str | Path, name: str | None = None,
                 flag: str = "--region-file") -> Region:
    """A region from a GeoJSON file (Feature, FeatureCollection or bare geometry) in EPSG:4326.

    Args:
        path: the GeoJSON file.
        name: the region's name (default: the file's stem).
        flag: how errors name the file (the flag the user typed).
    """
    path = Path(path)
    data = read_geojson(path, flag)
    crs_name = (data.get("crs") or {}).get("properties", {}).get("name", "")
    geometries = _geometries(data)
    if not geometries:
        raise ConfigError(f"{flag} {path} holds no Polygon or MultiPolygon geometry; "
                          f"{GEOJSON_ADVICE}")
    if crs_name and not any(k in crs_name for k in ("4326", "CRS84")):
        geometries = [_to_lonlat(g, crs_name, f"{flag} {path}") for g in geometries]
    xs, ys = [], []
    for geom in geometries:
        rings = geom["coordinates"] if geom["type"] == "Polygon" else [
            ring for poly in geom["coordinates"] for ring in poly]
        for pt in (pt for ring in rings for pt in ring):
            xs.append(float(pt[0]))
            ys.append(float(pt[1]))
    if all(abs(x) <= 90 for x in xs) and all(abs(y) <= 180 for y in ys) \
            and any(abs(y) > 90 for y in ys):
        raise ConfigError(f"{flag} {path} has latitudes beyond 90 degrees (up to "
                          f"{_deg(max(ys, key=abs))}) and longitudes within 90: its coordinates "
                          "look swapped; GeoJSON lists longitude first ([lon, lat])")
    if any(abs(x) > 180 for x in xs) or any(abs(y) > 90 for y in ys):
        raise ConfigError(
            f"{flag} {path} has coordinates outside longitude/latitude range; it is "
            "probably projected. Name its CRS in the file and isamap reprojects it: add "
            '"crs": {"type": "name", "properties": {"name": "EPSG:32650"}} (your EPSG code)'
        )
    if max(xs) - min(xs) > 180:  # no area isamap maps is half the globe wide: it wraps
        west = min(x for x in xs if x > 0)
        east = max(x for x in xs if x < 0)
        raise ConfigError(f"{flag} {path}: " + antimeridian_advice(
            west, min(ys), east, max(ys), f"its polygon spans longitudes {_deg(min(xs))} to "
            f"{_deg(max(xs))}, so it crosses the antimeridian"))
    geometry = (geometries[0] if len(geometries) == 1
                else {"type": "GeometryCollection", "geometries": geometries})
    return Region(name or path.stem, (min(xs), min(ys), max(xs), max(ys)), geometry,
                  description=f"GeoJSON file {path.name}")


def resolve_region(name: str | None = None, region_file: str | Path | None = None,
                   bbox: str | None = None) -> Region:
    """The one region named by exactly one of the CLI's three ways of giving it."""
    given = [v is not None for v in (name, region_file, bbox)]
    if sum(given) != 1:
        raise ConfigError("give exactly one of --region NAME, --region-file FILE, --bbox W,S,E,N")
    if name is not None:
        return get_region(name)
    if region_file is not None:
        return load_geojson(region_file)
    return parse_bbox(bbox)  # type: ignore[arg-type]


def _to_lonlat(geometry: dict[str, Any], crs_name: str, given: str) -> dict[str, Any]:
    """A (Multi)Polygon from the CRS a GeoJSON file names into longitude/latitude."""
    from pyproj import Transformer
    from pyproj.exceptions import CRSError

    try:
        transformer = Transformer.from_crs(crs_name, "EPSG:4326", always_xy=True)
    except CRSError:
        raise ConfigError(f"{given} names the CRS {crs_name!r}, which pyproj does "
                          "not know; give an EPSG code such as EPSG:32650") from None

    def ring(points: list[Sequence[float]]) -> list[list[float]]:
        xs, ys = transformer.transform([p[0] for p in points], [p[1] for p in points])
        return [[float(x), float(y)] for x, y in zip(xs, ys, strict=True)]

    coords = geometry["coordinates"]
    if geometry["type"] == "Polygon":
        return {"type": "Polygon", "coordinates": [ring(r) for r in coords]}
    return {"type": "MultiPolygon", "coordinates": [[ring(r) for r in poly] for poly in coords]}


def _geometries(data: dict[str, Any]) -> list[dict[str, Any]]:
    kind = data.get("type")
    if kind == "FeatureCollection":
        return [g for f in data.get("features", []) for g in _geometries(f)]
    if kind == "Feature":
        return _geometries(data.get("geometry") or {})
    if kind in ("Polygon", "MultiPolygon"):
        return [data]
    if kind == "GeometryCollection":
        return [g for sub in data.get("geometries", []) for g in _geometries(sub)]
    return []
