"""Cloud-Optimized GeoTIFFs of the predictions, their metadata, and quick-look PNGs.

Two single-band COGs per prediction rather than one two-band file, for two reasons: overview
resampling differs per map (the class map needs MODE so that zoomed-out views still show real
classes, the probability AVERAGE), and Earth Engine's COG-backed assets take one COG per band.
GDAL's COG driver writes every finished raster from a VRT (:func:`write_cog`; change maps,
mosaics, consistency rewrites) and, as the plain twin of the streaming encoder
(:mod:`inference.cog.stream`, which writes a prediction's two maps while they are produced),
a prediction's maps from its checkpoint strips (:func:`strips_cog`; the VRT by
:func:`contract.vrt.mosaic_vrt`): the VRT adds the band description, colour table
and metadata, and the driver lays out the tiles, overviews and IFDs as readers expect. Both
maps are uint8 with 255 = nodata; the probability is scaled so that 250 = 1.0 (0.4 % steps),
keeping 251-254 free and 255 for nodata.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import rasterio
import rasterio.errors
import rasterio.shutil
from affine import Affine
from rasterio.enums import Resampling

from contract.bands import LABEL_NODATA
from contract.quicklook import (
    NODATA_COLOUR,
    ColourBar,
    Legend,
    footprint_of,
    framed_png,
    place_text,
)
from contract.vrt import Piece, VrtBand, mosaic_vrt
from core.environment import LOW_SPACE_BYTES
from core.errors import InputDataError
from core.storage import files
from core.version import code_version

NODATA = LABEL_NODATA
"""Nodata of every map COG: the class map's is the label's, and the probability uses it too."""
BLOCK = 512
"""Tile side of every map COG (and of its overviews), in pixels."""
DEFLATE_LEVEL = 1
"""DEFLATE level of every COG: prediction maps come out about as small as at level 3, faster."""

Kind = Literal["class", "probability", "change"]
Compression = Literal["DEFLATE", "ZSTD"]
PROB_SCALE = 250
"""Probability 1.0 is stored as this (0.4 % steps); 251-254 unused, 255 (:data:`NODATA`) nodata.

The one definition: metadata, asset properties, area tables and the Code Editor scripts read
it from here, so a map and its description can never disagree on the scale."""
BAND_IDS: dict[str, str] = {"class": "isa_class", "probability": "isa_probability",
                            "change": "isa_change"}


def map_kind_problem(given: str, tags: Mapping[str, str], kinds: Sequence[str],
                     give: str) -> str | None:
    """Why a map isamap tagged (``band_id``) as another kind is not what ``given`` takes.

    Args:
        given: the flag and path as the message names them (``--class-cog p/isa_prob.tif``).
        tags: the raster's tags.
        kinds: the kinds of :data:`BAND_IDS` it takes.
        give: what to give instead (``the map's _class.tif``).

    Returns:
        None for a map of a kind taken, or a raster isamap did not tag.
    """
    tagged, wanted = tags.get("band_id"), [BAND_IDS[kind] for kind in kinds]
    if tagged is None or tagged in wanted:
        return None
    return f"{given} is an isamap {tagged} map, not {' or '.join(wanted)}; give {give}"


def extra_codes_problem(given: str, counts: np.ndarray, classes: Sequence[str],
                        give: str) -> str | None:
    """Why a raster whose pixels hold codes beyond its classes is not a class map of them.

    A probability COG (0-250) or another scheme's land cover (codes 0-6) read as a class map
    of two classes would count every code above 1 as a class it is not; its tags may be gone
    (a copy, another tool's map), its pixels still tell.

    Args:
        given: the file as the message names it (``--compare-with x.tif``).
        counts: pixels per code 0-255 (``np.bincount(..., minlength=256)``).
        classes: the class names codes ``0..k-1`` stand for.
        give: what to give instead (``a class or change COG written by isamap``).

    Returns:
        None when every pixel is a class code or nodata.
    """
    k = len(classes)
    extra = [int(code) + k for code in np.flatnonzero(counts[k:]) if code + k != NODATA]
    if not extra:
        return None
    listed = str(extra) if len(extra) <= 8 else (f"[{', '.join(map(str, extra[:4]))}, ..., "
                                                 f"{extra[-1]}] ({len(extra)} codes)")
    return (f"{given} holds codes {listed} beyond the {k} classes {list(classes)}, so it is "
            f"not a class map of them; give {give}")


_RESAMPLING = {"class": "MODE", "probability": "AVERAGE", "change": "MODE"}
DESCRIPTIONS = {
    "class": "ISA class map: argmax of blended class probabilities; 255 = nodata",
    "probability": f"ISA probability x {PROB_SCALE} ({PROB_SCALE} = 1.0); {NODATA} = nodata",
    "change": "ISA change: 0 stable pervious, 1 stable impervious, 2 gain, 3 loss; 255 = nodata",
}
# Palettes (hex, no '#') shared by quick-looks and the Code Editor script.
CLASS_PALETTE = ("d9d9d9", "d7301f", "4575b4", "fdae61", "1a9850", "762a83", "ffffbf")
PROB_PALETTE = ("000004", "3b0f70", "8c2981", "de4968", "fe9f6d", "fcfdbf")
CHANGE_PALETTE = ("d9d9d9", "636363", "d7301f", "1a9850")


@dataclass(frozen=True)
class OutputInfo:
    """What the outputs record about how they were made (COG metadata, manifests)."""

    model: str
    bands: tuple[str, ...]
    classes: tuple[str, ...] = ("pervious", "impervious")
    month: str | None = None
    version: str = field(default_factory=code_version)
    metrics: dict[str, float] = field(default_factory=dict)
    #: how the probabilities are calibrated (``training.calibration.temperature.describe``; "": not
    #: said)
    calibration: str = ""
    #: the input statistics a scene-normalised model's map was normalised by (JSON; "": the
    #: training statistics the model file records)
    normalisation: str = ""
    #: why an input the value rules doubted was mapped (JSON list; "": nothing doubted)
    input_notes: str = ""
    #: what the input's pixels showed (``contract.input_facts``, JSON; "": none)
    input_facts: str = ""



def numeric_metrics(values: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """The numbers of a metrics mapping, nested ones as ``outer_inner`` (``val_miou``).

    A model file records ``{"epoch": 7, "val": {"miou": ...}}`` and ``isamap-evaluate``'s
    ``metrics.json`` nests its per-class scores; lists, text and flags are left out.
    """
    out: dict[str, float] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(numeric_metrics(value, f"{name}_"))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            out[name] = value
    return out


def recorded_notes(*labelled: tuple[str, str]) -> list[str]:
    """The ``input_notes`` the map COGs of ``labelled`` (label, path) record, each labelled.

    Why a doubted input of a map was mapped, prefixed ``label: ``, carried into a map made
    from it (a change map made from two dates' maps).
    """
    notes = []
    for label, path in labelled:
        with files.open_raster(path) as ds:
            text = ds.tags().get("input_notes", "")
        notes += [f"{label}: {note}" for note in (json.loads(text) if text else [])]
    return notes


def map_identity(tags: Mapping[str, str]) -> str:
    """A map's run hash with the runtime it was computed at: what products made from it compare.

    A date mapped again at another precision or layout has the same ``isamap_run`` (inputs,
    model, tiling) and other pixels: its change maps and consistent series are redone.
    """
    run, runtime = tags.get("isamap_run", ""), tags.get("runtime", "")
    return f"{run} at {runtime}" if run and runtime else run


def output_tags(info: OutputInfo, run_hash: str, lattice: Mapping[str, str],
                scale: int) -> dict[str, str]:
    """Dataset metadata written into every COG: enough to know how it was made.

    ``lattice``: the tile lattice's tags (``inference.predict.lattice.Lattice.tags``).
    """
    tags = {
        "model": info.model, "bands": ",".join(info.bands), "classes": ",".join(info.classes),
        "month": info.month or "", "version": info.version, "isamap_run": run_hash,
        **lattice, "output_scale": str(scale),
        "probability_scale": str(PROB_SCALE), "nodata": str(NODATA),
    }
    tags.update({f"metric_{k}": f"{v:.6g}" for k, v in info.metrics.items()})
    optional = ("calibration", "normalisation", "input_notes", "input_facts")  # where given
    tags.update({k: getattr(info, k) for k in optional if getattr(info, k)})
    return tags


def write_cog(src: str | os.PathLike, dst: str | os.PathLike, kind: Kind,
              tags: dict[str, str], *, compress: Compression = "DEFLATE") -> None:
    """Copy a one-band uint8 raster into a COG with overviews, description and metadata."""
    with rasterio.open(src) as ds:
        if ds.count != 1 or ds.dtypes[0] != "uint8":
            raise InputDataError(f"{src}: expected one uint8 band, got {ds.count} {ds.dtypes}")
        name = str(Path(ds.name).resolve()) if Path(ds.name).exists() else ds.name
        whole = Piece(name, 0, 0, ds.height, ds.width, relative=False)
        strips_cog([whole], 1, dst, kind, tags, ds.width, ds.height, ds.transform, ds.crs,
                   compress=compress)


def strips_cog(pieces: Sequence[Piece], band: int, dst: str | os.PathLike, kind: Kind,
               tags: dict[str, str], width: int, height: int, transform: Affine, crs: Any, *,
               compress: Compression = "DEFLATE") -> None:
    """The COG of band ``band`` of ``pieces`` (a prediction's checkpoint strips) on one grid.

    The pieces are mosaicked by a VRT (written beside ``dst``, then removed), never copied
    into one raster first; it carries the kind's description, colour table, ``band_id`` tag
    and nodata. GDAL's COG driver reduces the overviews (``MODE`` for classes, ``AVERAGE``
    for probabilities, nodata excluded) and compresses every tile, with all CPU cores:
    nothing else runs by then. DEFLATE without TIFF's predictor (maps compress about as
    small without it, for less CPU), ZSTD with it.
    """
    dst = Path(dst)
    colours = colour_table(kind)
    vrt = dst.with_name(f".{dst.name}.vrt")
    vrt.write_text(mosaic_vrt(
        width, height, transform, crs,
        [VrtBand(band, "uint8", NODATA, DESCRIPTIONS[kind], colours)], pieces,
        {**tags, "band_id": BAND_IDS[kind]}))
    try:
        with rasterio.open(vrt) as mosaic:
            rasterio.shutil.copy(
                mosaic, str(dst), driver="COG", BLOCKSIZE=BLOCK, COMPRESS=compress,
                LEVEL=DEFLATE_LEVEL if compress == "DEFLATE" else 9,
                PREDICTOR="YES" if compress == "ZSTD" else "NO",
                OVERVIEW_RESAMPLING=_RESAMPLING[kind], BIGTIFF="IF_SAFER",
                NUM_THREADS="ALL_CPUS")
    except rasterio.errors.RasterioError as exc:
        raise unwritable(dst, exc) from None
    finally:
        vrt.unlink(missing_ok=True)
    verify_written(dst)


def colour_table(kind: Kind) -> tuple[tuple[int, int, int, int], ...] | None:
    """RGBA of every value of a class or change map (nodata transparent); None: probability."""
    if kind == "probability":
        return None
    palette = CLASS_PALETTE if kind == "class" else CHANGE_PALETTE
    return (*((*_rgb(palette[i % len(palette)]), 255) for i in range(NODATA)), (0, 0, 0, 0))


def verify_written(path: str | os.PathLike) -> None:
    """Read a written raster's last block and smallest overview back, or raise ``OSError``.

    GDAL can return normally after libtiff failed to write (a full disk), leaving a file
    that only fails when read; that file must never be moved into place as a finished
    output. The check reads a few blocks, whatever the raster's size.
    """
    try:
        with rasterio.open(path) as ds:
            ds.read(1, window=((ds.height - 1, ds.height), (ds.width - 1, ds.width)))
            factors = ds.overviews(1)
            if factors:
                f = factors[-1]
                ds.read(1, out_shape=(max(1, ds.height // f), max(1, ds.width // f)))
    except (rasterio.errors.RasterioError, ValueError) as exc:
        raise unwritable(path, exc) from None


def unwritable(path: str | os.PathLike, exc: Exception) -> OSError:
    """The ``OSError`` behind an unreadable written file: ENOSPC on a nearly full disk."""
    free = shutil.disk_usage(Path(path).parent).free
    code = errno.ENOSPC if free < LOW_SPACE_BYTES else errno.EIO
    text = str(exc).strip()
    return OSError(code, f"{os.strerror(code)}: the raster written to {path} is unreadable "
                         f"({text.splitlines()[0] if text else type(exc).__name__})", str(path))


def _rgb(hex_color: str) -> tuple[int, int, int]:
    return int(hex_color[0:2], 16), int(hex_color[2:4], 16), int(hex_color[4:6], 16)


def cog_report(path: str | os.PathLike) -> dict[str, Any]:
    """What a reader sees in a COG: layout, tiling, overviews, compression, descriptions."""
    with rasterio.open(path) as ds:
        structure = ds.tags(ns="IMAGE_STRUCTURE")
        return {
            "layout": structure.get("LAYOUT"), "compression": structure.get("COMPRESSION"),
            "predictor": structure.get("PREDICTOR"), "blocks": ds.block_shapes,
            "overviews": ds.overviews(1), "descriptions": ds.descriptions, "dtype": ds.dtypes[0],
            "nodata": ds.nodata, "tags": ds.tags(), "size": (ds.height, ds.width),
            "crs": str(ds.crs), "transform": tuple(ds.transform)[:6],
        }


_KIND_TITLES = {"class": "ISA class map", "probability": "ISA probability",
                "change": "ISA change"}


def quicklook_key(kind: Kind, tags: dict[str, str]) -> tuple[Legend | None, ColourBar | None]:
    """The legend (class and change maps) or colour bar (probability) of a map's quick-look.

    Class names come from the COG's ``classes`` tag and the change codes from its ``codes``
    tag, both written with the map, so the key always names what the pixels mean.
    """
    nodata = ("no data", NODATA_COLOUR)
    if kind == "probability":
        return None, ColourBar(tuple(_rgb(c) for c in PROB_PALETTE),
                               "probability of impervious surface (0-1)")
    if kind == "class":
        names = [n for n in tags.get("classes", "").split(",") if n] or ["class 0", "class 1"]
        entries = [(name, _rgb(CLASS_PALETTE[i % len(CLASS_PALETTE)]))
                   for i, name in enumerate(names)]
    else:
        codes = json.loads(tags["codes"]) if tags.get("codes") else {}
        entries = [(name.replace("_", " ").replace("isa", "impervious"),
                    _rgb(CHANGE_PALETTE[code % len(CHANGE_PALETTE)]))
                   for name, code in sorted(codes.items(), key=lambda item: item[1])]
    return Legend((*entries, nodata)), None


def quicklook(path: str | os.PathLike, png: str | os.PathLike, kind: Kind,
              max_size: int = 1024, when: str | None = None) -> Path:
    """A titled PNG of a map with its key and scale, read from the COG's overviews.

    Never reads the full raster. ``when`` is the date shown in the title (default: the COG's
    ``month`` tag); nodata is white and named in the legend.
    """
    with rasterio.open(path) as ds:
        factor = max(1, int(np.ceil(max(ds.width, ds.height) / max_size)))
        shape = (max(1, ds.height // factor), max(1, ds.width // factor))
        data = ds.read(1, out_shape=shape, resampling=Resampling.nearest)
        tags = ds.tags()
        where = footprint_of(ds, shape)
    if kind == "probability":
        stops = np.array([_rgb(c) for c in PROB_PALETTE], dtype=np.float32)
        t = np.clip(data.astype(np.float32) / float(PROB_SCALE), 0, 1) * (len(stops) - 1)
        lo = np.floor(t).astype(int).clip(0, len(stops) - 2)
        frac = (t - lo)[..., None]
        rgb = (stops[lo] * (1 - frac) + stops[lo + 1] * frac).astype(np.uint8)
    else:
        palette = CLASS_PALETTE if kind == "class" else CHANGE_PALETTE
        table = np.array([_rgb(palette[i % len(palette)]) for i in range(256)], dtype=np.uint8)
        rgb = table[data]
    rgb[data == NODATA] = NODATA_COLOUR
    legend, colour_bar = quicklook_key(kind, tags)
    date = when or tags.get("month") or ""
    model = f" · model {tags['model']}" if tags.get("model") else ""
    title = (f"{_KIND_TITLES[kind]}{f' · {date}' if date else ''} · {place_text(where)}"
             f"{model}")
    return framed_png(rgb, png, title=title, footprint=where, legend=legend,
                      colour_bar=colour_bar)
