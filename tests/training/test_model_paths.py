"""A model file is shared: it names its dataset and run relative to its own folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from inference.predict.calibration import model_file_patches
from tests.support.rasters import write_patch_dataset
from tests.support.shared_files import private_strings
from training.config import TrainConfig
from training.modelfile import read_model_file
from training.patch_training import train


def test_a_model_file_names_no_local_folder_and_finds_its_dataset_when_moved_with_it(tmp_path):
    project = tmp_path / "project"
    root = write_patch_dataset(project / "data" / "ds")
    result = train(TrainConfig(data=str(root), out_dir=str(project / "runs" / "r1"),
                               model="unet", model_kwargs={"widths": [4, 8, 16, 32, 64]},
                               epochs=1, max_batches=1, batch_size=2, num_workers=0,
                               device="cpu", precision="fp32", channels_last="off",
                               progress=False))
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
