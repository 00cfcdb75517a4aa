"""A prior-adapted arm of the leave-one-tile-out comparison: the held-out tile's own built share.

An arm named ``BASE+prior`` (``unet-s2+prior``) trains nothing. A model learns the built share
of its training tiles (its prior) with everything else: calibrated on their validation split,
its probability means "built in this share of such pixels" only where built ground is about as
common as there. A new tile may hold far less (a rural Ghana tile is under 1 % built, the
training tiles a fifth): the same evidence then deserves a lower probability, and a cut at one
half maps too much. That is a label shift, ``p(x | class)`` kept and ``p(class)`` changed, and
its correction needs no label of the new tile.

Saerens, Latinne & Decaestecker (2002, "Adjusting the outputs of a classifier to new a priori
probabilities: a simple procedure") estimate the new prior by expectation-maximisation over the
tile's own probabilities: starting from the training prior ``pi``, each step rescales every
pixel's probability to the current estimate ``pi'`` by Bayes' rule,

    p' = r p / (r p + s (1 - p)),  r = pi' / pi,  s = (1 - pi') / (1 - pi),

and takes the mean of ``p'`` over the tile as the next ``pi'``, until it stops moving. The
adjusted probability is cut at one half. The functions here are the procedure alone, on arrays;
:func:`experiments.builtup_stack.prior_seed` applies it to a fold's maps. A monotone map of each
tile's probabilities, it leaves the tile's ROC AUC as it was and moves only the cut and the
calibration.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SUFFIX = "+prior"
TOLERANCE = 1e-6
MAX_ITERATIONS = 1000
#: The estimate is kept this far inside (0, 1): at 0 or 1 Bayes' rule has no pixel left to move.
PRIOR_FLOOR = 1e-9


@dataclass(frozen=True)
class PriorEstimate:
    """The EM estimate of a tile's positive share.

    Attributes:
        prior: the estimated share ``pi'`` (mean adjusted probability at the last step).
        iterations: EM steps taken.
        converged: whether the last step moved the estimate by less than the tolerance (False:
            stopped at the iteration limit).
    """

    prior: float
    iterations: int
    converged: bool


def adjust_to_prior(prob: np.ndarray, train_prior: float, new_prior: float) -> np.ndarray:
    """Probabilities calibrated at ``train_prior`` re-expressed at ``new_prior`` (Bayes' rule).

    Args:
        prob: ``P(positive | x)`` at the training prior, any shape (NaN stays NaN).
        train_prior: the positive share the probabilities are calibrated for, in (0, 1).
        new_prior: the positive share to express them at, in (0, 1).

    Returns:
        float64 array of ``prob``'s shape; ``prob`` itself where the two priors agree.

    Raises:
        ValueError: a prior outside (0, 1).
    """
    for name, value in (("train_prior", train_prior), ("new_prior", new_prior)):
        if not 0.0 < value < 1.0:
            raise ValueError(f"{name} must lie in (0, 1), got {value}")
    p = np.asarray(prob, dtype=np.float64)
    r = new_prior / train_prior
    s = (1.0 - new_prior) / (1.0 - train_prior)
    return r * p / (r * p + s * (1.0 - p))


def em_prior(prob: np.ndarray, train_prior: float, *, tolerance: float = TOLERANCE,
             max_iterations: int = MAX_ITERATIONS) -> PriorEstimate:
    """The positive share of the pixels of ``prob``, estimated from the probabilities alone.

    Saerens et al.'s EM: from ``train_prior``, alternate :func:`adjust_to_prior` to the current
    estimate and the mean of the adjusted probabilities, until two estimates differ by less
    than ``tolerance`` or ``max_iterations`` steps are taken. Where the probabilities are
    calibrated at ``train_prior`` and the classes' appearance ``p(x | class)`` is the same
    as in training, the fixed point is the maximum-likelihood share of the new pixels.

    Args:
        prob: the model's ``P(positive | x)`` over the new pixels (NaN ignored).
        train_prior: the share the probabilities are calibrated for, in (0, 1).
        tolerance: the change of the estimate that ends the iteration.
        max_iterations: the most EM steps (at least 1); a share near 0 or 1 converges slowly.

    Raises:
        ValueError: no finite probability, a prior outside (0, 1) or ``max_iterations`` < 1.
    """
    if max_iterations < 1:
        raise ValueError(f"max_iterations must be at least 1, got {max_iterations}")
    p = np.asarray(prob, dtype=np.float64)
    p = p[np.isfinite(p)]
    if p.size == 0:
        raise ValueError("no finite probability to estimate a prior from")
    estimate = train_prior
    for step in range(1, max_iterations + 1):
        new = float(adjust_to_prior(p, train_prior, estimate).mean())
        new = min(max(new, PRIOR_FLOOR), 1.0 - PRIOR_FLOOR)
        moved = abs(new - estimate)
        estimate = new
        if moved < tolerance:
            return PriorEstimate(estimate, step, True)
    return PriorEstimate(estimate, max_iterations, False)
