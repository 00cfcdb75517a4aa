"""The Dynamic World tiles as the built-up experiment reads them, on the real files."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
import rasterio

from contract.grid import Grid
from core.errors import InputDataError
from experiments.builtup import covered, score_map, score_ndbi, training_rows
from experiments.builtup_tiles import DW_FOLDER, built_label, find_tile, reflectance, scene_folder
from experiments.realscenes import Footprint
from gee_export.local.scenes import discover_scenes


@pytest.fixture(scope="module")
def java(shared_data):
    return find_tile(shared_data / DW_FOLDER, "java")


def test_tile_reader_finds_the_three_files_on_one_southern_grid(java, shared_data):
    assert java.footprint.crs == "EPSG:32749" and java.date == "2019-07-13"
    assert (java.footprint.width, java.footprint.height) == (510, 340)
    with pytest.raises(InputDataError, match=r"PREFIX_s2l2a\.tif, PREFIX_scl\.tif"):
        find_tile(shared_data / DW_FOLDER, "bali")


def test_label_mapping_counts_match_the_raw_codes(java):
    label = built_label(java)
    assert (label == 1).sum() == 54_325  # the README's built pixels (code 7)
    assert (label == 255).sum() == 21_797 + 404  # unmarked and cloud
    assert (label == 0).sum() == 7_852 + 89_022  # trees and crops


def test_reflectance_is_dn_over_10000_by_band_name(java):
    bands = reflectance(java, ("B8", "B11"))
    with rasterio.open(java.s2) as src:
        dn = src.read(8)[100, 200]  # band 8 of B01..B8A order is B08
    assert bands["B8"][100, 200] == pytest.approx(dn / 10000.0)
    with pytest.raises(InputDataError, match="no band B10"):
        reflectance(java, ("B10",))


def test_scene_folder_is_the_local_backends_layout(java, tmp_path):
    folder = scene_folder(java, tmp_path)
    found = discover_scenes(folder, date=dt.date(2019, 7, 13))
    (scene,) = found.s2
    assert scene.has("SCL") and scene.has("B8A") and len(found.labels) == 1
    assert scene_folder(java, tmp_path) == folder  # a second call keeps the links


def test_training_rows_keep_the_export_grid_north_of_the_held_out_block(java):
    end = training_rows(java, 240, 64, 32)
    block_north = java.footprint.bounds(240)[3]
    grid = Grid.from_lonlat_bounds(java.footprint.lonlat_bbox(0, end), java.footprint.crs,
                                   patch_size=64, stride=32)
    assert grid.bounds[1] >= block_north  # no training pixel in the block
    assert 200 <= end <= 240  # and only a few rows given up for the degree box's margin
    wider = Grid.from_lonlat_bounds(java.footprint.lonlat_bbox(0, end + 1), java.footprint.crs)
    assert wider.bounds[1] < block_north  # the largest such area


def test_a_map_on_a_shifted_grid_is_scored_on_the_labels_pixels(java, tmp_path):
    """The export's grid is a pixel off the tile's; a perfect map must score 1."""
    truth = built_label(java)
    shifted = java.footprint.transform @ rasterio.Affine.translation(-1, -2)
    canvas = np.full((344, 512), 255, np.uint8)
    canvas[2:342, 1:511] = np.where(truth == 255, 0, truth)
    profile = {"driver": "GTiff", "width": 512, "height": 344, "count": 1, "dtype": "uint8",
               "crs": java.footprint.crs, "transform": shifted, "nodata": 255}
    with rasterio.open(tmp_path / "m_class.tif", "w", **profile) as dst:
        dst.write(canvas[np.newaxis])
    with rasterio.open(tmp_path / "m_prob.tif", "w", **profile) as dst:
        dst.write((canvas * 250).astype(np.uint8)[np.newaxis])
        dst.update_tags(probability_scale="250")
    area = np.zeros((340, 510), bool)
    area[240:] = True
    s = score_map(java, tmp_path / "m_class.tif", tmp_path / "m_prob.tif", area)
    assert s["f1_built"] == 1.0 and s["iou_built"] == 1.0 and s["auc_built"] == 1.0
    assert s["pixels"] == int((truth[240:] != 255).sum()) and s["unmapped_pixels"] == 0
    assert s["ece_built"] == 0.0 and "ece_built_uncalibrated" not in s  # no model file given
    # the oracle cut of the probability map: a perfect map is best cut at its built value
    assert s["best_f1_built"] == 1.0 and s["best_threshold_built"] == 1.0
    assert Footprint.of(tmp_path / "m_class.tif").width == 512


def test_ndbi_is_scored_on_the_pixels_a_map_covers(java, tmp_path):
    """A map with a nodata block: NDBI on its cover leaves out exactly the block's pixels."""
    truth = built_label(java)
    canvas = np.where(truth == 255, 0, truth).astype(np.uint8)
    canvas[250:300, 100:200] = 255  # masked in the composite: no map there
    profile = {"driver": "GTiff", "width": 510, "height": 340, "count": 1, "dtype": "uint8",
               "crs": java.footprint.crs, "transform": java.footprint.transform, "nodata": 255}
    with rasterio.open(tmp_path / "m_class.tif", "w", **profile) as dst:
        dst.write(canvas[np.newaxis])
    cover = covered(java, tmp_path / "m_class.tif")
    assert cover.shape == truth.shape and int((~cover).sum()) == 50 * 100
    area = np.zeros(truth.shape, bool)
    area[240:] = True
    everything, mapped = score_ndbi(java, area), score_ndbi(java, area & cover)
    block = truth[250:300, 100:200]
    assert everything["pixels"] - mapped["pixels"] == int((block != 255).sum()) > 0
    assert everything["built_pixels"] - mapped["built_pixels"] == int((block == 1).sum())
    assert mapped["built_pixels"] == int((truth[area & cover] == 1).sum())


def test_a_test_tile_given_by_path_writes_only_under_out(shared_data, tmp_path):
    """``--test /abs/path/ghana_a``: read there, every output named by the tile under --out."""
    tile = find_tile(tmp_path / "elsewhere", str(shared_data / DW_FOLDER / "ghana_a"))
    assert tile.prefix == "ghana_a" and tile.s2 == shared_data / DW_FOLDER / "ghana_a_s2l2a.tif"
    folder = scene_folder(tile, tmp_path / "out" / "scenes")
    assert folder == tmp_path / "out" / "scenes" / "ghana_a" and folder.is_dir()
    assert not list((shared_data / DW_FOLDER).glob("ghana_a/*"))  # nothing beside the input
