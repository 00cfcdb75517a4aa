"""The real-pair change experiment: its scenes, its implanted change and the docs' figures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from experiments.builtup import DEFAULT_BANDS
from experiments.change_pairs import (
    ARTIFICIAL,
    FIGURES_JSON,
    GATE,
    SLOVENIA,
    SLOVENIA_BANDS,
    SPECTRAL_THRESHOLDS,
    apply_normalisation,
    figures_markdown,
    gain_score,
    implant,
    load_scenes,
    main,
    match_statistics,
    pair_magnitudes,
    score_gate,
    score_ndbi,
    spectral_arms,
    spectral_gain_score,
    summarise,
    update_page,
)
from inference.assess.figures import page_block
from inference.predict.change import arrays as change

ROOT = Path(__file__).resolve().parents[2]


def test_the_clear_scenes_are_paired_in_date_order(shared_data):
    dates, scenes, lulc = load_scenes(shared_data / SLOVENIA)
    assert dates == ["2015-07-11", "2015-08-30", "2015-09-09"]  # the two cloudy ones left out
    assert scenes.shape == (3, 13, 101, 100) and (lulc == ARTIFICIAL).sum() == 198


def test_implanted_blocks_hold_the_dates_own_artificial_spectra_away_from_it():
    rng = np.random.default_rng(0)
    lulc = np.ones((60, 60), np.uint16)
    lulc[:10, :10] = ARTIFICIAL
    later = rng.random((3, 60, 60)).astype(np.float32)
    moved, truth = implant(later, lulc, blocks=4, size=6)
    assert truth.sum() == 4 * 36 and not (truth & (lulc == ARTIFICIAL)).any()
    assert np.array_equal(moved[:, ~truth], later[:, ~truth])
    spectra = {tuple(v) for v in later[:, lulc == ARTIFICIAL].T}
    assert all(tuple(v) in spectra for v in moved[:, truth].T)


def test_real_data_page_quotes_the_change_figures_of_its_json(tmp_path):
    """A figure of the page that its source JSON no longer gives fails here."""
    page = (ROOT / "docs" / "evidence" / "change.md").read_text(encoding="utf-8")
    metrics = json.loads((ROOT / FIGURES_JSON).read_text(encoding="utf-8"))
    start, end = page_block(page, FIGURES_JSON)
    block = page[start:end]
    assert block == figures_markdown(metrics)
    both = metrics["summary"]["unet-s2-window"]["both"]
    assert f"{100 * both['false_change'][0]:.2f} ± " in block and f"{both['f1'][0]:.3f}" in block
    metrics["summary"]["unet-s2-window"]["both"]["f1"] = [0.123, 0.01]
    (tmp_path / "f.json").write_text(json.dumps(metrics))
    (tmp_path / "p.md").write_text("a\n<!-- figures: other.json -->\nx\n<!-- end figures -->\n"
                                   "<!-- figures: f.json -->\nold\n<!-- end figures -->\nb\n")
    assert update_page("f.json", "p.md", root=str(tmp_path)) is True
    text = (tmp_path / "p.md").read_text()
    assert "0.123 ± 0.010" in text and "old" not in text and "\nx\n" in text


def test_bad_options_are_refused_before_any_work(tmp_path, capsys):
    assert main(["--out", str(tmp_path / "o"), "--margin", "0.6", "-q"]) == 2
    err = capsys.readouterr().err
    assert "--margin must be in [0, 0.5)" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def _pair(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """13-band earlier/later dates alike but for noise, and the later one with bright blocks
    whose NDBI (B11 against B8) rises: the only true gain."""
    rng = np.random.default_rng(seed)
    earlier = (0.2 + 0.05 * rng.random((13, 40, 40))).astype(np.float32)
    later = earlier + rng.normal(0, 0.005, earlier.shape).astype(np.float32)
    implanted, truth = later.copy(), np.zeros((40, 40), bool)
    truth[5:11, 5:11] = truth[25:31, 20:26] = True
    implanted[:, truth] += 0.05
    implanted[SLOVENIA_BANDS.index("B11"), truth] += 0.2
    return earlier, later, implanted, truth


def test_each_pair_is_scored_under_its_own_spectral_fit():
    earlier, later, implanted, truth = _pair()
    stable, moving = pair_magnitudes(earlier, later, implanted)
    own = change.fit_spectral_change(implanted, earlier)
    assert np.array_equal(moving, change.spectral_magnitude(implanted, earlier, own))
    assert np.array_equal(stable, change.spectral_magnitude(
        later, earlier, change.fit_spectral_change(later, earlier)))
    assert moving[truth].min() > 10 > np.median(moving[~truth])


def test_the_gate_with_ndbi_direction_finds_gain_and_counts_both_ways_on_stable_ground():
    earlier, later, implanted, truth = _pair()
    index = [SLOVENIA_BANDS.index(b) for b in DEFAULT_BANDS]
    found = score_gate(earlier, later, implanted, truth, index)
    assert found["threshold"] == change.DEFAULT_SPECTRAL_THRESHOLD
    assert found["f1"] == 1.0 and found["auc"] == 1.0
    # stable pair: the later date's outliers are flagged as change whichever way NDBI moved
    later[:, :2, :] += 0.05  # 80 px brighter in every band
    later[SLOVENIA_BANDS.index("B8"), 0, :] += 0.2  # NDBI falls on row 0, rises on row 1
    later[SLOVENIA_BANDS.index("B11"), 1, :] += 0.2
    stable = score_gate(earlier, later, implanted, truth, index)
    assert stable["false_change"] == 80 / 1600 and stable["false_gain"] == 40 / 1600


def test_spectral_arms_follow_the_bands_gate_and_the_models_direction():
    earlier, later, implanted, truth = _pair(1)
    magnitudes = pair_magnitudes(earlier, later, implanted)
    p_from = np.full(truth.shape, 0.3)
    p_to = p_from + np.random.default_rng(1).normal(0, 0.05, truth.shape)  # noise both ways
    p_implanted = p_to.copy()
    p_implanted[truth] = 0.35  # rose, but clears no margin: the bands must find it
    p_implanted[:4, :] = 0.9  # rose on unchanged bands: not change
    arms = spectral_arms((p_from, p_to, p_implanted), magnitudes, truth)
    assert list(arms) == [f"spectral {k:g}" for k in SPECTRAL_THRESHOLDS] == ["spectral 3",
                                                                             "spectral 4"]
    for scores in arms.values():
        assert scores["f1"] == 1.0 and scores["auc"] == 1.0 and scores["false_change"] < 0.01
        assert scores["flagged_implanted"] == truth.mean()
    p_implanted[truth] = 0.2  # fell: the model says no gain, whatever the bands say
    assert all(s["f1"] == 0.0 for s in spectral_arms((p_from, p_to, p_implanted), magnitudes,
                                                     truth).values())


def test_the_gate_is_a_baseline_row_and_spectral_arms_follow_the_others():
    earlier, later, implanted, truth = _pair()
    index = [SLOVENIA_BANDS.index(b) for b in DEFAULT_BANDS]
    arm = {"false_change": 0.01, "false_gain": 0.0, "f1": 0.5, "auc": 0.9}
    runs = {"m": [{"arms": {name: arm for name in ("spectral 4", "NDBI gain matched",
                                                   "spectral 3", "training stats", "both")}}]}
    table = summarise(runs, {"p": score_ndbi(earlier, later, implanted, truth, 0.1)},
                      {"p": score_gate(earlier, later, implanted, truth, index)})
    assert list(table) == ["m", "NDBI gain", GATE]
    assert list(table["m"]) == ["both", "training stats", "spectral 3", "spectral 4",
                                "NDBI gain matched"]
    assert table[GATE]["natural"]["f1"][0] == 1.0


def test_a_scene_normalised_model_is_given_each_scenes_own_statistics(tmp_path):
    """``unet-s2`` (``--norm scene``): a per-band gain and offset of a whole scene moves nothing."""
    import torch

    from experiments.change_pairs import probability
    from training.modelfile import ModelMeta, load_model, save_model_file
    from training.models import create_model

    bands = ("B2", "B3", "B4", "B8")
    kwargs = {"bands": list(bands), "widths": [4, 8, 8, 16, 16], "input_norm": "none"}
    torch.manual_seed(0)
    net = create_model("unet-s2", len(bands), 2, **kwargs)
    meta = ModelMeta("unet-s2", len(bands), 2, bands, (0.1,) * 4, (0.05,) * 4,
                     model_kwargs=kwargs, norm="scene")
    model = load_model(save_model_file(tmp_path / "m.pt", net, meta))
    scene = np.random.default_rng(0).uniform(0.02, 0.3, (4, 40, 36)).astype(np.float32)
    gain = np.array([1.3, 0.8, 1.1, 0.9], np.float32)[:, None, None]
    offset = np.array([0.05, 0.03, 0.02, 0.0], np.float32)[:, None, None]
    p = probability(model, scene)
    assert p.shape == (40, 36)
    assert np.abs(p - probability(model, scene * gain + offset)).max() < 1e-3


def test_the_pages_claims_on_encoders_and_level_1c_hold_in_its_json():
    """docs/evidence/change.md: no model's own score above the gate, the encoders' per-date
    maps less steady than the windowed U-Net's and moved by dark-object subtraction."""
    metrics = json.loads((ROOT / FIGURES_JSON).read_text(encoding="utf-8"))
    ranking, gate = metrics["seed_ranking"], metrics["seed_ranking"][GATE]
    models = [r for r in ranking if r != GATE]
    assert all(min(ranking[r]["differenced"]) < gate for r in models)
    default = f"spectral {change.DEFAULT_SPECTRAL_THRESHOLD:g}"
    assert [r for r in models if min(ranking[r][default]) > gate] == ["bands"]
    dates = metrics["date_summary"]
    encoders = ("presto", "galileo-nano", "galileo-nano:head")
    assert dates["unet-s2-window"]["same_class"][1] == 1.0  # L1C and DOS: the same map
    assert all(dates[r]["same_class"][0] < 0.7 for r in encoders)
    steadiest = dates["unet-s2-window"]["L1C"]
    for r in encoders:  # mean and worst seed move more between dates
        assert dates[r]["L1C"]["share_range"][0] > steadiest["share_range"][0]
        assert dates[r]["L1C"]["share_range"][2] > steadiest["share_range"][2]
    assert [f["shown"] for f in metrics["level_facts"]["L1C"]] == ["L1C"] * 3
    assert [f["shown"] for f in metrics["level_facts"]["DOS"]] == ["L2A"] * 3


def test_the_arms_scores_rank_what_their_rule_calls_gain_and_stats_are_matched_per_band():
    rng = np.random.default_rng(0)
    a, b, magnitude = rng.random(500), rng.random(500), rng.random(500) * 6
    score = gain_score(a, b)
    for m in (0.0, 0.1, 0.3):
        assert ((score > m) == (change.margin_change(a, b, m) == change.GAIN)).all()
    score = spectral_gain_score(a, b, magnitude)
    for t in (0.5, 3.0, 4.5):
        assert ((score > t) == (change.spectral_change(a, b, magnitude, t) == change.GAIN)).all()
    moved = match_statistics(rng.random((4, 20, 30)), (0.1, 0.2, 0.3, 0.4),
                             (0.01, 0.02, 0.03, 0.04)).reshape(4, -1)
    assert moved.mean(axis=1) == pytest.approx((0.1, 0.2, 0.3, 0.4), abs=1e-5)
    assert moved.std(axis=1) == pytest.approx((0.01, 0.02, 0.03, 0.04), rel=1e-4)


def test_the_normalised_arm_applies_the_fit_per_band_in_float32_keeping_nan():
    later = np.random.default_rng(1).random((2, 3, 4)).astype(np.float32)
    later[1, 0, 0] = np.nan
    fit = change.fit_relative_normalisation(later, later * 2 + 1)
    back = apply_normalisation(later, fit)
    assert back.dtype == np.float32 and np.isnan(back[1, 0, 0])
    assert np.allclose(back[:, 1:], later[:, 1:] * 2 + 1, atol=1e-5)
