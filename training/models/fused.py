"""A residual block's end in one pass on the CPU: convolution, sum into the stream, ReLU.

In eager PyTorch a residual block ends with three passes over the stream (the last
convolution writes a new map, ``+`` reads it and the stream and writes a third, the ReLU
reads and writes once more) and a filter-pruned block adds a scatter into its kept channels
(``training.models.compact``). On the CPU these passes are memory-bound and cost more than
the small convolutions between them. oneDNN can end a convolution with "add the destination
and apply a ReLU" (a binary post-op), writing straight into the stream. PyTorch exposes it
as ``torch.ops.mkldnn._convolution_pointwise_.binary`` -- a private operator, the one
``torch.compile``'s CPU backend emits for the same pattern -- so this module feature-detects it
and every caller keeps its plain path for when it is missing, for training (autograd needs
the stream unchanged), under ``torch.compile`` (which fuses by itself) and for layouts where
it does not pay.

When it applies (:func:`applies`): no autograd, a CPU tensor in channels-last (NHWC) layout, in
the dtype the convolution computes in (fp32, or bf16 under autocast). On NCHW tensors the
operator is slower than the plain ops for one-hot selections and fails for bf16, so NCHW keeps
the plain path. Measured with ``benchmarks/bench_pruning.py`` (docs/landcover.md, "Pruning
speed").

The stream is **overwritten**: callers pass a map nobody reads afterwards (a block's own
shortcut output, or a block input its sequence owns: ``blocks.ResidualBlocks``).
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

_OP: Any = (getattr(torch.ops.mkldnn, "_convolution_pointwise_", None)
       if torch.backends.mkldnn.is_available() else None)
_ENABLED = contextvars.ContextVar("isamap_fused_epilogues", default=True)
_DTYPES = (torch.float32, torch.bfloat16)


def is_channels_last(x: torch.Tensor) -> bool:
    """Whether ``x`` is laid out NHWC (and not also NCHW, as 1-channel or 1x1 maps are)."""
    return (x.dim() == 4 and not x.is_contiguous()
            and x.is_contiguous(memory_format=torch.channels_last))


@contextlib.contextmanager
def disabled() -> Iterator[None]:
    """Run the plain (unfused) path inside the block: for comparisons in tests and benchmarks."""
    token = _ENABLED.set(False)
    try:
        yield
    finally:
        _ENABLED.reset(token)


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype a CPU convolution of ``x`` computes in here (autocast's, else ``x``'s)."""
    if torch.is_autocast_enabled("cpu"):
        return torch.get_autocast_dtype("cpu")
    return x.dtype


def applies(stream: torch.Tensor) -> bool:
    """Whether a fused block end can overwrite ``stream`` here (see the module docstring)."""
    # compiling first: a traced ContextVar read breaks the graph (Dynamo cannot trace it), and
    # a break in every residual block exhausts its recompile limit on a deep network
    return (_OP is not None and not torch.compiler.is_compiling() and _ENABLED.get()
            and not torch.is_grad_enabled() and stream.device.type == "cpu"
            and stream.dtype in _DTYPES and stream.dtype == _compute_dtype(stream)
            and is_channels_last(stream))


def eval_conv_params(conv: nn.Conv2d, norm: nn.Module) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Weight and bias of ``norm(conv(.))`` in eval mode, the norm folded in.

    ``None`` when ``norm`` is neither an identity (already folded) nor a batch norm with running
    statistics, or the convolution pads by name: such a block keeps its plain path.
    """
    if isinstance(conv.padding, str):
        return None
    weight = conv.weight
    bias = conv.bias if conv.bias is not None else weight.new_zeros(weight.shape[0])
    if isinstance(norm, nn.BatchNorm2d):
        if norm.running_mean is None or norm.running_var is None or norm.weight is None:
            return None
        scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
        return weight * scale.view(-1, 1, 1, 1), (bias - norm.running_mean) * scale + norm.bias
    if isinstance(norm, nn.Identity):
        return weight, bias
    return None


def conv_norm_add_relu_(stream: torch.Tensor, x: torch.Tensor, conv: nn.Conv2d,
                        norm: nn.Module) -> torch.Tensor | None:
    """``stream`` overwritten with ``relu(stream + norm(conv(x)))`` in eval mode; returns it.

    ``None`` (and ``stream`` untouched) where :func:`eval_conv_params` cannot fold ``norm``:
    the caller runs its plain path. Call only where :func:`applies` holds.
    """
    params = eval_conv_params(conv, norm)
    return None if params is None else conv_add_relu_(stream, x, *params, conv)


def conv_add_relu_(stream: torch.Tensor, x: torch.Tensor, weight: torch.Tensor,
                   bias: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """``stream`` overwritten with ``relu(stream + conv(x))`` in one pass; returns ``stream``.

    ``conv`` gives the geometry (padding, stride, dilation, groups), ``weight`` and ``bias``
    the parameters (a folded norm's). Call only where :func:`applies` holds.
    """
    dtype = stream.dtype
    return _OP.binary(stream, x.to(dtype), weight.to(dtype), bias.to(dtype), list(conv.padding),
                      list(conv.stride), list(conv.dilation), conv.groups, "add", None, "relu",
                      [], None)


def select_add_relu_(stream: torch.Tensor, values: torch.Tensor,
                     kept: torch.Tensor) -> torch.Tensor:
    """``stream`` overwritten with ``relu(stream + values placed at channels kept)``; returns it.

    Two exact ways, the same bits: a 1x1 convolution with one-hot weights (filter ``c`` copies
    value channel ``j`` where ``kept[j] == c``) fused with the sum and the ReLU, one pass; or a
    scatter-add along the last dimension of the NHWC view and a ReLU, two passes. The fused
    call has a fixed cost of tens of microseconds, so on small maps the scatter wins and on
    large ones the fused pass wins several times over; which one runs is measured the first
    time a shape is seen in this process (:func:`_one_hot_is_faster`). Call only where
    :func:`applies` holds.
    """
    key = (tuple(stream.shape), values.shape[1], stream.dtype)
    one_hot = _ONE_HOT_FASTER.get(key)
    if one_hot is None:
        one_hot = _ONE_HOT_FASTER[key] = _one_hot_is_faster(stream, values, kept)
    return (_one_hot_add_relu_ if one_hot else _scatter_add_relu_)(stream, values, kept)


#: ``(stream shape, value channels, dtype) -> whether the one-hot pass was the faster``.
_ONE_HOT_FASTER: dict[tuple, bool] = {}


def _one_hot_add_relu_(stream: torch.Tensor, values: torch.Tensor,
                       kept: torch.Tensor) -> torch.Tensor:
    dtype = stream.dtype
    one_hot = torch.eye(stream.shape[1], dtype=dtype)[:, kept].reshape(stream.shape[1], -1, 1, 1)
    return _OP.binary(stream, values.to(dtype), one_hot, None, [0, 0], [1, 1], [1, 1], 1, "add",
                      None, "relu", [], None)


def _scatter_add_relu_(stream: torch.Tensor, values: torch.Tensor,
                       kept: torch.Tensor) -> torch.Tensor:
    return add_at_channels_(stream, values.to(stream.dtype), kept).relu_()


def add_at_channels_(stream: torch.Tensor, values: torch.Tensor,
                     kept: torch.Tensor) -> torch.Tensor:
    """``stream`` with ``values`` (one channel per entry of ``kept``) added at ``kept``, in place.

    ``index_add`` along the channel dimension costs little more than a full-width sum on NCHW
    maps but several times as much on channels-last ones (and loses their layout); those are
    added along the last dimension of their NHWC view instead (docs/landcover.md). The same
    dtype on both sides.
    """
    if is_channels_last(stream):
        stream.permute(0, 2, 3, 1).index_add_(3, kept, values.permute(0, 2, 3, 1))
        return stream
    return stream.index_add_(1, kept, values)


def _one_hot_is_faster(stream: torch.Tensor, values: torch.Tensor, kept: torch.Tensor,
                       trials: int = 3) -> bool:
    """Time both exact ways on copies of ``stream`` (best of ``trials`` each)."""
    best = {}
    for way in (_one_hot_add_relu_, _scatter_add_relu_):
        times = []
        for _ in range(trials):
            trial = stream.clone(memory_format=torch.channels_last)
            start = time.perf_counter()
            way(trial, values, kept)
            times.append(time.perf_counter() - start)
        best[way] = min(times)
    return best[_one_hot_add_relu_] < best[_scatter_add_relu_]
