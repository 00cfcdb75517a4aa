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
