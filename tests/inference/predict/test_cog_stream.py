"""COGs encoded row by row: the same pixels, overviews and layout as GDAL's COG driver."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import rasterio.shutil
from affine import Affine

from inference.predict.cog import cog_report
from inference.predict.cog_stream import CogStream, Encoding, overview_sizes, reduce2, reduce2_any

TRANSFORM = Affine(10, 0, 500000, 0, -10, 3500000)


def _map(height: int, width: int, classes: int | None, seed: int = 0) -> np.ndarray:
    """Smooth blobs (so 2x2 blocks hold ties and mixtures) with a nodata hole."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width]
    field = np.sin(yy / 17.0 + rng.uniform(0, 6)) + np.cos(xx / 23.0) + rng.normal(0, .3,
                                                                                  (height, width))
    if classes:
        data = np.digitize(field, np.linspace(-1.5, 1.5, classes - 1)).astype(np.uint8)
    else:
        data = np.clip((field + 2.5) * 50, 0, 250).astype(np.uint8)
    data[40:70, 100:180] = 255
    return data


def _gdal_cog(data: np.ndarray, path, resampling: str) -> None:
    src = path.with_suffix(".src.tif")
    with rasterio.open(src, "w", driver="GTiff", width=data.shape[1], height=data.shape[0],
                       count=1, dtype="uint8", crs="EPSG:32650", transform=TRANSFORM,
                       nodata=255) as ds:
        ds.write(data, 1)
    with rasterio.open(src) as ds:
        rasterio.shutil.copy(ds, path, driver="COG", BLOCKSIZE=512, COMPRESS="DEFLATE",
                             PREDICTOR="YES", RESAMPLING=resampling)


@pytest.mark.parametrize(("classes", "resampling", "encoding"), [
    (3, "mode", Encoding("DEFLATE", 1)), (None, "average", Encoding("DEFLATE", 1)),
    (3, "mode", Encoding("DEFLATE", 1, deflater="libdeflate", predictor=2)),
    (None, "average", Encoding("DEFLATE", 3, deflater="isal")),
    (3, "mode", Encoding("DEFLATE", 6, deflater="gdal")), (None, "average", Encoding("ZSTD", 1))])
def test_stream_matches_gdals_cog_driver_at_every_level(tmp_path, classes, resampling,
                                                        encoding):
    """Tiles compressed by the encoder (ISA-L, libdeflate; with or without TIFF's predictor)
    or by GDAL's writer (ZSTD too)."""
    data = _map(1100, 1300, classes)  # odd overview sizes: 650x550, 325x275
    stream = CogStream(tmp_path, "m", 1300, 1100, TRANSFORM, "EPSG:32650", resampling,
                       {"model": "m"}, "a description", encoding=encoding)
    row = 0
    for rows in (37, 64, 1, 250, 512, 236):  # ragged chunks: odd rows wait for their pair
        stream.add(data[row:row + rows])
        row += rows
    stream.update_tags(runtime="fp32/nchw")
    stream.finish(tmp_path / "stream.tif")
    _gdal_cog(data, tmp_path / "gdal.tif", resampling.upper())
    stream.remove()
    assert not list(tmp_path.glob("m.level*"))  # level and tile files removed
    report = cog_report(tmp_path / "stream.tif")
    assert report["layout"] == "COG" and report["compression"] == encoding.compress
    predictor = {1: None, 2: "2"}[encoding.tiff_predictor]
    assert report["predictor"] == predictor and report["blocks"] == [(512, 512)]
    assert report["overviews"] == [2, 4] == cog_report(tmp_path / "gdal.tif")["overviews"]
    assert report["tags"]["model"] == "m" and report["tags"]["runtime"] == "fp32/nchw"
    assert report["descriptions"] == ("a description",) and report["nodata"] == 255
    with rasterio.open(tmp_path / "stream.tif") as a, rasterio.open(tmp_path / "gdal.tif") as b:
        assert (a.transform, a.crs) == (b.transform, b.crs)
        np.testing.assert_array_equal(a.read(1), data)
        for (w, h) in overview_sizes(1300, 1100):
            np.testing.assert_array_equal(a.read(1, out_shape=(h, w)),
                                          b.read(1, out_shape=(h, w)))


def test_bigtiff_layout_reads_the_same(tmp_path):
    data = _map(600, 700, 2, seed=1)
    for big in (False, True):
        stream = CogStream(tmp_path, f"b{big}", 700, 600, TRANSFORM, "EPSG:32650", "mode",
                           {}, "d", colormap={0: (1, 2, 3, 255), 1: (4, 5, 6, 255)})
        stream.add(data)
        stream.finish(tmp_path / f"{big}.tif", bigtiff=big)
        with open(tmp_path / f"{big}.tif", "rb") as fh:
            assert fh.read(4) == (b"II+\0" if big else b"II*\0")
        with rasterio.open(tmp_path / f"{big}.tif") as ds:
            assert ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
            assert ds.colormap(1)[1] == (4, 5, 6, 255) and ds.overviews(1) == [2]
            np.testing.assert_array_equal(ds.read(1), data)


def test_two_by_two_reductions():
    nd = 255
    rows = np.array([[0, 1, 1, nd, 7],
                     [1, 0, 1, nd, nd]], np.uint8)
    # mode: a 2-2 tie goes to the value whose count completes first in scan order (in
    # 0,1 / 1,0 the 1 reaches two at the third pixel, the 0 only at the fourth); nodata is
    # left out
    np.testing.assert_array_equal(reduce2(rows, "mode"), [[1, 1, 7]])
    np.testing.assert_array_equal(reduce2(np.array([[0, 1], [0, 1]], np.uint8), "mode"), [[0]])
    # average rounds half up and ignores nodata; an all-nodata block stays nodata
    avg = np.array([[10, 11, nd, nd], [10, 11, nd, nd]], np.uint8)
    np.testing.assert_array_equal(reduce2(avg, "average"), [[11, nd]])
    assert overview_sizes(1100, 700) == [(550, 350), (275, 175)]
    assert overview_sizes(512, 300) == []


@pytest.mark.parametrize("values", [[0, 1, 255], [*range(15), 255], [0, 1, 2], [14, 15, 16],
                                    [*range(0, 250, 7)]])
def test_shortcuts_give_the_rules_bytes(values):
    # class maps go through the lookup table, probabilities without nodata through a plain
    # mean; both must equal the pass-by-pass rule on every 2x2 combination they can meet
    rng = np.random.default_rng(len(values))
    rows = rng.choice(np.array(values, np.uint8), size=(300, 402))
    for resampling in ("mode", "average"):
        np.testing.assert_array_equal(reduce2(rows, resampling),
                                      reduce2_any(rows, resampling))
        odd = rows[:-1, :-1]  # padded with nodata to an even shape
        even = np.pad(odd, ((0, 1), (0, 1)), constant_values=255)
        np.testing.assert_array_equal(reduce2(odd, resampling), reduce2_any(even, resampling))


def test_every_block_of_a_two_class_map_has_the_rules_mode():
    values = np.array([0, 1, 255], np.uint8)
    blocks = np.array(np.meshgrid(values, values, values, values)).reshape(4, -1)  # all 81
    rows = np.empty((2, 2 * blocks.shape[1]), np.uint8)
    rows[0, 0::2], rows[0, 1::2], rows[1, 0::2], rows[1, 1::2] = blocks
    np.testing.assert_array_equal(reduce2(rows, "mode"), reduce2_any(rows, "mode"))


def test_rows_must_fit_and_be_complete(tmp_path):
    stream = CogStream(tmp_path, "e", 600, 100, TRANSFORM, "EPSG:32650", "average", {}, "d")
    with pytest.raises(ValueError, match="uint8 rows"):
        stream.add(np.zeros((10, 599), np.uint8))
    stream.add(np.zeros((60, 600), np.uint8))
    with pytest.raises(ValueError, match="past the end"):
        stream.add(np.zeros((41, 600), np.uint8))
    with pytest.raises(ValueError, match="incomplete"):
        stream.finish(tmp_path / "e.tif")
    stream.remove()
    assert not list(tmp_path.glob("e.level*"))


@pytest.mark.parametrize("encoding", [Encoding("DEFLATE", 1),
                                      Encoding("DEFLATE", 1, deflater="libdeflate",
                                               predictor=2)])
def test_whole_block_rows_given_at_once_write_the_same_bytes(tmp_path, encoding):
    """A 512-row strip of a width of whole tiles is cut into tiles as it is, not copied first:
    the same COG as rows given in ragged pieces."""
    data = _map(1100, 1024, 4)
    paths = []
    for name, chunks in (("whole", (512, 512, 76)), ("ragged", (100, 412, 300, 212, 76))):
        stream = CogStream(tmp_path, name, 1024, 1100, TRANSFORM, "EPSG:32650", "mode",
                           {"model": "m"}, "d", encoding=encoding)
        row = 0
        for rows in chunks:
            tiles = stream.add(data[row:row + rows])
            row += rows
            assert len(tiles) == (2 if row % 512 < rows or row == 1100 else 0)
        stream.finish(tmp_path / f"{name}.tif")
        stream.remove()
        paths.append(tmp_path / f"{name}.tif")
    assert paths[0].read_bytes() == paths[1].read_bytes()
    with rasterio.open(paths[0]) as ds:
        np.testing.assert_array_equal(ds.read(1), data)
