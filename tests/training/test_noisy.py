"""Noisy-sample filtering: agreement scores, the threshold rule, and the two-stage run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.support.models import ConstantModel
from tests.support.rasters import write_patch_dataset
from training.config import TrainConfig
from training.data import PatchDataset, compute_norm_stats
from training.modelfile import read_model_file
from training.noisy import SIDECAR, PatchScore, score_patches, select_patches, train_filtered

SIZE = 32


def share_of_class0(share: float) -> np.ndarray:
    """A label whose first ``share`` of pixels (row-major) are class 0, the rest class 1."""
    flat = np.ones(SIZE * SIZE, np.uint8)
    flat[: round(share * SIZE * SIZE)] = 0
    return flat.reshape(SIZE, SIZE)


def test_exactly_the_patches_under_the_threshold_are_dropped():
    scores = [PatchScore("m/a", 0.0, 9), PatchScore("m/b", 0.1999, 9), PatchScore("m/c", 0.2, 9),
              PatchScore("m/d", 0.9, 9), PatchScore("m/e", None, 0)]
    kept, dropped = select_patches(scores, 0.2)
    assert [s.id for s in dropped] == ["m/a", "m/b"]
    assert kept == ("m/c", "m/d", "m/e")  # at the threshold kept; nothing labelled: kept


def test_agreement_is_the_share_of_labelled_pixels_predicted_as_labelled(tmp_path):
    """A model that always says class 0 agrees exactly where the label is 0."""
    shares = [0.05, 0.19, 0.2, 0.25, 0.6, 1.0, None, None, None, None]
    labels = [None if s is None else share_of_class0(s) for s in shares]
    labels[1][:4] = 255  # unlabelled pixels do not count: 0.19 of the rest is still < 0.2
    root = write_patch_dataset(tmp_path / "ds", labels=labels)
    raw = PatchDataset(root, "train")
    data = PatchDataset(root, "train", norm=compute_norm_stats(raw))
    scores = score_patches(ConstantModel((2.0, -1.0)), data, batch_size=4)
    expected_1 = (round(0.19 * SIZE * SIZE) - 4 * SIZE) / (SIZE * SIZE - 4 * SIZE)
    got = {s.id: s for s in scores}
    expected = [round(s * SIZE * SIZE) / (SIZE * SIZE) for s in shares[:6]]
    expected[1] = expected_1
    assert [got[f"2024-06/r0_c{i}"].agreement for i in range(6)] == pytest.approx(expected)
    assert got["2024-06/r0_c1"].labelled == SIZE * SIZE - 4 * SIZE
    _, dropped = select_patches(scores, 0.2)
    assert {s.id for s in dropped} == {"2024-06/r0_c0", "2024-06/r0_c1"}


@pytest.mark.slow
def test_two_stage_run_drops_the_wrong_labels_and_records_why(tmp_path):
    """Four of sixteen training patches carry the opposite of their scene; the preliminary
    model learns the others, disagrees with those four, and the final run trains without
    them (same seed and one thread: the run is deterministic)."""
    inverted = {1, 4, 9, 13}
    clean = write_patch_dataset(tmp_path / "clean", n=20)
    labels = [1 - PatchDataset(clean, None).read_raw(i)[1] if i in inverted else None
              for i in range(20)]
    root = write_patch_dataset(tmp_path / "noisy", n=20, labels=labels)
    cfg = TrainConfig.of(data=str(root), out_dir=str(tmp_path / "run"), model="hrnet",
                         model_kwargs={"width": 4, "stem_width": 8, "stage1_width": 4,
                                    "modules": (1, 1, 1), "blocks": 1, "stem_convs": 1},
                         epochs=3, batch_size=4, lr=0.01, num_workers=0, device="cpu",
                         precision="fp32", channels_last=False, progress=False, augment=False,
                         filter_noisy=0.56, patience=100,
                         # three epochs are enough for Adam on plain CE, not for the paper's SGD
                         optimizer="adam", loss="ce")
    result = train_filtered(cfg)
    doc = json.loads((tmp_path / "run" / SIDECAR).read_text())
    assert doc["threshold"] == 0.56 and doc["scored"] == 16
    dropped = {d["id"] for d in doc["dropped"]}
    assert dropped == {k for k, v in doc["agreement"].items() if v < 0.56}
    assert dropped == {f"2024-06/r0_c{i}" for i in inverted}
    assert all("below the 56 % threshold" in d["reason"] for d in doc["dropped"])
    meta, _ = read_model_file(result.final.model_path)
    assert sorted(meta.extra["dataset"]["excluded_patches"]) == sorted(dropped)
    assert meta.extra["config"]["filter_noisy"] == 0.56
    assert (tmp_path / "run" / "preliminary" / "model.pt").exists()
    assert result.kept == tuple(k for k in doc["agreement"] if k not in dropped)
    history = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in history] == [1, 2, 3]


def test_threshold_must_be_a_share():
    with pytest.raises(Exception, match="--filter-noisy"):
        TrainConfig.of(filter_noisy=20)
