"""The judge's label check on the real Dynamic World tiles: what their built label means."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from experiments.builtup_labels import check_table, label_check, outline_mask
from experiments.builtup_tiles import DW_FOLDER, find_tile


@pytest.mark.slow
def test_java_built_labels_are_settlement_outlines_and_its_strip_is_one(shared_data, tmp_path):
    """Over two in five of Java's pixels labelled built are vegetation by their spectra; its
    eastern strip (one polygon) holds most of the not-built pixels that look open; the
    picture shows the tile's colours beside its label."""
    tile = find_tile(shared_data / DW_FOLDER, "java")
    check = label_check(tile, tmp_path / "java.png")
    whole, strip, rest = check["whole"], check["outlines"], check["without_outlines"]
    assert whole["built_pixels"] == strip["built_pixels"] + rest["built_pixels"] == 54_325
    assert 0.35 < whole["built_vegetated"] < 0.5 and 0.4 < whole["built_ndvi_median"] < 0.6
    assert whole["other_ndvi_median"] > 0.8 and whole["other_impervious_like"] < 0.02
    assert strip["other_impervious_like"] > 10 * rest["other_impervious_like"]
    mask = outline_mask(tile)
    assert mask is not None and mask[:, 434:].all() and not mask[:, :434].any()
    assert check["picture"] == "java.png"
    with Image.open(tmp_path / "java.png") as png:
        assert png.width > 2 * png.height  # two panels side by side
    ghana = label_check(find_tile(shared_data / DW_FOLDER, "ghana_a"))
    assert set(ghana) == {"whole"} and outline_mask(find_tile(shared_data / DW_FOLDER,
                                                              "ghana_a")) is None
    table = check_table({"java": check, "ghana_a": ghana})
    rows = [line.split() for line in table.splitlines()[2:]]
    assert [r[0] for r in rows] == ["java"] * 3 + ["ghana_a"]
    assert f"{100 * whole['built_vegetated']:.1f}" in table and "54,325" in table
    assert np.isfinite(ghana["whole"]["built_ndvi_median"])


@pytest.mark.slow
def test_training_exports_can_leave_the_outlines_unlabelled(shared_data, tmp_path):
    """``--ignore-outlines``: the scene folder's label is a copy whose strip is unmarked (0,
    which the export ignores), every other pixel as labelled; an --out made the other way is
    refused before any export."""
    import rasterio

    from core.errors import ConfigError
    from experiments.builtup import check_labels
    from experiments.builtup_tiles import scene_folder

    tile = find_tile(shared_data / DW_FOLDER, "java")
    folder = scene_folder(tile, tmp_path / "scenes", ignore=outline_mask)
    label = folder / tile.label.name
    with rasterio.open(tile.label) as a, rasterio.open(label) as b:
        given, edited = a.read(1), b.read(1)
    assert not label.is_symlink() and (edited[:, 434:] == 0).all()
    assert np.array_equal(edited[:, :434], given[:, :434]) and (given[:, 434:] == 7).any()
    assert scene_folder(tile, tmp_path / "kept").joinpath(tile.label.name).is_symlink()
    check_labels(tmp_path / "out", True)
    with pytest.raises(ConfigError, match="outlines ignored, and this run would have them kept"):
        check_labels(tmp_path / "out", False)
