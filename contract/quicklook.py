"""Quick-look PNGs a person can read: stacks, labels and maps with title, key and scale.

Every quick-look is framed the same way (:func:`framed_png`): a title saying what, when and
where (the raster's centre in degrees), a legend naming each class or a colour bar with its
units, a scale bar, and a caption with the CRS and extent, so a PNG passed around on its own
still says what it shows. Rasters are read decimated (GDAL picks overviews or samples), so a
quick-look of a huge stack costs a few megabytes of memory, not the raster's size.

Pictures of made-up data say so in their title: inside :func:`title_note` (the demo wraps its
whole run in ``title_note("SYNTHETIC")``) every title passed through :func:`titled` starts with
the note, the quick-looks' and the plots' (learning curves, area over time, accuracy) alike.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.warp import transform as transform_points

if TYPE_CHECKING:
    from PIL.Image import Image
    from PIL.ImageDraw import ImageDraw
    from PIL.ImageFont import FreeTypeFont

from contract.bands import LABEL_NODATA
from core.errors import InputDataError
from core.storage import atomic_path

RGB = tuple[int, int, int]
# label value -> RGB: pervious green-grey, impervious orange-red, unlabelled white
LABEL_COLOURS = {0: (96, 128, 80), 1: (230, 85, 40), LABEL_NODATA: (255, 255, 255)}
LABEL_NAMES = {0: "pervious", 1: "impervious", LABEL_NODATA: "unlabelled"}
NODATA_COLOUR: RGB = (255, 255, 255)
"""Pixels without data are drawn white and named "no data" in the legend."""


_NOTES: list[str] = []  # the active title notes, innermost last


@contextlib.contextmanager
def title_note(note: str) -> Iterator[None]:
    """Every title made inside (:func:`titled`) starts with ``note``, e.g. ``SYNTHETIC``.

    Process-wide rather than per thread, since pictures are drawn in worker threads too.
    """
    _NOTES.append(note)
    try:
        yield
    finally:
        _NOTES.pop()


def titled(title: str) -> str:
    """``title`` with the active :func:`title_note` in front (unchanged outside one)."""
    return f"{_NOTES[-1]} · {title}" if _NOTES else title


@dataclass(frozen=True)
class Legend:
    """Named colours of a categorical picture, in the order they are listed."""

    entries: tuple[tuple[str, RGB], ...]


@dataclass(frozen=True)
class ColourBar:
    """A continuous colour scale: ``colours`` spread evenly from ``low`` to ``high``."""

    colours: tuple[RGB, ...]
    label: str
    low: float = 0.0
    high: float = 1.0


@dataclass(frozen=True)
class Footprint:
    """Where a picture lies: its CRS and the transform of the (decimated) pixels shown."""

    crs: CRS | None
    transform: Affine
    width: int
    height: int


def _decimated_shape(src: rasterio.DatasetReader, max_size: int) -> tuple[int, int]:
    factor = max(1.0, max(src.height, src.width) / max_size)
    return max(1, round(src.height / factor)), max(1, round(src.width / factor))


def footprint_of(src: rasterio.DatasetReader, shape: tuple[int, int]) -> Footprint:
    """The footprint of ``src`` read at ``shape`` (rows, columns)."""
    scaled = src.transform @ Affine.scale(src.width / shape[1], src.height / shape[0])
    return Footprint(src.crs, scaled, shape[1], shape[0])


def stretch(band: np.ndarray, low: float = 2, high: float = 98) -> np.ndarray:
    """Percentile stretch of a float band to 0-255 uint8; non-finite pixels become 0."""
    finite = np.isfinite(band)
    if not finite.any():
        return np.zeros(band.shape, np.uint8)
    lo, hi = np.percentile(band[finite], [low, high])
    scaled = (band - lo) / (hi - lo) if hi > lo else np.zeros_like(band)
    out: np.ndarray = np.clip(np.nan_to_num(scaled, nan=0.0, posinf=1.0, neginf=0.0), 0, 1) * 255
    return out.astype(np.uint8)


def pixel_metres(footprint: Footprint) -> float | None:
    """Ground width of one displayed pixel in metres (None without a CRS)."""
    sides = pixel_sides(footprint)
    return None if sides is None else sides[0]


def pixel_sides(footprint: Footprint) -> tuple[float, float] | None:
    """Ground width and height of one displayed pixel in metres (None without a CRS).

    A degree of longitude shrinks with the cosine of the latitude, a degree of latitude does
    not: a geographic map's pixels are taller than wide away from the equator.
    """
    crs = footprint.crs
    if crs is None:
        return None
    width, height = abs(footprint.transform.a), abs(footprint.transform.e)
    if crs.is_geographic:
        lat = centre_lonlat(footprint)[1]
        return (width * 111_320.0 * max(math.cos(math.radians(lat)), 1e-6),
                height * 111_320.0)
    factor: float = crs.linear_units_factor[1]  # metres per CRS unit
    return width * factor, height * factor


def nice_length(limit_m: float) -> float:
    """The longest 1, 2 or 5 x 10^n metres not over ``limit_m`` (a scale bar's length)."""
    if limit_m <= 0:
        raise ValueError(f"a scale bar needs a positive length, got {limit_m}")
    power: float = 10 ** math.floor(math.log10(limit_m))
    return max(step * power for step in (1, 2, 5) if step * power <= limit_m)


def length_text(metres: float) -> str:
    return f"{metres / 1000:g} km" if metres >= 1000 else f"{metres:g} m"


def centre_lonlat(footprint: Footprint) -> tuple[float, float]:
    """Longitude and latitude of the picture's centre."""
    x, y = footprint.transform @ (footprint.width / 2, footprint.height / 2)
    if footprint.crs is None or footprint.crs.is_geographic:
        return float(x), float(y)
    lon, lat = transform_points(footprint.crs, "EPSG:4326", [x], [y])
    return float(lon[0]), float(lat[0])


def place_text(footprint: Footprint) -> str:
    """``30.55°N 114.30°E``: where the picture's centre is."""
    if footprint.crs is None:
        return "no CRS"
    lon, lat = centre_lonlat(footprint)
    return f"{abs(lat):.2f}°{'N' if lat >= 0 else 'S'} {abs(lon):.2f}°{'E' if lon >= 0 else 'W'}"


def extent_text(footprint: Footprint) -> str:
    """The caption: CRS, ground extent and pixel size shown."""
    sides = pixel_sides(footprint)
    if sides is None:
        return f"{footprint.width} x {footprint.height} px, no CRS"
    x, y = sides
    crs = footprint.crs.to_string() if footprint.crs else ""
    pixel = f"{x:.3g}" if abs(x - y) <= 0.01 * max(x, y) else f"{x:.3g} x {y:.3g}"
    return (f"{crs}, {footprint.width * x / 1000:.3g} x "
            f"{footprint.height * y / 1000:.3g} km, centre {place_text(footprint)}, "
            f"shown at {pixel} m per pixel")


def framed_png(rgb: np.ndarray, out_png: str | os.PathLike[str], *, title: str,
               footprint: Footprint, legend: Legend | None = None,
               colour_bar: ColourBar | None = None) -> Path:
    """Write ``rgb`` (rows x columns x 3, uint8) as a PNG with title, key, scale bar, caption.

    The picture keeps its pixels one to one (a quick-look is for looking at pixels); the frame
    adds a margin for the title above, the caption below and the key on the right. Drawn with
    Pillow in DejaVu Sans (the font matplotlib ships): a frame is text and boxes, and a plotting
    library's figure, axes and layout machinery cost several times the picture's own encoding.
    """
    from PIL import Image, ImageDraw

    height, width = rgb.shape[:2]
    key_px = 190 if (legend or colour_bar) else 20
    fig_w = max(width, 320) + key_px + 30
    title_lines = _wrapped(titled(title), _font(TITLE_PT, bold=True), fig_w - 30)
    caption_lines = _wrapped(extent_text(footprint), _font(SMALL_PT), fig_w - 30)
    top = 28 + 17 * len(title_lines)  # room above the picture for each line of the title
    fig_h = top + height + 50
    canvas = Image.new("RGB", (fig_w, fig_h), "white")
    canvas.paste(Image.fromarray(np.ascontiguousarray(rgb[..., :3]), "RGB"), (15, top))
    draw = ImageDraw.Draw(canvas)
    draw.rectangle((14, top - 1, 15 + width, top + height), outline="black")
    _lines(draw, title_lines, (15, 12), _font(TITLE_PT, bold=True), "black")
    _lines(draw, caption_lines, (15, fig_h - 18 - 13 * len(caption_lines)), _font(SMALL_PT),
           "#333333")
    metres = pixel_metres(footprint)
    if metres:
        _scale_bar(canvas, (15, top), width, height, metres)
    key_left = 15 + width + 15
    if legend:
        _legend(draw, legend, (key_left, top - 5))  # beside the picture, under any title
    if colour_bar:
        _colour_bar(canvas, colour_bar, (key_left, top), max(height - 40, 40))
    target = Path(out_png)
    with atomic_path(target) as tmp:
        canvas.save(tmp, format="png")
    return target


TITLE_PT, SMALL_PT, KEY_PT = 11, 8, 9
"""Font sizes in points (drawn at 100 pixels per inch): the title, captions and key."""


@functools.lru_cache(maxsize=8)
def _font(points: int, bold: bool = False) -> FreeTypeFont:
    """DejaVu Sans at ``points`` (100 px per inch), from matplotlib's fonts.

    matplotlib is a requirement and every wheel of it ships these files; it is not imported.
    """
    from PIL import ImageFont

    spec = importlib.util.find_spec("matplotlib")
    folder = Path(next(iter((spec.submodule_search_locations if spec else None) or ())))
    name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
    return ImageFont.truetype(str(folder / "mpl-data" / "fonts" / "ttf" / name),
                              round(points * 100 / 72))


def _wrapped(text: str, font: FreeTypeFont, width: float) -> list[str]:
    """``text`` in lines no wider than ``width`` pixels, broken between words."""
    lines: list[str] = []
    for word in text.split(" "):
        if lines and font.getlength(f"{lines[-1]} {word}") <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines or [""]


def _lines(draw: ImageDraw, lines: Sequence[str], at: tuple[int, int], font: FreeTypeFont,
           fill: str) -> None:
    step = round(font.size * 1.2)
    for i, line in enumerate(lines):
        draw.text((at[0], at[1] + i * step), line, font=font, fill=fill)


def _scale_bar(canvas: Image, origin: tuple[int, int], width: int, height: int,
               metres: float) -> None:
    """A 1-2-5 length near a quarter of the picture's width, on a light box at its lower left."""
    from PIL import Image as PILImage
    from PIL import ImageDraw as PILDraw

    length = nice_length(width * metres / 4)
    bar_px = round(length / metres)
    x0, y0 = origin[0] + round(width * 0.04), origin[1] + round(height * 0.95)
    box = (x0 - 4, y0 - 18, x0 + bar_px + 4, y0 + 6)
    under = canvas.crop(box)  # 80 % white over the map, as a light box
    canvas.paste(PILImage.blend(under, PILImage.new("RGB", under.size, "white"), 0.8), box[:2])
    draw = PILDraw.Draw(canvas)
    draw.rectangle((x0, y0, x0 + bar_px - 1, y0 + 2), fill="black")
    draw.text((x0 + bar_px / 2, y0 - 2), length_text(length), font=_font(SMALL_PT),
              fill="black", anchor="mb")


def _legend(draw: ImageDraw, legend: Legend, at: tuple[int, int]) -> None:
    """Each class as a swatch and its name, one under the other."""
    font = _font(KEY_PT)
    for i, (name, colour) in enumerate(legend.entries):
        y = at[1] + 8 + 20 * i
        draw.rectangle((at[0] + 8, y, at[0] + 33, y + 10), fill=colour, outline="#555555")
        draw.text((at[0] + 43, y + 5), name, font=font, fill="black", anchor="lm")


def _colour_bar(canvas: Image, bar: ColourBar, at: tuple[int, int], length: int) -> None:
    """The scale as a 14 px column (``low`` at the bottom), ticks and the label turned upright."""
    from PIL import Image as PILImage
    from PIL import ImageDraw as PILDraw

    stops = np.linspace(0, 1, len(bar.colours))
    t = np.linspace(1, 0, length)  # top row = high
    column = np.stack([np.interp(t, stops, [c[k] for c in bar.colours]) for k in range(3)], -1)
    strip = np.repeat(column[:, None, :], 14, axis=1).round().astype(np.uint8)
    x, y = at[0], at[1] + 20
    canvas.paste(PILImage.fromarray(strip, "RGB"), (x, y))
    draw = PILDraw.Draw(canvas)
    draw.rectangle((x - 1, y - 1, x + 14, y + length), outline="black")
    font = _font(SMALL_PT)
    span = bar.high - bar.low
    step = nice_length(span / 4) if span > 0 else 1.0
    value = math.ceil(bar.low / step) * step
    while span > 0 and value <= bar.high + 1e-9 * step:
        row = y + round((bar.high - value) / span * (length - 1))
        draw.line((x + 14, row, x + 17, row), fill="black")
        draw.text((x + 20, row), f"{value:g}", font=font, fill="black", anchor="lm")
        value += step
    label = _font(KEY_PT)
    text = PILImage.new("L", (round(label.getlength(bar.label)) + 2, round(label.size) + 6), 0)
    PILDraw.Draw(text).text((1, 1), bar.label, font=label, fill=255)
    turned = text.rotate(90, expand=True)
    canvas.paste("black", (x + 52, y + max(0, (length - turned.height) // 2)), turned)


def _when(month: str | None) -> str:
    return f" · {month}" if month else ""


def rgb_png(image_path: str | os.PathLike[str], out_png: str | os.PathLike[str],
            bands: Sequence[str] = ("B4", "B3", "B2"), max_size: int = 1024,
            month: str | None = None) -> Path:
    """True-colour PNG of a stack, picking bands by their descriptions."""
    with rasterio.open(image_path) as src:
        names = list(src.descriptions)
        missing = [b for b in bands if b not in names]
        if missing:
            raise InputDataError(f"{image_path} has no band(s) {missing}; it has {names}")
        shape = _decimated_shape(src, max_size)
        data = src.read([names.index(b) + 1 for b in bands], out_shape=(len(bands), *shape),
                        resampling=Resampling.average, out_dtype="float32")
        where = footprint_of(src, shape)
    rgb = np.dstack([stretch(b) for b in data])
    title = (f"Sentinel-2 composite ({', '.join(bands)}; 2-98 % stretch){_when(month)}"
             f" · {place_text(where)}")
    return framed_png(rgb, out_png, title=title, footprint=where)


def label_png(label_path: str | os.PathLike[str], out_png: str | os.PathLike[str],
              max_size: int = 1024, month: str | None = None) -> Path:
    """Colour PNG of a 0/1/255 label."""
    with rasterio.open(label_path) as src:
        shape = _decimated_shape(src, max_size)
        label = src.read(1, out_shape=shape, resampling=Resampling.nearest)
        where = footprint_of(src, shape)
    rgb = np.zeros((*label.shape, 3), np.uint8)
    for value, colour in LABEL_COLOURS.items():
        rgb[label == value] = colour
    legend = Legend(tuple((LABEL_NAMES[v], c) for v, c in LABEL_COLOURS.items()))
    title = f"Training label (impervious surface){_when(month)} · {place_text(where)}"
    return framed_png(rgb, out_png, title=title, footprint=where, legend=legend)
