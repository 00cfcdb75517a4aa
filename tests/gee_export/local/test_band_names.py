"""Real scene files as they arrive: unnamed S2 bands, no dates, a separate SCL file.

The band-name check (``plausibility.check_s2_band_names``) is judged on the seven real L2A
tiles of the sample data: the right names pass everywhere (snow included), wrong orders that
a user could plausibly type are refused wherever the scene has vegetation.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest
import rasterio

from core.errors import InputDataError
from gee_export.local import plausibility
from gee_export.local.scenes import S2_L2A_ORDER, discover_scenes
from tests.support.rasters import crop_raster

TERRAMESH = ("282D_485L_3_3", "38D_378R_2_3", "433D_629L_3_1", "609U_541L_3_0")
DYNAMIC_WORLD = ("java", "ghana_a", "ghana_b")
VEGETATED = (("terramesh_s1s2", "282D_485L_3_3_S2L2A.tif"),
             ("terramesh_s1s2", "433D_629L_3_1_S2L2A.tif"),
             ("dynamicworld_s2", "java_s2l2a.tif"), ("dynamicworld_s2", "ghana_a_s2l2a.tif"))
WRONG_ORDERS = {
    "reversed": S2_L2A_ORDER[::-1],
    "red and NIR swapped": tuple({"B4": "B8", "B8": "B4"}.get(b, b) for b in S2_L2A_ORDER),
    "L1C order without B10": ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B9", "B11",
                              "B12", "B8A"),
    "shifted by one": S2_L2A_ORDER[1:] + S2_L2A_ORDER[:1],
}


def _samples(path: Path, names) -> dict[str, np.ndarray]:
    with rasterio.open(path) as src:
        data = src.read(out_shape=(src.count, 128, 128)).astype(np.float64)
    data[data == 0] = np.nan
    return {name: data[i] / 10000.0 for i, name in enumerate(names)}


def _all_tiles(root: Path) -> list[Path]:
    return ([root / "terramesh_s1s2" / f"{c}_S2L2A.tif" for c in TERRAMESH]
            + [root / "dynamicworld_s2" / f"{t}_s2l2a.tif" for t in DYNAMIC_WORLD])


def test_right_band_names_pass_on_every_real_tile(shared_data):
    for path in _all_tiles(shared_data):
        plausibility.check_s2_band_names(_samples(path, S2_L2A_ORDER), path.name)


@pytest.mark.parametrize("order", sorted(WRONG_ORDERS))
def test_wrong_band_orders_are_refused_on_vegetated_tiles(shared_data, order):
    for folder, name in VEGETATED:
        path = shared_data / folder / name
        with pytest.raises(InputDataError, match="--s2-band-names"):
            plausibility.check_s2_band_names(_samples(path, WRONG_ORDERS[order]), name)


@pytest.fixture
def terramesh_crop(shared_data, tmp_path) -> Path:
    """A 64 px crop of the Chilean TerraMesh cell as shipped: S2 unnamed and undated."""
    src = shared_data / "terramesh_s1s2"
    folder = tmp_path / "scenes"
    for kind in ("S2L2A", "S1RTC", "LULC"):
        where = folder / "labels" if kind == "LULC" else folder  # the label layout
        crop_raster(src / f"433D_629L_3_1_{kind}.tif", where / f"433D_629L_3_1_{kind}.tif",
                    80, 80, 64, 64)
    return folder


def test_unnamed_twelve_band_s2_is_not_guessed(terramesh_crop):
    with pytest.raises(InputDataError) as err:
        discover_scenes(terramesh_crop)
    assert "--s2-band-names" in str(err.value) and "not guessed" in str(err.value)


def test_named_undated_s2_and_tagged_s1_are_read(terramesh_crop):
    with pytest.raises(InputDataError, match="--scene-date"):
        discover_scenes(terramesh_crop, s2_band_names=S2_L2A_ORDER)
    found = discover_scenes(terramesh_crop, s2_band_names=S2_L2A_ORDER,
                            date=dt.date(2020, 4, 8))
    (s2,), (s1,) = found.s2, found.s1
    assert s2.band_names == S2_L2A_ORDER and s2.date == dt.date(2020, 4, 8)
    assert s1.band_names == ("VV", "VH")
    assert s1.date == dt.date(2020, 4, 11)  # its own DATETIME tag, not the stated date
    assert [p.name for p in found.labels] == ["433D_629L_3_1_LULC.tif"]
    with pytest.raises(InputDataError, match="not Sentinel-2 band names"):
        discover_scenes(terramesh_crop, s2_band_names=("B1", "B2", "X", *S2_L2A_ORDER[3:]),
                        date=dt.date(2020, 4, 8))


def test_a_separate_scl_file_joins_its_stacked_scene(shared_data, tmp_path):
    src = shared_data / "dynamicworld_s2"
    for kind in ("s2l2a", "scl", "label"):
        crop_raster(src / f"java_{kind}.tif", tmp_path / f"java_{kind}.tif", 0, 0, 48, 48)
    found = discover_scenes(tmp_path, date=dt.date(2019, 7, 13))
    (scene,) = found.s2
    assert scene.product == "java_s2l2a" and scene.has("SCL")
    assert scene.band("SCL").path.name == "java_scl.tif"
    assert scene.band_names[:4] == ("B1", "B2", "B3", "B4")
    assert [p.name for p in found.labels] == ["java_label.tif"]


def test_the_band_name_check_names_its_override_and_obeys_it(terramesh_crop, caplog):
    """The relations hold in typical scenes, not in every real one: the refusal names
    ``--trust-band-names``, which makes it a warning."""
    from gee_export.local import sentinel2

    wrong = WRONG_ORDERS["shifted by one"]
    scenes = discover_scenes(terramesh_crop, s2_band_names=wrong, date=dt.date(2020, 1, 1)).s2
    with pytest.raises(InputDataError, match="pass --trust-band-names"):
        sentinel2.check_band_names(scenes, {}, frozenset())
    sentinel2.check_band_names(scenes, {}, frozenset(), trust_names=True)
    assert "used as named (--trust-band-names)" in caplog.text


def test_a_correctly_named_real_cell_whose_b3_b4_correlate_at_0_79_passes(shared_data,
                                                                          tmp_path):
    """A TerraMesh cell, rightly named, was refused by default: r(B3, B4) 0.79 < 0.85. Over the
    seven tiles' 64-128 px windows right names fall to 0.62, wrong orders keep a median of
    0.87 or more: the pair now refuses below 0.6, and wrong orders are still refused above."""
    from gee_export.local import sentinel2

    folder = tmp_path / "scenes"
    crop_raster(shared_data / "terramesh_s1s2" / "433D_629L_3_1_S2L2A.tif",
                folder / "433D_629L_3_1_S2L2A.tif", 0, 160, 64, 64)
    with rasterio.open(folder / "433D_629L_3_1_S2L2A.tif") as src:
        data = src.read().astype(np.float64)
    r = np.corrcoef(data[2].ravel(), data[3].ravel())[0, 1]
    assert 0.75 < r < 0.85  # B3, B4 in ESA's order
    scenes = discover_scenes(folder, s2_band_names=S2_L2A_ORDER,
                             date=dt.date(2020, 1, 1)).s2
    sentinel2.check_band_names(scenes, {}, frozenset())  # no --trust-band-names needed
