"""The int8 calibration and check patches come from the model file's own dataset."""

from __future__ import annotations

import torch

from inference.predict.calibration import model_file_patches
from tests.support.rasters import BANDS, write_patch_dataset
from training.modelfile import ModelMeta


def _meta(root) -> ModelMeta:
    return ModelMeta("unet", len(BANDS), 2, BANDS, (0.0,) * 6, (1.0,) * 6,
                     extra={"dataset": {"root": str(root)}, "config": {"label": "label"}})


def test_training_split_calibrates_and_validation_split_checks_with_labels(tmp_path):
    root = write_patch_dataset(tmp_path / "ds", n=12, size=32)  # 8 train, 2 val, 2 test
    patches = model_file_patches(_meta(root))
    assert patches is not None
    calibration = torch.cat(patches.calibration)
    check, labels = torch.cat(patches.check), torch.cat(patches.labels)
    assert calibration.shape == (8, len(BANDS), 32, 32) and check.shape[0] == 2
    assert labels.shape == (2, 32, 32) and labels.dtype == torch.int64
    assert torch.isfinite(calibration).all()  # normalised, NaN as 0 like the map's tiles
    assert "training split" in patches.calibration_source
    assert "validation split" in patches.check_source and "labelled" in patches.check_source


def test_unreachable_or_unrecorded_dataset_falls_back_to_the_input(tmp_path):
    assert model_file_patches(_meta(tmp_path / "gone")) is None
    assert model_file_patches(ModelMeta("unet", 6, 2, BANDS, (0.0,) * 6, (1.0,) * 6)) is None
