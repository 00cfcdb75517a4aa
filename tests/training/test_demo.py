"""The demo step trains, evaluates and, run again, reuses the finished run."""

from __future__ import annotations

import json

from training.demo import run_demo_training


def test_demo_training_writes_everything_and_is_idempotent(patch_root, tmp_path):
    paths = run_demo_training(patch_root, tmp_path / "demo", epochs=2, batch_size=3,
                              max_batches=2, progress=False)
    for p in (paths.model, paths.history, paths.curves, paths.metrics_json,
              paths.metrics_table, paths.confusion_png):
        assert p.exists() and p.stat().st_size > 0
    metrics = json.loads(paths.metrics_json.read_text())
    assert metrics["model_name"] == "crofusenet" and metrics["points"]["n"] > 0
    stamp = paths.model.stat().st_mtime_ns
    again = run_demo_training(patch_root, tmp_path / "demo", epochs=2, batch_size=3,
                              max_batches=2, progress=False)
    assert again.model.stat().st_mtime_ns == stamp  # no retraining


def test_demo_model_gives_untied_probabilities(patch_root, tmp_path):
    """The recipe's head has no ReLU on its logits: no spike of exactly 0.5 probabilities."""
    import torch

    from training.data import NormStats, PatchDataset
    from training.modelfile import load_model_file

    paths = run_demo_training(patch_root, tmp_path / "demo", epochs=2, batch_size=3,
                              max_batches=2, progress=False)
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
