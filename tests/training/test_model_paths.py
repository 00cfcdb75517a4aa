"""A model file is shared: it names its dataset and run relative to its own folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from inference.predict.calibration import model_file_patches
from tests.support.rasters import write_patch_dataset
from tests.support.shared_files import private_strings
from training.config import TrainConfig
from training.modelfile import read_model_file
from training.run.patch_training import train


def test_a_model_file_names_no_local_folder_and_finds_its_dataset_when_moved_with_it(tmp_path):
    """One run serves both claims (formerly two tests, each training its own run on its own
    dataset): a model file names no local folder and finds its dataset when moved with it;
    and, a walk: isamap-prune's and the demo's checkpoint.pt held the absolute data and
    out_dir in the model description it records (``meta``: the dataset and the run's options
    read back from a model file, or given so); it names them as model.pt does now, and the
    run still resumes from it."""
    from training.run.folder import resume_config

    project = tmp_path / "project"
    root = write_patch_dataset(project / "data" / "ds")
    out = project / "runs" / "r1"
    cfg = TrainConfig.of(data=str(root), out_dir=str(out), model="unet",
                         model_kwargs={"widths": [4, 8, 16, 32, 64]}, epochs=2, stop_after=1,
                         max_batches=1, batch_size=2, num_workers=0, device="cpu",
                         precision="fp32", channels_last="off", progress=False)
    assert train(cfg).epochs_run == 1
    meta = torch.load(out / "checkpoint.pt", weights_only=True)["meta"]
    assert str(tmp_path) not in json.dumps(meta)
    assert meta["extra"]["config"]["data"] == meta["extra"]["dataset"]["root"] == "../../data/ds"
    assert meta["extra"]["config"]["out_dir"] == "."
    # the same command resumes, and so does --resume
    assert resume_config(out, {}).data.root == str(root)
    result = train(cfg)
    assert result.epochs_run == 2 and result.finished

    home = str(Path.home())
    # the model file is scanned, its description; the checkpoint stays on this machine
    assert private_strings(project / "runs", [str(tmp_path), *([home] if len(home) > 1
                                                                else [])]) == []
    stored = torch.load(result.model_path, weights_only=True)["meta"]["extra"]
    assert stored["dataset"]["root"] == stored["config"]["data"] == "../../data/ds"
    assert stored["config"]["out_dir"] == "."
    # read back as paths from here, wherever the two went together
    moved = tmp_path / "moved"
    shutil.copytree(project, moved)
    meta, _ = read_model_file(moved / "runs" / "r1" / "model.pt")
    assert meta.extra["dataset"]["root"] == str(moved / "data" / "ds")
    patches = model_file_patches(meta)
    assert patches is not None and "validation split" in patches.check_source
    # moved alone, it does not find it (int8 then reads the input, and says so)
    alone = tmp_path / "alone" / "model.pt"
    alone.parent.mkdir()
    shutil.copy(result.model_path, alone)
    assert model_file_patches(read_model_file(alone)[0]) is None
    # a model file of an older isamap, recording the absolute path, keeps finding it
    payload = torch.load(alone, weights_only=True)
    payload["meta"]["extra"]["dataset"]["root"] = str(root)
    payload.pop("description_sha256")  # older files record no description digest
    torch.save(payload, alone)
    meta, _ = read_model_file(alone)
    assert meta.extra["dataset"]["root"] == str(root) and model_file_patches(meta)


def test_the_encoder_file_a_model_file_records_is_no_private_path(tmp_path):
    """``extra.config.encoder`` (``NAME=PATH``) is written as ``data`` is: relative to the
    file's folder, or the file name alone where the way there spells out other folders."""
    from tests.support.models import conv1x1
    from training.model_meta import ModelMeta
    from training.modelfile import save_model_file

    bands = ("B2", "B3", "B4", "B8", "VV", "VH")
    weights = tmp_path / "project" / "weights" / "presto.pt"
    elsewhere = "/opt/shared/weights/presto/default_model.pt"  # reached only through /

    def saved(encoder: str) -> tuple[dict, dict]:
        meta = ModelMeta(name="unet", in_channels=6, num_classes=2, bands=bands,
                         norm_mean=(0.0,) * 6, norm_std=(1.0,) * 6,
                         extra={"config": {"data": str(tmp_path / "project" / "ds"),
                                           "encoder": encoder, "out_dir": str(run)}})
        path = save_model_file(run / "model.pt", conv1x1(), meta)
        stored = torch.load(path, weights_only=True)["meta"]["extra"]["config"]
        return stored, dict(read_model_file(path)[0].extra["config"])

    run = tmp_path / "project" / "runs" / "r1"
    stored, read = saved(f"presto={weights}")
    assert stored["encoder"] == "presto=../../weights/presto.pt" and stored["data"] == "../../ds"
    assert read["encoder"] == f"presto={weights}"  # read back as a path from here
    stored, _ = saved(f"presto={elsewhere}")
    assert stored["encoder"] == "presto=default_model.pt"
    stored, read = saved("presto")  # an encoder by name alone is no path
    assert stored["encoder"] == read["encoder"] == "presto"



@pytest.mark.slow
def test_the_demos_checkpoint_names_no_absolute_path(patch_root, tmp_path, monkeypatch):
    """The demo resolved its folders and trained with their absolute paths, which its
    checkpoint recorded as the run's options; it gives them as a user types them now."""
    from inference.demo.training import run_demo_training

    monkeypatch.chdir(tmp_path)
    data = tmp_path / "demo_output" / "patches"
    shutil.copytree(patch_root, data)
    run_demo_training(data, tmp_path / "demo_output" / "model", epochs=1, max_batches=1,
                      progress=False)
    ck = torch.load(tmp_path / "demo_output" / "model" / "train" / "checkpoint.pt",
                    weights_only=True)
    text = json.dumps({"config": ck["config"], "meta": ck["meta"]}, default=str)
    assert str(tmp_path) not in text
    assert ck["config"]["data"] == "demo_output/patches"
