"""Find local Sentinel scenes and what is in them: sensor, date, bands, level, unit.

Three layouts are recognised, in a folder (searched recursively), a glob or a list of files:

- one file per band, ``<product>_<BAND>.tif`` (BigEarthNet, isamap's synthetic scene):
  ``S2A_MSIL2A_20170613T101031_87_48_B02.tif``, ``..._SCL.tif``, ``S1A_IW_GRDH_..._VV.tif``;
- stacked files whose band descriptions name the bands (``B2``/``B02``, ``SCL``, ``VV``...);
- stacked files without descriptions: 2 bands of an S1 product are VV, VH; 13 bands of an S2
  product are B1..B12 with B10 (which only L1C has). A 12-band S2 file without descriptions
  is refused unless the caller names its bands (``s2_band_names``, ``--s2-band-names``): twelve
  bands fit several orders, and a wrong guess maps without any error.

A mask file ``<product>_SCL.tif`` (or ``_CLOUD_MASK``) beside one stacked S2 file
``<product>_<anything>.tif`` belongs to that scene. Label rasters are files in a ``labels``
folder or named ``*label*``. Dates come from the ``ACQUISITION_DATE`` tag, else from the
product name (``YYYYMMDDThhmmss`` or ``YYYY-MM-DD``), else from the file-time tag
(``TIFFTAG_DATETIME``, ``DATETIME``), else from the caller (``date``, ``--scene-date``); a
name whose date disagrees with a tag's is warned of (:func:`~.scene_names.acquisition_date`).
A stack isamap wrote is refused as a scene, and a copy of an acquisition already found is left
out with a warning (:func:`drop_copies`, which reads a 64 px window of each scene);
otherwise only metadata is read here, pixels are read later by window, so discovery is cheap
for big tiles.
"""

from __future__ import annotations

import datetime as dt
import glob as globlib
import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.errors import RasterioIOError
from rasterio.windows import Window

from contract.stack import recorded_month, stack_made_by_isamap
from core.digest import file_sha256
from core.errors import InputDataError
from core.months import check_month
from gee_export.local.plausibility import s2_level_from_bands
from gee_export.local.scene_names import (
    BAND_FILE,
    BASELINE,
    MASK_NAMES,
    OLD_FORMAT,
    RASTER_SUFFIXES,
    S2_L1C_ORDER,
    S2_L2A_ORDER,
    Sensor,
    acquisition_date,
    canonical_band,
    date_from_text,
    product_date,
    sensor_from,
)

__all__ = ["MASK_NAMES", "RASTER_SUFFIXES", "S2_L1C_ORDER", "S2_L2A_ORDER", "BandRef", "Scene",
           "SceneCollection", "Sensor", "canonical_band", "date_from_text", "discover_scenes",
           "open_scene", "product_date"]

@dataclass(frozen=True)
class BandRef:
    """Where one band lives: a file and its 1-based band index."""

    path: Path
    index: int = 1


@dataclass(frozen=True)
class Scene:
    """One acquisition: sensor, date and its bands (canonical names such as B2, B8A, SCL, VV).

    ``level`` is the Sentinel-2 product level (``L2A``/``L1C``) when known, from the band set
    before the name or tags (``level_reason`` says why when they disagree); ``unit`` the tagged
    Sentinel-1 unit (``linear``/``dB``; None = detect from values; the values are checked
    either way); ``baseline`` the Sentinel-2 processing baseline (``"04.00"``) and
    ``boa_add_offset`` the offset when the metadata says.
    """

    sensor: Sensor
    product: str
    date: dt.date
    bands: tuple[tuple[str, BandRef], ...]
    level: str | None = None
    unit: str | None = None
    baseline: str | None = None
    boa_add_offset: float | None = None
    tags: tuple[tuple[str, str], ...] = field(default=(), compare=False)
    level_reason: str = field(default="", compare=False)

    @property
    def band_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.bands)

    def band(self, name: str) -> BandRef:
        """The file and index of ``name``; a clear error naming what the scene does have."""
        for key, ref in self.bands:
            if key == name:
                return ref
        raise InputDataError(
            f"{self.sensor} scene {self.product} ({self.date}) has no band {name!r}; it has "
            f"{', '.join(self.band_names) or 'no bands'}. Add the band file or drop {name} from "
            "the requested bands."
        )

    def has(self, name: str) -> bool:
        return any(key == name for key, _ in self.bands)

    @property
    def month(self) -> str:
        return f"{self.date.year:04d}-{self.date.month:02d}"


#: side of the centre window whose pixels a copy must share (px)
SAMPLE = 64


def _footprint(scene: Scene) -> tuple[tuple[Any, ...], np.ndarray, bool]:
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


def drop_copies(scenes: Sequence[Scene]) -> list[Scene]:
    """``scenes`` without those that are an earlier one's acquisition again (each warned).

    A folder of scenes can hold the same acquisition twice (a download unpacked into two
    folders, a copy renamed), and each copy would count as one more observation. Names cannot
    tell a copy, so a scene is a copy of an earlier one when the pixels say so: the same
    sensor and acquisition date, the same first band on the same footprint (CRS, bounds,
    size), and the same pixels in a :data:`SAMPLE` px window at its centre. Two acquisitions
    of one day over one footprint do not share their pixels, so both are kept. The first of
    each acquisition in the order found is kept (the first of the sources given, a folder's
    files in name order). Where the centre windows compared hold no valid pixel (outside
    both swaths), the first bands' files are compared by their bytes (read only then).
    """
    kept: list[Scene] = []
    seen: dict[tuple[Any, ...], list[tuple[Scene, np.ndarray]]] = {}
    digests: dict[Path, str] = {}

    def same_file(a: Scene, b: Scene) -> bool:
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


@dataclass(frozen=True)
class SceneCollection:
    """Everything found: Sentinel-1 and Sentinel-2 scenes (by date) and label rasters."""

    s1: tuple[Scene, ...] = ()
    s2: tuple[Scene, ...] = ()
    labels: tuple[Path, ...] = ()

    def in_month(self, month: str) -> SceneCollection:
        """Scenes acquired in ``YYYY-MM`` (labels are undated and kept)."""
        check_month(month)
        return SceneCollection(tuple(s for s in self.s1 if s.month == month),
                               tuple(s for s in self.s2 if s.month == month), self.labels)

    def label(self, scale: int = 1) -> Path | None:
        """The label raster for ``grid.scaled(scale)``: ``label_x<k>.tif`` for k > 1."""
        suffix = f"_x{scale}"
        for path in self.labels:
            has_scale = re.search(r"_x\d+$", path.stem) is not None
            if (scale == 1 and not has_scale) or (scale > 1 and path.stem.endswith(suffix)):
                return path
        return None


def _read_meta(path: Path) -> tuple[int, tuple[str | None, ...], dict[str, str]]:
    try:
        with rasterio.open(path) as src:
            if src.crs is None:
                raise InputDataError(f"{path} has no CRS; local scenes must be georeferenced "
                                     f"GeoTIFFs (assign one with: rio edit-info --crs EPSG:xxxx "
                                     f"{path})")
            tags = {k.upper(): v for k, v in src.tags().items()}
            return src.count, tuple(src.descriptions), tags
    except RasterioIOError as exc:
        raise InputDataError(f"{path} cannot be read as a raster ({exc}); is it corrupt or "
                             "truncated? Re-download or remove it.") from exc


def _named_level(product: str, tags: dict[str, str]) -> str | None:
    """The level the PRODUCT_LEVEL tag or the product name claims."""
    level = tags.get("PRODUCT_LEVEL", "").upper().replace("LEVEL-", "L").replace("LEVEL", "L")
    if level in ("L1C", "L2A"):
        return level
    upper = product.upper()
    if "MSIL1C" in upper:
        return "L1C"
    if "MSIL2A" in upper:
        return "L2A"
    return None


def _scene(sensor: Sensor, product: str, bands: dict[str, BandRef], tags: dict[str, str],
           date: dt.date | None, unit: str | None, undated: dt.date | None = None) -> Scene:
    if date is None:
        date = acquisition_date(product, tags, undated)
    if date is None:
        old = (" (its old-format name holds only the production time)"
               if OLD_FORMAT in product.upper() else "")
        raise InputDataError(
            f"no acquisition date for {product}{old}: put YYYYMMDDThhmmss in the file name, set "
            "the tag with: rio edit-info --tag ACQUISITION_DATE=YYYY-MM-DD FILE, or give "
            "--scene-date YYYY-MM-DD (Python: open_scene(path, date=...))"
        )
    order = (*S2_L1C_ORDER, "SCL", "CLOUD_MASK", "VV", "VH", "HH", "HV")
    ordered = tuple(sorted(bands.items(), key=lambda kv: order.index(kv[0])
                           if kv[0] in order else len(order)))
    baseline = tags.get("PROCESSING_BASELINE")
    match = BASELINE.search(product)
    if baseline is None and match:
        baseline = f"{match.group(1)}.{match.group(2)}"
    offset = tags.get("BOA_ADD_OFFSET")
    unit = unit or tags.get("SIGMA0_UNIT")
    # the level the band set shows over the one the name claims (B10 is L1C only)
    level, reason = (s2_level_from_bands(_named_level(product, tags), tuple(bands))
                     if sensor == "S2" else (None, ""))
    return Scene(sensor, product, date, ordered, level=level,
                 unit=_norm_unit(unit) if sensor == "S1" else None, baseline=baseline,
                 boa_add_offset=float(offset) if offset not in (None, "") else None,
                 tags=tuple(sorted(tags.items())), level_reason=reason)


def _norm_unit(unit: str | None) -> str | None:
    if unit is None:
        return None
    text = unit.strip().lower()
    if text in ("db", "decibel", "decibels"):
        return "dB"
    if text in ("linear", "power", "linear power", "intensity"):
        return "linear"
    raise InputDataError(f"SIGMA0_UNIT {unit!r} is neither 'linear' nor 'dB'")


def _not_a_scene(path: Path, count: int) -> InputDataError:  # a DEM, a land-cover map
    return InputDataError(
        f"{path} says nothing of Sentinel-1/2 (neither its name nor the descriptions of its "
        f"{count} band(s)): move it out of --scenes, or if it is the label, make it "
        "labels/label.tif in --scenes; if it is a scene, start its name with S1 or S2 or name "
        f"its bands (rio edit-info --bidx N --description B2 {path})")


def open_scene(path: str | Path, *, sensor: Sensor | None = None, date: dt.date | None = None,
               unit: str | None = None, band_names: Sequence[str] | None = None,
               s2_band_names: Sequence[str] | None = None,
               undated: dt.date | None = None) -> Scene:
    """One stacked scene file, with anything the file does not say stated by the caller.

    ``band_names`` names this file's bands whatever it is; ``s2_band_names`` only an S2 file's
    unnamed bands (``--s2-band-names``; a file of as many, its name naming no sensor, is S2);
    ``undated`` is the date of a file whose tags and name carry none (``--scene-date``).
    """
    path = Path(path)
    count, descriptions, tags = _read_meta(path)
    if stack_made_by_isamap(tags):  # a composite, not an acquisition: never a scene
        month = recorded_month(tags) or "a month"
        raise InputDataError(
            f"{path} is a stack isamap made (the composite of {month}), not a scene: give "
            "--scenes the folder of the Sentinel-1/2 scenes it was made from (isamap-demo "
            "writes them to <out>/scene), or map the stack itself with isamap-predict --input "
            f"{path}")
    names = [canonical_band(d) if d else None for d in descriptions]
    if band_names is not None:
        names = [canonical_band(n) or n for n in band_names]
    guessed = sensor_from(path.stem, [n for n in names if n]) or (  # --s2-band-names' count: S2
        "S2" if s2_band_names is not None and not any(names) and count == len(s2_band_names)
        else None)
    sensor = sensor or guessed
    if not all(names):
        if sensor == "S2" and s2_band_names is not None:
            names = [canonical_band(n) or n for n in s2_band_names]
        elif sensor == "S1" and count == 2:
            names = ["VV", "VH"]
        elif sensor == "S1" and count == 1:
            names = [canonical_band(path.stem.split("_")[-1]) or "VV"]
        elif sensor == "S2" and count == 13:
            names = list(S2_L1C_ORDER)
        elif sensor == "S2" and count == len(S2_L2A_ORDER):
            raise InputDataError(
                f"{path}: its {count} Sentinel-2 bands have no names, and the order is not "
                "guessed; name them with --s2-band-names (for ESA's L2A order: "
                f"--s2-band-names {','.join(S2_L2A_ORDER)}; the names are checked against "
                "the pixels), or write band descriptions with: rio edit-info --bidx N "
                f"--description B2 {path}, or save one file per band as <product>_<BAND>.tif "
                "(Python: open_scene(path, band_names=[...]))")
        elif sensor is None:  # neither its name nor its bands say Sentinel
            raise _not_a_scene(path, count)
        else:
            raise InputDataError(
                f"{path}: cannot tell which band is which ({count} bands, descriptions "
                f"{descriptions}); name each band with: rio edit-info --bidx N --description "
                f"B2 {path} (one call per band), or save one file per band as "
                "<product>_<BAND>.tif (Python: open_scene(path, band_names=[...]))"
            )
    if len(names) != count:
        raise InputDataError(f"{path}: {len(names)} band names given for {count} bands")
    if sensor is None and not any(canonical_band(str(n)) for n in names):
        raise _not_a_scene(path, count)
    if sensor is None:
        raise InputDataError(f"{path}: cannot tell Sentinel-1 from Sentinel-2; start the file "
                             "name with S1 or S2 (Python: open_scene(path, sensor=...))")
    unknown = [n for n in names if canonical_band(str(n)) is None]
    if band_names is None and s2_band_names is not None and sensor == "S2" and unknown:
        raise InputDataError(f"--s2-band-names: {', '.join(map(str, unknown))} "
                             f"{'is' if len(unknown) == 1 else 'are'} not Sentinel-2 band "
                             "names (B1..B12, B8A, SCL)")
    bands = {str(name): BandRef(path, i) for i, name in enumerate(names, 1)}
    return _scene(sensor, path.stem, bands, tags, date, unit, undated)


def _expand(source: str | Path | Sequence[str | Path]) -> list[Path]:
    if isinstance(source, (list, tuple)):
        return [p for item in source for p in _expand(item)]
    text = str(source)
    path = Path(text)
    if path.is_dir():
        found = _rasters_under(path)
    elif any(ch in text for ch in "*?["):
        found = [Path(p) for p in sorted(globlib.glob(text, recursive=True))
                 if Path(p).suffix.lower() in RASTER_SUFFIXES]
    elif path.is_file():
        found = [path]
    else:
        raise InputDataError(f"scene source {text!r} is neither a folder, a file nor a glob "
                             "that matches anything")
    return found


def _rasters_under(folder: Path) -> list[Path]:
    """The rasters in a folder and its subfolders, following symbolic links, sorted.

    Scene folders are often links to where the downloads live (``ln -s /data/S2A_...SAFE``);
    ``Path.rglob`` does not enter linked folders, so their scenes would be missing. A link
    back to a folder already visited (a cycle) is entered once; a link to nothing is
    refused by name (it would read as a corrupt file).
    """
    found, seen = [], set()
    for root, dirs, names in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs.sort()
        for name in names:
            path = Path(root) / name
            if path.suffix.lower() not in RASTER_SUFFIXES:
                continue
            if path.is_symlink() and not path.exists():
                raise InputDataError(f"{path} is a symbolic link to {os.readlink(path)}, which "
                                     "does not exist (moved or not mounted); fix the link or "
                                     "remove it")
            found.append(path)
    return sorted(found)


def _join_masks(groups: dict[tuple[Path, str], dict[str, BandRef]],
                stacked: list[Scene]) -> list[Scene]:
    """Add mask-only groups (``<product>_SCL.tif``) to the one stacked S2 file they prefix.

    Removes the joined groups from ``groups``; returns the stacked scenes with their masks.
    """
    out = list(stacked)
    for key in list(groups):
        folder, product = key
        if not set(groups[key]) <= set(MASK_NAMES.values()):
            continue
        owners = [i for i, scene in enumerate(out) if scene.sensor == "S2"
                  and scene.product.startswith(product + "_")
                  and scene.bands[0][1].path.parent == folder]
        if len(owners) == 1:
            scene = out[owners[0]]
            bands = {**dict(scene.bands), **groups.pop(key)}
            out[owners[0]] = _scene("S2", scene.product, bands, dict(scene.tags), scene.date,
                                    None)
    return out


def discover_scenes(source: str | Path | Sequence[str | Path], *,
                    date: dt.date | None = None,
                    s2_band_names: Sequence[str] | None = None) -> SceneCollection:
    """Scan a folder, glob or list of files for Sentinel-1/2 scenes and label rasters.

    Args:
        source: a folder (searched recursively), a glob, or a list of files and folders.
        date: the acquisition date of scenes whose tags and names carry none.
        s2_band_names: the band order of stacked S2 files without band descriptions.
    """
    paths = _expand(source)
    if not paths:
        raise InputDataError(f"no rasters (*.tif, *.tiff, *.jp2, *.vrt) found in {source}")
    groups: dict[tuple[Path, str], dict[str, BandRef]] = {}
    tags_of: dict[tuple[Path, str], dict[str, str]] = {}
    scenes: list[Scene] = []
    labels: list[Path] = []
    for path in paths:
        if path.parent.name.lower() == "labels" or "label" in path.stem.lower():
            _read_meta(path)
            labels.append(path)
            continue
        match = BAND_FILE.match(path.stem)
        if match:
            key = (path.parent, match.group("product"))
            _, _, tags = _read_meta(path)
            groups.setdefault(key, {})[canonical_band(match.group("band")) or ""] = BandRef(path)
            tags_of.setdefault(key, {}).update(tags)
            continue
        scenes.append(open_scene(path, s2_band_names=s2_band_names, undated=date))
    scenes = _join_masks(groups, scenes)
    for key, bands in groups.items():
        product, tags = key[1], tags_of[key]
        sensor = sensor_from(product, bands)
        if sensor is None:
            raise InputDataError(f"{product}: cannot tell Sentinel-1 from Sentinel-2 from its "
                                 "name or bands; start the product names with S1 or S2")
        scenes.append(_scene(sensor, product, bands, tags, None, None, date))
    scenes = sorted(drop_copies(scenes), key=lambda s: (s.date, s.product))  # each read once
    s1 = tuple(s for s in scenes if s.sensor == "S1")
    s2 = tuple(s for s in scenes if s.sensor == "S2")
    return SceneCollection(s1, s2, tuple(labels))
