import numpy as np
import pytest
import rasterio
from affine import Affine
from PIL import Image
from rasterio.crs import CRS

from contract.quicklook import (
    ColourBar,
    Footprint,
    Legend,
    extent_text,
    framed_png,
    label_png,
    length_text,
    nice_length,
    pixel_metres,
    place_text,
    rgb_png,
)

UTM50 = CRS.from_epsg(32650)
# 2 km x 1 km at 10 m near Wuhan (UTM 50N)
WUHAN = Footprint(UTM50, Affine(10, 0, 230_000, 0, -10, 3_385_000), width=200, height=100)


@pytest.mark.parametrize(("limit", "length"), [(2400, 2000), (999, 500), (1000, 1000),
                                                (7.5, 5), (0.3, 0.2), (149_000, 100_000)])
def test_scale_bar_takes_the_longest_round_length_that_fits(limit, length):
    assert nice_length(limit) == pytest.approx(length)


def test_lengths_read_in_metres_or_kilometres():
    assert length_text(500) == "500 m" and length_text(2000) == "2 km"


def test_place_and_extent_name_where_the_picture_is():
    assert place_text(WUHAN) == "30.56°N 114.20°E"
    assert extent_text(WUHAN) == ("EPSG:32650, 2 x 1 km, centre 30.56°N 114.20°E, "
                                  "shown at 10 m per pixel")
    south_west = Footprint(CRS.from_epsg(4326), Affine(0.001, 0, -47.1, 0, -0.001, -22.8), 20, 20)
    assert place_text(south_west) == "22.81°S 47.09°W"
    # a degree of longitude at 22.8° S is about 102.6 km
    assert pixel_metres(south_west) == pytest.approx(102.6, abs=0.2)
    assert pixel_metres(Footprint(None, Affine.identity(), 4, 4)) is None
    # a degree of latitude is not shorter there: the caption's height used the width's
    # metres, 3.4 km for a map of about 3.95 (a new user's walk)
    assert extent_text(south_west) == ("EPSG:4326, 2.05 x 2.23 km, centre 22.81°S 47.09°W, "
                                       "shown at 103 x 111 m per pixel")


def test_framed_png_keeps_the_pixels_and_adds_a_frame(tmp_path):
    rgb = np.zeros((100, 200, 3), np.uint8)
    rgb[:, :100] = (230, 85, 40)
    png = framed_png(rgb, tmp_path / "f.png", title="ISA class map · 2019-06", footprint=WUHAN,
                     legend=Legend((("impervious", (230, 85, 40)), ("no data", (255, 255, 255)))))
    image = np.asarray(Image.open(png).convert("RGB"))
    assert image.shape[1] > 200 + 150 and image.shape[0] > 100 + 60  # room for key and title
    # the picture itself is drawn one to one: a row of the orange half is all orange
    orange = np.all(image == (230, 85, 40), axis=-1)
    assert orange.sum(axis=1).max() >= 95
    bar = framed_png(rgb, tmp_path / "c.png", title="p", footprint=WUHAN,
                     colour_bar=ColourBar(((0, 0, 0), (255, 255, 255)), "probability (0-1)"))
    assert Image.open(bar).size == Image.open(png).size


def _raster(path, data, descriptions=None):
    count = data.shape[0]
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1],
                       count=count, dtype=data.dtype, crs=UTM50,
                       transform=WUHAN.transform) as dst:
        dst.write(data)
        for i, name in enumerate(descriptions or [], 1):
            dst.set_band_description(i, name)
    return path


def test_stack_and_label_quicklooks_are_decimated_and_titled(tmp_path):
    rng = np.random.default_rng(0)
    image = _raster(tmp_path / "image.tif", rng.random((3, 400, 800), np.float32),
                    ["B4", "B3", "B2"])
    label = _raster(tmp_path / "label.tif", rng.integers(0, 2, (1, 400, 800), np.uint8))
    small = Image.open(rgb_png(image, tmp_path / "rgb.png", max_size=200, month="2019-06"))
    big = Image.open(rgb_png(image, tmp_path / "rgb_big.png", month="2019-06"))
    assert small.size[0] < big.size[0] < 800 + 400
    assert Image.open(label_png(label, tmp_path / "label.png", max_size=200)).size[0] < 600
