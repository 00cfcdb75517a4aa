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
    from matplotlib.backend_bases import RendererBase
    from matplotlib.text import Text

from contract.bands import LABEL_NODATA
from core.errors import InputDataError
from core.storage import atomic_path

RGB = tuple[int, int, int]
# label value -> RGB: pervious green-grey, impervious orange-red, unlabelled white
LABEL_COLOURS = {0: (96, 128, 80), 1: (230, 85, 40), LABEL_NODATA: (255, 255, 255)}
LABEL_NAMES = {0: "pervious", 1: "impervious", LABEL_NODATA: "unlabelled"}
NODATA_COLOUR: RGB = (255, 255, 255)
"""Pixels without data are drawn white and named "no data" in the legend."""


TITLE_CHAR_PX = 7.6  # width of an average character of the 11 pt bold title, in pixels
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
    scaled = src.transform * Affine.scale(src.width / shape[1], src.height / shape[0])
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
    x, y = footprint.transform * (footprint.width / 2, footprint.height / 2)
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
    adds a margin for the title above, the caption below and the key on the right.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import LinearSegmentedColormap, Normalize
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch, Rectangle

    height, width = rgb.shape[:2]
    dpi = 100
    key_px = 190 if (legend or colour_bar) else 20
    fig_w = max(width, 320) + key_px + 30
    title = titled(title)
    # the title wraps at the figure's edge: room above the picture for each of its lines
    title_lines = math.ceil(len(title) * TITLE_CHAR_PX / (fig_w - 30))
    fig_h = height + 50 + 28 + 17 * title_lines
    fig = Figure(figsize=(fig_w / dpi, fig_h / dpi), dpi=dpi)  # no pyplot: no figure manager
    ax = fig.add_axes((15 / fig_w, 50 / fig_h, width / fig_w, height / fig_h))
    ax.imshow(rgb, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    canvas = FigureCanvasAgg(fig)  # savefig draws with this canvas's renderer, measured here
    for text in (fig.text(15 / fig_w, 1 - 12 / fig_h, title, ha="left", va="top", fontsize=11,
                          fontweight="bold"),
                 fig.text(15 / fig_w, 18 / fig_h, extent_text(footprint), ha="left",
                          va="bottom", fontsize=8, color="#333333")):
        _wrap_at_edge(text, canvas.get_renderer(), fig.bbox.x1)  # type: ignore[no-untyped-call]
    metres = pixel_metres(footprint)
    if metres:
        length = nice_length(width * metres / 4)
        bar_px = length / metres
        x0, y0 = width * 0.04, height * 0.95
        ax.add_patch(Rectangle((x0 - 4, y0 - 18), bar_px + 8, 24, facecolor="white",
                               alpha=0.8, edgecolor="none"))
        ax.add_patch(Rectangle((x0, y0), bar_px, 3, facecolor="black"))
        ax.text(x0 + bar_px / 2, y0 - 2, length_text(length), ha="center", va="bottom",
                fontsize=8)
    key_left = (15 + width + 15) / fig_w
    if legend:
        handles = [Patch(facecolor=(c[0] / 255, c[1] / 255, c[2] / 255), edgecolor="#555555",
                         label=name) for name, c in legend.entries]
        fig.legend(handles=handles, loc="upper left", bbox_to_anchor=(key_left, 1 - 40 / fig_h),
                   frameon=False, fontsize=9)
    if colour_bar:
        cmap = LinearSegmentedColormap.from_list(
            "quicklook", [np.array(c) / 255 for c in colour_bar.colours])
        cax = fig.add_axes((key_left, 60 / fig_h, 14 / fig_w, max(height - 40, 40) / fig_h))
        mappable = ScalarMappable(Normalize(colour_bar.low, colour_bar.high), cmap)
        fig.colorbar(mappable, cax=cax).set_label(colour_bar.label, fontsize=9)
    target = Path(out_png)
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, facecolor="white")
    return target


def _wrap_at_edge(text: Text, renderer: RendererBase, right: float) -> None:
    """Wrap a left-aligned figure ``text`` at ``right`` (the figure's edge), only if it passes it.

    matplotlib's wrap measures every prefix of the text's words at each draw; a text that fits
    needs one measurement, and is drawn the same either way.
    """
    extent = text.get_window_extent(renderer)
    text.set_wrap(math.ceil(extent.width) > right - extent.x0)


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
