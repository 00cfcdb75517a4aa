"""Resuming checks the given options against the recorded run, recipes included."""

from __future__ import annotations

import pytest
import torch

from gee_export.core.errors import ConfigError
from training.config import apply_recipe, config_from_mapping
from training.run_folder import CHECKPOINT, resume_config


def _record(out, **options):
    cfg = apply_recipe(config_from_mapping({"data": "patches", "out_dir": str(out), **options}))
    torch.save({"config": cfg.to_dict()}, out / CHECKPOINT)
    return cfg


def test_the_same_model_kwargs_resume_a_run_whose_recipe_added_its_own(tmp_path):
    # crofusenet's recipe adds its head to the model's arguments; the user's flags do not
    # name it, and giving the same flags again must still resume the run.
    widths = {"widths": [8, 16, 32, 64, 128]}
    recorded = _record(tmp_path, model="crofusenet", model_kwargs=widths)
    assert "head" in recorded.model_kwargs
    cfg = resume_config(tmp_path, {"model": "crofusenet", "model_kwargs": widths})
    assert dict(cfg.model_kwargs) == dict(recorded.model_kwargs)


def test_other_model_kwargs_are_still_refused(tmp_path):
    _record(tmp_path, model="crofusenet", model_kwargs={"widths": [8, 16, 32, 64, 128]})
    with pytest.raises(ConfigError, match="model_kwargs"):
        resume_config(tmp_path, {"model_kwargs": {"widths": [4, 8, 16, 32, 64]}})
