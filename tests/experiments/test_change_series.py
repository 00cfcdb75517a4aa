"""The per-date maps of the L1C series: the L2A stand-in, the encoder recipes, the summaries."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import ConfigError
from experiments.change_figures import dates_rows, quality_rows
from experiments.change_pairs import ARTIFICIAL, SLOVENIA, SLOVENIA_BANDS, load_scenes, main
from experiments.change_series import (
    DOS_FLOOR,
    check_recipe,
    dark_object_subtraction,
    date_maps,
    frozen_recipe,
    level_facts,
    summarise_dates,
)


def test_dark_object_subtraction_moves_each_bands_floor_to_a_dark_surface():
    rng = np.random.default_rng(0)
    scene = (rng.uniform(0.0, 0.3, (3, 40, 40)) + np.array([0.08, 0.05, 0.0])[:, None, None])
    out = dark_object_subtraction(scene.astype(np.float32))
    floors = np.percentile(out.reshape(3, -1), 0.5, axis=1)
    assert np.allclose(floors[:2], DOS_FLOOR, atol=1e-6)  # hazy bands lose their haze
    assert np.allclose(out[2], scene[2], atol=1e-6)  # a band already dark keeps its values
    assert np.allclose(out - scene.astype(np.float32), (out - scene)[:, :1, :1], atol=1e-6)


def test_encoder_recipes_are_named_and_need_their_file():
    assert frozen_recipe("bands") == (None, "bands")
    assert frozen_recipe("presto") == ("presto", "concat")
    assert frozen_recipe("galileo-nano:head") == ("galileo-nano", "head")
    assert frozen_recipe("unet-s2-window") is None
    with pytest.raises(ConfigError, match="concat or head"):
        frozen_recipe("presto:sideways")
    check_recipe("bands", {})
    with pytest.raises(ConfigError, match="--encoder presto=PATH"):
        check_recipe("presto", {})


def test_an_encoder_recipe_without_its_file_is_refused_before_any_work(tmp_path, capsys):
    assert main(["--out", str(tmp_path / "o"), "--recipes", "galileo-nano:head", "-q"]) == 2
    err = capsys.readouterr().err
    assert "--encoder galileo-nano=PATH" in err and "Traceback" not in err
    assert main(["--out", str(tmp_path / "o"), "--recipes", "presto", "--encoder",
                 f"presto={tmp_path / 'none.pt'}", "-q"]) == 2
    assert "no such file" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_the_real_series_shows_path_radiance_until_dark_objects_are_subtracted(shared_data):
    _, scenes, _ = load_scenes(shared_data / SLOVENIA)
    facts = level_facts(scenes, {b: SLOVENIA_BANDS.index(b) for b in ("B2", "B3", "B4", "B8")})
    assert [f["shown"] for f in facts["L1C"]] == ["L1C"] * 3
    assert [f["shown"] for f in facts["DOS"]] == ["L2A"] * 3
    assert all(f["blue_excess"] > 0.03 for f in facts["L1C"])


def test_date_maps_score_each_date_on_both_inputs_and_their_agreement(shared_data):
    _, scenes, lulc = load_scenes(shared_data / SLOVENIA)
    truth = lulc == ARTIFICIAL
    b4, b8 = (SLOVENIA_BANDS.index(b) for b in ("B4", "B8"))

    def not_green(bands: np.ndarray) -> np.ndarray:  # a "model" of two bands: low NDVI
        red, nir = bands[0], bands[1]
        return (1 - (nir - red) / (nir + red)) / 2

    found = date_maps(not_green, scenes, truth, [b4, b8])
    assert set(found) == {"L1C", "DOS", "same_class"} and len(found["same_class"]) == 3
    for name in ("L1C", "DOS"):
        assert len(found[name]["built_share"]) == 3 and found[name]["auc"][0] > 0.5
        assert set(found[name]["stability"]) >= {"flip", "flipped_any", "consistent",
                                                 "stretches"}
        kept = found[name]["stability"]["stretches"]
        assert kept["flipped_any"] <= found[name]["stability"]["flipped_any"]
    summary = summarise_dates({"ndvi": [found, found]})
    assert summary["ndvi"]["L1C"]["auc"][1] == summary["ndvi"]["L1C"]["auc"][2]  # seeds alike
    rows = dates_rows(summary, ["a", "b", "c"])
    assert [r[:2] for r in rows] == [("ndvi", "L1C"), ("ndvi", "DOS")] and len(rows[0]) == 11
    assert "n/a" not in rows[0] and np.isfinite(summary["ndvi"]["L1C"]["stretches_f1"]).all()
    assert quality_rows(summary)[1][-1] == ""  # the agreement is shown once, on the L1C row
