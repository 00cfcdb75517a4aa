"""The experiments' arms: a retired recipe trains as it was, under a name isamap-train offers."""

from __future__ import annotations

import torch

from cli.train import started_config
from experiments.builtup_arms import arm_of
from experiments.builtup_commands import Budget, train_argv
from experiments.change_series import RECIPES
from training.config import apply_recipe
from training.models import create_model

BANDS = ("B2", "B3", "B4", "B8", "B11", "B12")


def test_the_unet_s2_window_arm_trains_the_retired_recipe_as_it_was(tmp_path):
    """Every option the retired name's recipe set, and the same network from the same seed."""
    budget = Budget(epochs=2, batch_size=4, lr=1e-3, seed=1, iterations=3)
    argv = train_argv(RECIPES["unet-s2-window"], tmp_path / "data", tmp_path / "run", budget)
    assert argv[argv.index("--model") + 1] == "unet-s2"
    old_argv = [*argv]
    old_argv[argv.index("--model") + 1] = "unet-s2-window"
    del old_argv[old_argv.index("--model-kwargs"):old_argv.index("--model-kwargs") + 2]
    cut = old_argv.index("--no-radiometric")  # the arm's own options: the retired recipe's
    arm, old = (apply_recipe(started_config(a)) for a in (argv, old_argv[:cut]))
    assert arm.with_(model="unet-s2-window", model_kwargs={}) == old.with_(model_kwargs={})
    arm_kwargs, old_kwargs = arm.model.model_kwargs, old.model.model_kwargs
    extra = {k: v for k, v in arm_kwargs.items() if k not in old_kwargs}
    assert {k: arm_kwargs[k] for k in old_kwargs} == old_kwargs
    assert extra == {"flips": False, "member_views": False}  # their defaults
    nets = []
    for cfg in (arm, old):
        torch.manual_seed(0)
        nets.append(create_model(cfg.model.name, len(BANDS), 2, bands=list(BANDS),
                                 **cfg.model.model_kwargs))
    x = torch.rand(2, len(BANDS), 32, 32)
    first, second = (net.eval() for net in nets)
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(),
                                                  second.state_dict().values(), strict=True))
    with torch.no_grad():
        assert torch.equal(first(x), second(x))


def test_the_unet_s2_fixed_arm_is_the_default_recipe_on_the_training_statistics(tmp_path):
    """``unet-s2-fixed`` trains what ``unet-s2`` trains (nine trainings), but normalised by the
    training statistics with radiometric augmentation; ``unet-s2`` stays on each scene's."""
    budget = Budget(epochs=2, batch_size=4, lr=1e-3, seed=1, iterations=3)
    fixed, default = (apply_recipe(started_config(train_argv(
        arm_of(name), tmp_path / "data", tmp_path / "run", budget)))
        for name in ("unet-s2-fixed", "unet-s2"))
    assert (default.data.norm, default.data.radiometric) == ("scene", False)
    assert (fixed.data.norm, fixed.data.radiometric, fixed.loop.members) == ("training", True, 9)
    assert fixed.with_(norm="scene", radiometric=False) == default


def test_the_plain_scene_arm_is_the_plain_reference_on_each_scenes_statistics(tmp_path):
    """``plain-scene`` changes one option of ``plain``: the scene's statistics for the
    training split's, so the two compare that normalisation alone."""
    budget = Budget(epochs=2, batch_size=4, lr=1e-3, seed=1, iterations=3)
    scene, plain = (apply_recipe(started_config(train_argv(
        arm_of(name), tmp_path / "data", tmp_path / "run", budget)))
        for name in ("plain-scene", "plain"))
    assert (scene.data.norm, plain.data.norm) == ("scene", "training")
    assert scene.with_(norm="training") == plain
