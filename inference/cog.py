"""Cloud-Optimized GeoTIFFs of the predictions, their metadata, and quick-look PNGs.

Two single-band COGs per prediction rather than one two-band file, for two reasons: overview
resampling is a per-file option of the GDAL COG driver (the class map needs MODE so that
zoomed-out views still show real classes, the probability AVERAGE), and Earth Engine's
COG-backed assets take one COG per band. Both are uint8 with 255 = nodata; the probability
is scaled so that 250 = 1.0 (0.4 % steps), keeping 251-254 free and 255 for nodata.
"""

from __future__ import annotations

import errno
import html
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import rasterio
import rasterio.errors
import rasterio.shutil
from affine import Affine
from rasterio.enums import Resampling

from gee_export.contract.bands import LABEL_NODATA
from gee_export.contract.vrt import Piece, VrtBand, mosaic_vrt
from gee_export.core.commands import LOW_SPACE_BYTES
from gee_export.core.errors import InputDataError
from gee_export.core.storage import atomic_path
from gee_export.core.version import code_version

Kind = Literal["class", "probability", "change"]
Compression = Literal["DEFLATE", "ZSTD"]
BLOCK = 512
NODATA = LABEL_NODATA  # the class map's nodata is the label's; the probability uses it too
PROB_SCALE = 250  # probability 1.0 is stored as 250; 251-254 unused, 255 = nodata
# zlib level 3: about as small as level 6 on prediction maps, 3x faster to write.
DEFLATE_LEVEL = 3
BAND_IDS: dict[str, str] = {"class": "isa_class", "probability": "isa_probability",
                            "change": "isa_change"}
_RESAMPLING = {"class": "MODE", "probability": "AVERAGE", "change": "MODE"}
_DESCRIPTIONS = {
    "class": "ISA class map: argmax of blended class probabilities; 255 = nodata",
    "probability": "ISA probability x 250 (250 = 1.0); 255 = nodata",
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



def output_tags(info: OutputInfo, run_hash: str, tile: int, overlap: int,
                scale: int) -> dict[str, str]:
    """Dataset metadata written into every COG: enough to know how it was made."""
    tags = {
        "model": info.model, "bands": ",".join(info.bands), "classes": ",".join(info.classes),
        "month": info.month or "", "version": info.version, "isamap_run": run_hash,
        "tile": str(tile), "overlap": str(overlap), "output_scale": str(scale),
        "probability_scale": str(PROB_SCALE), "nodata": str(NODATA),
    }
    tags.update({f"metric_{k}": f"{v:.6g}" for k, v in info.metrics.items()})
    return tags


def strips_vrt(path: Path, parts: Sequence[tuple[Path, int, int]], width: int, height: int,
               transform: Affine, crs: Any, band: int) -> Path:
    """Write a one-band VRT mosaicking full-width strips ``(file, row0, rows)`` of a raster."""
    text = mosaic_vrt(width, height, transform, crs, [VrtBand(band, "uint8", NODATA)],
                      [Piece(p.name, row0, 0, rows, width) for p, row0, rows in parts])
    path.write_text(text)
    return path


def write_cog(src: str | os.PathLike, dst: str | os.PathLike, kind: Kind,
              tags: dict[str, str], *, compress: Compression = "DEFLATE") -> None:
    """Copy a one-band uint8 raster into a COG with overviews, description and metadata.

    The COG driver writes tiles, overviews and the IFDs in the order readers expect (ghost
    header, overviews before full resolution), which a plain GTiff + BuildOverviews does not.
    """
    with rasterio.open(src) as ds:
        if ds.count != 1 or ds.dtypes[0] != "uint8":
            raise InputDataError(f"{src}: expected one uint8 band, got {ds.count} {ds.dtypes}")
        # Descriptions, metadata and the colour table go in through a small VRT wrapper:
        # the COG driver copies them, and nothing is held in memory.
        profile_tags = {**tags, "band_id": BAND_IDS[kind]}
        vrt_path = Path(str(dst) + ".meta.vrt")
        _annotated_vrt(ds, vrt_path, _DESCRIPTIONS[kind], profile_tags, kind)
    try:
        with rasterio.open(vrt_path) as annotated:
            rasterio.shutil.copy(
                annotated, str(dst), driver="COG", BLOCKSIZE=BLOCK, COMPRESS=compress,
                PREDICTOR="YES", LEVEL=DEFLATE_LEVEL if compress == "DEFLATE" else 9,
                OVERVIEWS="IGNORE_EXISTING", RESAMPLING=_RESAMPLING[kind],
                BIGTIFF="IF_SAFER", NUM_THREADS="ALL_CPUS")
    finally:
        vrt_path.unlink(missing_ok=True)
    verify_written(dst)


def verify_written(path: str | os.PathLike) -> None:
    """Read a written raster's last block and smallest overview back, or raise ``OSError``.

    GDAL's COG copy can return normally after libtiff failed to write (a full disk), leaving
    a file that only fails when read; that file must never be moved into place as a finished
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
        free = shutil.disk_usage(Path(path).parent).free
        code = errno.ENOSPC if free < LOW_SPACE_BYTES else errno.EIO
        raise OSError(code, f"{os.strerror(code)}: the raster written to {path} is unreadable "
                            f"({str(exc).strip().splitlines()[0] if str(exc).strip() else exc})",
                      str(path)) from None


def _annotated_vrt(ds, path: Path, description: str, tags: dict[str, str], kind: Kind) -> None:
    """A VRT over ``ds`` that adds a band description, dataset metadata and a colour table."""
    meta = "".join(f'<MDI key="{html.escape(k)}">{html.escape(str(v))}</MDI>'
                   for k, v in tags.items())
    colors = ""
    if kind != "probability":
        palette = CLASS_PALETTE if kind == "class" else CHANGE_PALETTE
        entries = [_rgb(palette[i % len(palette)]) for i in range(255)] + [(0, 0, 0)]
        colors = "<ColorTable>" + "".join(
            f'<Entry c1="{r}" c2="{g}" c3="{b}" c4="{0 if i == NODATA else 255}"/>'
            for i, (r, g, b) in enumerate(entries)) + "</ColorTable>"
    interp = "Palette" if colors else "Gray"
    gt = ", ".join(repr(v) for v in ds.transform.to_gdal())
    source = html.escape(str(Path(ds.name).resolve()) if Path(ds.name).exists() else ds.name)
    path.write_text(
        f'<VRTDataset rasterXSize="{ds.width}" rasterYSize="{ds.height}">'
        f"<SRS>{html.escape(ds.crs.to_wkt())}</SRS><GeoTransform>{gt}</GeoTransform>"
        f"<Metadata>{meta}</Metadata>"
        f'<VRTRasterBand dataType="Byte" band="1"><Description>{html.escape(description)}'
        f"</Description><NoDataValue>{NODATA}</NoDataValue>"
        f"<ColorInterp>{interp}</ColorInterp>{colors}"
        f"<SimpleSource><SourceFilename>{source}</SourceFilename><SourceBand>1</SourceBand>"
        f"</SimpleSource></VRTRasterBand></VRTDataset>")


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


def quicklook(path: str | os.PathLike, png: str | os.PathLike, kind: Kind,
              max_size: int = 1024) -> Path:
    """A PNG preview read from the COG's overviews (never the full raster), nodata transparent."""
    from PIL import Image

    with rasterio.open(path) as ds:
        factor = max(1, int(np.ceil(max(ds.width, ds.height) / max_size)))
        shape = (max(1, ds.height // factor), max(1, ds.width // factor))
        data = ds.read(1, out_shape=shape, resampling=Resampling.nearest)
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
    alpha = np.where(data == NODATA, 0, 255).astype(np.uint8)[..., None]
    out = Path(png)
    with atomic_path(out) as tmp:
        Image.fromarray(np.concatenate([rgb, alpha], axis=-1), "RGBA").save(tmp, format="PNG")
    return out
