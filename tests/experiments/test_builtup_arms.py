"""The experiments' arms: a retired recipe trains as it was, under a name isamap-train offers."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from cli.train import started_config, train_main
from experiments.builtup_arms import arm_of
from experiments.builtup_commands import Budget, train_argv
from training.config import apply_recipe
from training.models import check_trainable, create_model, trainable_models
from training.models.unet import WINDOW_RETIRED

BANDS = ("B2", "B3", "B4", "B8", "B11", "B12")


def test_the_unet_s2_window_arm_trains_the_retired_recipe_as_it_was(tmp_path):
    """Every option the retired name's recipe set, and the same network from the same seed."""
    budget = Budget(epochs=2, batch_size=4, lr=1e-3, seed=1, iterations=3)
    argv = train_argv(arm_of("unet-s2-window"), tmp_path / "data", tmp_path / "run", budget)
    assert argv[argv.index("--model") + 1] == "unet-s2"
    old_argv = [*argv]
    old_argv[argv.index("--model") + 1] = "unet-s2-window"
    del old_argv[old_argv.index("--model-kwargs"):old_argv.index("--model-kwargs") + 2]
    cut = old_argv.index("--no-radiometric")  # the arm's own options: the retired recipe's
    arm, old = (apply_recipe(started_config(a)) for a in (argv, old_argv[:cut]))
    assert dataclasses.replace(arm, model="unet-s2-window", model_kwargs={}) == \
        dataclasses.replace(old, model_kwargs={})
    extra = {k: v for k, v in arm.model_kwargs.items() if k not in old.model_kwargs}
    assert {k: arm.model_kwargs[k] for k in old.model_kwargs} == old.model_kwargs
    assert extra == {"indices": [], "flips": False, "member_views": False}  # their defaults
    nets = []
    for cfg in (arm, old):
        torch.manual_seed(0)
        nets.append(create_model(cfg.model, len(BANDS), 2, bands=list(BANDS),
                                 **cfg.model_kwargs))
    x = torch.rand(2, len(BANDS), 32, 32)
    first, second = (net.eval() for net in nets)
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(),
                                                  second.state_dict().values(), strict=True))
    with torch.no_grad():
        assert torch.equal(first(x), second(x))


def test_isamap_train_refuses_a_retired_model_in_one_line_before_any_work(tmp_path, capsys):
    assert "unet-s2-window" not in trainable_models() and "unet-s2" in trainable_models()
    out = tmp_path / "run"
    assert train_main(["--model", "unet-s2-window", "--data", str(tmp_path / "nothing"),
                       "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--model unet-s2-window is retired" in err
    assert "--model unet-s2 --model-kwargs" in err and not out.exists()
    with pytest.raises(Exception, match="retired"):
        check_trainable("unet-s2-window")
    check_trainable("unet-s2")  # trainable: no error
    assert WINDOW_RETIRED in err
    fresh = tmp_path / "fresh"  # --resume where no run is starts one: refused alike
    assert train_main(["--model", "unet-s2-window", "--data", str(tmp_path / "nothing"),
                       "--out", str(fresh), "--resume"]) == 2
    assert "is retired" in capsys.readouterr().err and not fresh.exists()
