"""A retired model: isamap-train refuses to start it; its runs resume and its files map."""

from __future__ import annotations

import pytest

from cli.train import train_main
from core.errors import ConfigError
from tests.support.rasters import write_patch_dataset
from training.config import TrainConfig
from training.models import REGISTRY, check_trainable
from training.models.unet import WINDOW_RETIRED
from training.run.patch_training import train

BANDS = ("B2", "B3", "B4", "B8", "B11", "B12")


def test_isamap_train_refuses_a_retired_model_in_one_line_before_any_work(tmp_path, capsys):
    assert "unet-s2-window" not in REGISTRY.trainable() and "unet-s2" in REGISTRY.trainable()
    out = tmp_path / "run"
    assert train_main(["--model", "unet-s2-window", "--data", str(tmp_path / "nothing"),
                       "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--model unet-s2-window is retired" in err
    assert "--model unet-s2 --model-kwargs" in err and WINDOW_RETIRED in err
    assert not out.exists()
    fresh = tmp_path / "fresh"  # --resume where no run is starts one: refused alike
    assert train_main(["--model", "unet-s2-window", "--data", str(tmp_path / "nothing"),
                       "--out", str(fresh), "--resume"]) == 2
    assert "is retired" in capsys.readouterr().err and not fresh.exists()
    with pytest.raises(ConfigError, match="retired"):
        check_trainable("unet-s2-window")
    check_trainable("unet-s2")  # trainable: no error


def test_a_misspelt_model_is_offered_the_trainable_models_only(tmp_path, capsys):
    """A walk: ``--model unet-s3`` listed the retired unet-s2-window as available."""
    data = write_patch_dataset(tmp_path / "ds", n=6, size=16, bands=BANDS)
    assert train_main(["--model", "unet-s3", "--data", str(data), "--out",
                       str(tmp_path / "run"), "--device", "cpu", "--workers", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert err.endswith(f"unknown model 'unet-s3'; did you mean 'unet-s2'? available: "
                        f"{', '.join(REGISTRY.trainable())}")
    assert "unet-s2-window" not in err and "unet-s2," in err
    # a walk: model: crofusnet in a --config file was told no close name
    (tmp_path / "c.yaml").write_text(f"model: crofusnet\ndata: {data}\ndevice: cpu\n")
    assert train_main(["--config", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "r")]) == 2
    assert "unknown model 'crofusnet'; did you mean 'crofusenet'? available: " in (
        capsys.readouterr().err)


def test_a_run_of_a_retired_model_started_before_it_retired_still_resumes(tmp_path):
    """Finished work is not redone and an unfinished run is not stranded: only starts are
    refused (the run here is started through the library, as an older isamap did)."""
    root = write_patch_dataset(tmp_path / "ds", n=6, size=16, bands=BANDS)
    out = tmp_path / "run"
    cfg = TrainConfig.of(data=str(root), out_dir=str(out), model="unet-s2-window",
                         model_kwargs={"widths": [4, 4, 8, 8, 8]}, epochs=2, batch_size=2,
                         num_workers=0, precision="fp32", channels_last="off", progress=False,
                         stop_after=1)
    first = train(cfg)
    assert not first.finished and first.epochs_run == 1
    assert train_main(["--out", str(out), "--resume", "--no-progress", "-q"]) == 0
    assert (out / "model.pt").exists()


def test_a_join_of_a_retired_model_started_before_it_retired_goes_on_by_its_command(tmp_path):
    """A run of several trainings resumes by its start command: with member folders there,
    the command goes on with them instead of being refused as a start."""
    from training.run.members import train_members

    root = write_patch_dataset(tmp_path / "ds", n=6, size=16, bands=BANDS)
    out = tmp_path / "join"
    cfg = TrainConfig.of(data=str(root), out_dir=str(out), model="unet-s2-window",
                         model_kwargs={"widths": [4, 4, 8, 8, 8]}, epochs=1, batch_size=2,
                         num_workers=0, precision="fp32", channels_last="off", progress=False,
                         members=2, stop_after=1)
    train_members(cfg, train)  # the first member trained, the second not yet
    assert (out / "member0").is_dir() and not (out / "model.pt").exists()
    argv = ["--model", "unet-s2-window", "--data", str(root), "--out", str(out),
            "--model-kwargs", '{"widths": [4, 4, 8, 8, 8]}', "--epochs", "1",
            "--batch-size", "2", "--workers", "0", "--precision", "fp32",
            "--channels-last", "off", "--members", "2", "--no-progress", "-q"]
    assert train_main(argv) == 0
    assert (out / "member1").is_dir() and (out / "model.pt").exists()
