"""The optimiser and the learning-rate schedule a recipe trains with.

May import: ``core``, ``training.config``; nothing else of the project.
"""

from __future__ import annotations

import torch

from core.errors import ConfigError
from training.config import OptimOptions


def make_optimizer(optim: OptimOptions, params) -> torch.optim.Optimizer:
    """The recipe's optimiser: Adam (CroFuseNet's), or SGD with momentum (e.g. HRNet's).

    ``optim`` has its recipe applied (``apply_recipe`` fills the values left unset).
    """
    lr, decay = _given(optim.lr, "lr"), _given(optim.weight_decay, "weight_decay")
    if optim.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=_given(optim.momentum, "momentum"),
                               weight_decay=decay)
    return torch.optim.Adam(params, lr=lr, weight_decay=decay)


def _given(value: float | None, name: str) -> float:
    if value is None:
        raise ConfigError(f"{name} is not set: apply the model's recipe (apply_recipe) first")
    return float(value)


class PolyLR:
    """``(1 - iter / max_iter) ** power``, the paper's per-iteration learning-rate factor."""

    def __init__(self, max_iter: int, power: float = 0.9) -> None:
        self.max_iter, self.power = max(int(max_iter), 1), float(power)

    def __call__(self, it: int) -> float:
        return max(1.0 - it / self.max_iter, 0.0) ** self.power

    def describe(self) -> str:
        """The schedule in a few words, as the learning-curve panel is titled with it."""
        if self.power == 0:
            return "constant"
        return f"poly {self.power:g} over {self.max_iter:,} iterations"
