"""Normalisation by each scene's own statistics (``isamap-train --norm scene``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from contract.dataset import merge_datasets, read_index
from core.errors import ConfigError
from tests.support.rasters import write_patch_dataset
from training.data import (
    PatchDataset,
    compute_norm_stats,
    compute_scene_norms,
    scene_key,
    scene_norms_for,
)

GAIN, OFFSET = 2.0, 0.1


def _brightened(root: Path) -> Path:
    """``root``'s patches with every band as ``GAIN * value + OFFSET`` (a hazier scene)."""
    for record in read_index(root):
        with rasterio.open(root / record["image"], "r+") as ds:
            ds.write(ds.read() * np.float32(GAIN) + np.float32(OFFSET))
    return root


@pytest.fixture(scope="module")
def two_scenes(tmp_path_factory) -> Path:
    """One dataset of two scenes: the same ground, the second under a gain and offset."""
    tmp = tmp_path_factory.mktemp("scenes")
    plain = write_patch_dataset(tmp / "plain", n=8)
    hazy = _brightened(write_patch_dataset(tmp / "hazy", n=8))
    return Path(merge_datasets({"plain": plain, "hazy": hazy}, tmp / "merged"))


def test_each_scene_has_the_statistics_of_its_own_patches(two_scenes):
    scenes = compute_scene_norms(two_scenes)
    assert sorted(scenes) == ["hazy/patches/2024-06", "plain/patches/2024-06"]
    assert {scene_key(r) for r in read_index(two_scenes)} == set(scenes)
    plain, hazy = scenes["plain/patches/2024-06"], scenes["hazy/patches/2024-06"]
    whole = compute_norm_stats(PatchDataset(two_scenes / "plain", None))
    assert np.allclose(plain.mean, whole.mean) and np.allclose(plain.std, whole.std)
    assert np.allclose(hazy.mean, GAIN * np.asarray(plain.mean) + OFFSET, rtol=1e-5)
    assert np.allclose(hazy.std, GAIN * np.asarray(plain.std), rtol=1e-4)


def test_a_scene_wide_gain_and_offset_leave_the_networks_input_unchanged(two_scenes):
    training = compute_norm_stats(PatchDataset(two_scenes, "train"))
    by_scene = PatchDataset(two_scenes, "train", norm=training,
                            scene_norms=compute_scene_norms(two_scenes))
    pooled = PatchDataset(two_scenes, "train", norm=training)
    where = {record["id"]: i for i, record in enumerate(by_scene.records)}
    pairs = [(i, where["hazy/" + key.split("/", 1)[1]]) for key, i in where.items()
             if key.startswith("plain/")]
    assert len(pairs) == 4
    for i, j in pairs:  # the same patch in both scenes
        assert np.allclose(by_scene[i]["image"], by_scene[j]["image"], atol=1e-4)
        # by the pooled statistics, the gain reaches the network
        assert not np.allclose(pooled[i]["image"], pooled[j]["image"], atol=0.1)


def test_a_patch_of_an_unknown_scene_is_refused(two_scenes):
    only_plain = {k: v for k, v in compute_scene_norms(two_scenes).items()
                  if k.startswith("plain")}
    with pytest.raises(ConfigError, match="no scene statistics for the patches of "
                                          r"\['hazy/patches/2024-06'\]"):
        PatchDataset(two_scenes, "train", scene_norms=only_plain)


def test_only_a_scene_normalised_model_reads_scene_statistics(two_scenes):
    assert scene_norms_for(two_scenes, ("B2", "B3"), "training") is None
    scenes = scene_norms_for(two_scenes, ("B2", "B3"), "scene")
    assert scenes is not None and all(s.bands == ("B2", "B3") for s in scenes.values())


@pytest.mark.slow
def test_a_run_normalised_by_scene_records_it_and_is_evaluated_alike(two_scenes, tmp_path):
    from cli.evaluate import evaluate_main
    from training.config import TrainConfig
    from training.modelfile import read_model_file
    from training.run.patch_training import train

    cfg = TrainConfig.of(data=str(two_scenes), out_dir=str(tmp_path / "run"), model="unet",
                         model_kwargs={"widths": [4, 8, 8, 16, 16]}, epochs=1, max_batches=1,
                         batch_size=2, num_workers=0, precision="fp32", channels_last="off",
                         progress=False, norm="scene")
    train(cfg)
    meta = read_model_file(tmp_path / "run" / "model.pt")[0]
    assert meta.norm == "scene" and meta.extra["config"]["norm"] == "scene"
    assert evaluate_main(["--model", str(tmp_path / "run" / "model.pt"), "--data",
                          str(two_scenes), "--out", str(tmp_path / "ev"), "--points", "0",
                          "--precision", "fp32", "--no-progress"]) == 0
    with pytest.raises(ConfigError, match="--norm must be training or scene"):
        TrainConfig.of(norm="tile")  # type: ignore[arg-type]
