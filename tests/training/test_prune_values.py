"""``isamap-prune`` checks the dataset's values against the model's training data first."""

from __future__ import annotations

import numpy as np
import pytest
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


def _files(folder):
    """Every file under ``folder`` (relative path -> bytes)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished pruning run (model file, dataset, out folder) of a model trained on its
    dataset's own scale: the files a refused run must leave as they are."""
    root = tmp_path_factory.mktemp("prune_values")
    model, data = _hrnet_file(root / "own.pt", OWN), write_patch_dataset(root / "ds", n=6)
    assert _prune(model, data, root / "pruned") == 0
    return model, data, root / "pruned"


def test_a_dataset_on_another_scale_than_the_models_training_data_is_refused(
        tmp_path, capsys, finished):
    """A model trained on sigma0 / 10000 fine-tuned on sigma0 in dB learns the new units and
    maps its own wrongly: refused in one line, as isamap-evaluate refuses it, before a file is
    written; the same dataset prunes a model trained on its own scale (``finished``)."""
    model = _hrnet_file(tmp_path / "model.pt", {
        **OWN, "VV": (-0.002, -0.0012, -0.0005), "VH": (-0.0026, -0.0017, -0.0011)})
    data = finished[1]
    out = tmp_path / "pruned"
    assert _prune(model, data, out) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and not out.exists()
    assert err.startswith(f"isamap-prune: error: the train split of the dataset {data} does "
                          "not hold what the model was trained on: VV has a median of -")
    assert "give a dataset in the units the model was trained on" in err
    assert (finished[2] / "pruned.pt").is_file()


@pytest.mark.slow
def test_a_validation_split_in_digital_numbers_is_refused_and_the_finished_run_kept(
        tmp_path, capsys, finished):
    """The fine-tuning validates on the val split (it picks the kept epoch): one in digital
    numbers (reflectance x 10000) is refused in one line, exit 2, also when the command goes
    on with a finished run in --out, whose files stay byte for byte as they were."""
    model, _, out = finished
    rng = np.random.default_rng(1)
    dn = np.concatenate([rng.uniform(500, 2000, (4, 32, 32)),      # reflectance x 10000
                         rng.normal(-14, 2, (2, 32, 32))]).astype(np.float32)  # VV, VH in dB
    data = write_patch_dataset(tmp_path / "dn", n=6, images=[None, None, dn, dn, None, None])
    refusal = (f"isamap-prune: error: the val split of the dataset {data} does not hold what "
               "the model was trained on: B")
    assert _prune(model, data, tmp_path / "fresh") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(refusal)
    assert not (tmp_path / "fresh").exists()
    before = _files(out)
    assert _prune(model, data, out) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(refusal)
    assert _files(out) == before
