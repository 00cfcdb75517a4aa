"""unet-s2 standardises each window's bands itself: a scene-wide gain or offset does not move it."""

from __future__ import annotations

import pytest
import torch

from gee_export.core.errors import ModelError
from training.models import create_model, recipe_for
from training.models.unet import S2_WIDTHS, UNet

BANDS = ["B2", "B3", "B4", "B8", "B11", "B12"]


def test_the_s2_recipe_standardises_and_a_per_band_gain_and_offset_change_nothing():
    kwargs = dict(recipe_for("unet-s2").model_kwargs)
    assert kwargs == {"input_norm": "patch", "widths": list(S2_WIDTHS)}
    torch.manual_seed(0)
    model = create_model("unet-s2", len(BANDS), 2, bands=BANDS, **kwargs).eval()
    x = torch.randn(2, len(BANDS), 32, 32)  # bands as the global normalisation leaves them
    gain = torch.tensor([1.3, 0.8, 1.1, 0.9, 1.2, 1.05])[None, :, None, None]
    haze = torch.tensor([0.8, 0.6, 0.4, 0.2, 0.1, 0.0])[None, :, None, None]
    with torch.no_grad():
        assert (model(x) - model(x * gain + haze)).abs().max() < 1e-2
        plain = create_model("unet-s2", len(BANDS), 2, bands=BANDS, widths=list(S2_WIDTHS),
                             input_norm="none").eval()
        assert (plain(x) - plain(x * gain + haze)).abs().max() > 0.1


def test_a_constant_window_stays_finite_and_unknown_norms_are_refused():
    model = UNet(3, 2, widths=(4, 8, 8, 16, 16), input_norm="patch").eval()
    with torch.no_grad():
        assert torch.isfinite(model(torch.full((1, 3, 32, 32), 0.2))).all()
    with pytest.raises(ModelError, match="input_norm must be one of none, patch, both"):
        UNet(3, 2, input_norm="scene")
