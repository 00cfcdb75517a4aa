"""Network parts at fewer channels: how a filter-pruned model is described and rebuilt.

Filter pruning (``training.pruning``) removes filters of convolutions; this module is the
model side of it, shared by every architecture that says which of its convolutions may lose
filters (today ``hrnet``):

- :class:`PrunableLayer` names such a convolution, its normalisation and whatever reads its
  output, so the pruning code needs no knowledge of the architecture;
- :func:`resize_layers` rebuilds a freshly built network with the recorded filter counts
  (``model_kwargs["channels"]``), which is how a pruned model file loads through the registry;
- :class:`PrunedBasicBlock` and :class:`PrunedBottleneck` are residual blocks whose last
  convolution kept only some filters. Their residual branch is narrower than the stream it
  is added into, so its output is added into the stream's kept channels only
  (:func:`add_into_kept`); the removed channels pass the identity through unchanged, exactly
  as in the masked model, where those filters and their norm are zero and add 0;
- :class:`PrunedStream` is a layer whose output *is* a stream (a transition starting a
  branch, a projection shortcut) and kept only some filters: it writes them into the
  stream's kept channels, the others 0, as the masked model's zeroed filters give
  (:func:`into_kept`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from core.errors import ModelError
from training.models.blocks import BasicBlock, Bottleneck


@dataclass(frozen=True)
class PrunableLayer:
    """A convolution whose filters may be removed, with everything its width touches.

    Attributes:
        conv: qualified name of the convolution (its output channels are the filters).
        norm: its normalisation layer (per-channel parameters follow the filters).
        consumers: convolutions reading its (normalised, rectified) output; their input
            channels follow the filters.
        residual_block: for the last convolution of a residual block, the block's name: the
            output is added into the block's identity (the branch's stream, which keeps its
            width), so the compact block adds it into the kept channels only and ``consumers``
            is empty. Empty for a convolution whose output feeds only its consumers.
        stream: for a convolution whose (normalised, rectified) output is a stream that keeps
            its width (a transition, a projection shortcut), the ``nn.Sequential`` computing
            it: the compact one writes into the kept channels (:class:`PrunedStream`) and
            ``consumers`` is empty.
    """

    conv: str
    norm: str
    consumers: tuple[str, ...]
    residual_block: str = ""
    stream: str = ""

    @property
    def writes_into(self) -> str:
        """The module whose ``kept`` buffer says which stream channels the filters fill."""
        return self.residual_block or self.stream


# ------------------------------------------------------------------ residual blocks
def is_channels_last(x: torch.Tensor) -> bool:
    """Whether ``x`` is laid out NHWC (and not also NCHW, as 1-channel or 1x1 maps are)."""
    return (x.dim() == 4 and not x.is_contiguous()
            and x.is_contiguous(memory_format=torch.channels_last))


def eval_conv_params(conv: nn.Conv2d, norm: nn.Module) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Weight and bias of ``norm(conv(.))`` in eval mode, the norm folded in.

    ``None`` when ``norm`` is neither an identity (already folded) nor a batch norm with running
    statistics, or the convolution pads by name: such a layer keeps its plain path.
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


def add_at_channels_(stream: torch.Tensor, values: torch.Tensor,
                     kept: torch.Tensor) -> torch.Tensor:
    """``stream`` with ``values`` (one channel per entry of ``kept``) added at ``kept``, in place.

    ``index_add`` along the channel dimension costs little more than a full-width sum on NCHW
    maps but several times as much on channels-last ones (and loses their layout); those are
    added along the last dimension of their NHWC view instead. The same dtype on both sides.
    """
    if is_channels_last(stream):
        stream.permute(0, 2, 3, 1).index_add_(3, kept, values.permute(0, 2, 3, 1))
        return stream
    return stream.index_add_(1, kept, values)


def add_into_kept(identity: torch.Tensor, residual: torch.Tensor,
                  kept: torch.Tensor) -> torch.Tensor:
    """``identity`` with ``residual`` (one channel per entry of ``kept``) added at ``kept``.

    A new map with the identity's width and memory format (:func:`add_at_channels_` on a
    copy); mixed precisions promote as ``+`` does.
    """
    dtype = torch.promote_types(identity.dtype, residual.dtype)
    return add_at_channels_(identity.to(dtype, copy=True), residual.to(dtype), kept)


def into_kept(values: torch.Tensor, kept: torch.Tensor, width: int) -> torch.Tensor:
    """A ``width``-channel map holding ``values`` (one channel per entry of ``kept``), 0 elsewhere.

    Same memory format as ``values``: channels-last maps are filled along the last dimension
    of their NHWC view (one pass, as :func:`add_into_kept` adds).
    """
    n, _, h, w = values.shape
    if is_channels_last(values):
        nhwc = values.new_zeros((n, h, w, width)).index_copy_(3, kept, values.permute(0, 2, 3, 1))
        return nhwc.permute(0, 3, 1, 2)
    return values.new_zeros((n, width, h, w)).index_copy_(1, kept, values)


def widened_conv_norm(conv: nn.Conv2d, norm: nn.Module, kept: torch.Tensor,
                      width: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Weight and bias of ``norm(conv(.))`` in eval mode with its filters at ``kept`` of ``width``.

    The other ``width - len(kept)`` filters are zero: the masked model's convolution, built
    from the compact one's parameters. ``None`` where :func:`eval_conv_params` cannot fold
    ``norm``.
    """
    params = eval_conv_params(conv, norm)
    if params is None:
        return None
    weight, bias = params
    wide = weight.new_zeros((width, *weight.shape[1:])).index_copy(0, kept, weight)
    return wide, bias.new_zeros(width).index_copy(0, kept, bias)


class PrunedBasicBlock(BasicBlock):
    """A :class:`BasicBlock` whose ``conv2`` has fewer filters than the stream has channels.

    ``kept`` (a buffer, saved in the state dict) holds the stream channels ``conv2``'s filters
    write into, in order. Built from a full block by :func:`resize_layers`; it takes over the
    block's layers, which are then resized like any other pruned layer.
    """

    kept: torch.Tensor  # a buffer (see above)

    def __init__(self, block: BasicBlock, n_kept: int) -> None:
        nn.Module.__init__(self)  # take over the block's layers instead of building new ones
        self.conv1, self.conv2, self.bn2 = block.conv1, block.conv2, block.bn2
        self.register_buffer("kept", torch.arange(n_kept))  # the state dict fills it

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.bn2(self.conv2(self.conv1(x)))
        return F.relu(add_into_kept(x, residual, self.kept))


class PrunedBottleneck(Bottleneck):
    """A :class:`Bottleneck` whose ``conv3`` has fewer filters than its output has channels.

    The shortcut (identity or projection) keeps every channel; ``conv3``'s output is added
    into the ``kept`` ones (see :class:`PrunedBasicBlock`). Except in eval mode on
    channels-last input: there ``conv3`` runs at full width with zero filters in place of the
    removed ones (:func:`widened_conv_norm`) and is added as a whole, because a 1x1
    convolution saves less per output channel than the channels-last scatter costs (the
    pruned HRNet's stage-1 blocks, docs/landcover.md).
    """

    kept: torch.Tensor  # a buffer (see above)

    def __init__(self, block: Bottleneck, n_kept: int) -> None:
        nn.Module.__init__(self)  # take over the block's layers instead of building new ones
        self.conv1, self.conv2, self.conv3, self.bn3 = (block.conv1, block.conv2, block.conv3,
                                                        block.bn3)
        self.shortcut = block.shortcut
        self.register_buffer("kept", torch.arange(n_kept))  # the state dict fills it

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv2(self.conv1(x))
        identity = self.shortcut(x)
        wide = None
        if not self.training and is_channels_last(identity):
            wide = widened_conv_norm(self.conv3, self.bn3, self.kept, identity.shape[1])
        if wide is not None:
            return F.relu(identity + self.conv3._conv_forward(h, *wide))
        return F.relu(add_into_kept(identity, self.bn3(self.conv3(h)), self.kept))


class PrunedStream(nn.Sequential):
    """Layers computing a stream (a transition, a shortcut) whose convolution lost filters.

    It takes over the layers (same names, so the state dict keeps its keys) and writes their
    output into the ``kept`` channels (a buffer, saved in the state dict) of a ``width``-channel
    map, the removed ones 0: what the masked model's zeroed filter, norm and ReLU give. A 1x1
    convolution in eval mode on channels-last input runs at full width with zero filters
    instead (:func:`widened_conv_norm`), as :class:`PrunedBottleneck`'s ``conv3`` does: per
    filter it saves less than filling the kept channels costs; a 3x3 one runs narrow.
    """

    kept: torch.Tensor  # a buffer (see above)

    def __init__(self, layers: nn.Sequential, n_kept: int, width: int) -> None:
        super().__init__(OrderedDict(layers.named_children()))
        self.width = width
        self.register_buffer("kept", torch.arange(n_kept))  # the state dict fills it

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first, norm, *rest = self
        conv = cast(nn.Conv2d, first)  # resize_layers makes a stream of a convolution only
        wide = None
        if not self.training and conv.kernel_size == (1, 1) and is_channels_last(x):
            wide = widened_conv_norm(conv, norm, self.kept, self.width)
        if wide is None:
            return into_kept(super().forward(x), self.kept, self.width)
        y = conv._conv_forward(x, *wide)
        for layer in rest:
            y = layer(y)
        return y


def pruned_block(block: nn.Module, n_kept: int) -> nn.Module:
    """The pruned variant of a residual block, taking over its layers."""
    if isinstance(block, BasicBlock):
        return PrunedBasicBlock(block, n_kept)
    if isinstance(block, Bottleneck):
        return PrunedBottleneck(block, n_kept)
    raise ModelError(f"cannot prune the residual output of a {type(block).__name__}")


# ------------------------------------------------------------------ resizing
def _new_conv(old: nn.Conv2d, in_ch: int, out_ch: int) -> nn.Conv2d:
    pair = tuple[int, int]  # what a Conv2d's geometry is (torch types it as any tuple)
    conv = nn.Conv2d(in_ch, out_ch, cast(pair, old.kernel_size), stride=cast(pair, old.stride),
                     padding=cast(pair | str, old.padding), dilation=cast(pair, old.dilation),
                     groups=old.groups, bias=old.bias is not None)
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return conv


def _new_norm(old: nn.Module, n: int) -> nn.Module:
    if isinstance(old, nn.InstanceNorm2d):
        return nn.InstanceNorm2d(n, eps=old.eps, momentum=cast(float, old.momentum),
                                 affine=old.affine,
                                 track_running_stats=old.track_running_stats)
    if isinstance(old, nn.BatchNorm2d):
        return nn.BatchNorm2d(n, eps=old.eps, momentum=old.momentum, affine=old.affine,
                              track_running_stats=old.track_running_stats)
    raise ModelError(f"cannot resize a {type(old).__name__} normalisation")


def conv_named(model: nn.Module, name: str) -> nn.Conv2d:
    """The convolution ``name`` of ``model``.

    Raises:
        ModelError: ``name`` is not a convolution.
    """
    conv = model.get_submodule(name)
    if not isinstance(conv, nn.Conv2d):
        raise ModelError(f"{name} is a {type(conv).__name__}, not a convolution")
    return conv


def resize_layers(model: nn.Module, layers: Sequence[PrunableLayer],
                  channels: Mapping[str, int]) -> None:
    """Rebuild the named prunable convolutions with ``channels[name]`` filters, in place.

    Each resized convolution's norm and the input side of its consumers follow; a residual
    block whose last convolution is resized becomes its pruned variant, a stream's layers a
    :class:`PrunedStream` (their ``kept`` buffers placeholders). New modules are freshly
    initialised: load a compact state dict afterwards
    (``training.pruning``).
    """
    by_conv = {layer.conv: layer for layer in layers}
    unknown = sorted(set(channels) - set(by_conv))
    if unknown:
        raise ModelError(f"channels names convolutions that are not prunable: {unknown[:3]}")
    for name, n in channels.items():
        filters = conv_named(model, name).out_channels
        if not 1 <= int(n) <= filters:
            raise ModelError(f"channels[{name!r}] must be in [1, {filters}], got {n}")
        block, stream = by_conv[name].residual_block, by_conv[name].stream
        if block:
            model.set_submodule(block, pruned_block(model.get_submodule(block), int(n)))
        elif stream:
            seq = model.get_submodule(stream)
            if not isinstance(seq, nn.Sequential):
                raise ModelError(f"{stream} is not a sequence of layers; cannot prune {name}")
            model.set_submodule(stream, PrunedStream(seq, int(n), filters))
    shapes: dict[str, list[int]] = {}
    for name, n in channels.items():
        conv, layer = conv_named(model, name), by_conv[name]
        shapes.setdefault(name, [conv.in_channels, conv.out_channels])[1] = int(n)
        for consumer in layer.consumers:
            c = conv_named(model, consumer)
            shapes.setdefault(consumer, [c.in_channels, c.out_channels])[0] = int(n)
        model.set_submodule(layer.norm, _new_norm(model.get_submodule(layer.norm), int(n)))
    for name, (cin, cout) in shapes.items():
        model.set_submodule(name, _new_conv(conv_named(model, name), cin, cout))
