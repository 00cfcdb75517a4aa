"""The product's commands as the built-up judge runs them: a joined model's in-region ECE."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil

import numpy as np
import pytest
import rasterio

from cli.evaluate import evaluate_main
from cli.train import started_config, train_main
from core.errors import ConfigError
from experiments.builtup_commands import recorded_otherwise, validation_ece
from tests.support.rasters import write_patch_dataset
from training.modelfile import load_model_file, read_model_file, save_model_file

TINY = {"widths": [4, 8, 8, 8, 8]}


@pytest.fixture(scope="module")
def joined(tmp_path_factory):
    """A model file joining two real trainings of a tiny U-Net, and its dataset."""
    tmp = tmp_path_factory.mktemp("joined")
    root = write_patch_dataset(tmp / "patches", n=10, size=32)
    assert train_main(_argv(root, tmp / "run")) == 0
    return root, tmp / "run" / "model.pt"


def _argv(root, run, *extra: str, tiny=TINY) -> list[str]:
    return ["--data", str(root), "--out", str(run), "--model", "unet",
            "--model-kwargs", json.dumps(tiny), "--members", "2", "--max-iterations", "2",
            "--batch-size", "2", "--workers", "0", "--device", "cpu", "--precision", "fp32",
            "--channels-last", "off", "--no-progress", "-q", *extra]


@pytest.fixture(scope="module")
def old_join(joined, tmp_path_factory):
    """The same run and data copied, its model file as a join made before the mean had a
    temperature of its own wrote it (the members' temperatures only)."""
    root, model_file = joined
    tmp = tmp_path_factory.mktemp("old")
    shutil.copytree(root.parent, tmp, symlinks=True, dirs_exist_ok=True)
    model, meta = load_model_file(model_file)
    calibration = {k: v for k, v in meta.calibration.items()
                   if k not in ("joined", "temperature")}
    save_model_file(tmp / "run" / "model.pt", model,
                    dataclasses.replace(meta, calibration=calibration))
    return tmp / "patches", tmp / "run" / "model.pt"


def test_a_joined_models_in_region_ece_is_the_one_its_own_fit_measured(joined, tmp_path):
    """The join fitted the mean's temperature on its validation split and recorded the ECE
    there after the fit: what ``isamap-evaluate --split val`` reports as mapped. The judge
    reads it without evaluating."""
    root, model_file = joined
    record = read_model_file(model_file)[0].calibration["joined"]
    got = validation_ece(model_file)
    assert record["method"] == "temperature" and got == record["ece_after"]
    assert not (model_file.parent / "val").exists()
    assert evaluate_main(["--model", str(model_file), "--data", str(root), "--split", "val",
                          "--out", str(tmp_path / "ev"), "--device", "cpu", "--precision",
                          "fp32", "--channels-last", "off", "--no-progress", "-q"]) == 0
    want = json.loads((tmp_path / "ev" / "metrics.json").read_text())["calibration"]
    assert got == pytest.approx(want["ece_after"], abs=1e-4) and 0 < got < 1


def test_an_older_joins_in_region_ece_is_isamap_evaluates_on_its_validation_split(old_join,
                                                                                  tmp_path):
    """A join with only its members' records (each member's own) is measured: the ECE
    ``isamap-evaluate --split val`` reports for it on the dataset it trained on; a second
    call reads it back instead of evaluating again."""
    root, model_file = old_join
    meta = read_model_file(model_file)[0]
    assert meta.calibration["method"] == "members" and "joined" not in meta.calibration
    got = validation_ece(model_file)
    assert evaluate_main(["--model", str(model_file), "--data", str(root), "--split", "val",
                          "--out", str(tmp_path / "ev"), "--device", "cpu", "--precision",
                          "fp32", "--channels-last", "off", "--no-progress", "-q"]) == 0
    want = json.loads((tmp_path / "ev" / "metrics.json").read_text())["calibration"]
    assert got == want["ece_before"] and 0 < got < 1
    done = model_file.parent / "val" / "metrics.json"
    stamp = done.stat().st_mtime_ns
    assert validation_ece(model_file) == got and done.stat().st_mtime_ns == stamp


def test_a_join_whose_fit_recorded_no_ece_is_measured(old_join, tmp_path):
    """A fit on too few labelled pixels records no ECE: the judge measures the join as an
    older one (``isamap-evaluate --split val``) instead of failing."""
    root, model_file = old_join
    copy = tmp_path / "copy"
    shutil.copytree(root.parent, copy, symlinks=True)
    shutil.rmtree(copy / "run" / "val", ignore_errors=True)
    model, meta = load_model_file(copy / "run" / "model.pt")
    record = {"method": "none", "temperature": 1.0, "split": "val", "pixels": 50,
              "reason": "50 labelled pixels in the val split, fewer than 100"}
    save_model_file(copy / "run" / "model.pt", model, dataclasses.replace(
        meta, calibration={**meta.calibration, "joined": record}))
    got = validation_ece(copy / "run" / "model.pt")
    assert 0 < got < 1 and (copy / "run" / "val" / "metrics.json").is_file()
    assert got == pytest.approx(validation_ece(model_file))


def test_a_moved_run_finds_its_data_and_without_it_has_no_in_region_ece(old_join, tmp_path,
                                                                       caplog):
    """An older join's dataset is found from the run folder, relative to it: the run and its
    data moved together keep the figure; the data gone gives NaN, said in the log."""
    root, model_file = old_join
    want = validation_ece(model_file)
    moved = tmp_path / "moved"
    shutil.copytree(root.parent, moved, symlinks=True)
    shutil.rmtree(moved / "run" / "val")
    shutil.move(root, tmp_path / "elsewhere")  # the original data is gone: only the copy's
    try:
        assert validation_ece(moved / "run" / "model.pt") == want
        shutil.rmtree(moved / "run" / "val")
        shutil.rmtree(moved / "patches")
        with caplog.at_level(logging.WARNING):
            assert math.isnan(validation_ece(moved / "run" / "model.pt"))
        assert "its training data cannot be read" in caplog.text
    finally:
        shutil.move(tmp_path / "elsewhere", root)


def test_the_judge_scores_a_joined_model_with_its_in_region_ece(joined, shared_data, tmp_path):
    """``score_map`` gives a joined model's in-region ECE as measured on its validation
    split (one training's comes from its calibration record, as a join's own fit's does)."""
    from experiments.builtup import score_map
    from experiments.builtup_tiles import DW_FOLDER, find_tile

    _, model_file = joined
    java = find_tile(shared_data / DW_FOLDER, "java")
    fp = java.footprint
    profile = {"driver": "GTiff", "width": fp.width, "height": fp.height, "count": 1,
               "dtype": "uint8", "crs": fp.crs, "transform": fp.transform, "nodata": 255}
    for name, value in (("m_class.tif", 0), ("m_prob.tif", 10)):
        with rasterio.open(tmp_path / name, "w", **profile) as dst:
            dst.write(np.full((1, fp.height, fp.width), value, np.uint8))
            dst.update_tags(probability_scale="250")
    area = np.ones((fp.height, fp.width), bool)
    s = score_map(java, tmp_path / "m_class.tif", tmp_path / "m_prob.tif", area, model_file)
    assert s["calibration"] == "members" and s["ece_in_region"] == validation_ece(model_file)


def test_what_a_run_folder_records_otherwise_than_a_command_is_read_without_training(
        joined, tmp_path):
    """What the judge reads before it reuses a finished run: each option the command would
    start otherwise, per member; the kind of run; nothing where they agree or nothing is
    recorded."""
    root, model_file = joined
    run = model_file.parent
    assert recorded_otherwise(started_config(_argv(root, run))) == []
    assert recorded_otherwise(started_config(_argv(root, run, "--lr", "0.5"))) == [
        "member0: lr: 0.0001 there, 0.5 now", "member1: lr: 0.0001 there, 0.5 now"]
    assert recorded_otherwise(started_config(_argv(root, run, "--members", "1"))) == [
        "members: 2 there, 1 now"]
    for asked in ("3", "1"):  # a finished join of two is no join of three, nor of one
        assert recorded_otherwise(started_config(_argv(root, run, "--members", asked))) == [
            f"members: 2 there, {asked} now"]
    cut = tmp_path / "cut"  # a run of three cut short after its first two members
    shutil.copytree(run, cut)
    (cut / "model.pt").unlink()
    assert recorded_otherwise(started_config(_argv(root, cut, "--members", "3"))) == []
    extended = tmp_path / "extended"  # a finished join of two, then a third member started
    shutil.copytree(run, extended)
    (extended / "member2").mkdir()
    assert recorded_otherwise(started_config(_argv(root, extended, "--members", "3"))) == [
        "members: 2 joined there, 3 now"]
    assert recorded_otherwise(started_config(_argv(root, tmp_path / "none"))) == []
    elsewhere = started_config(_argv(tmp_path / "elsewhere", run))
    assert recorded_otherwise(elsewhere)[0].startswith("member0: data: ")
    assert recorded_otherwise(elsewhere, ignore=frozenset({"data"})) == []
    single = tmp_path / "single"
    assert train_main(_argv(root, single, "--members", "1")) == 0
    assert recorded_otherwise(started_config(_argv(root, single, "--members", "1"))) == []
    assert recorded_otherwise(started_config(_argv(root, single, "--members", "1", "--seed",
                                                   "5"))) == ["seed: 0 there, 5 now"]
    assert recorded_otherwise(started_config(_argv(root, single))) == ["members: 1 there, 2 now"]
    with pytest.raises(ConfigError, match="one --data root without --resume"):
        started_config([*_argv(root, single), "--resume"])


@pytest.mark.slow
def test_a_join_that_spreads_the_views_and_one_that_does_not_are_told_apart(tmp_path):
    """Two ``unet-s2`` members without flips of their own (nothing to spread) record
    ``member_views: false``; the recipe's join (flips spread) would train them otherwise,
    which is read before any member trains, not when the file is joined."""
    root = write_patch_dataset(tmp_path / "patches", n=8, size=32)
    run = tmp_path / "run"
    tiny = {"widths": [4, 8]}
    base = [a if a != "unet" else "unet-s2" for a in _argv(root, run, tiny=tiny)]
    once = [*base, "--model-kwargs", json.dumps({**tiny, "flips": False})]
    assert train_main(once) == 0
    model, meta = load_model_file(run / "model.pt")
    assert not model.views and meta.model_kwargs["member_views"] is False
    assert recorded_otherwise(started_config(once)) == []
    spread = [*base, "--model-kwargs", json.dumps(tiny)]
    assert recorded_otherwise(started_config(spread)) == [
        "member0: member_views: False there, True now",
        "member1: member_views: False there, True now"]
