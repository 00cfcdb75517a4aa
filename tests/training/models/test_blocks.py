"""Shared model parts: bilinear resizing."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from training.models.blocks import resize_bilinear


def _bilinear(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def test_a_map_already_at_the_size_is_returned_as_it_is():
    x = torch.randn(1, 3, 8, 8)
    assert resize_bilinear(x, (8, 8)) is x
    assert resize_bilinear(x, x.shape[-2:]) is x


def test_full_precision_maps_resize_as_interpolate_does():
    x = torch.randn(2, 5, 7, 9).contiguous(memory_format=torch.channels_last)
    out = resize_bilinear(x, (28, 36))
    assert torch.equal(out, _bilinear(x, (28, 36)))
    assert out.is_contiguous(memory_format=torch.channels_last)


def test_bf16_maps_are_interpolated_in_fp32_and_rounded_once():
    x = torch.randn(2, 7, 16, 16).bfloat16().contiguous(memory_format=torch.channels_last)
    out = resize_bilinear(x, (64, 64))
    assert out.dtype == torch.bfloat16
    assert torch.equal(out, _bilinear(x.float(), (64, 64)).bfloat16())
    # the bf16 kernel itself rounds its intermediate sums: at most a rounding step apart
    assert torch.allclose(out.float(), _bilinear(x, (64, 64)).float(), rtol=2 ** -7, atol=1e-2)


def test_gradients_reach_a_bf16_input():
    x = torch.randn(1, 2, 4, 4).bfloat16().requires_grad_()
    resize_bilinear(x, (8, 8)).float().sum().backward()
    assert x.grad is not None and x.grad.dtype == torch.bfloat16
    # every output pixel's weights sum to 1, so the input gradients sum to the output's count
    assert abs(float(x.grad.float().sum()) - 2 * 8 * 8) < 0.5
