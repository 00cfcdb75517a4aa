"""``isamap-train`` judges the labels before the run folder is made: codes outside the scheme
and a training split without a labelled pixel are one line, exit 2, nothing written."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cli.train import train_main
from tests.support.rasters import write_patch_dataset


def _argv(root, out):
    return ["--data", str(root), "--out", str(out), "--model", "unet", "--model-kwargs",
            json.dumps({"widths": [4, 8, 16, 32, 64]}), "--epochs", "1", "--batch-size", "2",
            "--workers", "0", "--precision", "fp32", "--no-progress", "-q"]


@pytest.mark.parametrize("labels, says", [
    ([None, np.full((32, 32), 10, np.uint8)] + [None] * 8,
     "the train labels (label) of {root} hold the codes [10], outside the scheme's classes "
     "0..1 ['pervious', 'impervious']"),
    ([None] * 6 + [np.full((32, 32), 7, np.uint8)] + [None] * 3,
     "the val labels (label) of {root} hold the codes [7]"),
    ([np.full((32, 32), 255, np.uint8)] * 6 + [None] * 4,
     "the train labels of {root} hold no labelled pixel (all nodata, 255)"),
    ([np.zeros((32, 32), np.uint8)] * 6 + [None] * 4,  # "finished ... MIoU 25.65 %", exit 0
     "the train labels of {root} hold only the class 'pervious' (6,144 labelled pixels, none "
     "of ['impervious']): a model trained on one class maps every pixel as it"),
], ids=["code-10-in-train", "code-7-in-val", "all-nodata", "one-class"])
def test_labels_the_loss_cannot_take_are_refused_before_the_run_folder(labels, says, tmp_path,
                                                                      capsys):
    root = write_patch_dataset(tmp_path / "ds", labels=labels)
    out = tmp_path / "run"
    assert train_main(_argv(root, out)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and says.format(root=root) in err[0], err
    assert not out.exists()  # refused before the run folder


def test_a_crop_larger_than_the_patches_is_refused_and_the_recipes_is_whole_patches(
        tmp_path, capsys):
    """``--crop-size 64`` on 32 px patches trained on whole patches without a word."""
    root = write_patch_dataset(tmp_path / "ds")
    out = tmp_path / "run"
    assert train_main([*_argv(root, out), "--crop-size", "64"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--crop-size 64 is larger than the dataset's 32 px patches, so " \
        "nothing would be cropped; give --crop-size 32 or less (0 trains on whole patches)" \
        in err[0], err
    assert not out.exists()
