"""Resuming checks the given options against the recorded run, recipes included."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from core.errors import ConfigError
from training.config import apply_recipe, config_from_mapping
from training.run.folder import CHECKPOINT, resume_config


def _record(out, **options):
    cfg = apply_recipe(config_from_mapping({"data": "patches", "out_dir": str(out), **options}))
    torch.save({"config": cfg.to_dict()}, out / CHECKPOINT)
    return cfg


def test_the_same_model_kwargs_resume_a_run_whose_recipe_added_its_own(tmp_path):
    # crofusenet's recipe adds its head to the model's arguments; the user's flags do not
    # name it, and giving the same flags again must still resume the run.
    widths = {"widths": [8, 16, 32, 64, 128]}
    recorded = _record(tmp_path, model="crofusenet", model_kwargs=widths)
    assert "head" in recorded.model.model_kwargs
    cfg = resume_config(tmp_path, {"model": "crofusenet", "model_kwargs": widths})
    assert dict(cfg.model.model_kwargs) == dict(recorded.model.model_kwargs)


def test_other_model_kwargs_are_still_refused(tmp_path):
    _record(tmp_path, model="crofusenet", model_kwargs={"widths": [8, 16, 32, 64, 128]})
    with pytest.raises(ConfigError, match="model_kwargs"):
        resume_config(tmp_path, {"model_kwargs": {"widths": [4, 8, 16, 32, 64]}})


def test_a_run_recorded_before_weight_averaging_resumes_without_it(tmp_path):
    # unet-s2's recipe now averages its weights; a run recorded before the option existed
    # kept its last weights and must resume as it was, with the same flags as before.
    cfg = apply_recipe(config_from_mapping({"data": "patches", "out_dir": str(tmp_path),
                                            "model": "unet-s2"}))
    assert cfg.loop.ema == 10
    old = {k: v for k, v in cfg.to_dict().items() if k != "ema"}
    torch.save({"config": old}, tmp_path / CHECKPOINT)
    assert resume_config(tmp_path, {"model": "unet-s2"}).loop.ema == 0


def test_an_infinite_half_life_is_refused():
    with pytest.raises(ConfigError, match="--ema"):
        config_from_mapping({"data": "patches", "out_dir": "run", "ema": float("inf")}).check()


def test_a_run_recorded_before_test_time_flips_resumes_without_them(tmp_path):
    # unet-s2's recipe now flips; a run recorded before the option existed mapped each window
    # once and must resume as it was, with the same flags as before
    cfg = apply_recipe(config_from_mapping({"data": "patches", "out_dir": str(tmp_path),
                                            "model": "unet-s2"}))
    assert cfg.model.model_kwargs["flips"] is True
    old = cfg.to_dict()
    old["model_kwargs"] = {k: v for k, v in cfg.model.model_kwargs.items() if k != "flips"}
    torch.save({"config": old}, tmp_path / CHECKPOINT)
    assert resume_config(tmp_path, {"model": "unet-s2"}).model.model_kwargs["flips"] is False
    # the --model-kwargs it was started with, given again, resume it too
    widths = {"widths": cfg.model.model_kwargs["widths"]}
    assert resume_config(tmp_path, {"model_kwargs": widths}).model.model_kwargs["flips"] is False
    # a run recorded with flips keeps them when its flags are given again
    new = tmp_path / "new"
    new.mkdir()
    _record(new, model="unet-s2", model_kwargs=widths)
    assert resume_config(new, {"model_kwargs": widths}).model.model_kwargs["flips"] is True
    # a model whose recipe has no flips is not given the argument (its constructor has none)
    other = tmp_path / "other"
    other.mkdir()
    recorded = _record(other, model="crofusenet")
    assert "flips" not in resume_config(other, {}).model.model_kwargs
    assert dict(resume_config(other, {}).model.model_kwargs) == dict(recorded.model.model_kwargs)


def test_a_run_recorded_with_the_removed_balanced_scenes_resumes_only_where_it_was_off(tmp_path):
    # drawing every scene alike is gone: a run recorded with it on is refused, naming its
    # checkpoint; one recorded with it off (every run before it went) resumes as it was
    cfg = apply_recipe(config_from_mapping({"data": "patches", "out_dir": str(tmp_path),
                                            "model": "unet-s2"}))
    then = {**cfg.to_dict(), "balanced_scenes": True}
    torch.save({"config": then}, tmp_path / CHECKPOINT)
    with pytest.raises(ConfigError, match=r"checkpoint.pt records balanced_scenes: True, an "
                                          "option this isamap no longer has"):
        resume_config(tmp_path, {"model": "unet-s2"})
    torch.save({"config": {**then, "balanced_scenes": False}}, tmp_path / CHECKPOINT)
    assert resume_config(tmp_path, {"model": "unet-s2"}) == cfg.with_(resume=True)


def test_a_run_recorded_before_balanced_sampling_keeps_its_sampling(tmp_path):
    # unet-s2's recipe now samples balanced; a run recorded before drew its patches
    # uniformly, and its checkpoint and config.yaml say so (every option is recorded): it
    # resumes, and runs again from its config.yaml, as it was
    from training.config import read_train_config
    from training.run.folder import write_resolved_config

    cfg = apply_recipe(config_from_mapping({"data": "patches", "out_dir": str(tmp_path),
                                            "model": "unet-s2"}))
    assert cfg.data.balanced_sampling is True
    old = cfg.to_dict() | {"balanced_sampling": False}
    torch.save({"config": old}, tmp_path / CHECKPOINT)
    assert resume_config(tmp_path, {"model": "unet-s2"}).data.balanced_sampling is False
    # and so does one recorded before the option existed
    del old["balanced_sampling"]
    torch.save({"config": old}, tmp_path / CHECKPOINT)
    assert resume_config(tmp_path, {"model": "unet-s2"}).data.balanced_sampling is False
    old["balanced_sampling"] = False
    written = write_resolved_config(config_from_mapping(old))
    assert apply_recipe(config_from_mapping(read_train_config(written))
                        ).data.balanced_sampling is False
    # a new run of the recipe samples balanced
    assert apply_recipe(config_from_mapping(
        {**read_train_config(written), "balanced_sampling": None})).data.balanced_sampling


def test_a_run_recorded_before_norm_and_radiometric_existed_reads_as_what_it_did(tmp_path):
    """A checkpoint from before ``--norm`` normalised by the training split (as its model file
    reads) and one from before radiometric augmentation had none: compared as that, not as
    ``None`` (which named no option it was trained with), and refused where the recipe does
    otherwise now."""
    from training.run.folder import config_differences

    cfg = apply_recipe(config_from_mapping({"data": "patches", "out_dir": str(tmp_path),
                                            "model": "unet-s2"}))
    assert cfg.data.norm == "scene" and cfg.data.radiometric is False
    old = {k: v for k, v in cfg.to_dict().items() if k not in ("norm", "radiometric")}
    assert config_differences(old, cfg) == ["norm: 'training' there, 'scene' now"]
    assert config_differences(old, cfg.with_(norm="training")) == []
    torch.save({"config": old}, tmp_path / CHECKPOINT)
    with pytest.raises(ConfigError, match="norm"):
        resume_config(tmp_path, {"model": "unet-s2", "norm": "scene"})
    resumed = resume_config(tmp_path, {"model": "unet-s2"})
    assert (resumed.data.norm, resumed.data.radiometric) == ("training", False)


def test_an_encoder_is_compared_by_its_name_not_the_path_its_file_was_given_by():
    """One published file per encoder name (its digest is checked when the run loads it):
    the same file given from another folder is the same run; another encoder is not."""
    from training.run.folder import config_differences

    given = {"model": "unet-s2", "data": "d", "encoder": "presto=/data/weights/presto.pt",
             "balanced_sampling": True, "ema": 10,
             "model_kwargs": {"flips": False}}
    recorded = config_from_mapping(given).to_dict()

    def now(encoder):
        return config_from_mapping({**given, "encoder": encoder})

    assert config_differences(recorded, now("presto=../weights/presto.pt")) == []
    assert config_differences(recorded, now("galileo-nano=/data/weights/g.pt")) == [
        "encoder: 'presto' there, 'galileo-nano' now"]
    assert config_differences(recorded, now(None)) == ["encoder: 'presto' there, None now"]


def test_an_encoder_run_recorded_on_the_training_statistics_is_told_how_to_go_on(tmp_path):
    """Encoder runs took ``--norm training`` by default before they took their base recipe's
    (``unet-s2``: scene): the same command finds the old run made otherwise, and the line
    says which option continues it."""
    from training.run.folder import config_differences

    given = {"model": "unet-s2", "data": "d", "out_dir": str(tmp_path),
             "encoder": "presto=/data/weights/presto.pt"}
    now = apply_recipe(config_from_mapping(given))
    assert now.data.norm == "scene"
    recorded = now.with_(norm="training").to_dict()
    differ = config_differences(recorded, now)
    assert differ == ["norm: 'training' there, 'scene' now (an encoder run took the training "
                      "statistics by default before it took its base recipe's: give --norm "
                      "training to go on with it)"]
    assert config_differences(recorded, now.with_(norm="training")) == []
    plain = {k: v for k, v in recorded.items() if k != "encoder"}
    assert config_differences(plain, now.with_(encoder=None)) == [
        "norm: 'training' there, 'scene' now"]  # no encoder, no such history


def test_an_encoder_file_given_relative_is_found_from_any_folder(tmp_path, monkeypatch):
    """``--encoder presto=w/model.pt`` typed in the folder the run started from: the run's
    config.yaml names the file relative to itself, so ``--config`` and ``--resume`` find it
    from another folder (both failed with "no such file"); the checkpoint keeps it as typed."""
    from training.config import read_train_config
    from training.run.folder import write_resolved_config

    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "model.pt").write_bytes(b"weights")
    monkeypatch.chdir(tmp_path)
    cfg = apply_recipe(config_from_mapping({"data": "patches", "out_dir": "runs/p",
                                            "model": "unet-s2", "encoder": "presto=w/model.pt"}))
    Path("runs/p").mkdir(parents=True)
    written = write_resolved_config(cfg)
    assert "encoder: presto=../../w/model.pt" in written.read_text()
    torch.save({"config": cfg.to_dict()}, Path("runs/p") / CHECKPOINT)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    for read in (config_from_mapping(read_train_config(tmp_path / "runs" / "p" / "config.yaml")),
                 resume_config(tmp_path / "runs" / "p", {})):
        name, _, path = str(read.model.encoder).partition("=")
        assert name == "presto" and Path(path).read_bytes() == b"weights"


def test_a_checkpoint_is_read_once_per_version_of_its_file(tmp_path):
    """A run asks its checkpoint the same questions many times (recorded options, finished,
    each member's): one read per version of the file, and a rewritten file is read again."""
    from training.modelfile import atomic_torch_save
    from training.run.folder import _summary, recorded_config

    out = tmp_path / "run"
    out.mkdir()
    atomic_torch_save({"config": {"model": "unet", "lr": 0.001}, "finished": False},
                      out / CHECKPOINT)
    before = _summary.cache_info().misses
    first = recorded_config(out)
    first["lr"] = 99.0  # the caller's copy: the kept summary is not touched
    assert recorded_config(out) == {"model": "unet", "lr": 0.001}
    assert _summary.cache_info().misses == before + 1  # two questions, one read
    atomic_torch_save({"config": {"model": "unet", "lr": 0.01}, "finished": True},
                      out / CHECKPOINT)  # the next epoch's file
    assert recorded_config(out) == {"model": "unet", "lr": 0.01}
    assert _summary.cache_info().misses == before + 2
