"""A run's paths as typed (the encoder's file, the dataset, ``--out``) stay on this machine:
what isamap-train, isamap-predict and isamap-evaluate write for sharing names none of the
maker's folders (model file, COG tags, metrics)."""

from __future__ import annotations

import shutil

import pytest
import torch

from cli.evaluate import evaluate_main
from cli.predict import predict_main
from cli.train import train_main
from tests.support.shared_files import private_strings

USER = "alice7q"
"""A user name no folder of this machine or of pytest's holds."""


@pytest.mark.slow
def test_a_run_given_paths_under_a_users_home_shares_none_of_them(patch_root, presto_file,
                                                                  tmp_path, monkeypatch):
    home = tmp_path / "home" / USER
    shutil.copytree(patch_root, home / "data" / "ds")
    (home / "weights").mkdir()
    shutil.copy(presto_file, home / "weights" / "default_model.pt")
    monkeypatch.chdir(home / "data")
    run = home / "runs" / "r1"
    # the encoder as typed relative, the dataset relative, --out absolute
    assert train_main(["--data", "ds", "--model", "unet-s2", "--encoder",
                       "presto=../weights/default_model.pt", "--out", str(run),
                       "--epochs", "1", "--batch-size", "3", "--model-kwargs",
                       '{"widths": [4, 8, 8, 8, 8]}', "--precision", "fp32",
                       "--channels-last", "off", "--device", "cpu", "--workers", "0",
                       "--no-progress", "--members", "1"]) == 0
    stack = sorted((home / "data" / "ds" / "patches").rglob("r0_c8.tif"))[0]
    assert predict_main(["--model", str(run / "model.pt"), "--input", str(stack), "--out",
                         str(home / "maps" / "isa"), "--tile", "32", "--overlap", "0",
                         "--device", "cpu", "--precision", "fp32"]) == 0
    assert evaluate_main(["--model", str(run / "model.pt"), "--data", str(home / "data" / "ds"),
                          "--out", str(home / "eval"), "--device", "cpu",
                          "--no-progress"]) == 0
    assert (home / "eval" / "metrics.json").is_file()
    assert (home / "maps" / "isa_class.tif").is_file()
    private = [USER, str(tmp_path)]
    for folder in (home / "runs", home / "maps", home / "eval"):
        assert private_strings(folder, private) == []
        # every byte, not only what the scan reads (the checkpoint, a resume record that
        # stays on this machine, holds the options as given: --out among them)
        for path in folder.rglob("*"):
            if path.is_file() and path.name not in ("checkpoint.pt", "config.yaml"):
                raw = path.read_bytes()
                assert USER.encode() not in raw, path
    meta = torch.load(run / "model.pt", weights_only=True)["meta"]
    assert meta["extra"]["config"]["encoder"] == "presto=../../weights/default_model.pt"
