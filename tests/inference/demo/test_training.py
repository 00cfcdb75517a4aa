"""The demo step trains, evaluates and, run again, reuses the finished run."""

from __future__ import annotations

import json
import os

import pytest

from core.version import code_version
from inference.demo.training import DEMO_BATCH, DEMO_MIN_STEPS, demo_batch_size, run_demo_training


@pytest.fixture(scope="module")
def demo_run(patch_root, tmp_path_factory):
    """One demo training (and its evaluation), read by both tests below: each trained the
    same run of its own. The second only reads its model file, which the first's reruns
    keep (they re-evaluate, and that test asserts the model file is not written again)."""
    out = tmp_path_factory.mktemp("demo") / "demo"
    return out, run_demo_training(patch_root, out, epochs=2, batch_size=3, max_batches=2,
                                  progress=False)


@pytest.mark.slow
@pytest.mark.xdist_group("demo_run")
def test_demo_training_writes_everything_and_is_idempotent(demo_run, patch_root, caplog):
    """Run again, the finished training is kept and said to be; so is its evaluation (it was
    made again: metrics.json, metrics.txt and the PNGs rewritten with the same content). The
    evaluation is isamap-evaluate's own reuse (the demo kept a stamp of its own before)."""
    import logging

    folder, paths = demo_run
    for p in (paths.model, paths.history, paths.curves, paths.metrics_json,
              paths.metrics_table, paths.confusion_png):
        # absolute, all of them: the demo lists them (the run's own were relative to the cwd)
        assert p.is_absolute() and p.exists() and p.stat().st_size > 0
    metrics = json.loads(paths.metrics_json.read_text())
    assert metrics["model_name"] == "crofusenet" and metrics["points"]["n"] > 0
    written = [p.stat().st_mtime_ns for p in (paths.model, paths.metrics_json,
                                               paths.metrics_table, paths.confusion_png)]
    with caplog.at_level(logging.INFO, logger="training"):
        again = run_demo_training(patch_root, folder, epochs=2, batch_size=3,
                                  max_batches=2, progress=False)
    assert [p.stat().st_mtime_ns for p in (again.model, again.metrics_json, again.metrics_table,
                                           again.confusion_png)] == written  # nothing redone
    # (the training's log names its folder as its config has it: relative to the cwd)
    assert f"the run in {os.path.relpath(paths.model.parent)} is finished (2 epochs" in caplog.text
    assert "nothing left to train" in caplog.text
    # the evaluation records its options and the code version: another code evaluates again
    inputs = json.loads(paths.metrics_json.read_text())["inputs"]
    assert inputs["precision"] == "fp32" and inputs["points"] == 500
    assert inputs["code_version"] == code_version()
    older = json.loads(paths.metrics_json.read_text())
    older["inputs"]["code_version"] = "0.0.1+gdeadbee"
    paths.metrics_json.write_text(json.dumps(older))
    stamp = paths.metrics_json.stat().st_mtime_ns
    run_demo_training(patch_root, folder, epochs=2, batch_size=3, max_batches=2,
                      progress=False)
    assert paths.metrics_json.stat().st_mtime_ns != stamp
    assert json.loads(paths.metrics_json.read_text())["inputs"] == inputs


@pytest.mark.slow
@pytest.mark.xdist_group("demo_run")
def test_demo_model_gives_untied_probabilities(demo_run, patch_root):
    """The recipe's head has no ReLU on its logits: no spike of exactly 0.5 probabilities."""
    import torch

    from training.data import NormStats, PatchDataset
    from training.modelfile import load_model_file

    _, paths = demo_run
    model, meta = load_model_file(paths.model)
    assert meta.model_kwargs["head"] == "conv_bn"
    norm = NormStats(tuple(meta.bands), tuple(meta.norm_mean), tuple(meta.norm_std))
    data = PatchDataset(str(patch_root), "test", meta.bands, norm, None)
    x = torch.stack([data[i]["image"] for i in range(len(data))])
    with torch.no_grad():
        logits = model(x)["out"]
    assert (logits < 0).any()
    tied = (logits[:, 0] == logits[:, 1]).float().mean().item()
    assert tied < 1e-3
    probs = torch.softmax(logits, dim=1)[:, 1]
    assert ((probs - 0.5).abs() < 1e-6).float().mean().item() < 1e-3


def test_demo_batch_leaves_an_epoch_enough_steps():
    """The demo scene's small splits (3 training patches at --size 384, 49 at 768) still
    give an epoch several optimiser steps: a batch of the paper's size would make it one."""
    for train_patches in (1, 3, 7, 8, 17, 49, 400):
        batch = demo_batch_size(train_patches)
        assert 1 <= batch <= DEMO_BATCH
        steps = -(-train_patches // batch)
        assert steps >= min(DEMO_MIN_STEPS, train_patches)
    assert demo_batch_size(400) == DEMO_BATCH  # a large split keeps the full batch
