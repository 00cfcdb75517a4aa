"""The classifier's head fitted on the points' features: standardised, L2-regularised.

The features are standardised by the points' own mean and deviation (a constant feature
keeps deviation 1); the head (:func:`training.models.points.head`) is fitted on them by
minimising the mean cross-entropy plus ``l2 / 2`` times the squared weights (biases free):

* a linear head (``hidden=0``, multinomial logistic regression) from zero weights with
  L-BFGS in float64: a convex problem, so the result depends on the points alone;
* a head with a hidden layer from a seeded initialisation with Adam, full batch, for
  :data:`MLP_STEPS` steps.

The points are weighted equally: the fitted probabilities follow the classes' shares among
the points (docs/points.md says what that means for how points are drawn).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from engine.execution import calling_thread_only
from training.models.points import head

MLP_STEPS = 400
MLP_LR = 1e-2
LBFGS_ITERATIONS = 500


@dataclass(frozen=True)
class FittedHead:
    """A fitted head and the standardisation it was fitted under.

    Attributes:
        mean / std: ``(F,)`` the features' standardisation.
        state: the head's state dict (float32), as linear layers (:func:`dense`).
        hidden: hidden units (0: linear).
        l2: the weights' penalty it was fitted with.
    """

    mean: np.ndarray
    std: np.ndarray
    state: dict[str, torch.Tensor]
    hidden: int
    l2: float

    def module(self, num_classes: int) -> nn.Module:
        """The head as the model holds it (1x1 convolutions), weights loaded."""
        module = head(self.mean.size, num_classes, self.hidden)
        module.load_state_dict({k: v.reshape(*v.shape, 1, 1) if v.dim() == 2 else v
                                for k, v in self.state.items()}, strict=True)
        return module.eval()

    def logits(self, features: np.ndarray, num_classes: int) -> np.ndarray:
        """``(n, K)`` logits of raw features ``(n, F)``."""
        x = (np.asarray(features, np.float64) - self.mean) / self.std
        module = dense(self.mean.size, num_classes, self.hidden).double()
        module.load_state_dict({k: v.double() for k, v in self.state.items()}, strict=True)
        with torch.no_grad(), calling_thread_only():
            return module(torch.from_numpy(x)).numpy()


def dense(count: int, num_classes: int, hidden: int = 0) -> nn.Module:
    """The head of :func:`training.models.points.head` as linear layers, same parameter names.

    The fit runs on ``(n, F)`` rows: a matrix product, not a convolution per point.
    """
    if hidden == 0:
        return nn.Linear(count, num_classes)
    return nn.Sequential(nn.Linear(count, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))


def standardisation(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and deviation of ``(n, F)`` features (a constant one: deviation 1)."""
    f = np.asarray(features, np.float64)
    mean, std = f.mean(axis=0), f.std(axis=0)
    return mean, np.where(std > 1e-6, std, 1.0)


def fit_head(features: np.ndarray, labels: np.ndarray, num_classes: int, l2: float,
             hidden: int = 0, seed: int = 0) -> FittedHead:
    """Fit the head on ``(n, F)`` features and ``(n,)`` class codes (module docstring).

    On the calling thread alone: the problem is a few thousand rows, where a second thread's
    OpenMP waits cost more than it shares (on a busy machine, tens of times more).
    """
    with calling_thread_only():
        return _fit(features, labels, num_classes, l2, hidden, seed)


def _fit(features: np.ndarray, labels: np.ndarray, num_classes: int, l2: float,
         hidden: int, seed: int) -> FittedHead:
    mean, std = standardisation(features)
    x = torch.from_numpy((np.asarray(features, np.float64) - mean) / std)
    y = torch.from_numpy(np.asarray(labels, np.int64))
    torch.manual_seed(seed)
    module = dense(x.shape[1], num_classes, hidden).double()
    weights = [p for name, p in module.named_parameters() if name.endswith("weight")]

    def loss() -> torch.Tensor:
        ce = nn.functional.cross_entropy(module(x), y)
        return ce + 0.5 * l2 * sum((w ** 2).sum() for w in weights)

    if hidden == 0:
        with torch.no_grad():
            for p in module.parameters():
                p.zero_()
        optimiser = torch.optim.LBFGS(module.parameters(), lr=1.0,
                                      max_iter=LBFGS_ITERATIONS, history_size=20,
                                      tolerance_grad=1e-9, tolerance_change=1e-12,
                                      line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            optimiser.zero_grad()
            value = loss()
            value.backward()
            return value

        optimiser.step(closure)
    else:
        adam = torch.optim.Adam(module.parameters(), lr=MLP_LR)
        for _ in range(MLP_STEPS):
            adam.zero_grad()
            value = loss()
            value.backward()
            adam.step()
    state = {k: v.detach().float().clone() for k, v in module.state_dict().items()}
    return FittedHead(mean, std, state, hidden, float(l2))


def probabilities(logits: np.ndarray) -> np.ndarray:
    """Softmax of ``(n, K)`` logits (float64)."""
    return torch.softmax(torch.as_tensor(logits, dtype=torch.float64), dim=1).numpy()
