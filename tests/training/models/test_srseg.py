import pytest
import torch

from core.errors import ConfigError, ModelError
from training.losses.srseg import SRSegLoss
from training.models import available_models, create_model

TINY = {"widths": (8, 16, 32), "stage_widths": (8, 8, 8, 8)}


@pytest.mark.parametrize("scale", [2, 4, 5, 8, 10])
@pytest.mark.parametrize("name", ["srseg", "bilinear-unet", "unet-upsample"])
def test_output_is_exactly_scale_times_the_input(name, scale):
    kw = TINY if name == "srseg" else {"widths": (8, 16, 32)}
    model = create_model(name, in_channels=3, num_classes=2, scale=scale, **kw).eval()
    x = torch.randn(1, 3, 6, 10)  # not a multiple of the stride: padded inside, cropped back
    with torch.no_grad():
        out = model(x)
    logits = out["out"] if isinstance(out, dict) else out
    assert logits.shape == (1, 2, 6 * scale, 10 * scale)
    assert model.output_scale == scale
    if name == "srseg":
        assert out["sr"].shape == (1, 3, 6 * scale, 10 * scale)
        assert not any(k.startswith("ds_") for k in out)  # eval mode: no extra heads


def test_models_are_registered_and_bad_scale_is_refused():
    assert {"srseg", "bilinear-unet", "unet-upsample"} <= set(available_models())
    with pytest.raises(ConfigError, match="fine scale 3 is not supported"):
        create_model("srseg", in_channels=3, scale=3)


@pytest.mark.parametrize("scale", [5, 8])
def test_gradients_reach_every_stage_and_head(scale):
    torch.manual_seed(0)
    model = create_model("srseg", in_channels=4, num_classes=2, scale=scale, **TINY).train()
    x = torch.randn(2, 4, 8, 8)
    out = model(x)
    expected = {"ds_x1", "ds_x2", "ds_x4", "sr", "out"}
    assert set(out) == expected
    for key in expected - {"sr", "out"}:
        s = int(key[4:])
        assert out[key].shape[-2:] == (8 * s, 8 * s)
    target = torch.randint(0, 2, (2, 8 * scale, 8 * scale))
    target[:, :3] = 255
    fine = torch.randn(2, 4, 8 * scale, 8 * scale)
    loss_fn = SRSegLoss()
    loss = loss_fn(out, target, fine)
    loss.backward()
    assert set(loss_fn.last_terms) == {"seg", "deep_supervision", "reconstruction"}
    assert model.stage_scales == ([2, 4, 5] if scale == 5 else [2, 4, 8])
    for name, param in model.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_reconstruction_can_be_switched_off():
    model = create_model("srseg", in_channels=2, scale=2, reconstruction=False, **TINY).train()
    out = model(torch.randn(1, 2, 8, 8))
    assert set(out) == {"out", "ds_x1"}  # no "sr"


@pytest.mark.parametrize("name", ["srseg", "bilinear-unet", "unet-upsample"])
def test_models_accept_the_manifest_bands_the_trainer_passes(name):
    model = create_model(name, in_channels=2, scale=2, widths=(8, 16), bands=["B4", "B8"])
    assert model.output_scale == 2
    with pytest.raises(ModelError, match="band names"):
        create_model(name, in_channels=3, scale=2, bands=["B4", "B8"])
