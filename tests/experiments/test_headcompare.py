"""The CroFuseNet head comparison: both heads trained alike, ties counted, runs reused."""

from __future__ import annotations

import json

import torch

from engine.outputs import main_output
from experiments.headcompare import HeadBudget, compare_heads, main
from tests.support.rasters import write_patch_dataset
from training.data import NormStats, PatchDataset
from training.modelfile import load_model_file


def test_both_heads_are_trained_alike_counted_and_reused(tmp_path):
    root = write_patch_dataset(tmp_path / "ds", n=8, size=32)
    budget = HeadBudget(iterations=2, batch_size=2, lr=1e-3, widths=(2, 2, 2, 2, 2))
    out = tmp_path / "cmp"
    records, table = compare_heads({"tiny": str(root)}, [0], out, budget)

    assert [r["head"] for r in records] == ["paper", "linear"]
    assert all(0.0 <= r["tied"] <= 1.0 and 0.0 <= r["miou"] <= 1.0 for r in records)
    assert "tiny: linear head has the higher test MIoU on" in table
    assert (out / "summary.txt").read_text().strip() == table
    # The printed head ends in a ReLU: no logit is negative; the linear head's can be.
    lows = {}
    for head in ("paper", "linear"):
        model, meta = load_model_file(out / "tiny" / f"{head}_seed0" / "train" / "model.pt")
        assert meta.model_kwargs["head"] == head
        ds = PatchDataset(root, "test", norm=NormStats(meta.bands, meta.norm_mean,
                                                       meta.norm_std))
        with torch.no_grad():
            lows[head] = float(main_output(model(ds[0]["image"][None])).min())
    assert lows["paper"] >= 0.0 and lows["linear"] < 0.0

    # The same comparison again reuses every finished run (nothing retrained).
    result = out / "tiny" / "linear_seed0" / "result.json"
    stamp = result.stat().st_mtime_ns
    again, _ = compare_heads({"tiny": str(root)}, [0], out, budget)
    assert again == json.loads(json.dumps(records)) and result.stat().st_mtime_ns == stamp


def test_command_refuses_a_folder_without_a_dataset_before_training(tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["--data", f"x={tmp_path / 'missing'}", "--out", str(out)]) == 2
    assert "no manifest.json" in capsys.readouterr().err
    assert not out.exists()
