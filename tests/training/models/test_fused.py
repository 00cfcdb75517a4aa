"""Fused residual block ends: the same outputs as the plain ops, written into the stream."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from training.models import fused
from training.models.blocks import BasicBlock, Bottleneck, ResidualBlocks, fold_batchnorm
from training.models.compact import PrunedBasicBlock, add_into_kept
from training.models.hrnet import HRNet

LAST = torch.channels_last
needs_op = pytest.mark.skipif(fused._OP is None, reason="this torch has no oneDNN post-ops")


def nhwc(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(*shape).to(dtype).contiguous(memory_format=LAST)


def randomise_norms(module: nn.Module) -> nn.Module:
    """Non-trivial batch-norm statistics (fresh blocks start as identities)."""
    gen = torch.Generator().manual_seed(0)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data = torch.rand(m.num_features, generator=gen) + 0.5
            m.bias.data = torch.randn(m.num_features, generator=gen) * 0.1
            m.running_mean = torch.randn(m.num_features, generator=gen) * 0.1
            m.running_var = torch.rand(m.num_features, generator=gen) + 0.5
    return module.eval()


@needs_op
def test_a_convolution_sum_and_relu_overwrite_the_stream():
    conv = nn.Conv2d(6, 10, 3, padding=1)
    stream, x = nhwc(2, 10, 9, 7), nhwc(2, 6, 9, 7)
    expected = F.relu(stream + conv(x))
    with torch.inference_mode():
        assert fused.applies(stream)
        out = fused.conv_add_relu_(stream, x, conv.weight, conv.bias, conv)
    assert out.data_ptr() == stream.data_ptr()
    torch.testing.assert_close(out, expected.detach(), rtol=1e-5, atol=1e-5)


@needs_op
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_placing_values_into_the_kept_channels_is_exact(dtype):
    kept = torch.tensor([0, 3, 4, 8])
    stream, values = F.relu(nhwc(2, 9, 5, 6, dtype=dtype)), nhwc(2, 4, 5, 6, dtype=dtype)
    expected = F.relu(add_into_kept(stream, values, kept))
    fused._ONE_HOT_FASTER.clear()
    with torch.inference_mode():
        out = fused.select_add_relu_(stream.clone(), values, kept)
        # both ways it may take give the same bits; which one is measured once per shape
        ways = [way(stream.clone(), values, kept)
                for way in (fused._one_hot_add_relu_, fused._scatter_add_relu_)]
    assert torch.equal(out, expected)
    assert all(torch.equal(way, expected) for way in ways)
    assert out.is_contiguous(memory_format=LAST)
    assert list(fused._ONE_HOT_FASTER) == [((2, 9, 5, 6), 4, dtype)]


def test_the_plain_path_runs_wherever_the_fused_one_does_not_apply():
    stream = nhwc(1, 4, 3, 3)
    assert not fused.applies(stream)  # autograd on: the stream must stay as it was
    with torch.inference_mode():
        assert not fused.applies(stream.contiguous())  # NCHW
        assert not fused.applies(stream.half())
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert not fused.applies(stream)  # fp32 map, bf16 convolution
            assert fused.applies(stream.bfloat16()) == (fused._OP is not None)
        with fused.disabled():
            assert not fused.applies(stream)


def test_eval_parameters_fold_the_batch_norm():
    conv, norm = nn.Conv2d(3, 5, 3, padding=1, bias=False), randomise_norms(nn.BatchNorm2d(5))
    x = torch.randn(1, 3, 6, 6)
    weight, bias = fused.eval_conv_params(conv, norm)
    with torch.no_grad():
        torch.testing.assert_close(F.conv2d(x, weight, bias, padding=1), norm(conv(x)))
    assert fused.eval_conv_params(conv, nn.Identity())[0] is conv.weight
    assert fused.eval_conv_params(conv, nn.InstanceNorm2d(5)) is None
    assert fused.eval_conv_params(nn.Conv2d(3, 5, 3, padding="same"), nn.Identity()) is None


def _blocks() -> list[tuple[str, nn.Module, int]]:
    pruned = PrunedBasicBlock(BasicBlock(8), 5)
    pruned.kept = torch.tensor([0, 2, 3, 6, 7])
    pruned.conv2 = nn.Conv2d(8, 5, 3, padding=1, bias=False)
    pruned.bn2 = nn.BatchNorm2d(5)
    return [("basic", BasicBlock(8), 8), ("pruned basic", pruned, 8),
            ("bottleneck", Bottleneck(16, 4), 16), ("projection", Bottleneck(8, 4), 8)]


@pytest.mark.parametrize("name, block, channels", _blocks(), ids=lambda v: str(v)[:12])
@pytest.mark.parametrize("fold", [False, True])
def test_blocks_end_fused_in_inference_with_the_plain_outputs(name, block, channels, fold):
    block = randomise_norms(block)
    block = fold_batchnorm(block) if fold else block
    x = F.relu(nhwc(2, channels, 10, 12))  # a stream: the output of a ReLU
    with torch.inference_mode():
        with fused.disabled():
            expected = block(x.clone(), inplace=True)
        kept = x.clone()
        untouched = block(kept, inplace=False)
        stream = x.clone()
        out = block(stream, inplace=True)
    torch.testing.assert_close(untouched, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    assert torch.equal(kept, x)  # not told it may: the input is left alone
    if fused._OP is not None and name != "projection":
        assert out.data_ptr() == stream.data_ptr()  # told it may: written in place


def test_a_sequence_overwrites_only_the_maps_it_owns():
    seq = randomise_norms(ResidualBlocks(*(BasicBlock(6) for _ in range(3))))
    x = F.relu(nhwc(1, 6, 8, 8))
    before = x.clone()
    with torch.inference_mode():
        out = seq(x)
        with fused.disabled():
            expected = seq(before.clone())
    assert torch.equal(x, before)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    # training runs the plain path: gradients flow and the input stays as it was
    seq.train()
    y = x.clone().requires_grad_()
    seq(y, inplace=True).sum().backward()
    assert y.grad is not None and torch.equal(y.detach(), x)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_hrnet_inference_is_unchanged_by_the_fused_ends_and_leaves_its_input(dtype):
    torch.manual_seed(0)  # the weights and input, whatever ran before in the process
    net = randomise_norms(HRNet(4, 5, width=4, modules=(1, 1, 1), blocks=2)).to(
        memory_format=LAST)
    x = nhwc(2, 4, 64, 64)
    before = x.clone()
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16,
                                                enabled=dtype == torch.bfloat16):
        out = net(x).float()
        with fused.disabled():
            expected = net(x).float()
    assert torch.equal(x, before)
    # float rounding of logits in the thousands (random norms); in bf16 the fused end
    # rounds once where the plain path rounds the convolution's output first
    tol = (1e-5 if dtype == torch.float32 else 0.05) * expected.abs().max().item()
    torch.testing.assert_close(out, expected, rtol=0, atol=tol)


def test_compiling_traces_residual_blocks_in_one_graph():
    """The fused-path check is skipped while compiling, before anything Dynamo cannot trace:
    a graph break in every residual block made a deep network exhaust Dynamo's recompile
    limit and run partly eagerly."""
    seq = randomise_norms(ResidualBlocks(Bottleneck(16, 4), BasicBlock(16), Bottleneck(16, 4)))
    x = F.relu(nhwc(1, 16, 8, 8))
    with torch.inference_mode():
        explained = torch._dynamo.explain(seq)(x)
    assert explained.graph_break_count == 0 and explained.graph_count == 1
