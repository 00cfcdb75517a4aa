"""HRNet of the land-cover paper: shapes, instance-norm stem, branches, fusion, recipe."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from contract.label_schemes import LANDCOVER_CLASSES
from core.errors import ModelError
from training.config import TrainConfig, apply_recipe
from training.models import create_model, model_loss, recipe_for
from training.models.hrnet import HRNet

NAIP = ["Red", "Green", "Blue", "NearInfrared"]
TINY = {"width": 2, "stem_width": 4, "stage1_width": 2, "modules": (1, 1, 1), "blocks": 1}


def test_shapes_at_513_px_with_a_narrow_width():
    """The paper's 513 px crop (odd: every branch rounds up) comes back at 513 px."""
    net = create_model("hrnet", 4, 7, bands=NAIP, **TINY).eval()
    branch_sizes = []
    for stage in (net.stage4,):
        stage.register_forward_hook(lambda m, i, o: branch_sizes.extend(x.shape[-1] for x in o))
    with torch.no_grad():
        y = net(torch.randn(1, 4, 513, 513))
    assert y.shape == (1, 7, 513, 513)
    assert branch_sizes == [129, 65, 33, 17]  # 1/4, 1/8, 1/16, 1/32 after a stride-4 stem


def test_shape_and_gradients_at_the_patch_size():
    torch.manual_seed(0)
    net = create_model("hrnet", 6, 2, **{**TINY, "modules": (1, 2, 1)})
    x = torch.randn(2, 6, 128, 128, requires_grad=True)
    y = net(x)
    assert y.shape == (2, 2, 128, 128)
    y.square().mean().backward()
    assert x.grad.abs().sum() > 0
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


def test_the_paper_structure_at_the_default_width():
    net = HRNet(4, 7)  # C = 18
    assert net.branch_widths == (18, 36, 72, 144)
    assert [len(s.modules_) for s in (net.stage2, net.stage3, net.stage4)] == [1, 4, 3]
    assert all(len(branch) == 4 for s in (net.stage2, net.stage3, net.stage4)
               for m in s.modules_ for branch in m.branches)
    assert len(net.layer1) == 4 and net.layer1[0].conv1[0].out_channels == 64
    assert net.layer1[-1].conv3.out_channels == 256
    assert isinstance(net.stem.norm1, nn.InstanceNorm2d) and net.stem.conv1.stride == (2, 2)
    # every output branch of a fusion receives every input branch
    fuse = net.stage4.modules_[0].fuse
    assert [len(p) for p in fuse.paths] == [4, 4, 4, 4]
    assert len(fuse.paths[3][0]) == 3  # the finest branch reaches the coarsest in 3 steps
    # width 24, the paper's C, builds the paper's 16.8 M parameters (16,812,946 reported)
    params = sum(p.numel() for p in HRNet(4, 7, width=24).parameters())
    assert abs(params - 16_812_946) / 16_812_946 < 1e-3


def test_the_instance_norm_stem_normalises_each_image_alone():
    """IN: an image's output does not depend on the other images of the batch (BN's does)."""
    torch.manual_seed(0)
    a, b = torch.randn(1, 4, 32, 32), 5 + 3 * torch.randn(1, 4, 32, 32)
    for norm, independent in (("instance", True), ("batch", False)):
        net = create_model("hrnet", 4, 3, stem_norm=norm, stem_convs=1, **TINY).train()
        stem = net.stem
        alone = stem(a)
        together = stem(torch.cat([a, b]))[:1]
        assert torch.allclose(alone, together, atol=1e-5) == independent, norm
    net = create_model("hrnet", 4, 3, stem_norm="instance", **TINY).train()
    out = net.stem.norm1(net.stem.conv1(b))
    assert torch.allclose(out.mean(dim=(2, 3)), torch.zeros(1, out.shape[1]), atol=1e-5)
    with pytest.raises(ModelError, match="stem_norm"):
        create_model("hrnet", 4, 3, stem_norm="layer")


def test_stem_norm_reaches_the_model_through_model_kwargs(hrnet_run):
    """``--model-kwargs '{"stem_norm": "batch"}'`` builds, trains and is recorded."""
    from training.modelfile import load_model_file

    model, meta = load_model_file(hrnet_run.model_path)
    assert isinstance(model.stem.norm1, nn.BatchNorm2d)
    assert meta.model_kwargs["stem_norm"] == "batch"
    assert (meta.extra["config"]["optimizer"], meta.extra["config"]["crop_size"]) == ("sgd", 16)


def test_the_registered_recipe_is_the_papers_and_fills_an_isamap_train_config():
    """``isamap-train --model hrnet`` with nothing else: SGD 0.01 / 0.9, poly, 513 px crops,
    batch 32, 120 epochs, and a weighted CE counting the ``impervious`` class three times."""
    cfg = apply_recipe(TrainConfig.of(model="hrnet"))
    optim = cfg.optim
    assert (optim.optimizer, optim.lr, optim.momentum, optim.poly_power, cfg.data.crop_size,
            cfg.loop.batch_size, cfg.loop.epochs) == ("sgd", 0.01, 0.9, 0.9, 513, 32, 120)
    assert cfg.model.loss == "weighted_ce" and cfg.optim.weight_decay == 5e-4
    assert recipe_for("hrnet").source.startswith("seed 003")
    # the paper's C = 24 by default, C = 18 by choice
    with torch.device("meta"):
        assert create_model("hrnet", 4, 7, **cfg.model.model_kwargs).branch_widths == (
            24, 48, 96, 192)
        chosen = apply_recipe(TrainConfig.of(model="hrnet", model_kwargs={"width": 18}))
        assert create_model("hrnet", 4, 7, **chosen.model.model_kwargs).branch_widths[0] == 18
    loss = model_loss("hrnet", LANDCOVER_CLASSES)
    assert loss.weight.tolist() == [1.0, 1.0, 1.0, 1.0, 3.0, 1.0, 1.0]
    # flags win, and 0 trains on whole patches
    given = apply_recipe(TrainConfig.of(model="hrnet", optimizer="adam", crop_size=0, lr=1e-3))
    assert (given.optim.optimizer, given.data.crop_size, given.optim.lr) == ("adam", 0, 1e-3)


@pytest.mark.parametrize("name,kw", [("hrnet", TINY), ("unet", {"widths": [4, 8, 16, 32, 64]})])
def test_folding_batch_norms_keeps_the_outputs(name, kw):
    from training.models.blocks import fold_batchnorm

    torch.manual_seed(0)
    net = create_model(name, 4, 3, **kw).train()
    with torch.no_grad():
        net(torch.randn(4, 4, 64, 64))  # non-trivial running statistics
    net.eval()
    folded = fold_batchnorm(net)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in net.modules())  # a copy: net untouched
    x = torch.randn(2, 4, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), net(x), rtol=1e-4, atol=1e-4)
