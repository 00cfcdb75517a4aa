"""srseg through the shared Trainer: whole-batch losses, fixed iteration budgets, srcompare."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from torch.utils.data import default_collate

from cli.train import train_main
from experiments.srseg_data import CrossResolutionDataset, CrossResSample, patch_samples
from tests.support.rasters import write_patch_dataset
from training.config import TrainConfig
from training.losses.srseg import SRSegLoss
from training.modelfile import ModelMeta, load_model_file
from training.models import create_model
from training.run.trainer import Trainer

KW = {"scale": 2, "widths": [4, 8], "stage_widths": [4]}


def _dataset(fine_offset: float) -> CrossResolutionDataset:
    rng = np.random.default_rng(0)
    samples = []
    for i in range(3):
        image = rng.normal(size=(3, 8, 8)).astype(np.float32)
        fine = np.kron(image, np.ones((2, 2), np.float32)) + rng.normal(
            0, 0.3, (3, 16, 16)).astype(np.float32)
        label = (fine[0] > 0).astype(np.uint8)
        samples.append(CrossResSample(f"s{i}", image, label, 2, fine + fine_offset))
    base = CrossResolutionDataset(samples)  # statistics of the coarse image only
    return CrossResolutionDataset(samples, stats=base.stats, augment=True)


def _train(tmp_path, fine_offset: float, iterations: int = 3):
    ds = _dataset(fine_offset)
    assert ds.with_fine_image
    torch.manual_seed(0)
    model = create_model("srseg", 3, 2, **KW)
    meta = ModelMeta(name="srseg", in_channels=3, num_classes=2, bands=("a", "b", "c"),
                     norm_mean=ds.stats.mean, norm_std=ds.stats.std, output_scale=2,
                     model_kwargs=KW)
    cfg = TrainConfig.of(out_dir=str(tmp_path / f"run{fine_offset}"), model="srseg", epochs=1,
                         max_iterations=iterations, batch_size=2, lr=1e-3, num_workers=0,
                         precision="fp32", channels_last=False, device="cpu", progress=False)
    loss = SRSegLoss()
    trainer = Trainer(cfg, model, loss, ds, None, meta)
    return trainer, loss, trainer.fit()


def test_reconstruction_term_receives_the_fine_image_through_the_trainer(tmp_path):
    trainer, loss, result = _train(tmp_path, 0.0)
    rec = loss.last_terms["reconstruction"]
    assert rec > 0
    # Same seed, model and data except the fine image: only the L1 target moved.
    _, loss2, _ = _train(tmp_path, 5.0)
    assert loss2.last_terms["reconstruction"] > rec + 1.0  # every target value shifted by 5 / std

    # The fixed budget: 3 steps over 2 batches per epoch = 2 epochs, the second cut to one step;
    # the poly schedule reaches zero at the budget; no validation, the last weights are kept.
    assert trainer.iters_per_epoch == 2 and trainer.epochs == 2
    assert trainer.scheduler.last_epoch == 3 and trainer.optimizer.param_groups[0]["lr"] == 0.0
    assert result.finished and result.epochs_run == 2 and result.best_epoch == 2
    assert all("val_miou" not in row for row in trainer.history)
    saved, meta = load_model_file(result.model_path)
    assert meta.output_scale == 2
    assert all(torch.equal(a, b) for a, b in zip(saved.state_dict().values(),
                                                 trainer.model.state_dict().values(),
                                                 strict=True))


def test_plain_label_losses_are_still_called_with_the_label(tmp_path):
    seen = []

    class LabelOnly(torch.nn.Module):
        def forward(self, output, target):
            seen.append(type(target))
            return torch.nn.functional.cross_entropy(output["out"], target, ignore_index=255)

    ds = _dataset(0.0)
    torch.manual_seed(0)
    model = create_model("srseg", 3, 2, **KW)
    meta = ModelMeta(name="srseg", in_channels=3, num_classes=2, bands=("a", "b", "c"),
                     norm_mean=ds.stats.mean, norm_std=ds.stats.std, output_scale=2,
                     model_kwargs=KW)
    cfg = TrainConfig.of(out_dir=str(tmp_path), model="srseg", epochs=1, batch_size=2,
                         num_workers=0, precision="fp32", channels_last=False, device="cpu",
                         progress=False)
    Trainer(cfg, model, LabelOnly(), ds, ds, meta).fit()
    assert seen and set(seen) == {torch.Tensor}


def test_srcompare_trains_every_model_with_the_trainer(shared_data, tmp_path, monkeypatch):
    import experiments.srcompare as srcompare

    made: list[Trainer] = []

    class Recording(Trainer):  # the real trainer, remembered for inspection
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(srcompare, "Trainer", Recording)
    cfg = srcompare.CompareConfig(data_dir=str(shared_data / "geobench_chesapeake_naip"),
                                  models=("srseg", "bilinear-unet"), iterations=2,
                                  batch_size=2, lr=2e-3, seed=3, widths=(4, 8))
    report = srcompare.run_comparison(cfg, tmp_path)
    assert [t.meta.name for t in made] == ["srseg", "bilinear-unet"]
    for t in made:
        assert t.val_loader is None and t.scheduler.last_epoch == 2
        assert (t.cfg.loop.max_iterations, t.cfg.loop.batch_size, t.cfg.optim.lr,
                t.cfg.loop.seed) == (2, 2, 2e-3, 3)
        assert isinstance(t.loss_fn, SRSegLoss)
    assert made[0].train_loader.dataset is made[1].train_loader.dataset
    assert report["models"]["srseg"]["loss_terms"]["reconstruction"] > 0
    assert "reconstruction" not in report["models"]["bilinear-unet"]["loss_terms"]
    # the trainer's scratch folders are gone; the comparison's outputs are in place
    assert sorted(p.name for p in (tmp_path / "srseg").iterdir()) == ["metrics.json", "model.pt"]


def test_isamap_train_srseg_optimises_the_srcompare_objective(tmp_path, caplog):
    """Same data, seed and initial weights: the first step's loss of ``isamap-train --model
    srseg`` (no --label, no --loss: the recipe's) equals srcompare's on the same batch."""
    import experiments.srcompare as srcompare

    kw = {"widths": [4, 8], "stage_widths": [4, 4]}  # deep supervision and reconstruction on
    root = write_patch_dataset(tmp_path / "ds", n=8, size=8, fine_scale=4, image_fine=True)
    out = tmp_path / "cli"
    args = ["--data", str(root), "--model", "srseg", "--model-kwargs", json.dumps(kw),
            "--max-iterations", "1", "--batch-size", "4", "--no-augment", "--precision", "fp32",
            "--channels-last", "off", "--workers", "0", "--device", "cpu", "--no-progress"]
    assert train_main([*args, "--out", str(out)]) == 0
    cli_loss = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])["train_loss"]
    _, meta = load_model_file(out / "model.pt")
    assert meta.extra["config"]["loss"] == "srseg" and meta.extra["config"]["label"] == "label_fine"

    samples = patch_samples(root, 4, ("train",))
    dataset = CrossResolutionDataset(samples)  # srcompare's data path, without augmentation
    assert len(dataset) == 4 and dataset.with_fine_image
    torch.manual_seed(0)
    model = create_model("srseg", 6, 2, scale=4, **kw)
    cfg = srcompare.CompareConfig(data="patches", data_dir=str(root), scale=4, iterations=1,
                                  batch_size=4, widths=(4, 8))
    last = srcompare.train_fixed_budget(model, dataset, meta, cfg, tmp_path / "cmp")
    assert set(last) >= {"seg", "deep_supervision", "reconstruction"}
    assert last["reconstruction"] > 0
    assert cli_loss == pytest.approx(last["loss"], rel=1e-4)
    # ...and the loss really depends on the fine image: a batch without it scores differently.
    batch = default_collate([dataset[i] for i in range(4)])
    torch.manual_seed(0)
    fresh = create_model("srseg", 6, 2, scale=4, **kw).train()
    with torch.no_grad():
        output = fresh(batch["image"])
    loss = srcompare.model_loss("srseg")
    with_fine = float(loss(output, batch))
    without = float(loss(output, {"label": batch["label"]}))
    assert with_fine == pytest.approx(last["loss"], rel=1e-4) and without < with_fine

    # Without fine images in the dataset srseg still trains, and the command says so.
    bare = write_patch_dataset(tmp_path / "bare", n=6, size=8, fine_scale=4)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="training"):
        assert train_main(["--data", str(bare), *args[2:], "--out", str(tmp_path / "b")]) == 0
    warned = [r.getMessage() for r in caplog.records if "image_fine" in r.getMessage()]
    assert len(warned) == 1 and "reconstruction head gets no signal" in warned[0]
