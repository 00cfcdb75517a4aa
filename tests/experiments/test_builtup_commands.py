"""The product's commands as the built-up judge runs them: a joined model's in-region ECE."""

from __future__ import annotations

import json
import logging
import math
import shutil

import numpy as np
import pytest

from cli.evaluate import evaluate_main
from cli.train import train_main
from experiments.builtup_commands import validation_ece
from tests.support.rasters import write_patch_dataset
from training.modelfile import read_model_file

TINY = {"widths": [4, 8, 8, 8, 8]}


@pytest.fixture(scope="module")
def joined(tmp_path_factory):
    """A model file joining two real trainings of a tiny U-Net, and its dataset."""
    tmp = tmp_path_factory.mktemp("joined")
    root = write_patch_dataset(tmp / "patches", n=10, size=32)
    assert train_main(["--data", str(root), "--out", str(tmp / "run"), "--model", "unet",
                       "--model-kwargs", json.dumps(TINY), "--members", "2",
                       "--max-iterations", "2", "--batch-size", "2", "--workers", "0",
                       "--device", "cpu", "--precision", "fp32", "--channels-last", "off",
                       "--no-progress", "-q"]) == 0
    return root, tmp / "run" / "model.pt"


def test_a_joined_models_in_region_ece_is_isamap_evaluates_on_its_validation_split(joined,
                                                                                   tmp_path):
    """The members' records are each member's own: the joined model's in-region ECE is the
    one ``isamap-evaluate --split val`` reports for it on the dataset its file records."""
    root, model_file = joined
    meta = read_model_file(model_file)[0]
    assert meta.calibration["method"] == "members" and "ece_after" not in meta.calibration
    got = validation_ece(model_file)
    assert evaluate_main(["--model", str(model_file), "--data", str(root), "--split", "val",
                          "--out", str(tmp_path / "ev"), "--device", "cpu", "--precision",
                          "fp32", "--channels-last", "off", "--no-progress", "-q"]) == 0
    want = json.loads((tmp_path / "ev" / "metrics.json").read_text())["calibration"]
    assert got == want["ece_before"] and 0 < got < 1
    assert (model_file.parent / "val" / "metrics.json").is_file()


def test_without_its_training_data_a_joined_model_has_no_in_region_ece(joined, caplog):
    """The dataset is found from the run folder (relative to it), not from a recorded path."""
    root, model_file = joined
    moved = root.parent / "moved"
    shutil.move(root, moved)
    try:
        with caplog.at_level(logging.WARNING):
            assert math.isnan(validation_ece(model_file))
        assert "is gone; no in-region ECE" in caplog.text
    finally:
        shutil.move(moved, root)
    assert np.isfinite(validation_ece(model_file))
