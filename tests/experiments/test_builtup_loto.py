"""Leave-one-tile-out: its folds, merged datasets, intervals and the docs' figures."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from contract.dataset import merge_datasets
from core.errors import ConfigError, InputDataError
from experiments.builtup_judge import interval, summarise
from experiments.builtup_loto import (
    FIGURES_JSON,
    figures_markdown,
    folds,
    on_mapped_pixels,
    update_page,
)
from inference.assess.figures import page_block
from tests.support.judge_steps import NDBI
from tests.support.rasters import write_patch_dataset
from training.data import PatchDataset

ROOT = Path(__file__).resolve().parents[2]


def test_each_tile_is_held_out_once_and_the_row_split_tile_trains_on_its_north():
    got = {f.held_out: f.train_sets for f in folds(("java", "ghana_a", "ghana_b"), "java")}
    assert got == {"java": ("java_north", "ghana_a", "ghana_b"),
                   "ghana_a": ("java", "ghana_b"), "ghana_b": ("java", "ghana_a")}


def test_merged_datasets_read_every_patch_of_every_part(tmp_path):
    a = write_patch_dataset(tmp_path / "a", n=6, seed=0)
    b = write_patch_dataset(tmp_path / "b", n=6, seed=1)
    merged = merge_datasets({"a": a, "b": b}, tmp_path / "m")
    train = PatchDataset(merged, "train")
    assert len(train) == 2 * len(PatchDataset(a, "train"))
    assert {r["id"].split("/")[0] for r in train.records} == {"a", "b"}
    image, _ = train.read_raw(len(train) - 1)
    assert np.array_equal(image, PatchDataset(b, "train").read_raw(1)[0], equal_nan=True)
    fewer = write_patch_dataset(tmp_path / "c", n=6, bands=("B2", "B3", "B4"))
    with pytest.raises(InputDataError, match="different bands"):
        merge_datasets({"a": a, "c": fewer}, tmp_path / "m2")
    # moved with its parts (an --out moved elsewhere), merged again: its links follow them
    shutil.move(tmp_path, tmp_path.parent / "moved")
    try:
        moved = tmp_path.parent / "moved"
        again = merge_datasets({"a": moved / "a", "b": moved / "b"}, moved / "m")
        assert len(PatchDataset(again, "train")) == len(train)
        assert Path(again, "b").resolve() == (moved / "b").resolve()
    finally:
        shutil.move(tmp_path.parent / "moved", tmp_path)


def test_intervals_are_student_t_over_seeds():
    mean, half = interval([0.8, 0.9, 1.0])
    assert mean == pytest.approx(0.9) and half == pytest.approx(4.303 * 0.1 / np.sqrt(3), 1e-3)
    assert np.isnan(interval([0.5])[1]) and np.isnan(interval([])[0])
    runs = {"t": {"arm": [{"f1_built": 0.6, "auc_built": 0.9}, {"f1_built": 0.8,
                                                                   "auc_built": 0.95}]}}
    s = summarise(runs, {"t": {"ndbi_best_f1": 0.65}})["t"]["arm"]
    assert s["f1_minus_ndbi_best"] == pytest.approx(0.05) and s["seeds"] == 2


def test_ndbi_is_compared_on_the_mapped_pixels_and_the_unmapped_built_ones_are_counted():
    everything = {"ndbi_best_f1": 0.74, "ndbi_best_threshold": -0.06, "ndbi_f1_at_0": 0.27,
                  "ndbi_auc": 0.98, "pixels": 28050, "built_pixels": 586}
    mapped = {"ndbi_best_f1": 0.36, "ndbi_best_threshold": -0.11, "ndbi_f1_at_0": 0.0,
              "ndbi_auc": 0.96, "pixels": 27330, "built_pixels": 204}
    ndbi = {"t": on_mapped_pixels(mapped, everything)}
    assert ndbi["t"]["ndbi_best_f1"] == 0.36 and ndbi["t"]["all_labelled"] == everything
    assert (ndbi["t"]["unmapped_pixels"], ndbi["t"]["unmapped_built_pixels"]) == (720, 382)
    runs = {"t": {"arm": [{"f1_built": 0.7, "auc_built": 0.99}]}}
    summary = summarise(runs, ndbi)
    assert summary["t"]["arm"]["f1_minus_ndbi_best"] == pytest.approx(0.34)


def test_real_data_page_quotes_the_figures_of_its_json(tmp_path):
    """A figure of the page that its source JSON no longer gives fails here."""
    page = (ROOT / "docs" / "real-data.md").read_text(encoding="utf-8")
    metrics = json.loads((ROOT / FIGURES_JSON).read_text(encoding="utf-8"))
    start, end = page_block(page, FIGURES_JSON)
    assert page[start:end].strip() == figures_markdown(metrics).strip()
    for tile, arms in metrics["summary"].items():
        assert f"{metrics['ndbi'][tile]['ndbi_best_f1']:.3f}" in page[start:end]
        for s in arms.values():
            assert f"{s['f1']:.3f}" in page[start:end]
    metrics["summary"]["java"]["unet-s2"]["f1"] = 0.123
    (tmp_path / "f.json").write_text(json.dumps(metrics))
    (tmp_path / "p.md").write_text(f"a\n<!-- figures: {tmp_path / 'f.json'} -->\nSTALE\n"
                                   "<!-- end figures -->\nb\n")
    assert update_page(str(tmp_path / "f.json"), str(tmp_path / "p.md")) is True
    assert "0.123 ± " in (tmp_path / "p.md").read_text() and "STALE" not in \
        (tmp_path / "p.md").read_text()


def test_bad_loto_options_are_refused_before_any_export(shared_data, tmp_path, capsys):
    from experiments.builtup import main
    from experiments.builtup_tiles import DW_FOLDER

    data = str(shared_data / DW_FOLDER)
    for bad, message in ((["--seeds", "0"], "--seeds must be >= 1"),
                         (["--jobs", "0"], "--jobs must be >= 1"),
                         (["--tiles", "ghana_a,ghana_b"], "--train java is not among"),
                         (["--arms", "unet-s2[0]"], "scored beside the arm that trains it"),
                         (["--arms", "unet-s2,unet-s2-tpyo"],
                          "unet-s2-tpyo is neither an arm of the comparison nor an "
                          "isamap-train model"),
                         (["--scl-mask", "3,cloud"], "--scl-mask takes SCL classes 1-11")):
        assert main(["--loto", *bad, "--data", data, "--out", str(tmp_path / "o"), "-q"]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()



def test_the_loto_runs_one_training_per_usable_core_by_default(monkeypatch, tmp_path):
    """Each training is its own one-thread process, so the jobs fill the cores (the scores
    do not depend on their number: each process computes alone on its one thread)."""
    import experiments.builtup as builtup
    from experiments.threads import usable_cores

    seen: list[int] = []

    def loop(*args, jobs: int, **kw):
        seen.append(jobs)
        raise InputDataError("stopped here")

    monkeypatch.setattr(builtup, "run_loto", loop)
    monkeypatch.setattr(builtup, "usable_cores", lambda: 3)  # a machine of 3 usable cores
    for given, jobs in (([], 3), (["--jobs", "1"], 1)):
        assert builtup.main(["--loto", "--data", str(tmp_path), "--out", str(tmp_path / "o"),
                             "--terramesh", "none", "-q", *given]) == 2
        assert seen.pop() == jobs
    assert usable_cores() >= 1  # this machine's, from its affinity or its CPU count


def test_a_members_arm_trains_disjoint_seeds_and_its_first_training_is_scored_beside(tmp_path):
    """``unet-s2`` joins nine trainings: seed g trains 9g to 9g + 8 (no two seeds share one),
    and member 0's own map is scored as ``unet-s2[0]``; a named one-training arm trains seed g."""
    from experiments.builtup_commands import Budget
    from experiments.builtup_loto import run_loto
    from tests.support.judge_steps import fake_steps, fake_training

    trained: list[tuple[str, str, int]] = []

    def train(arm, dataset, run, budget):
        trained.append((dataset.name, arm, budget.seed))
        return fake_training(run)

    def score_map(t, cls, prob, area, model_file):
        f1 = 0.5 if cls.parent.name == "member0" else {"unet-s2": 0.7}.get(
            cls.parent.parent.name, 0.6)
        return {"f1_built": f1, "auc_built": 0.9, "pixels": 16, "built_pixels": 4,
                "mapped_built_share": 0.25}

    steps = fake_steps(train, score_map)
    metrics = run_loto(steps, tmp_path, tmp_path / "o", bands=("B2",), holdout_rows=2,
                       budget=Budget(), arms=("unet-s2", "plain"), seeds=2)
    for fold in ("java", "ghana_a", "ghana_b"):
        assert sorted(s for d, a, s in trained if d == fold and a == "unet-s2") == [0, 1]
        assert sorted(s for d, a, s in trained if d == fold and a == "plain") == [0, 1]
        runs = metrics["runs"][fold]
        assert [r["training_seeds"] for r in runs["unet-s2"]] == [list(range(9)),
                                                                  list(range(9, 18))]
        assert [(r["seed"], r["training_seeds"], r["f1_built"]) for r in runs["unet-s2[0]"]] \
            == [(0, [0], 0.5), (1, [9], 0.5)]
        assert [r["training_seeds"] for r in runs["plain"]] == [[0], [1]]
        assert "unet-s2[0]" not in {a for d, a, s in trained}
    assert metrics["default_arm"] == "unet-s2"
    assert "unet-s2[0]" in (tmp_path / "o" / "loto.txt").read_text()
    # an --out whose unet-s2 maps are of one training (before the recipe joined several)
    for fold in ("java", "ghana_a", "ghana_b"):
        for seed in (0, 1):
            shutil.rmtree(tmp_path / "o" / "runs" / fold / "unet-s2" / f"seed{seed}" / "member0")
    with pytest.raises(ConfigError, match="holds the map of one training, but unet-s2 joins 9"):
        run_loto(steps, tmp_path, tmp_path / "o", bands=("B2",), holdout_rows=2,
                 budget=Budget(), arms=("unet-s2",), seeds=2)


def test_the_product_command_trains_seed_g_of_a_members_arm_from_seed_g_times_k(monkeypatch,
                                                                               tmp_path):
    """The seed spacing has one owner, the experiments' ``isamap-train`` step: ``unet-s2``
    (nine trainings) seed 1 starts at 9; a one-training arm at 1."""
    import experiments.builtup_commands as commands
    from experiments.builtup_commands import Budget

    seen: dict[str, str] = {}

    def product(name, argv):
        seen[argv[argv.index("--out") + 1]] = argv[argv.index("--seed") + 1]

    monkeypatch.setattr(commands, "run_product", product)
    for arm in ("unet-s2", "plain", "unet-s2-fixed"):
        commands.train(arm, tmp_path, tmp_path / arm, Budget(seed=1))
    assert list(seen.values()) == ["9", "1", "9"]


def test_arms_are_checked_at_once_and_not_taken_without_loto(tmp_path, capsys):
    """``--arms nosucharm`` without ``--loto`` was ignored: the single-tile experiment ran its
    ``--models`` for 15 minutes. Each experiment refuses the other's options, and ``--loto``
    refuses an unknown arm before it looks at the data."""
    from experiments.builtup import main

    common = ["--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o"), "-q"]
    prog = "python -m experiments.builtup: error: "
    for argv, line in (
            (["--arms", "nosucharm"], "--arms: an option of the leave-one-tile-out comparison, "
             "and this run is the single-tile experiment (it trains --models); give --loto "
             "too, or leave it out"),
            (["--arms", "unet-s2", "--seeds", "2"], "--arms, --seeds: options of the "
             "leave-one-tile-out comparison, and this run is the single-tile experiment (it "
             "trains --models); give --loto too, or leave them out"),
            (["--loto", "--arms", "nosucharm"], "--arms nosucharm is neither an arm of the "
             "comparison nor an isamap-train model (python -m experiments.builtup --help names "
             "them)"),
            (["--loto", "--models", "unet"], "--models: an option of the single-tile "
             "experiment, and this run is --loto (it compares --arms); leave it out")):
        assert main([*argv, *common]) == 2
        assert capsys.readouterr().err.splitlines() == [prog + line]
    assert list(tmp_path.iterdir()) == []


def test_each_tile_is_scored_whole_and_without_its_coarse_outlines_beside_its_label_check(
        tmp_path):
    """A tile with coarse outlines has every trained arm's maps (and a members arm's first
    training) scored again on its held-out pixels outside them, NDBI on the same pixels; the
    label check of every tile is kept and printed under the table."""
    import dataclasses

    from experiments.builtup_commands import Budget
    from experiments.builtup_loto import run_loto
    from tests.support.judge_steps import fake_steps, fake_training

    def score_map(t, cls, prob, area, model_file):
        n = int(area.sum())
        return {"f1_built": n / 100, "auc_built": 0.9, "pixels": n, "built_pixels": 1,
                "mapped_built_share": 0.25}

    def score_ndbi(t, area):
        return {**NDBI, "pixels": int(area.sum()), "ndbi_best_f1": 0.01 * int(area.sum())}

    def outlines(t):
        mask = np.zeros((4, 4), bool)
        mask[:, 3:] = True
        return mask if t is java else None

    java, other = (SimpleNamespace(footprint=SimpleNamespace(height=4, width=4),
                                   month="2019-07") for _ in range(2))
    checked: list[Path] = []

    def label_check(t, picture):
        checked.append(picture)
        return {"whole": {"built_pixels": 2, "built_vegetated": 0.5, "built_ndvi_median": 0.5,
                          "other_pixels": 6, "other_impervious_like": 0.0,
                          "other_ndvi_median": 0.8}}

    steps = dataclasses.replace(
        fake_steps(lambda arm, dataset, run, budget: fake_training(run), score_map),
        find_tile=lambda data, p, date: java if p == "java" else other,
        score_ndbi=score_ndbi, outlines=outlines, label_check=label_check)
    metrics = run_loto(steps, tmp_path, tmp_path / "o", bands=("B2",), holdout_rows=2,
                       budget=Budget(), arms=("unet-s2", "plain"), seeds=2)
    # java's held-out rows: 2 x 4 px whole, 2 x 3 px without the eastern column
    assert [r["pixels"] for r in metrics["runs"]["java"]["unet-s2"]] == [8, 8]
    outside = metrics["without_outlines"]
    assert list(outside["summary"]) == ["java"] and outside["outline_pixels"] == {"java": 4}
    assert set(outside["summary"]["java"]) == {"unet-s2", "unet-s2[0]", "plain"}
    assert outside["summary"]["java"]["unet-s2"]["f1"] == pytest.approx(0.06)
    assert outside["ndbi"]["java"]["pixels"] == 6
    assert checked == [tmp_path / "o" / "evidence" / f"label_check_{p}.png"
                       for p in ("java", "ghana_a", "ghana_b")]
    text = (tmp_path / "o" / "loto.txt").read_text()
    assert "scored without the coarse outlines" in text and "java: 4 px" in text
    assert text.index("default arm") < text.index("without the coarse") < text.index(
        "label check")


def test_the_base_model_trains_the_default_arm_on_every_tile_whole(tmp_path):
    """``--base``: one training of the default arm on the tiles' whole exports merged, nothing
    held out (the model ``isamap-fit --from`` adapts)."""
    from experiments.builtup_commands import Budget
    from experiments.builtup_loto import DEFAULT_ITERATIONS, build_base
    from tests.support.judge_steps import fake_steps, fake_training

    trained: list[tuple] = []

    def train(arm, dataset, run, budget):
        trained.append((arm, dataset, run, budget.iterations))
        return fake_training(run)

    model = build_base(fake_steps(train, lambda *a: {}), tmp_path, tmp_path / "o",
                       bands=("B2",), budget=Budget(seed=3))
    assert model == tmp_path / "o" / "base" / "seed3" / "model.pt" and model.is_file()
    assert trained == [("unet-s2", tmp_path / "o" / "train" / "base", model.parent,
                        DEFAULT_ITERATIONS)]
    merged = json.loads((tmp_path / "o" / "train" / "base" / "manifest.json").read_text())
    assert sorted(merged["merged_from"]) == ["ghana_a", "ghana_b", "java"]
    assert len(PatchDataset(tmp_path / "o" / "train" / "base", "train")) \
        + len(PatchDataset(tmp_path / "o" / "train" / "base", "val")) \
        + len(PatchDataset(tmp_path / "o" / "train" / "base", "test")) == 18


def test_base_with_loto_or_a_single_tile_option_is_refused_in_one_line(tmp_path, capsys):
    from experiments.builtup import main

    for extra, message in ((["--loto"], "--base trains one model on every tile and --loto "
                                        "holds each out in turn: give one of them"),
                           (["--models", "unet"], "--models: an option of the single-tile "
                                                  "experiment, and this run is --base")):
        assert main(["--base", *extra, "--out", str(tmp_path / "o"), "-q"]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()
