"""Test-time flips: a U-Net with ``flips`` maps each window as the mean of its mirror images.

The mean is part of the network's forward outside training, so validation, calibration and
every prediction path (which all run the network in eval mode, or its exported graph) apply
it, and the model file records it in ``model_kwargs``.
"""

from __future__ import annotations

import pytest
import torch

from core.errors import ModelError
from training.modelfile import ModelMeta, load_model_file, save_model_file
from training.models import create_model, recipe_for
from training.models.blocks import FLIPS, flip_mean

BANDS = ["B2", "B3", "B4", "B8"]
SMALL = {"widths": [4, 8, 8, 16, 16], "input_norm": "none", "bands": BANDS}


def _pair(seed: int = 0) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The same weights with and without flips (eval mode)."""
    torch.manual_seed(seed)
    flipped = create_model("unet-s2", len(BANDS), 2, **SMALL, flips=True)
    plain = create_model("unet-s2", len(BANDS), 2, **SMALL, flips=False)
    plain.load_state_dict(flipped.state_dict())
    return flipped.eval(), plain.eval()


def test_flip_mean_is_the_mean_of_the_mirrored_back_outputs():
    conv = torch.nn.Conv2d(2, 3, 3, padding=1)  # not symmetric: each mirror image differs
    x = torch.randn(1, 2, 8, 8)
    with torch.no_grad():
        want = (conv(x) + conv(x.flip(3)).flip(3) + conv(x.flip(2)).flip(2)
                + conv(x.flip((2, 3))).flip((2, 3))) / 4
        assert torch.allclose(flip_mean(conv, x), want, atol=1e-6)
        assert not torch.allclose(conv(x), want, atol=1e-3)
    assert len(FLIPS) == 3


def test_outside_training_the_map_is_the_plain_networks_mean_over_mirror_images():
    flipped, plain = _pair()
    x = torch.randn(2, len(BANDS), 32, 48)
    with torch.no_grad():
        out = flipped(x)
        assert torch.allclose(out, flip_mean(plain, x), atol=1e-6)
        assert not torch.allclose(out, plain(x), atol=1e-4)
        # the map of a turned scene is the turned map: the direction of view is gone
        assert torch.allclose(flipped(x.flip(3)), out.flip(3), atol=1e-5)
        assert torch.allclose(flipped(x.flip(2)), out.flip(2), atol=1e-5)


def test_training_sees_each_patch_once():
    flipped, plain = _pair(1)
    flipped.train()
    plain.train()
    x = torch.randn(2, len(BANDS), 32, 32)
    assert torch.equal(flipped(x), plain(x))


def test_flips_must_be_true_or_false():
    with pytest.raises(ModelError, match="flips must be true or false"):
        create_model("unet-s2", len(BANDS), 2, **SMALL, flips="yes")


def test_the_default_optical_recipe_flips_and_the_window_recipe_does_not():
    assert recipe_for("unet-s2").model_kwargs["flips"] is True
    assert "flips" not in recipe_for("unet-s2-window").model_kwargs


def test_the_exported_graph_of_the_int8_path_keeps_the_flips():
    # int8 starts from torch.export of the eval-mode network: the mean must be in the graph
    flipped, plain = _pair(2)
    x = torch.randn(1, len(BANDS), 32, 32)
    graph = torch.export.export(flipped, (x,)).module()
    with torch.no_grad():
        assert torch.allclose(graph(x), flipped(x), atol=1e-5)
        assert not torch.allclose(graph(x), plain(x), atol=1e-4)


def test_a_model_file_recorded_without_flips_maps_each_window_once(tmp_path):
    # files written before the option existed record no flips: rebuilt as they were made
    flipped, plain = _pair(3)
    kwargs = dict(SMALL)
    meta = ModelMeta("unet-s2", len(BANDS), 2, tuple(BANDS), (0.0,) * 4, (1.0,) * 4,
                     model_kwargs=kwargs, norm="scene")
    old, _ = load_model_file(save_model_file(tmp_path / "old.pt", plain, meta))
    new, new_meta = load_model_file(save_model_file(
        tmp_path / "new.pt", flipped, ModelMeta(**{**meta.__dict__,
                                                   "model_kwargs": {**kwargs, "flips": True}})))
    x = torch.randn(1, len(BANDS), 32, 32)
    with torch.no_grad():
        assert torch.equal(old(x), plain(x))
        assert torch.allclose(new(x), flipped(x), atol=1e-6)
    assert new_meta.model_kwargs["flips"] is True


def test_the_int8_quantizer_takes_a_flipping_unet():
    # the x86 quantizer refuses a layer called more than once in the graph; the four views
    # go through the network as one batch, so it annotates every layer once and quantizes
    pytest.importorskip("torchao")
    from engine import quantize

    if not quantize.cpu_has_int8():
        pytest.skip("this CPU has no VNNI/AMX int8 instructions")
    flipped, _ = _pair(4)
    g = torch.Generator().manual_seed(0)
    batches = [torch.randn(2, len(BANDS), 32, 32, generator=g) for _ in range(3)]
    patches = quantize.Int8Patches(tuple(batches[:2]), (batches[2],), None, "two batches",
                                   "one batch", label_nodata=255)
    try:
        built = quantize.build_int8(flipped, patches, isa_class=1)
    except quantize.Int8RefusedError as exc:  # an untrained net may disagree: still quantized
        assert "class agreement" in str(exc)
    else:
        assert built.agreement.pixels == 2 * 32 * 32


def test_measured_choices_tell_a_flipping_network_from_the_same_weights_without():
    # the autotune cache and the int8 records are keyed on the module's repr: four passes
    # per window must not reuse the timing or the int8 check of one
    from engine import quantize
    from engine.autotune import cache_key

    flipped, plain = _pair(5)
    args = ((1, 4, 64, 64), torch.device("cpu"), "inference", "fp32", "nchw", False, 0.02)
    assert "flips=True" in repr(flipped) and "flips" not in repr(plain)
    assert cache_key(flipped, *args) != cache_key(plain, *args)
    assert quantize.record_key(flipped, (1, 4, 64, 64), "cpu") != \
        quantize.record_key(plain, (1, 4, 64, 64), "cpu")


def test_the_exported_graph_of_a_join_keeps_each_members_view():
    # int8 starts from torch.export of the eval-mode network: a join that spreads the views
    # over its members must export each member's mirror image, not the plain window
    torch.manual_seed(6)
    joined = create_model("unet-s2", len(BANDS), 2, **SMALL, flips=True, members=4,
                          member_views=True).eval()
    x = torch.randn(1, len(BANDS), 32, 32)
    graph = torch.export.export(joined, (x,)).module()
    with torch.no_grad():
        assert torch.allclose(graph(x), joined(x), atol=1e-5)
        joined.views = False  # the same members on the plain window map otherwise
        assert not torch.allclose(graph(x), joined(x), atol=1e-4)
