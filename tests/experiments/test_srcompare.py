import json
import math

import numpy as np
import pytest
import torch

from core.errors import ConfigError
from experiments.naip import naip_samples
from experiments.srcompare import CompareConfig, main, run_comparison
from experiments.srseg_data import split_samples
from experiments.srseg_evaluate import evaluate_fine, predict_fine
from training.modelfile import load_model_file


def test_train_and_predict_at_1m_on_naip_end_to_end(naip_dir, tmp_path):
    torch.set_num_threads(1)
    cfg = CompareConfig(data_dir=str(naip_dir), scale=8, iterations=2, batch_size=2,
                        widths=(8, 16, 32))
    report = run_comparison(cfg, tmp_path)
    assert set(report["models"]) == {"srseg", "bilinear-unet", "unet-upsample"}
    for name, record in report["models"].items():
        # five test quadrants of 128 x 128 one-metre pixels, all scored at 1 m
        assert record["fine_pixels"] == 5 * 128 * 128
        assert sum(map(sum, record["matrix"])) == 5 * 128 * 128
        assert 0.0 <= record["oa"] <= 1.0 and "boundary_f1" in record
        model, meta = load_model_file(tmp_path / name / "model.pt")
        assert meta.output_scale == 8 and meta.bands == ("Red", "Green", "Blue", "NearInfrared")
        test = split_samples(naip_samples(naip_dir, 8), "test")[0]
        x = (test.image - np.array(meta.norm_mean)[:, None, None]) / np.array(
            meta.norm_std)[:, None, None]
        pred = predict_fine(model, torch.from_numpy(x.astype(np.float32))[None])
        assert pred.shape == (1, 128, 128) and set(pred.unique().tolist()) <= {0, 1}
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert on_disk["config"]["scale"] == 8
    table = (tmp_path / "comparison.txt").read_text()
    assert all(name in table for name in report["models"])
    assert (tmp_path / "quicklook.png").read_bytes()[:4] == b"\x89PNG"
    # re-running the finished comparison reuses every model instead of training again
    stamps = {n: (tmp_path / n / "model.pt").stat().st_mtime_ns for n in report["models"]}
    assert run_comparison(cfg, tmp_path)["models"] == report["models"]
    assert stamps == {n: (tmp_path / n / "model.pt").stat().st_mtime_ns for n in stamps}


def test_evaluation_of_a_perfect_model_is_perfect(naip_dir):
    from experiments.srseg_data import CrossResolutionDataset

    samples = split_samples(naip_samples(naip_dir, 8), "test")
    ds = CrossResolutionDataset(samples)

    class Oracle(torch.nn.Module):  # returns the reference itself as logits
        def __init__(self):
            super().__init__()
            self.labels = iter([])

        def forward(self, x):
            labels = torch.stack([next(self.labels) for _ in range(x.shape[0])])
            return torch.nn.functional.one_hot(labels.clamp(max=1), 2).permute(0, 3, 1, 2).float()

    oracle = Oracle()
    oracle.labels = iter([ds[i]["label"] for i in range(len(ds))])
    result = evaluate_fine(oracle, ds, batch_size=2)
    assert result.metrics["oa"] == 1.0 and result.boundary["boundary_f1"] == 1.0


def test_cli_rejects_bad_configuration(naip_dir, tmp_path, capsys):
    assert main(["--data-dir", str(naip_dir), "--scale", "3", "--out", str(tmp_path)]) == 2
    assert "not supported" in capsys.readouterr().err
    with pytest.raises(ConfigError):
        CompareConfig(iterations=0)


def test_trainer_trains_srseg_at_1m(naip_dir, tmp_path):
    from experiments.naip import NAIP_BANDS
    from experiments.srseg_data import CrossResolutionDataset
    from training.config import TrainConfig
    from training.losses.srseg import SRSegLoss
    from training.modelfile import ModelMeta
    from training.models import create_model
    from training.run.trainer import Trainer

    torch.set_num_threads(1)
    samples = naip_samples(naip_dir, 8)
    train = CrossResolutionDataset(split_samples(samples, "train")[:4], augment=True)
    val = train.with_samples(split_samples(samples, "test")[:2])
    kwargs = {"scale": 8, "widths": [8, 16, 32], "stage_widths": [8, 8, 8]}
    model = create_model("srseg", 4, 2, **kwargs)
    meta = ModelMeta(name="srseg", in_channels=4, num_classes=2, bands=NAIP_BANDS,
                     norm_mean=train.stats.mean, norm_std=train.stats.std, output_scale=8,
                     model_kwargs=kwargs)
    cfg = TrainConfig.of(out_dir=str(tmp_path), model="srseg", epochs=1, batch_size=2, lr=1e-3,
                         num_workers=0, precision="fp32", channels_last=False, progress=False)
    result = Trainer(cfg, model, SRSegLoss(), train, val, meta).fit()
    model, meta = load_model_file(result.model_path)
    assert meta.output_scale == 8 and result.epochs_run == 1
    assert model(torch.zeros(1, 4, 16, 16))["out"].shape == (1, 2, 128, 128)


def test_seed_summary_gives_mean_and_spread():
    from experiments.srcompare import summarize_seeds

    cfg = CompareConfig(models=("srseg", "unet-upsample"))

    def rec(f1):
        return {"iou": [0.9, f1 / 2], "f1": [0.9, f1], "oa": 0.9, "boundary_f1": None,
                "train_seconds": 2.0}

    reports = {0: {"models": {"srseg": rec(0.4), "unet-upsample": rec(0.5)}},
               1: {"models": {"srseg": rec(0.6), "unet-upsample": rec(0.5)}}}
    summary, table = summarize_seeds(reports, cfg)
    assert summary["srseg"]["ISA F1"]["mean"] == pytest.approx(0.5)
    assert summary["srseg"]["ISA F1"]["std"] == pytest.approx(0.1414, abs=1e-4)
    assert summary["unet-upsample"]["ISA F1"]["std"] == 0.0
    assert math.isnan(summary["srseg"]["bF1"]["mean"])
    assert "srseg" in table and "seeds [0, 1]" in table


def test_ablation_switches_reach_srseg_only():
    from experiments.srcompare import model_kwargs

    cfg = CompareConfig(reconstruction=False, deep_supervision=False)
    kw = model_kwargs("srseg", cfg)
    assert kw["reconstruction"] is False and kw["deep_supervision"] is False
    assert "reconstruction" not in model_kwargs("bilinear-unet", cfg)
    assert cfg.key("srseg") != CompareConfig().key("srseg")  # never reuses the full model
