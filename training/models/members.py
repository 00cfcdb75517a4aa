"""Several trainings of one model as one network: the mean of their calibrated probabilities.

A model trained once is one draw: on ground none of its training tiles resembles, two seeds of
the same recipe can map the same pixels very differently (``experiments.builtup --loto``
prints the seeds' spread). ``isamap-train --members K`` trains the recipe ``K`` times with
seeds ``seed`` to ``seed + K - 1`` and joins the ``K`` networks in :class:`MemberMean`: each
member's logits divided by its own fitted temperature, turned into probabilities, and averaged.
Its output is the logarithm of that mean, so a softmax of it (every prediction path takes
one) gives the mean probability, and its largest entry names the class the mean favours.
A mean of members each calibrated alone is not calibrated itself (averaging pulls it toward
the middle), so the joined file records a temperature of its own for the mean (fitted after
the join by :func:`training.calibration.record.fit_joined`), which every prediction path applies
to this output as it applies one network's to its logits.
With ``member_views`` (a model argument the recipe of ``unet-s2`` sets), the test-time flips
of the members are spread over them: member ``i`` maps the ``i mod 4``-th mirror image of the
window (as it is, then :data:`training.models.blocks.FLIPS`) once, instead of all four, so K
members cost K passes a window, not 4K, and the mean (of four members or more) sees the ground
four ways.

The model file records ``members: K`` among the model's keyword arguments, and
:func:`training.models.create_model` builds the ``K`` networks from it (:func:`join`), so every
path that rebuilds a model from its file (``isamap-predict``, ``isamap-map``, Beam workers,
int8 included) maps with all of them. A member whose output is a mapping (CroFuseNet's,
srseg's) is read by its main prediction (:func:`engine.outputs.main_output`), as every
prediction path reads one network's.

The members are run view by view (every member given the window as it is, then every one
given its first mirror image, ...) in one :func:`training.models.sharing.shared_forward` scope,
so members given the same image follow each other and a frozen encoder's features are
computed once for them (:meth:`training.models.encoders.fused.EncoderUNet.features`). The mean
is taken in member order, so the order they run in changes no bit of it.

May import: ``core``, ``engine``, torch, :mod:`training.models.blocks`,
:mod:`training.models.sharing` (no model module: it joins networks of any of them).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from core.errors import ModelError
from engine.outputs import main_output
from training.models.blocks import FLIPS
from training.models.sharing import shared_forward

#: the four ways a window is seen, in the order members take them (``views``)
VIEWS: tuple[tuple[int, ...], ...] = ((), *FLIPS)

#: what the networks' shared attributes are read from (the first member): every prediction
#: path asks the model for them as it would ask one network
SHARED = ("stride", "divisible_input", "output_scale", "prediction_window")


class MemberMean(nn.Module):
    """The mean of the members' probabilities, as a log-probability per class.

    Args:
        members: networks of one architecture, trained separately.
        temperatures: each member's fitted temperature (1: uncalibrated); kept as a buffer,
            so the model file's weights (and their digest) hold them.
        views: spread the mirror images over the members (member ``i`` maps view
            ``i mod 4`` once): each member's own test-time flips (a ``flips`` attribute, as
            :class:`training.models.unet.UNet` has, on it or a module inside it) are
            switched off here, in the networks given, so it is one pass. Its output must be a
            per-pixel map of its input's pixels (another is refused, ModelError, when
            mapped). Nine members give the window as it is to three and each mirror image
            to two; fewer than four leave some views out (``isamap-train`` warns).
    """

    temperatures: torch.Tensor

    def __init__(self, members: Sequence[nn.Module],
                 temperatures: Sequence[float] | None = None, views: bool = False) -> None:
        super().__init__()
        if len(members) < 2:
            raise ModelError(f"a mean of members needs at least 2 networks, got {len(members)}")
        self.members = nn.ModuleList(members)
        values = [1.0] * len(members) if temperatures is None else [float(t) for t in
                                                                    temperatures]
        if len(values) != len(members) or not all(t > 0 for t in values):
            raise ModelError(f"one positive temperature per member is needed, got {values}")
        self.register_buffer("temperatures", torch.tensor(values, dtype=torch.float32))
        self.views = views
        if views:  # the mean spreads the views: each network's own flips (at any depth) off
            for module in self.members.modules():
                if getattr(module, "flips", False) is True:
                    module.flips = False  # type: ignore[assignment]
        for name in SHARED:
            if hasattr(members[0], name):
                setattr(self, name, getattr(members[0], name))

    def extra_repr(self) -> str:
        # the repr keys measured choices (engine.autotune): K networks are another model
        return f"members={len(self.members)}" + (", views=True" if self.views else "")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the members are run view by view, those given the same image one after another, in
        # one scope (training.models.sharing: a frozen encoder's features computed once for
        # them); the mean is taken in member order
        logs: list[torch.Tensor | None] = [None] * len(self.members)
        with shared_forward():
            for dims, group in self._view_groups():
                seen = x.flip(dims) if dims else x
                for i in group:
                    logits = self._member(i, self.members[i], seen, dims)
                    logs[i] = torch.log_softmax(logits / self.temperatures[i], dim=1)
        stacked = torch.stack([t for t in logs if t is not None])
        return torch.logsumexp(stacked, dim=0) - math.log(len(logs))

    def _view_groups(self) -> list[tuple[tuple[int, ...], list[int]]]:
        """The views the members take, each with its members in order (``()``: as it is)."""
        if not self.views:
            return [((), list(range(len(self.members))))]
        return [(dims, list(range(v, len(self.members), len(VIEWS))))
                for v, dims in enumerate(VIEWS) if v < len(self.members)]

    def _member(self, i: int, member: nn.Module, seen: torch.Tensor,
                dims: tuple[int, ...]) -> torch.Tensor:
        """Member ``i``'s logits of the view ``seen`` (flipped by ``dims``), mirrored back."""
        out = main_output(member(seen))
        if not dims:
            return out
        if out.ndim != seen.ndim:
            raise ModelError(f"member {i} gives an output of shape {tuple(out.shape)}, not a "
                             "per-pixel map its mirror image can be turned back from: join its "
                             "networks with member_views false")
        return out.flip(dims)


def join(build: Callable[..., nn.Module], in_channels: int, num_classes: int,
         members: int = 1, member_views: bool = False, **kw: Any) -> nn.Module:
    """``build(in_channels, num_classes, **kw)``, or ``members`` of them in a :class:`MemberMean`.

    ``member_views``: the mean spreads the members' flips over them (:class:`MemberMean`
    ``views``); one network (``members`` 1) keeps its own.

    Raises:
        ModelError: ``members`` is not a whole number of at least 1.
    """
    if isinstance(members, bool) or not isinstance(members, int) or members < 1:
        raise ModelError(f"members must be a whole number >= 1, got {members!r}")
    if not isinstance(member_views, bool):
        raise ModelError(f"member_views must be true or false, got {member_views!r}")
    if members == 1:
        return build(in_channels, num_classes, **kw)
    return MemberMean([build(in_channels, num_classes, **kw) for _ in range(members)],
                      views=member_views)
