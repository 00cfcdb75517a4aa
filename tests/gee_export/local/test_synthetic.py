"""The SYNTHETIC scene: layout, tags, determinism and known answers."""

from __future__ import annotations

import re

import numpy as np
import pytest
import rasterio

from core import progress
from core.errors import ConfigError
from gee_export.local.synthetic import (
    BUILDING,
    CLASS_S1,
    CLASS_S2,
    ENL,
    ISA_CLASSES,
    S2_BANDS,
    VEGETATION,
    WATER,
    generate_scene,
)

SIZE, K = 128, 4


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return generate_scene(tmp_path_factory.mktemp("syn") / "scene", seed=5, width=SIZE,
                          height=SIZE, fine_scale=K)


def read(path):
    with rasterio.open(path) as src:
        return src.read(1), src


def test_layout_names_and_tags(scene):
    root = scene.root
    assert (root / "SYNTHETIC_README.txt").read_text().startswith("SYNTHETIC SCENE")
    assert scene.s2_dates == ("20190603", "20190613", "20190618", "20190628")
    s2_name = re.compile(r"S2/S2X_MSIL2A_(\d{8})T103021_N0000_SYNTHETIC/"
                         r"S2X_MSIL2A_\1T103021_N0000_SYNTHETIC_(B\d\d|B8A|SCL)\.tif$")
    s1_name = re.compile(r"S1/S1X_IW_GRDH_1SDV_(\d{8})T103021_SYNTHETIC/"
                         r"S1X_IW_GRDH_1SDV_\1T103021_SYNTHETIC_(VV|VH)\.tif$")
    s2 = sorted(p.relative_to(root).as_posix() for p in (root / "S2").rglob("*.tif"))
    s1 = sorted(p.relative_to(root).as_posix() for p in (root / "S1").rglob("*.tif"))
    assert len(s2) == 4 * 11 and all(s2_name.match(p) for p in s2)
    assert len(s1) == 5 * 2 and all(s1_name.match(p) for p in s1)
    for band in (*S2_BANDS, "SCL"):
        with rasterio.open(scene.s2_files["20190613"][band]) as src:
            tags = src.tags()
            assert tags["ACQUISITION_DATE"] == "2019-06-13" and tags["PRODUCT_LEVEL"] == "L2A"
            assert tags["SYNTHETIC"] == "yes" and src.crs.to_epsg() == 32650
            native = 10 if band in ("B02", "B03", "B04", "B08") else 20
            assert src.res == (native, native) and src.nodata == 0
            assert src.dtypes[0] == ("uint16" if band != "SCL" else "uint8")
            assert src.bounds == scene.grid.bounds
    with rasterio.open(scene.s1_files["20190611"]["VH"]) as src:
        assert src.tags()["SIGMA0_UNIT"] == "linear" and src.tags()["SYNTHETIC"] == "yes"
        assert src.dtypes[0] == "float32" and src.res == (10, 10)
    with rasterio.open(scene.label_fine) as src:
        assert src.shape == (SIZE * K, SIZE * K) and src.transform == scene.grid.scaled(K).transform


def test_deterministic_and_seeded(scene, tmp_path):
    again = generate_scene(tmp_path / "again", seed=5, width=SIZE, height=SIZE, fine_scale=K)
    other = generate_scene(tmp_path / "other", seed=6, width=SIZE, height=SIZE, fine_scale=K)
    for pick in (lambda s: s.s2_files["20190613"]["B04"], lambda s: s.s1_files["20190605"]["VV"],
                 lambda s: s.label):
        np.testing.assert_array_equal(read(pick(scene))[0], read(pick(again))[0])
        assert not np.array_equal(read(pick(scene))[0], read(pick(other))[0])


def test_regenerating_the_same_scene_is_skipped(scene):
    before = {p: p.stat().st_mtime_ns for p in scene.root.rglob("*.tif")}
    assert generate_scene(scene.root, seed=5, width=SIZE, height=SIZE, fine_scale=K) == scene
    assert {p: p.stat().st_mtime_ns for p in scene.root.rglob("*.tif")} == before


def test_labels_follow_the_class_map(scene):
    fine_classes = scene.class_map_fine()
    fractions = scene.class_fractions()
    label, _ = read(scene.label)
    fine_label, _ = read(scene.label_fine)
    labelled = label != 255
    assert 0.05 < labelled.mean() < 1 and 0.05 < (label[labelled] == 1).mean() < 0.9
    isa = fractions[list(ISA_CLASSES)].sum(axis=0)
    np.testing.assert_array_equal(label[labelled], (isa[labelled] >= 0.5).astype(np.uint8))
    fine_labelled = fine_label != 255
    np.testing.assert_array_equal(fine_label[fine_labelled],
                                  np.isin(fine_classes[fine_labelled], ISA_CLASSES))


def test_sentinel2_reflectance_matches_the_class_spectra(scene):
    fractions = scene.class_fractions()
    clear_date = scene.s2_dates[0]
    for band in ("B02", "B03", "B04", "B08"):
        dn, _ = read(scene.s2_files[clear_date][band])
        reflectance = dn / 10000.0
        for code in (BUILDING, VEGETATION, WATER):
            pure = fractions[code] == 1.0
            assert pure.sum() > 20, f"too few pure pixels of class {code}"
            want = CLASS_S2[code][S2_BANDS.index(band)]
            assert reflectance[pure].mean() == pytest.approx(want, rel=0.05, abs=0.003), band
    red, _ = read(scene.s2_files[clear_date]["B04"])
    nir, _ = read(scene.s2_files[clear_date]["B08"])
    ndvi = (nir.astype(float) - red) / (nir.astype(float) + red)
    assert ndvi[fractions[VEGETATION] == 1].mean() > 0.7
    assert ndvi[fractions[WATER] == 1].mean() < -0.3


def test_clouds_shadows_and_swath_edge_are_flagged(scene):
    for d in scene.s2_dates:
        scl, _ = read(scene.s2_files[d]["SCL"])
        cloudy = np.isin(scl, (8, 9))
        if d in scene.cloudy_dates:
            assert 0.05 < cloudy.mean() < 0.4 and (scl == 3).any()
            red_edge = read(scene.s2_files[d]["B05"])[0] / 10000.0
            assert red_edge[scl == 9].mean() > 0.35  # bright cloud tops
        else:
            assert not cloudy.any() and not (scl == 3).any()
    swath_date = scene.s2_dates[2]
    scl, _ = read(scene.s2_files[swath_date]["SCL"])
    b05, _ = read(scene.s2_files[swath_date]["B05"])
    np.testing.assert_array_equal(scl == 0, b05 == 0)
    assert 0.05 < (scl == 0).mean() < 0.2


def test_sentinel1_linear_power_with_gamma_speckle(scene):
    fractions = scene.class_fractions()
    stack = np.stack([read(scene.s1_files[d]["VV"])[0] for d in scene.s1_dates])
    veg = fractions[VEGETATION] == 1.0
    samples = stack[:, veg]
    assert samples.mean() == pytest.approx(CLASS_S1[VEGETATION][0], rel=0.05)
    cv = samples.std() / samples.mean()
    assert cv == pytest.approx(1 / np.sqrt(ENL), rel=0.1)  # single-look-like speckle, ENL 4.4
    building = fractions[BUILDING] == 1.0
    assert stack[:, building].mean() > 3 * stack[:, veg].mean()  # double bounce
    assert (stack > 0).all()  # linear power, never dB


def test_bad_parameters_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="even"):
        generate_scene(tmp_path, width=101, height=100)
    with pytest.raises(ConfigError, match="cloudy"):
        generate_scene(tmp_path, s2_days=(1, 2), cloudy=(3,))


def test_scene_generation_shows_a_progress_bar_unless_asked_not_to(tmp_path, capsys,
                                                                   monkeypatch):
    monkeypatch.setattr(progress, "live_terminal", lambda stream=None: True)  # a live bar
    generate_scene(tmp_path / "a", width=32, height=32, fine_scale=2, progress=False)
    assert "synthetic scene" not in capsys.readouterr().err
    generate_scene(tmp_path / "b", width=32, height=32, fine_scale=2)
    err = capsys.readouterr().err
    assert "synthetic scene" in err and "11/11" in err  # class map, labels, 4 S2 + 5 S1 dates
