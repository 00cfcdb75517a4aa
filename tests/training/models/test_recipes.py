"""Model recipes: each model's paper loss/targets/optimisation, and RU-Net++'s ASPP context."""

from __future__ import annotations

import sys
import types

import pytest
import torch
from torch import nn

import training.models
from core.errors import ConfigError
from training.config import RecipeValues, TrainConfig, apply_recipe, recipe_values
from training.losses.segmentation import (
    CROFUSENET,
    DICE_FOCAL,
    WEIGHTED_CE,
    CroFuseNetLoss,
    DiceFocalLoss,
    WeightedCrossEntropy,
)
from training.losses.srseg import SRSegLoss
from training.models import (
    REGISTRY,
    ModelEntry,
    ModelRecipe,
    ModelRegistry,
    context_warning,
    create_model,
    model_loss,
    recipe_for,
)
from training.models.blocks import ASPP
from training.run.optim import make_optimizer


def test_each_model_trains_with_its_papers_loss_and_targets():
    cro = recipe_for("crofusenet")
    assert (cro.loss, cro.loss_kwargs, cro.patch_size, cro.lr, cro.batch_size) == (
        CROFUSENET, {"alpha": 1.0, "beta": 0.8}, 128, 1e-4, 32)
    loss = model_loss("crofusenet")
    assert isinstance(loss, CroFuseNetLoss) and (loss.alpha, loss.beta) == (1.0, 0.8)
    ru = recipe_for("runetpp")
    assert ru.loss is DICE_FOCAL and ru.loss.name == "dice_focal"
    assert (ru.patch_size, ru.output_stride, ru.model_kwargs) == (512, 16, {"output_stride": 16})
    loss = model_loss("runetpp")
    assert isinstance(loss, DiceFocalLoss) and (loss.dice_weight, loss.focal_weight) == (0.7, 0.3)
    assert recipe_for("srseg").targets == ("label_fine", "image_fine")
    assert recipe_for("bilinear-unet").targets == ("label_fine",)
    assert all(isinstance(model_loss(m), SRSegLoss)
               for m in ("srseg", "bilinear-unet", "unet-upsample"))
    assert isinstance(model_loss("unet"), WeightedCrossEntropy)

    # Options left out come from the recipe; given ones win; the recipe's loss arguments sit
    # under given ones only for the recipe's own loss.
    cfg = apply_recipe(TrainConfig.of(model="srseg", lr=5e-4))
    assert (cfg.data.label, cfg.model.loss, cfg.optim.lr, cfg.loop.batch_size,
            cfg.optim.optimizer) == ("label_fine", "srseg", 5e-4, 4, "adam")
    cfg = apply_recipe(TrainConfig.of(model="runetpp", loss_kwargs={"gamma": 1.0},
                                      model_kwargs={"aspp_channels": 8}))
    assert cfg.model.loss_kwargs == {"dice_weight": 0.7, "focal_weight": 0.3, "gamma": 1.0}
    assert cfg.model.model_kwargs == {"output_stride": 16, "aspp_channels": 8}
    assert apply_recipe(cfg) == cfg
    assert apply_recipe(TrainConfig.of(model="runetpp", loss="ce")).model.loss_kwargs == {}
    # A hand-built model trained with Trainer under a name outside the registry: the default.
    assert apply_recipe(TrainConfig.of(model="hand-built")).optim.lr == ModelRecipe().lr
    # What a run reads of them, read once with the recipe applied: never unset.
    sr = recipe_for("srseg")
    assert recipe_values(TrainConfig.of(model="srseg", epochs=3)) == RecipeValues(
        label="label_fine", loss="srseg", batch_size=4, epochs=3, patience=sr.patience,
        poly_power=sr.poly_power)


def _conv(c: int, k: int, **kw) -> nn.Module:
    return nn.Conv2d(c, k, 1)


def _use_registry_with(monkeypatch, models: dict[str, ModelEntry]) -> None:
    """Run the test on the built-in registry merged with an outside module's ``MODELS``."""
    outside = types.ModuleType("outside_models")
    outside.MODELS = models
    built_in = [sys.modules[name] for name in sorted(set(REGISTRY.modules.values()))]
    monkeypatch.setattr(training.models, "REGISTRY", ModelRegistry.merge(*built_in, outside))


def test_an_hrnet_like_recipe_fits_sgd_and_weights_by_class_name(monkeypatch):
    recipe = ModelRecipe(loss=WEIGHTED_CE, loss_kwargs={"class_weights": {"impervious": 3.0}},
                         patch_size=513, output_stride=4, optimizer="sgd", lr=0.01,
                         momentum=0.9, batch_size=8, source="test")
    _use_registry_with(monkeypatch, {"test-recipe-sgd": ModelEntry(_conv, recipe),
                                     "test-recipe-none": ModelEntry(_conv)})
    cfg = apply_recipe(TrainConfig.of(model="test-recipe-sgd"))
    optim = cfg.optim
    assert (optim.optimizer, optim.lr, optim.momentum, optim.poly_power) == ("sgd", 0.01, 0.9, 0.9)
    opt = make_optimizer(cfg.optim, create_model("test-recipe-sgd", 3, 3).parameters())
    assert isinstance(opt, torch.optim.SGD) and opt.defaults["momentum"] == 0.9
    loss = model_loss("test-recipe-sgd", ["water", "impervious", "forest"])
    assert loss.weight.tolist() == [1.0, 3.0, 1.0]
    with pytest.raises(ConfigError, match="does not have"):
        model_loss("test-recipe-sgd", ["pervious", "isa"])
    assert cfg.model.loss == "weighted_ce"  # the run records the factory's name
    # A model whose entry gives no recipe trains with the default one.
    assert recipe_for("test-recipe-none") == ModelRecipe()
    assert apply_recipe(TrainConfig.of(model="test-recipe-none")).model.loss == "ce"
    with pytest.raises(ConfigError, match="targets"):
        ModelRecipe(targets=("image_fine",))
    with pytest.raises(ConfigError, match="loss must be a LossFactory"):
        ModelRecipe(loss="weighted_ce")  # a name is not a factory


def _aspp_input_size(output_stride: int, patch: int) -> int:
    """Run RU-Net++ on the meta device (shapes only, no arithmetic) and read its ASPP input."""
    seen = []
    with torch.device("meta"):
        model = create_model("runetpp", 3, 2, output_stride=output_stride)
        model.aspp.register_forward_hook(lambda m, args, out: seen.append(args[0].shape))
        out = model(torch.empty(1, 3, patch, patch))
    assert out.shape == (1, 2, patch, patch)
    return seen[0][-1]


def _branch_is_1x1(aspp: ASPP, branch: int, x: torch.Tensor) -> bool:
    """Whether a 3x3 branch gives the same output with every tap but the centre zeroed."""
    conv = aspp.branches[branch][0]
    centre = nn.Conv2d(conv.in_channels, conv.out_channels, 3, padding=conv.padding,
                       dilation=conv.dilation, bias=False)
    with torch.no_grad():
        centre.weight.zero_()
        centre.weight[:, :, 1, 1] = conv.weight[:, :, 1, 1]
        return torch.allclose(conv(x), centre(x), atol=1e-6)


def test_runetpp_aspp_at_its_recipe_patch_size_sees_every_dilation():
    recipe = recipe_for("runetpp")
    size = _aspp_input_size(recipe.model_kwargs["output_stride"], recipe.patch_size)
    assert size == 32  # 512 px at output stride 16
    torch.manual_seed(0)
    aspp = ASPP(4, 4, branch_ch=4).eval()  # the real block, narrow; dilations 6, 12, 18
    x = torch.randn(1, 4, size, size)
    assert aspp.collapsed_rates(size) == ()
    assert not any(_branch_is_1x1(aspp, b, x) for b in (1, 2, 3))
    # The reasons for the recipe: on 128 px patches (8x8) the 12- and 18-dilated branches are
    # 1x1 convolutions, and Table 2's stride 32 leaves 16x16 at 512 px, where 18 still is.
    small = torch.randn(1, 4, 8, 8)
    assert [_branch_is_1x1(aspp, b, small) for b in (1, 2, 3)] == [False, True, True]
    assert _aspp_input_size(32, 512) == 16
    assert _branch_is_1x1(aspp, 3, torch.randn(1, 4, 16, 16))
    assert aspp.collapsed_rates(16) == (18,)


def test_small_patch_warning_names_the_problem_and_what_to_do():
    with torch.device("meta"):
        model = create_model("runetpp", 3, 2, **recipe_for("runetpp").model_kwargs)
    assert model.min_input_size == 304
    msg = context_warning("runetpp", 128, model)
    assert "8x8 map" in msg and "dilated 12/18 act as 1x1" in msg
    assert msg.endswith("export patches of at least 304 px (isamap-export --patch-size 512; "
                        "its recipe trains on 512 px)")
    assert context_warning("runetpp", 512, model) is None
    assert "1x1 map" in context_warning("crofusenet", 16, create_model(
        "crofusenet", 6, bands=["B2", "B3", "B4", "B8", "VV", "VH"], widths=[2, 2, 2, 2, 2]))
    assert context_warning("crofusenet", 32) is None  # from the recipe when no model is built
    assert "at least 32 px" in context_warning("crofusenet", 16)


def test_isamap_train_warns_once_when_patches_starve_the_model(tmp_path, caplog):
    import json
    import logging

    from cli.train import train_main
    from tests.support.rasters import write_patch_dataset

    root = write_patch_dataset(tmp_path / "ds", n=6, size=16)
    args = ["--data", str(root), "--model", "crofusenet", "--model-kwargs",
            json.dumps({"widths": [2, 2, 2, 2, 2]}), "--max-iterations", "1", "--batch-size",
            "2", "--precision", "fp32", "--workers", "0", "--no-progress", "--out"]
    with caplog.at_level(logging.WARNING, logger="training"):
        assert train_main([*args, str(tmp_path / "run")]) == 0
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert lines == ["model 'crofusenet' on 16 px patches: its deepest 3x3 convolutions see a 1x1 "
                     "map and act as 1x1 convolutions; export patches of at least 32 px "
                     "(isamap-export --patch-size 128; its recipe trains on 128 px)"]


def test_runetpp_trains_on_crops_of_its_recipe_size_and_refuses_starved_patches(caplog):
    import logging

    from training.run.inputs import check_context

    cfg = apply_recipe(TrainConfig.of(model="runetpp"))
    assert cfg.data.crop_size == 512 and recipe_for("runetpp").small_patches == "refuse"
    with torch.device("meta"):
        model = create_model("runetpp", 3, 2, **cfg.model.model_kwargs)
    check_context(cfg, 1024, model)  # 512 px crops of 1024 px patches: the paper's context
    check_context(cfg, 320, model)  # whole patches above the ASPP's 304 px
    with pytest.raises(ConfigError, match=r"8x8 map.*--allow-small-patches"):
        check_context(cfg, 128, model)
    with pytest.raises(ConfigError, match="16x16 map"):  # a crop the user asked for counts
        check_context(cfg.with_(crop_size=256), 1024, model)
    with caplog.at_level(logging.WARNING, logger="training"):
        check_context(cfg.with_(allow_small_patches=True), 128, model)
    assert any("8x8 map" in r.getMessage() for r in caplog.records)


def test_isamap_train_refuses_runetpp_on_small_patches_in_one_line(tmp_path, capsys):
    from cli.train import train_main
    from tests.support.rasters import write_patch_dataset

    root = write_patch_dataset(tmp_path / "ds", n=6, size=32)
    out = tmp_path / "run"
    assert train_main(["--data", str(root), "--model", "runetpp", "--max-iterations", "1",
                       "--precision", "fp32", "--workers", "0", "--no-progress",
                       "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "its ASPP sees a 2x2 map" in err and "--allow-small-patches" in err
    assert not (out / "model.pt").exists()
