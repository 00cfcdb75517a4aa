"""Labels onto the grid (mode, fine scale, class schemes) and scene discovery rules."""

from __future__ import annotations

import datetime as dt
import warnings

import numpy as np
import pytest
import rasterio

from core.errors import ConfigError, InputDataError
from gee_export.local.labels import ClassMapping, get_scheme
from gee_export.local.plausibility import check_s1_unit
from gee_export.local.scenes import canonical_band, date_from_text, discover_scenes
from gee_export.local.stack import build_local_stack
from tests.support.rasters import write_band


def test_label_mode_on_grid_and_nearest_on_fine_grid(tmp_path, write_s2, small_grid):
    write_s2("20210603")
    # 1 m WorldCover-like label: 50 built-up in the left 7 m of every 10 m cell, 10 tree cover
    # elsewhere, 0 (nodata) in the last cell row.
    fine = np.full((320, 320), 10, np.uint8)
    fine[:, np.arange(320) % 10 < 7] = 50
    fine[310:, :] = 0
    label = write_band(tmp_path / "labels" / "worldcover_1m.tif", fine, res=1.0, nodata=None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        stack = build_local_stack(tmp_path / "scenes", small_grid, "2021-06", ("B2",),
                                  label=label, fine_scale=10, label_scheme="worldcover",
                                  out_dir=tmp_path / "out", progress=False)
    with rasterio.open(stack.label) as src:
        lab = src.read(1)
        assert src.nodata == 255 and src.transform == small_grid.transform
    assert (lab[:31] == 1).all()  # mode of 70 % built-up, mapped before resampling
    assert (lab[31] == 255).all()
    assert stack.fine_scale == 10 and stack.label_fine is not None
    with rasterio.open(stack.label_fine) as src:
        lab_fine = src.read(1)
        assert src.transform == small_grid.scaled(10).transform
    expected = np.where(np.arange(320) % 10 < 7, 1, 0)[None, :].repeat(320, axis=0)
    expected[310:] = 255
    np.testing.assert_array_equal(lab_fine, expected)


def test_class_mapping_rules():
    mapping = get_scheme({50: 1, 80: 0})
    np.testing.assert_array_equal(mapping.apply(np.array([50, 80, 10, 255, -1])),
                                  [1, 0, 0, 255, 255])
    binary = get_scheme(None)
    np.testing.assert_array_equal(binary.apply(np.array([0, 1, 7, 255])), [0, 1, 255, 255])
    with pytest.raises(ConfigError, match="unknown label scheme"):
        get_scheme("corine")
    with pytest.raises(ConfigError):
        ClassMapping.from_dict({1: 7})


def test_stacked_file_with_descriptions_and_tags(tmp_path):
    data = np.full((3, 8, 8), 1200, np.uint16)
    write_band(tmp_path / "my_scene.tif", data, descriptions=("B02", "B8A", "SCL"),
               tags={"ACQUISITION_DATE": "2023-05-04", "PRODUCT_LEVEL": "Level-2A",
                     "PROCESSING_BASELINE": "05.09"})
    (scene,) = discover_scenes(tmp_path).s2
    assert scene.band_names == ("B2", "B8A", "SCL")
    assert scene.date == dt.date(2023, 5, 4) and scene.level == "L2A"
    assert scene.band("B8A").index == 2 and scene.baseline == "05.09"


def test_l1c_is_recognised_from_tag_and_from_b10(tmp_path):
    write_band(tmp_path / "a" / "S2B_X_20220101T000000.tif", np.ones((1, 4, 4), np.uint16),
               descriptions=("B02",), tags={"PRODUCT_LEVEL": "L1C"})
    write_band(tmp_path / "b" / "S2B_Y_20220101T000000.tif", np.ones((13, 4, 4), np.uint16))
    levels = sorted(s.level for s in discover_scenes(tmp_path).s2)
    assert levels == ["L1C", "L1C"]


def test_undated_scene_is_a_clear_error(tmp_path):
    write_band(tmp_path / "S1_scene.tif", np.ones((2, 4, 4), np.float32), nodata=None)
    with pytest.raises(InputDataError, match="no acquisition date"):
        discover_scenes(tmp_path)


def test_names_dates_and_units():
    assert canonical_band("B02") == "B2" and canonical_band("b8a") == "B8A"
    assert canonical_band("clm") == "CLOUD_MASK" and canonical_band("NDVI") is None
    assert date_from_text("S2B_MSIL2A_20170924T93020_69_24") == dt.date(2017, 9, 24)
    assert date_from_text("scene_2021-07-03") == dt.date(2021, 7, 3)
    assert check_s1_unit(np.array([-12.0, -18.0, 1.0]), "the band") == "dB"
    assert check_s1_unit(np.array([0.02, 0.3, np.nan]), "the band") == "linear"


def test_landcover_scheme_nearest_upsampled_onto_finer_grids(tmp_path, write_s2):
    """A 10 m Chesapeake-coded label on a 2 m grid and its x5 fine grid: seven classes,
    each label pixel copied onto the fine pixels it covers (nearest), codes mapped first."""
    from contract.dataset import read_manifest
    from contract.grid import Grid
    from contract.label_schemes import SCHEMES
    from contract.patches import patch_stack
    from tests.support.rasters import CRS, X0, Y0

    write_s2("20210603")
    rng = np.random.default_rng(0)
    codes = rng.choice([0, 1, 2, 3, 4, 5, 6, 15], size=(32, 32)).astype(np.uint8)
    label = write_band(tmp_path / "labels" / "chesapeake_10m.tif", codes, nodata=None)
    grid = Grid(CRS, X0, Y0, 80, 80, 2.0, patch_size=40, stride=40)  # 160 m at 2 m
    mapping = get_scheme("landcover:chesapeake")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        stack = build_local_stack(tmp_path / "scenes", grid, "2021-06", ("B2",), label=label,
                                  fine_scale=5, label_scheme="landcover:chesapeake",
                                  out_dir=tmp_path / "out", progress=False)
    expected = SCHEMES["chesapeake"].apply(codes[:16, :16])  # the 160 m the grid covers
    with rasterio.open(stack.label) as src:
        np.testing.assert_array_equal(src.read(1), np.kron(expected, np.ones((5, 5), np.uint8)))
    with rasterio.open(stack.label_fine) as src:
        np.testing.assert_array_equal(src.read(1),
                                      np.kron(expected, np.ones((25, 25), np.uint8)))
    assert set(np.unique(expected)) <= {*range(7), 255} and (expected == 255).any()
    patch_stack(stack, tmp_path / "ds", classes=mapping.manifest_classes(),
                label_scheme=mapping.scheme, min_valid_fraction=0.0, progress=False)
    label_meta = read_manifest(tmp_path / "ds")["label"]
    assert label_meta["scheme"] == "landcover"
    assert list(label_meta["classes"].values()) == [
        "cropland", "woodland", "grassland", "water", "impervious", "bare_land", "snow_ice"]


def test_landcover_label_with_codes_outside_its_table_is_refused():
    """Every code a land-cover table lists is plausible; any other code means another scheme."""
    from core.errors import InputDataError
    from gee_export.local.labels import SCHEME_CODES, impervious_codes
    from gee_export.local.plausibility import check_label_codes

    impervious = {name: impervious_codes(name) for name in SCHEME_CODES}
    check_label_codes(np.array([0, 1, 2, 3, 4, 5, 6, 15, 255]), "landcover:chesapeake",
                      SCHEME_CODES, "label", impervious=impervious)
    with pytest.raises(InputDataError, match="9 is not in the 'landcover:chesapeake'"):
        check_label_codes(np.array([1, 2, 9]), "landcover:chesapeake", SCHEME_CODES, "label",
                          impervious=impervious)


def test_export_labels_and_label_scheme_must_agree_on_the_local_backend(tmp_path, capsys):
    from cli.export import main

    (tmp_path / "scenes").mkdir()
    code = main(["--backend", "local", "--scenes", str(tmp_path / "scenes"), "--bbox",
                 "114.2,30.4,114.25,30.45", "--labels", "landcover:chesapeake",
                 "--label-scheme", "worldcover", "--out", str(tmp_path / "o"), "--dry-run"])
    err = capsys.readouterr().err
    assert code == 2 and "--labels landcover:chesapeake and --label-scheme worldcover" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "o").exists()


def _shifted_label(path, east: float, north: float, res: float = 10.0):
    """A binary label of the grid's area whose origin lies ``east``/``north`` m off the grid's."""
    from tests.gee_export.local.conftest import X0, Y0
    from tests.support.rasters import CRS
    size = round(320 / res)
    values = np.zeros((size, size), np.uint8)
    values[:, size // 2:] = 1
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=1,
                       dtype="uint8", crs=CRS, nodata=255,
                       transform=rasterio.Affine(res, 0, X0 + east, 0, -res, Y0 + north)) as dst:
        dst.write(values, 1)
    return path


@pytest.mark.parametrize("east,north,res,says", [
    (5.0, 0.0, 10.0, "+5 m east and +0 m north"),  # half a pixel: passed without a note before
    (0.0, -4.0, 10.0, "+0 m east and -4 m north"),
    (15.0, 0.0, 30.0, "-5 m east and +0 m north"),  # a coarse label half a grid pixel off
    (0.0, 0.0, 10.0, None),     # on the grid
    (10.0, -20.0, 10.0, None),  # off by whole pixels: on the grid's pixel edges
    (0.5, 0.0, 10.0, None),     # a twentieth of a pixel: rounding, not a shift
    (10.0, 0.0, 30.0, None),    # a 30 m label on 10 m pixel edges
])
def test_a_label_off_the_grid_by_part_of_a_pixel_is_refused(tmp_path, write_s2, small_grid,
                                                           east, north, res, says):
    write_s2("20210603")
    label = _shifted_label(tmp_path / "labels" / "label.tif", east, north, res)

    def build():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return build_local_stack(tmp_path / "scenes", small_grid, "2021-06", ("B2",),
                                     label=label, out_dir=tmp_path / "out", progress=False)
    if says is None:
        build()
        return
    with pytest.raises(InputDataError, match="is off the grid and the scenes' pixels") as err:
        build()
    message = str(err.value)
    assert says in message and "\n" not in message, message
    assert "rio warp LABEL OUT --bounds 500000 4999680 500320 5000000 --res 10" in message
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_label_on_its_scenes_pixels_passes_on_a_grid_off_both(tmp_path, write_s2, small_grid):
    """Scenes and label share pixels (a TerraMesh cell) on a grid snapped elsewhere: all of
    them are warped alike, so the label is no more off than the imagery."""
    from dataclasses import replace
    write_s2("20210603")
    label = _shifted_label(tmp_path / "labels" / "label.tif", 0.0, 0.0)
    grid = replace(small_grid, x0=small_grid.x0 + 5.0, width=31)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        stack = build_local_stack(tmp_path / "scenes", grid, "2021-06", ("B2",), label=label,
                                  out_dir=tmp_path / "out", progress=False)
    with rasterio.open(stack.label) as src:
        assert src.transform == grid.transform


def _fine_label_stack(tmp_path, small_grid, fine_scale: int):
    """The x``fine_scale`` label of a stack with a 10 m label (left half impervious) and what
    the run warned; ``labels/`` may also hold a finer label the test wrote."""
    coarse = np.zeros((32, 32), np.uint8)
    coarse[:, :16] = 1
    write_band(tmp_path / "scenes" / "labels" / "label.tif", coarse, nodata=None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        stack = build_local_stack(tmp_path / "scenes", small_grid, "2021-06", ("B2",),
                                  fine_scale=fine_scale, out_dir=tmp_path / "out",
                                  progress=False)
    with rasterio.open(stack.label_fine) as src:
        assert src.transform == small_grid.scaled(fine_scale).transform
        return src.read(1), [str(w.message) for w in caught]


def test_a_finer_label_than_the_fine_grid_is_used_by_mode(tmp_path, write_s2, small_grid):
    """--fine-scale 5 beside a 1 m label_x10.tif and no label_x5: the 1 m label is put on the
    2 m grid by the labels' rule (mode from a finer source), not the 10 m label up-sampled."""
    write_s2("20210603")
    rows, cols = np.indices((320, 320))
    one_metre = ((rows // 2 + cols // 2) % 2).astype(np.uint8)  # a 2 m checkerboard
    one_metre[:2, :2] = 0  # one 1 m pixel of the first 2 m cell, outvoted
    one_metre[0, 0] = 1
    write_band(tmp_path / "scenes" / "labels" / "label_x10.tif", one_metre, res=1.0, nodata=None)
    fine, warned = _fine_label_stack(tmp_path, small_grid, 5)
    r, c = np.indices((160, 160))
    np.testing.assert_array_equal(fine, (r + c) % 2)
    assert not [w for w in warned if "fine" in w]


def test_a_fine_label_from_the_10_m_label_alone_is_warned(tmp_path, write_s2, small_grid):
    """No label finer than 10 m: the fine label is the 10 m one up-sampled (as on Earth
    Engine), and a warning says it holds no finer detail."""
    write_s2("20210603")
    fine, warned = _fine_label_stack(tmp_path, small_grid, 5)
    expected = np.zeros((160, 160), np.uint8)
    expected[:, :80] = 1
    np.testing.assert_array_equal(fine, expected)
    notes = [w for w in warned if "--fine-scale 5" in w]
    assert len(notes) == 1 and "no finer detail than the 10 m label" in notes[0]
    assert "labels/label_x5.tif" in notes[0]
