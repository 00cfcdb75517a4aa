"""``isamap-evaluate``'s refusals and its point-assessment report (a new user's walk)."""

from __future__ import annotations

import json

import torch

from cli.evaluate import evaluate_main
from tests.support.rasters import BANDS, write_patch_dataset
from training.model_meta import ModelMeta
from training.modelfile import save_model_file
from training.models import create_model


def _model_file(path, pixel_size: float = 10.0):
    """A tiny untrained U-Net of the test bands, trained (as its file says) on ``pixel_size``."""
    torch.manual_seed(0)
    kwargs = {"widths": [4, 8, 8, 8, 8]}
    model = create_model("unet", len(BANDS), 2, **kwargs)
    meta = ModelMeta(name="unet", in_channels=len(BANDS), num_classes=2, bands=BANDS,
                     norm_mean=(0.1,) * len(BANDS), norm_std=(1.0,) * len(BANDS),
                     model_kwargs=kwargs, pixel_size=pixel_size)
    return save_model_file(path, model, meta)


def _evaluate(model, data, out, *more) -> int:
    return evaluate_main(["--model", str(model), "--data", str(data), "--out", str(out),
                          "--device", "cpu", "--precision", "fp32", "--channels-last", "off",
                          "--no-progress", *more])


def test_a_dataset_of_other_pixels_than_the_models_is_refused(tmp_path, capsys):
    model = _model_file(tmp_path / "model.pt", pixel_size=10.0)
    data = write_patch_dataset(tmp_path / "ds20", n=6, resolution=20.0)
    out = tmp_path / "ev"
    assert _evaluate(model, data, out) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and not out.exists()
    assert f"the dataset {data} has pixels of 20 m, but the model was trained on 10 m" in err
    assert "--resolution 10" in err
    same = write_patch_dataset(tmp_path / "ds10", n=6)  # the same model on 10 m pixels runs
    assert _evaluate(model, same, out) == 0
    assert json.loads((out / "metrics.json").read_text())["patches"] == 2
