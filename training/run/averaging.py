"""Weight averaging: an exponential moving average (Polyak averaging) of a run's weights.

With ``TrainConfig.ema`` set, the trainer validates, selects, calibrates and saves the moving
average of its weights instead of the last iterate: the average of the last few dozen steps
lies nearer the middle of the basin the optimiser rattles around in, so the model kept
depends less on where the last mini-batch happened to push it.

The knob is a half-life in training iterations, not a decay: the weight of a step in the
average halves every ``ema`` iterations, whatever the budget, so ``--ema 20`` says how far
back the average reaches in the run's own unit (a decay of 0.999 reaches back about 700
iterations and would average little but the initial weights over a budget of a few hundred).
The average starts as the weights after the first step and follows
``avg = decay * avg + (1 - decay) * weights`` after every later one, ``decay = 0.5 ** (1 /
ema)``, through torch's own :class:`torch.optim.swa_utils.AveragedModel`.

Batch-norm buffers are averaged with the weights (floating-point ones: the running means and
variances), as the parameters are: the running statistics are themselves an average over the
last few steps' weights, and averaging them over the same horizon as the weights keeps them
describing the averaged network's activations; copying the last step's would pair the averaged
weights with statistics of other ones. Integer buffers (batch counts) are copied.

May import: ``core``; nothing else of the project.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from core.errors import ConfigError, ModelError


def ema_decay(half_life: float) -> float:
    """The per-iteration decay whose weight on a step halves every ``half_life`` iterations."""
    return 0.5 ** (1.0 / float(half_life))


def _average_floats(decay: float):
    """``get_ema_multi_avg_fn(decay)`` on floating-point tensors; others take the new value."""
    ema = get_ema_multi_avg_fn(decay)

    @torch.no_grad()
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], count) -> None:
        if torch.is_floating_point(averaged[0]):  # AveragedModel groups tensors by dtype
            ema(averaged, current, count)
        else:
            for a, c in zip(averaged, current, strict=True):
                a.copy_(c)

    return update


class WeightAverage:
    """The moving average of ``model``'s weights and buffers (module docstring).

    Args:
        model: the network trained (not a DDP or compiled wrapper: the module holding the
            parameters); the average is a copy of it, on its device and memory format.
        half_life: iterations over which a step's weight in the average halves (> 0).
    """

    def __init__(self, model: nn.Module, half_life: float) -> None:
        self.half_life = float(half_life)
        self.averaged = AveragedModel(model, multi_avg_fn=_average_floats(
            ema_decay(half_life)), use_buffers=True)
        self.averaged.requires_grad_(False)

    @property
    def module(self) -> nn.Module:
        """The averaged network (``model``'s architecture): what a run validates and saves."""
        return self.averaged.module

    def update(self, model: nn.Module) -> None:
        """Fold ``model``'s current weights in (after every optimiser step)."""
        self.averaged.update_parameters(model)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The average and its step count, for the checkpoint."""
        return self.averaged.state_dict()

    def load_state_dict(self, state: Mapping[str, torch.Tensor] | None, where: str) -> None:
        """Continue the average a checkpoint holds (``where`` names it in the error)."""
        if not isinstance(state, Mapping):
            raise ModelError(f"{where} holds no weight average although its run averages "
                             "weights (--ema); start a new run in another --out folder")
        self.averaged.load_state_dict(state)


def weight_average(half_life: float, model: nn.Module, prunes: bool) -> WeightAverage | None:
    """The run's weight average, or None when ``half_life`` is 0 (off).

    Args:
        half_life: ``TrainConfig.ema``.
        model: the network trained.
        prunes: the run changes the weights between epochs (``epoch_end``, filter pruning):
            refused with an average, whose saved weights would not carry the change.
    """
    if not half_life:
        return None
    if prunes:
        raise ConfigError("--ema does not combine with filter pruning (the averaged weights "
                          "would keep the pruned filters); prune without --ema")
    return WeightAverage(model, half_life)
