"""Shape and gradient tests for every built-in model, band selection by name, unknown names."""

from __future__ import annotations

import pytest
import torch

from core.errors import ModelError
from training.models import available_models, create_model

BANDS = ["B2", "B3", "B4", "B8", "VV", "VH"]


def _out(y):
    return y["out"] if isinstance(y, dict) else y


@pytest.mark.parametrize(("name", "size"), [("unet", (32, 48)), ("unet-s2", (32, 32)),
                                            ("unet-s1", (32, 32)), ("crofusenet", (32, 32)),
                                            ("runetpp", (64, 64))])
def test_shape_and_gradients(name, size):
    torch.manual_seed(0)
    model = create_model(name, len(BANDS), 2, bands=BANDS)
    x = torch.randn(2, len(BANDS), *size, requires_grad=True)
    y = model(x)
    if name == "crofusenet":
        assert set(y) == {"out", "optical", "sar"}
        assert all(v.shape == (2, 2, *size) for v in y.values())
        loss = sum(v.square().mean() for v in y.values())
    else:
        assert y.shape == (2, 2, *size)
        loss = y.square().mean()
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
    assert x.grad is not None and x.grad.abs().sum() > 0
    if name != "runetpp":
        # Nearly every tensor learns from the first step (a 2-unit SE hidden layer may start
        # dead for one batch); ResNet's zero-initialised residual BNs block more at step 0.
        alive = sum(bool(g.abs().sum() > 0) for g in grads.values())
        assert alive >= 0.95 * len(grads)
    else:
        assert grads["stem.0.weight"].abs().sum() > 0 and grads["head.weight"].abs().sum() > 0


def test_sizes_not_divisible_by_the_stride_are_refused_clearly():
    net = create_model("unet", 6, widths=[4, 8, 16, 32, 64])
    assert net.stride == 16
    with pytest.raises(ModelError, match="divisible by 16, got 40x32"):
        net(torch.zeros(1, 6, 40, 32))


def test_registry_lists_the_paper_models():
    assert {"unet", "unet-s2", "unet-s1", "crofusenet", "runetpp"} <= set(available_models())


def test_single_modality_unets_use_only_their_bands():
    torch.manual_seed(0)
    s1 = create_model("unet-s1", 6, bands=BANDS).eval()
    s2 = create_model("unet-s2", 6, bands=BANDS).eval()
    x = torch.randn(1, 6, 32, 32)
    x2 = x.clone()
    x2[:, :4] += 5  # change the optical bands only
    assert torch.equal(s1(x), s1(x2))
    assert not torch.equal(s2(x), s2(x2))
    assert s1.encoder.blocks[0][0][0].in_channels == 2
    assert s2.encoder.blocks[0][0][0].in_channels == 4


def test_crofusenet_splits_by_band_name_in_any_order():
    torch.manual_seed(0)
    order = ["VH", "B2", "VV", "B3", "B4", "B8", "s2_clear_count"]
    net = create_model("crofusenet", 7, bands=order, widths=[4, 8, 16, 32, 64]).eval()
    assert net.opt_idx.tolist() == [1, 3, 4, 5] and net.sar_idx.tolist() == [0, 2]
    x = torch.randn(1, 7, 32, 32)
    x2 = x.clone()
    x2[:, 6] += 3  # the quality band feeds no branch
    assert torch.equal(net(x)["out"], net(x2)["out"])


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"bands": BANDS[:4]}, "no S1 band"),
    ({"bands": BANDS[:5]}, "in_channels=6"),
    ({}, "needs bands"),
    ({"bands": ["B2", "B3", "B4", "B8", "VV", "XX"]}, "unknown band"),
])
def test_crofusenet_band_errors(kwargs, match):
    if kwargs.get("bands") == BANDS[:4]:
        with pytest.raises(ModelError, match=match):
            create_model("crofusenet", 4, **kwargs)
        return
    with pytest.raises(ModelError, match=match):
        create_model("crofusenet", 6, **kwargs)


def test_unknown_model_and_bad_arguments():
    with pytest.raises(ModelError, match="unknown model 'segformer'"):
        create_model("segformer", 6)
    with pytest.raises(ModelError, match="bad arguments"):
        create_model("unet", 6, depth=3)

