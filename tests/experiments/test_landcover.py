"""The fine-from-coarse experiment: held-out pixels, the filter, the scoring, an end-to-end run."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

import experiments.landcover as lc
from contract.bands import LABEL_NODATA
from contract.label_schemes import LANDCOVER_CLASSES
from core.errors import ConfigError, InputDataError
from experiments.chesapeake_nlcd import CHESAPEAKE_FOLDER, PRODUCT_BANDS
from experiments.landcover_fold import arm_loss, class_weights_from_counts
from experiments.landcover_report import metric_summary, product_confusion
from experiments.landcover_train import share_decision
from experiments.naip import NAIP_FOLDER
from inference.predict.postprocess import KEEP_WINDOW


def _scene(name="s", test_from=None, size=64):
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float32)
    image = np.stack([rows, cols, rows, cols])  # each pixel says where it is
    truth = np.zeros((size, size), np.uint8)
    test = np.zeros((size, size), bool)
    if test_from is not None:
        test[test_from:, test_from:] = True
    return lc.Scene(name, image, truth, {"p": truth.copy()}, test)


def test_training_crops_never_touch_held_out_pixels():
    scenes = [_scene("quadrant", 50, 100), _scene("held out", 0, 100), _scene("free", None, 100)]
    data = lc.CropDataset(scenes, [s.truth for s in scenes], np.zeros(4), np.ones(4), 32, 300,
                          seed=0)
    assert len(data.images) == 2  # the held-out scene gives no crop
    for i in range(300):
        crop = data[(0, i)]["image"].numpy()  # flipped / turned, but its values say where
        r, c = int(crop[0].min()), int(crop[1].min())
        if i % 2 == 0:  # the quadrant scene
            assert r + 32 <= 50 or c + 32 <= 50
    with pytest.raises(ConfigError, match="does not fit"):
        lc.CropDataset([_scene("q", 20, 64)], [np.zeros((64, 64), np.uint8)], np.zeros(4),
                       np.ones(4), 48, 4, seed=0)


def test_scoring_counts_the_same_pixels_for_product_and_model():
    s = _scene("s", 32, 64)
    s.truth[:, :] = 1
    s.truth[40:48, 40:48] = LABEL_NODATA  # unlabelled reference: not scored
    s.products["p"][:, :] = 1
    s.products["p"][32:40, 32:] = 2  # wrong on 8 rows of the held-out quadrant
    s.products["p"][56:, 56:] = LABEL_NODATA  # the product says nothing: not scored either
    scored = s.scored
    assert scored.sum() == 32 * 32 - 64 - 64
    m = np.asarray(product_confusion([s], "p"))
    assert m.sum() == scored.sum() and m[1, 2] == 8 * 32
    summary = metric_summary([m], ["woodland", "grassland"])
    assert summary["OA"]["mean"] == pytest.approx(m[1, 1] / m.sum())
    assert set(summary) == {"OA", "PA", "UA", "F1"}


def test_the_filter_blanks_only_the_training_chips_the_model_disagrees_with():
    s = _scene("s", 32, 64)
    label = np.ones((64, 64), np.uint8)
    pred = np.ones((64, 64), np.uint8)
    pred[:32, :32] = 0  # disagrees on the whole top-left chip
    pred[:32, 32:] = np.where(np.arange(32) % 4 == 0, 1, 0)[None, :]  # agrees on 25 %
    out, dropped, scored = lc.filter_labels([s], [label], [pred], chip=32, threshold=0.2)
    assert (dropped, scored) == (1, 3)  # the held-out chip is not scored
    assert (out[0][:32, :32] == LABEL_NODATA).all()
    assert (out[0][:32, 32:] == 1).all() and (out[0][32:] == 1).all()
    assert (label == 1).all()  # the caller's labels are untouched


class _Recorder(nn.Module):
    """A real 1x1 convolution that records the window sizes it is called on."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 7, 1)
        self.sizes = []

    def forward(self, x):
        self.sizes.append(tuple(x.shape[-2:]))
        return self.conv(x)


def test_inference_windows_have_the_training_crop_size_and_cover_the_image():
    net = _Recorder()
    image = np.random.default_rng(0).standard_normal((4, 300, 260)).astype(np.float32)
    out = lc.predict_windows(net, image, 128)
    assert set(net.sizes) == {(128, 128)} and len(net.sizes) == 9
    with torch.no_grad():
        whole = net.conv(torch.from_numpy(image)[None])[0].argmax(0).numpy()
    assert np.array_equal(out, whole)  # a 1x1 model: windows change nothing
    net.sizes.clear()
    lc.predict_windows(net, image[:, :100, :100], 128)
    assert net.sizes == [(100, 100)]


def test_held_out_patches_are_checked(shared_data, tmp_path):
    data = shared_data / CHESAPEAKE_FOLDER
    with pytest.raises(InputDataError, match="also in --data-dir"):
        lc.nlcd_folds(lc.LandCoverConfig(data_dir=str(data), test_dir=str(data)))
    with pytest.raises(ConfigError, match="--groups"):
        lc.nlcd_folds(lc.LandCoverConfig(data_dir=str(data), split="patches", groups=((8,),)))
    with pytest.raises(ConfigError, match="--groups"):
        lc.nlcd_folds(lc.LandCoverConfig(data_dir=str(data), split="patches",
                                         groups=((0, 1), (1, 2))))
    folds = lc.nlcd_folds(lc.LandCoverConfig(data_dir=str(data), split="patches"))
    assert len(folds) == 4 and all(len(f) == 8 for f in folds)
    held = [[s.id[-3:] for s in f if not s.trains] for f in folds]
    assert held == [["1-0", "1-4"], ["1-1", "1-5"], ["1-2", "1-6"], ["1-3", "1-7"]]
    assert sorted(s.id for s in lc.scored_scenes(folds)) == sorted(s.id for s in folds[0])
    for f in folds:  # a held-out patch is wholly held out, a training patch wholly trains
        assert all(s.test.all() or not s.test.any() for s in f)
    soft = folds[0][0].soft[lc.SOFT]  # patch 0: NLCD developed open space as a soft label
    assert (soft == 221).sum() == 10268 and (soft == 222).sum() == 18


def test_quadrant_folds_score_every_pixel_once_and_train_on_developed_land(shared_data):
    folds = lc.nlcd_folds(lc.LandCoverConfig(data_dir=str(shared_data / CHESAPEAKE_FOLDER)))
    assert len(folds) == 4 and all(len(f) == 8 and all(s.trains for s in f) for f in folds)
    held = np.sum([[s.test for s in f] for f in folds], axis=0)  # (patch, H, W)
    assert (held == 1).all()  # every pixel is held out by exactly one fold
    assert all(s.test.sum() == s.test.size // 4 for f in folds for s in f)
    assert not np.array_equal(folds[0][0].test, folds[0][1].test)  # quadrants rotate
    developed = folds[0][0].product_input[-1] > 0  # patch 0's developed NLCD cells
    for f in folds:  # every fold trains on developed cells, never on its held-out ones
        assert (developed & ~f[0].test).sum() > 1000
    soft = [lc.CropDataset(f, [s.labels(lc.SOFT) for s in f], np.zeros(4), np.ones(4), 128,
                           8, 0).labels[0] for f in folds]
    assert all((x == 221).any() for x in soft)


def test_product_channels_follow_the_normalised_image_unscaled(shared_data):
    scene = lc.nlcd_folds(lc.LandCoverConfig(data_dir=str(shared_data / CHESAPEAKE_FOLDER)))[0][0]
    x = lc.model_input(scene, np.full(4, 0.5), np.full(4, 0.25), with_product=True)
    assert x.shape == (4 + len(PRODUCT_BANDS), 256, 256)
    assert np.allclose(x[:4], (scene.image - 0.5) / 0.25, atol=1e-6)
    onehot = x[4:4 + len(LANDCOVER_CLASSES)]
    labelled = scene.products["NLCD"] != LABEL_NODATA
    assert (onehot.sum(0)[labelled] == 1).all()
    assert (onehot.argmax(0)[labelled] == scene.products["NLCD"][labelled]).all()
    assert np.allclose(np.unique(x[-1]), [0, 0.1, 0.35])  # open space, low intensity
    assert lc.model_input(scene, np.zeros(4), np.ones(4)).shape == (4, 256, 256)


def test_balanced_weights_are_median_frequency_and_zero_for_an_absent_class():
    assert class_weights_from_counts([300, 100, 0]) == pytest.approx([2 / 3, 2.0, 0.0])
    with pytest.raises(ConfigError, match="all class counts are zero"):
        class_weights_from_counts([0, 0])


def test_the_arms_losses_weigh_classes_and_read_soft_labels(shared_data):
    cfg = lc.LandCoverConfig(data_dir=str(shared_data / CHESAPEAKE_FOLDER))
    scenes = lc.nlcd_folds(cfg)[1]
    arms = {a.name: a for a in lc.SETTINGS["nlcd"].arms}
    soft = [s.labels(lc.SOFT) for s in scenes]
    weighted = arm_loss(cfg, arms[lc.SR], soft, scenes)
    weights = weighted.class_weight.tolist()
    assert max(weights) <= cfg.weight_cap and min(w for w in weights if w) < 1
    assert {v for v, _, _ in weighted.soft} == {221, 222, 223, 224}
    refine = arms[f"{lc.INPUT} + label SR, impervious by share"]
    loss = arm_loss(cfg, refine, soft, scenes)
    assert loss.class_weight is None and {v for v, _, _ in loss.soft} == {221, 222, 223, 224}
    assert refine.product_input and refine.share_rule
    ceiling = arms[f"{lc.CEILING}, class weights"]  # weights from the reference's own counts
    truth = [s.labels(ceiling.label) for s in scenes]
    assert all(t is s.truth for t, s in zip(truth, scenes, strict=True))
    reference = arm_loss(cfg, ceiling, truth, scenes).weight.tolist()
    assert reference != weights and max(reference) <= cfg.weight_cap
    assert not ceiling.filtered and not arms[lc.CEILING].filtered
    assert lc.PAPER == lc.SETTINGS["nlcd"].paper == "hrnet IN + filter"
    assert lc.SETTINGS["nlcd"].headline == (lc.DEFAULT_ARM, "NLCD")
    default = arms[lc.DEFAULT_ARM]  # the paper's method, the keep rule, the product's shares
    assert default.filtered and default.keep_rule and not default.product_input
    assert default.window == KEEP_WINDOW and lc.SHARES in lc.DEFAULT_ARM
    assert replace(default, name=lc.PAPER, keep_rule=False, window=0) == arms[lc.PAPER]
    kept = arms[f"{lc.INPUT}, {lc.KEEP}"]  # NLCD input and the keep rule, without the shares
    assert replace(kept, name=lc.INPUT, keep_rule=False) == arms[lc.INPUT]


@pytest.mark.slow
def test_the_experiment_runs_end_to_end_and_resumes(shared_data, tmp_path):
    """One run of both settings, resumed; ``--windows 16 128`` given, so the same run shows
    that the window arms share the default model and get their table (formerly a test of its
    own that trained the ``nlcd`` models a second time for that).

    ``nlcd`` reads the first three of the eight real patches (patch 0 held out, two training
    ones): every model's maps cover each patch, and what is asserted is patch 0's (the product's
    figures exactly) or holds for any tiny model."""
    patches = tmp_path / "patches"
    patches.mkdir()
    for path in sorted((shared_data / CHESAPEAKE_FOLDER).glob("*.npz"))[:3]:
        (patches / path.name).symlink_to(path)
    cfg = lc.LandCoverConfig(
        data_dir=str(patches), naip_dir=str(shared_data / NAIP_FOLDER),
        settings=("nlcd", "naip"), seeds=(0,), split="patches", groups=((0,),),
        windows=(16, 128),
        model={"width": 2, "stem_width": 4, "stage1_width": 2, "modules": [1, 1, 1],
               "blocks": 1},
        nlcd_iterations=1, naip_iterations=1, naip_batch=2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # pytest -n 2 on two cores: no OpenMP threads spinning
    try:
        report = lc.run_experiment(cfg, tmp_path)
        stamp = (tmp_path / "runs" / "nlcd_fold0_seed0.json").stat().st_mtime_ns
        again = lc.run_experiment(cfg, tmp_path)
    finally:
        torch.set_num_threads(threads)
    assert (tmp_path / "runs" / "nlcd_fold0_seed0.json").stat().st_mtime_ns == stamp  # reused
    doc = json.loads((tmp_path / "metrics.json").read_text())
    test = doc["test"]
    assert test["setting"] == "nlcd" and test["model"] == lc.DEFAULT_ARM
    assert test["paper"]["model"] == "hrnet IN + filter"
    assert 0.75 < test["oa_product"] < 0.85  # NLCD on patch 0
    assert 0 <= test["oa_model"] <= 1
    classes = {"woodland", "grassland", "impervious"}
    assert set(test["f1_model"]) == set(test["f1_product"]) == classes
    assert test["f1_product"]["impervious"] == pytest.approx(2 * 18 / (18 + 770))
    assert set(doc["settings"]) == {"nlcd", "naip"}
    naip = doc["settings"]["naip"]
    assert 0.75 <= naip["products"]["confusion product"]["OA"]["mean"] <= 0.85
    assert naip["products"]["mode product"]["OA"]["mean"] > 0.9
    assert set(naip["arms"]) == {a.name for a in lc.SETTINGS["naip"].arms}
    assert again["test"] == report["test"]
    points = test["points"]  # the same two maps on a sample of the held-out pixels
    assert points["strata"] == "NLCD" and points["n"] >= 100  # >= 50 per NLCD class there
    assert abs(points["oa_product"] - test["oa_product"]) <= 3 * points["oa_product_ci95"]
    assert 0 <= points["oa_model"] <= 1 and 0 <= points["oa_model_ci95"] < 0.2
    assert set(points["f1_model_ci95"]) == set(points["f1_product"]) == classes
    design = doc["settings"]["naip"]["points"]["design"]
    assert design["strata"] == "confusion product" and design["n"] == 50 * len(
        design["allocation"])
    assert set(naip["points"]["products"]) == {"confusion product", "mode product"}
    assert len(naip["scenes"]["folds"]) == 1 and len(naip["scenes"]["folds"][0]) == 5
    table = (tmp_path / "comparison.md").read_text()
    assert "| NLCD (the product) |" in table and "chips dropped" in table
    assert "| map | OA | F1 impervious |" in table
    assert "points, stratified by the classes of NLCD" in table
    ranking = doc["settings"]["nlcd"]["impervious_ranking"]  # where, apart from how many
    assert 0.9 < ranking["brightness"]["auc"] < 1  # roads and roofs are bright in NAIP
    assert 0.5 < ranking["brightness"]["auc_developed"] < 1
    assert 0 < ranking["brightness"]["precision_at_best"] <= 1
    assert 0 < ranking["brightness"]["best_f1"] <= 1
    names = {w: lc.DEFAULT_ARM.replace(f"{KEEP_WINDOW} px", f"{w} px")
             for w in (16, KEEP_WINDOW, 128)}
    nlcd_arms = {a.name for a in lc.SETTINGS["nlcd"].arms}
    assert {a.name for a in cfg.spec("nlcd").arms} == nlcd_arms | set(names.values())
    assert set(ranking["arms"]) == nlcd_arms | set(names.values())  # the window arms too
    for arm in ranking["arms"].values():
        assert len(arm["auc"]["per_seed"]) == 1 and 0 <= arm["auc"]["mean"] <= 1
    assert "| score | AUC, all pixels | AUC, developed cells |" in table
    keep = doc["keep_check"]  # the keep rule without a network, on the GeoBench tiles
    assert len(keep["tiles"]) == 5 and keep["pooled"]["impervious_pixels"] > 0
    assert "| tile | impervious pixels | green cut (NDVI) |" in table
    arms = doc["settings"]["nlcd"]["arms"]
    kept = arms[f"{lc.PAPER}, {lc.KEEP}"]
    # the product's impervious cells on patch 0 are roads and roofs: kept, whatever the model
    assert kept["PA"]["impervious"]["mean"] >= 18 / 770
    assert arms[lc.DEFAULT_ARM]["PA"]["impervious"]["mean"] >= 18 / 770  # with the shares too
    # the window arms share the default model and get their table
    nlcd = report["settings"]["nlcd"]
    assert nlcd["windows"] == {str(w): a for w, a in names.items()}
    with np.load(tmp_path / "runs" / "nlcd_fold0_seed0.npz") as z:
        score = z[f"{lc.DEFAULT_ARM}{lc.SCORE}|0"]
        for arm in names.values():  # one model: the same impervious probability
            assert np.array_equal(z[f"{arm}{lc.SCORE}|0"], score)
    assert "| window | OA | OA per seed | OA - NLCD | F1 impervious |" in table
    for w, arm in names.items():
        oa = nlcd["arms"][arm]["OA"]["mean"]
        assert f"| {w} px | {100 * oa:.1f} (n.i.) | {100 * oa:.1f} |" in table


def test_more_windows_add_arms_of_the_default_model_only_in_nlcd():
    nlcd, naip = lc.SETTINGS["nlcd"], lc.SETTINGS["naip"]
    spec = lc.with_windows(nlcd, [128, 16, KEEP_WINDOW, 16])
    names = [a.name for a in spec.arms]
    at = names.index(lc.DEFAULT_ARM)
    assert names[at + 1:at + 3] == [lc.DEFAULT_ARM.replace(f"{KEEP_WINDOW} px", f"{w} px")
                                    for w in (16, 128)]
    assert [a for a in spec.arms if a.name not in names[at + 1:at + 3]] == list(nlcd.arms)
    default = spec.arms[at]
    assert all(replace(a, name=default.name, window=default.window) == default
               for a in spec.arms[at + 1:at + 3])  # the default arm's model, another window
    assert lc.with_windows(nlcd, [KEEP_WINDOW]) == nlcd
    assert lc.with_windows(naip, [16]) == naip  # its default arm has no window
    cfg = lc.LandCoverConfig(data_dir="d", naip_dir="n", windows=(16,))
    assert cfg.spec("nlcd") == lc.with_windows(nlcd, [16]) and cfg.spec("naip") == naip
    plain = lc.LandCoverConfig(data_dir="d", naip_dir="n")
    assert cfg.key("nlcd", 0, 0) != plain.key("nlcd", 0, 0)  # the runs hold more maps
    assert cfg.key("naip", 0, 0) == plain.key("naip", 0, 0)


def test_command_refuses_a_missing_test_folder_in_one_line(tmp_path, capsys):
    assert lc.main(["--test", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "--test" in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_command_refuses_a_window_under_one_pixel(tmp_path, capsys):
    assert lc.main(["--windows", "0", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "--windows" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_command_refuses_a_point_sample_without_a_variance(tmp_path, capsys):
    assert lc.main(["--points-per-stratum", "1", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "--points-per-stratum" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_the_share_rule_maps_the_expected_share_of_soft_training_pixels():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(7), size=(64, 64)).transpose(2, 0, 1).astype(np.float32)
    label = np.zeros((64, 64), np.uint8)
    label[:32] = 221  # a soft cell: 10 % impervious expected
    s = _scene("s", 48, 64)
    out = share_decision([probs], [label], [s], {221: {"impervious": 0.1}}, "impervious")[0]
    imp = LANDCOVER_CLASSES.index("impervious")
    train = (label == 221) & ~s.test
    assert (out[train] == imp).mean() == pytest.approx(0.1, abs=0.005)
    hard = label != 221  # other pixels keep the argmax
    assert np.array_equal(out[hard], probs.argmax(0)[hard])
    # a soft pixel is impervious exactly where its probability passes one threshold
    t = probs[imp][(label == 221) & (out == imp)].min()
    assert (out[label == 221] == imp).tolist() == (probs[imp][label == 221] >= t).tolist()
    assert (out[(label == 221) & (out != imp)] != imp).all()


def test_developed_pixels_are_those_with_soft_labels():
    scene = _scene()
    assert scene.developed is None  # no soft labels: nothing to tell
    soft = np.zeros((64, 64), np.uint8)
    soft[:4, :4], soft[4:8, :4] = 221, LABEL_NODATA
    with_soft = lc.Scene("s", scene.image, scene.truth, scene.products, scene.test,
                         {"soft": soft})
    expected = np.zeros((64, 64), bool)
    expected[:4, :4] = True
    np.testing.assert_array_equal(with_soft.developed, expected)
