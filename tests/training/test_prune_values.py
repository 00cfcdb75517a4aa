"""``isamap-prune`` checks the dataset's values against the model's training data first."""

from __future__ import annotations

import torch

from cli.prune import prune_main
from tests.support.rasters import BANDS, write_patch_dataset
from training.model_meta import ModelMeta
from training.modelfile import save_model_file
from training.models import create_model

TINY = {"width": 4, "stem_width": 8, "stage1_width": 4, "modules": (1, 1, 1), "blocks": 1}
#: the ranges of write_patch_dataset's bands: reflectance ~0.05-0.2, sigma0 ~-21 to -7 dB
OWN = {**{b: (0.02, 0.1, 0.25) for b in BANDS[:4]},
       "VV": (-19.0, -12.0, -5.0), "VH": (-25.0, -18.0, -11.0)}


def _hrnet_file(path, band_ranges):
    """A tiny untrained 2-class hrnet of the test bands, trained (its file says) on values of
    ``band_ranges``."""
    torch.manual_seed(0)
    meta = ModelMeta(name="hrnet", in_channels=len(BANDS), num_classes=2, bands=BANDS,
                     norm_mean=(0.1,) * len(BANDS), norm_std=(1.0,) * len(BANDS),
                     model_kwargs=TINY, pixel_size=10.0, band_ranges=band_ranges)
    return save_model_file(path, create_model("hrnet", len(BANDS), 2, **TINY), meta)


def _prune(model, data, out) -> int:
    return prune_main(["--model", str(model), "--data", str(data), "--out", str(out),
                       "--max-iterations", "1", "--batch-size", "2", "--device", "cpu",
                       "--precision", "fp32", "--channels-last", "off", "--workers", "0",
                       "--no-progress"])


def test_a_dataset_on_another_scale_than_the_models_training_data_is_refused(tmp_path, capsys):
    """A model trained on sigma0 / 10000 fine-tuned on sigma0 in dB learns the new units and
    maps its own wrongly: refused in one line, as isamap-evaluate refuses it, before a file is
    written; the same dataset prunes a model trained on its own scale."""
    model = _hrnet_file(tmp_path / "model.pt", {
        **OWN, "VV": (-0.002, -0.0012, -0.0005), "VH": (-0.0026, -0.0017, -0.0011)})
    data = write_patch_dataset(tmp_path / "ds", n=6)
    out = tmp_path / "pruned"
    assert _prune(model, data, out) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and not out.exists()
    assert err.startswith(f"isamap-prune: error: the train split of the dataset {data} does "
                          "not hold what the model was trained on: VV has a median of -")
    assert "give a dataset in the units the model was trained on" in err
    assert _prune(_hrnet_file(tmp_path / "own.pt", OWN), data, out) == 0
    assert (out / "pruned.pt").is_file()
