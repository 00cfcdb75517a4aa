"""The optical recipes: a scene-wide gain or offset per band does not move their input.

``unet-s2-window`` standardises each window's bands itself; ``unet-s2`` (the default) is the
same network on each scene's own statistics (tests/training/test_scene_norm.py).
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from core.errors import ModelError
from training.models import create_model, recipe_for
from training.models.unet import (
    PREDICTION_WINDOW,
    S2_WIDTHS,
    UNet,
    prediction_window,
)

BANDS = ["B2", "B3", "B4", "B8", "B11", "B12"]


def test_the_optical_recipes_are_scene_statistics_and_per_window_standardisation():
    default, window = recipe_for("unet-s2"), recipe_for("unet-s2-window")
    assert default.norm == "scene" and default.model_kwargs == {"input_norm": "none",
                                                                "widths": list(S2_WIDTHS),
                                                                "flips": True,
                                                                "member_views": True}
    assert window.norm == "training" and window.model_kwargs == {"input_norm": "patch",
                                                                 "widths": list(S2_WIDTHS)}
    # the same network otherwise: only what the input is normalised by differs, and unet-s2
    # keeps the moving average of its weights (docs/real-data.md "Weight averaging") and maps
    # each window as the mean of its mirror images (tests/training/models/test_flips.py)
    assert default.ema == 10 and window.ema == 0
    # and draws its patches in proportion to their built pixels (docs/real-data.md
    # "Balanced sampling")
    assert default.balanced_sampling and not window.balanced_sampling
    # and joins nine trainings, each mapping a window one of the four ways its flips turn it
    # (docs/evidence/builtup.md, "Nine short trainings")
    assert default.members == 9 and window.members == 1
    assert default.model_kwargs["member_views"] is True
    assert dataclasses.replace(window, norm="scene", model_kwargs=default.model_kwargs,
                               ema=10, balanced_sampling=True, members=9) == default


def test_the_window_recipe_standardises_and_a_per_band_gain_and_offset_change_nothing():
    kwargs = dict(recipe_for("unet-s2-window").model_kwargs)
    torch.manual_seed(0)
    model = create_model("unet-s2-window", len(BANDS), 2, bands=BANDS, **kwargs).eval()
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
    with pytest.raises(ModelError, match="input_norm must be one of none, patch"):
        UNet(3, 2, input_norm="scene")


def test_only_a_window_standardising_unet_records_a_prediction_window():
    assert prediction_window({"input_norm": "patch"}) == PREDICTION_WINDOW == 512
    for kwargs in ({"input_norm": "none"}, {}):
        assert prediction_window(kwargs) is None
