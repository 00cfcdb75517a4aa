"""GDAL VRT mosaics: many GeoTIFF pieces on one grid, read as one raster without copying.

The one writer of VRT XML in isamap. Prediction strips are mosaicked through it before the
COGs are written, Earth Engine's exported stack tiles are read through it by the predictor
(``/vsigs/`` paths included), and so are the core tiles of a tile-parallel map. Pieces are
placed by pixel offsets on the mosaic's grid, so nothing is resampled.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from affine import Affine

_GDAL_TYPES = {"uint8": "Byte", "float32": "Float32", "uint16": "UInt16", "int16": "Int16"}


@dataclass(frozen=True)
class Piece:
    """One source file of a mosaic and where it goes (pixel offsets and size on the mosaic)."""

    filename: str
    row_off: int
    col_off: int
    height: int
    width: int
    relative: bool = True  # filename relative to the VRT's own folder


@dataclass(frozen=True)
class VrtBand:
    """One band of the mosaic: which band of every piece feeds it, and how it is described."""

    source_band: int
    dtype: str = "float32"
    nodata: float | None = None
    description: str | None = None
    #: a colour table (RGBA per value from 0), which makes the band's interpretation Palette
    colours: tuple[tuple[int, int, int, int], ...] | None = None
    #: ``(source value, value)`` pairs GDAL maps every piece's pixels through (a VRT
    #: ``<LUT>``, linear between pairs): values stored as codes read as what they stand for
    lut: tuple[tuple[float, float], ...] | None = None


def mosaic_vrt(width: int, height: int, transform: Affine, crs: Any,
               bands: Sequence[VrtBand], pieces: Sequence[Piece],
               metadata: Mapping[str, str] | None = None) -> str:
    """The XML of a VRT of ``width`` x ``height`` pixels mosaicking ``pieces`` band by band.

    Args:
        width: mosaic width in pixels.
        height: mosaic height in pixels.
        transform: the mosaic's geotransform (north-up).
        crs: anything ``rasterio.crs.CRS.from_user_input`` takes.
        bands: the mosaic's bands, in order.
        pieces: the files; pixels no piece covers read as each band's nodata.
        metadata: the mosaic's dataset metadata (tags), which GDAL copies into a file
            written from it.
    """
    import rasterio.crs

    gt = ", ".join(repr(v) for v in (transform.c, transform.a, transform.b,
                                      transform.f, transform.d, transform.e))
    srs = html.escape(rasterio.crs.CRS.from_user_input(crs).to_wkt())
    parts = [f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">\n',
             f"  <SRS>{srs}</SRS>\n  <GeoTransform>{gt}</GeoTransform>\n"]
    if metadata:
        parts.append("  <Metadata>" + "".join(
            f'<MDI key="{html.escape(k)}">{html.escape(str(v))}</MDI>'
            for k, v in metadata.items()) + "</Metadata>\n")
    for number, band in enumerate(bands, start=1):
        parts.append(f'  <VRTRasterBand dataType="{_GDAL_TYPES[band.dtype]}" band="{number}">\n')
        if band.description:
            parts.append(f"    <Description>{html.escape(band.description)}</Description>\n")
        if band.nodata is not None:
            parts.append(f"    <NoDataValue>{band.nodata!r}</NoDataValue>\n")
        if band.colours is not None:
            parts.append("    <ColorInterp>Palette</ColorInterp><ColorTable>" + "".join(
                f'<Entry c1="{r}" c2="{g}" c3="{b}" c4="{a}"/>' for r, g, b, a in band.colours)
                + "</ColorTable>\n")
        source = "ComplexSource" if band.lut else "SimpleSource"
        lut = ("<LUT>" + ",".join(f"{a!r}:{b!r}" for a, b in band.lut) + "</LUT>"
               if band.lut else "")
        for p in pieces:
            parts.append(
                f'    <{source}><SourceFilename relativeToVRT="{int(p.relative)}">'
                f"{html.escape(p.filename)}</SourceFilename>"
                f"<SourceBand>{band.source_band}</SourceBand>"
                f'<SrcRect xOff="0" yOff="0" xSize="{p.width}" ySize="{p.height}"/>'
                f'<DstRect xOff="{p.col_off}" yOff="{p.row_off}" xSize="{p.width}" '
                f'ySize="{p.height}"/>{lut}</{source}>\n')
        parts.append("  </VRTRasterBand>\n")
    parts.append("</VRTDataset>\n")
    return "".join(parts)
