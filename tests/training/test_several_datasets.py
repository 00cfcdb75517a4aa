"""``isamap-train --data A B``: one model on every region, validated on every region."""

from __future__ import annotations

import json

from cli.train import train_main
from contract.dataset import read_index, read_manifest
from tests.support.rasters import write_patch_dataset
from training.config import read_train_config
from training.modelfile import load_model_file


def test_several_roots_train_one_model_on_all_of_them(tmp_path, capsys):
    a = write_patch_dataset(tmp_path / "java", n=8, seed=0)
    b = write_patch_dataset(tmp_path / "ghana", n=8, seed=1)
    out = tmp_path / "run"
    assert train_main(["--data", str(a), str(b), "--out", str(out), "--model", "unet",
                       "--model-kwargs", '{"widths": [4, 8, 8, 8, 8]}', "--epochs", "1",
                       "--batch-size", "2", "--precision", "fp32", "--channels-last", "off",
                       "--device", "cpu", "--workers", "0", "--no-progress"]) == 0
    merged = out / "datasets"
    assert read_manifest(merged)["merged_from"] == ["java", "ghana"]
    records = read_index(merged)
    assert {r["id"].split("/")[0] for r in records if r["split"] == "val"} == {"java", "ghana"}
    meta = load_model_file(out / "model.pt")[1]
    tested = meta.calibration["transfer"]["scenes"]  # each region's temperature from the other
    assert sorted(s.split("/")[-1] for s in tested) == ["ghana", "java"]
    assert json.loads(json.dumps(meta.extra["config"]))["data"] == str(merged)


def test_several_roots_must_be_local_folders(tmp_path, capsys):
    a = write_patch_dataset(tmp_path / "a", n=6)
    assert train_main(["--data", str(a), "gs://bucket/b", "--out", str(tmp_path / "run"),
                       "--model", "unet", "--epochs", "1", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "gs://bucket/b is not one" in err and len(err.strip().splitlines()) == 1


def test_a_config_recording_the_removed_balanced_scenes_is_refused_in_one_line(tmp_path, capsys):
    """``balanced_scenes`` (every scene drawn alike) is gone: a file asking for it is refused
    before anything is written; an older run's ``config.yaml`` recording it off reads as it did."""
    a = write_patch_dataset(tmp_path / "a", n=6)
    config, out = tmp_path / "old.yaml", tmp_path / "run"
    config.write_text(f"data: {a}\nmodel: unet\nbalanced_scenes: true\n")
    assert train_main(["--config", str(config), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"isamap-train: error: {config} records balanced_scenes: True, an option this "
                   "isamap no longer has; use the isamap version that trained it, or train "
                   "again without it")
    assert not out.exists()
    config.write_text(f"data: {a}\nmodel: unet\nbalanced_scenes: false\n")
    assert read_train_config(config) == {"data": str(a), "model": "unet"}


def _refused_merge(tmp_path, capsys, a, b) -> str:
    """The one-line refusal of ``isamap-train --data a b``; nothing written under --out."""
    out = tmp_path / "run"
    assert train_main(["--data", str(a), str(b), "--out", str(out), "--model", "unet",
                       "--epochs", "1", "--device", "cpu", "--workers", "0",
                       "--no-progress"]) == 2
    assert not out.exists()  # no <out>/datasets left behind
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(a) in err and str(b) in err
    return err


def test_roots_of_other_label_classes_are_refused_in_either_order(tmp_path, capsys):
    from contract.label_schemes import LANDCOVER_CLASSES

    isa = write_patch_dataset(tmp_path / "isa", n=6)
    landcover = write_patch_dataset(tmp_path / "lc", n=6, label_scheme="landcover",
                                    classes={str(i): c for i, c in enumerate(LANDCOVER_CLASSES)})
    for a, b in ((landcover, isa), (isa, landcover)):
        err = _refused_merge(tmp_path, capsys, a, b)
        assert "different label classes" in err and "cropland" in err and "impervious" in err


def test_roots_of_other_pixel_or_patch_sizes_are_refused(tmp_path, capsys):
    ten = write_patch_dataset(tmp_path / "ten", n=6)
    twenty = write_patch_dataset(tmp_path / "twenty", n=6, resolution=20.0)
    err = _refused_merge(tmp_path, capsys, ten, twenty)
    assert "different pixel size (m)" in err and "has 10.0" in err and "has 20.0" in err
    bigger = write_patch_dataset(tmp_path / "bigger", n=6, size=48)
    err = _refused_merge(tmp_path, capsys, ten, bigger)
    assert "different patch size (px)" in err and "has 32" in err and "has 48" in err
