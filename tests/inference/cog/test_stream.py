"""The streaming encoder against its plain twin, GDAL's COG driver: the same COG, read back.

The oracle is exact: for the same checkpoint strips, both COGs decode to equal arrays at full
resolution and at every overview level (no tolerance), with the same georeferencing, nodata,
tags, description, colour table, tiling and overview count, and both pass rio-cogeo's
validator. The maps have nodata holes, sizes that are no multiple of the 512-pixel tile (odd
overview sizes), and ties in the 2x2 blocks the MODE overviews resolve.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import rasterio
from affine import Affine

from contract.vrt import Piece
from core.errors import ConfigError
from inference.cog import maps
from inference.cog.stream import (
    WRITER_ENV,
    CogStream,
    cog_writer,
    encodes,
    finish_stream,
    open_stream,
    overview_sizes,
    reduce2,
)
from tests.support.rasters import assert_same_bytes, assert_valid_cog, cog_levels

TRANSFORM = Affine(10, 0, 500000, 0, -10, 3500000)
CRS = "EPSG:32650"
TAGS = {"model": "m", "isamap_run": "abc", "runtime": "bf16/nhwc"}


def _map(height: int, width: int, classes: int | None, seed: int = 0) -> np.ndarray:
    """Smooth blobs (so 2x2 blocks hold ties and mixtures) with nodata holes."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width]
    field = np.sin(yy / 17.0 + rng.uniform(0, 6)) + np.cos(xx / 23.0) + rng.normal(
        0, .3, (height, width))
    if classes:
        data = np.digitize(field, np.linspace(-1.5, 1.5, classes - 1)).astype(np.uint8)
    else:
        data = np.clip((field + 2.5) * 50, 0, 250).astype(np.uint8)
    data[40:70, 100:180] = maps.NODATA  # a hole inside a tile
    data[500:530, :] = maps.NODATA  # a band of nodata across a tile boundary
    data[rng.random((height, width)) < 0.01] = maps.NODATA  # scattered nodata pixels
    return data


def _strips(tmp_path, classes: np.ndarray, prob: np.ndarray, rows: int) -> list[Piece]:
    """The maps as checkpoint strips (two bands: classes, probability), top to bottom."""
    pieces = []
    for r0 in range(0, classes.shape[0], rows):
        n = min(rows, classes.shape[0] - r0)
        path = tmp_path / f"strip_{r0:07d}.tif"
        with rasterio.open(path, "w", driver="GTiff", width=classes.shape[1], height=n, count=2,
                           dtype="uint8", crs=CRS, transform=TRANSFORM @ Affine.translation(0, r0),
                           nodata=maps.NODATA, tiled=True, compress="ZSTD") as ds:
            ds.write(classes[r0:r0 + n], 1)
            ds.write(prob[r0:r0 + n], 2)
        pieces.append(Piece(str(path), r0, 0, n, classes.shape[1], relative=False))
    return pieces


@pytest.mark.parametrize(("height", "width", "classes"), [(1100, 1300, 3), (700, 1032, 2)])
def test_the_encoder_writes_gdals_cog_at_every_level(tmp_path, height, width, classes):
    class_map = _map(height, width, classes)
    prob = _map(height, width, None, seed=1)
    pieces = _strips(tmp_path, class_map, prob, rows=512)
    assert encodes(width, height)
    for band, kind, data in ((1, "class", class_map), (2, "probability", prob)):
        encoder = open_stream(tmp_path, kind, kind, width, height, TRANSFORM, CRS, TAGS)
        for piece in pieces:
            with rasterio.open(piece.filename) as ds:
                encoder.add(ds.read(band))
        streamed, twin = tmp_path / f"{kind}_stream.tif", tmp_path / f"{kind}_gdal.tif"
        finish_stream(encoder, streamed)
        encoder.remove()
        maps.strips_cog(pieces, band, twin, kind, TAGS, width, height, TRANSFORM, CRS)
        ours, theirs = cog_levels(streamed), cog_levels(twin)
        assert len(ours) == len(theirs) == 1 + len(overview_sizes(width, height))
        np.testing.assert_array_equal(ours[0], data)
        for level, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            assert a.shape == b.shape and np.array_equal(a, b), f"{kind} level {level}"
        with rasterio.open(streamed) as a, rasterio.open(twin) as b:
            assert (a.crs, a.transform, a.nodata) == (b.crs, b.transform, b.nodata)
            assert a.tags() == b.tags() and a.tags()["band_id"] == maps.BAND_IDS[kind]
            assert a.descriptions == b.descriptions and a.block_shapes == b.block_shapes
            assert a.overviews(1) == b.overviews(1)
            assert a.tags(ns="IMAGE_STRUCTURE")["COMPRESSION"] == "DEFLATE"
            if kind == "class":
                assert a.colormap(1) == b.colormap(1)
        assert_valid_cog(streamed)
        assert_valid_cog(twin)
    assert not list(tmp_path.glob("*.level*"))  # the level and tile files are removed


def test_the_same_rows_write_the_same_bytes_however_they_are_cut(tmp_path):
    """A 512-row strip of a width of whole tiles is cut into tiles as it is, not copied first:
    the same COG as rows given in ragged pieces (odd counts wait for their pair)."""
    data = _map(1100, 1024, 4)
    paths = []
    for name, chunks in (("whole", (512, 512, 76)), ("ragged", (37, 64, 1, 410, 300, 212, 76))):
        encoder = CogStream(tmp_path, name, 1024, 1100, TRANSFORM, CRS, "mode", {"m": "1"}, "d")
        row = 0
        for rows in chunks:
            encoder.add(data[row:row + rows])
            row += rows
        encoder.finish(tmp_path / f"{name}.tif")
        encoder.remove()
        paths.append(tmp_path / f"{name}.tif")
    assert_same_bytes(paths[0], paths[1])


def test_two_cogs_that_differ_are_told_apart_by_where_not_by_a_diff(tmp_path):
    """A COG byte comparison names the first differing byte's part (a level's tile, a tag)
    instead of printing a diff of megabytes (which took pytest past a test's timeout)."""
    encoder = CogStream(tmp_path, "m", 1024, 1100, TRANSFORM, CRS, "mode", {"m": "1"}, "d")
    encoder.add(_map(1100, 1024, 4))
    encoder.finish(tmp_path / "a.tif")
    encoder.remove()
    data = bytearray((tmp_path / "a.tif").read_bytes())
    with rasterio.open(tmp_path / "a.tif", overview_level=0) as ov:
        offset = int(ov.get_tag_item("BLOCK_OFFSET_0_1", "TIFF", bidx=1))
    ifd = int.from_bytes(data[4:8], "little")  # its first entry: the width (tag 256)
    assert_same_bytes(tmp_path / "a.tif", tmp_path / "a.tif")
    for at, where in ((offset + 9, "level 1, tile 1 "), (ifd + 2 + 8, "IFD 0, entry of tag 256"),
                      (12, "GDAL's structural metadata")):
        changed = data.copy()
        changed[at] ^= 0xFF
        (tmp_path / "b.tif").write_bytes(bytes(changed))
        with pytest.raises(AssertionError, match=f"first differ at byte {at}, {where}") as err:
            assert_same_bytes(tmp_path / "a.tif", tmp_path / "b.tif")
        assert "1 of the first" in str(err.value) and len(str(err.value)) < 500


@pytest.mark.parametrize("bounds", [(0, 512, 1536), (0, 485, 524, 1536), (0, 7, 1000, 1535, 1536),
                                    (0, 100, 200, 300, 1400, 1536)])
def test_panels_of_columns_write_the_bytes_of_whole_rows(tmp_path, bounds):
    """Columns given panel by panel, each top to bottom in ragged pieces: tiles cut by a panel's
    edge wait in carry files (at every level), and the COG is byte for byte the whole rows'."""
    data = _map(1300, 1536, None, seed=2)
    paths = []
    for name, panels in (("rows", (0, 1536)), ("panels", bounds)):
        encoder = CogStream(tmp_path, name, 1536, 1300, TRANSFORM, CRS, "average", {}, "d")
        for c0, c1 in itertools.pairwise(panels):
            encoder.begin_panel(c0, c1)
            row = 0
            for rows in (37, 512, 1, 410, 300, 40):
                encoder.add(np.ascontiguousarray(data[row:row + rows, c0:c1]))
                row += rows
        with pytest.raises(ValueError, match="panel"):  # panels follow each other
            encoder.begin_panel(0, 10)
        encoder.finish(tmp_path / f"{name}.tif")
        encoder.remove()
        paths.append(tmp_path / f"{name}.tif")
    assert_same_bytes(paths[0], paths[1])
    assert_valid_cog(paths[1])
    assert len(cog_levels(paths[1])) == 3
    assert not list(tmp_path.glob("*.level*"))  # tile and carry files removed


def test_bigtiff_layout_reads_the_same(tmp_path):
    data = _map(600, 700, 2, seed=1)
    for big in (False, True):
        encoder = CogStream(tmp_path, f"b{big}", 700, 600, TRANSFORM, CRS, "mode", {}, "d",
                            colormap={0: (1, 2, 3, 255), 1: (4, 5, 6, 255)})
        encoder.add(data)
        encoder.finish(tmp_path / f"{big}.tif", bigtiff=big)
        encoder.remove()
        with open(tmp_path / f"{big}.tif", "rb") as fh:
            assert fh.read(4) == (b"II+\0" if big else b"II*\0")
        with rasterio.open(tmp_path / f"{big}.tif") as ds:
            assert ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
            assert ds.colormap(1)[1] == (4, 5, 6, 255) and ds.overviews(1) == [2]
            np.testing.assert_array_equal(ds.read(1), data)


def test_two_by_two_reductions():
    nd = maps.NODATA
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


def test_rows_must_fit_and_be_complete(tmp_path):
    encoder = CogStream(tmp_path, "e", 600, 100, TRANSFORM, CRS, "average", {}, "d")
    with pytest.raises(ValueError, match="uint8 rows"):
        encoder.add(np.zeros((10, 599), np.uint8))
    encoder.add(np.zeros((60, 600), np.uint8))
    with pytest.raises(ValueError, match="past the end"):
        encoder.add(np.zeros((41, 600), np.uint8))
    with pytest.raises(ValueError, match="incomplete"):
        encoder.finish(tmp_path / "e.tif")
    encoder.remove()
    assert not list(tmp_path.glob("e.level*"))


def test_the_writer_is_named_by_the_caller_or_the_environment(monkeypatch):
    monkeypatch.delenv(WRITER_ENV, raising=False)
    assert cog_writer() == "stream" and cog_writer("gdal") == "gdal"
    monkeypatch.setenv(WRITER_ENV, "gdal")
    assert cog_writer() == "gdal" and cog_writer("stream") == "stream"
    monkeypatch.setenv(WRITER_ENV, "fast")
    with pytest.raises(ConfigError, match=f"{WRITER_ENV}='fast' is not a COG writer"):
        cog_writer()


def test_maps_whose_overviews_are_no_exact_halvings_are_left_to_gdal(tmp_path):
    """On such grids GDAL's overviews are not the 2x2 blocks of the level below (here they
    are not even the same size), so the encoder declines them and GDAL writes the map."""
    data = _map(600, 1031, 2)
    pieces = _strips(tmp_path, data, data, rows=600)
    maps.strips_cog(pieces, 1, tmp_path / "odd.tif", "class", TAGS, 1031, 600, TRANSFORM, CRS)
    gdal_sizes = [level.shape[::-1] for level in cog_levels(tmp_path / "odd.tif")[1:]]
    assert gdal_sizes != overview_sizes(1031, 600) and not encodes(1031, 600)
    assert not encodes(1024, 601) and not encodes(2050, 300)
    assert encodes(300, 77) and encodes(768, 768) and encodes(8192, 8192)
