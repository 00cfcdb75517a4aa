"""When a training run has diverged, and what the user is told then.

A loss that becomes NaN or infinite, or grows :data:`DIVERGENCE_FACTOR` times the run's first
batch loss while staying finite, stops the run at once (:class:`core.errors.TrainingDivergedError`):
nothing of that epoch is saved, so ``checkpoint.pt`` and ``model.pt`` stay the last good ones.

May import: ``core``, ``training.run.folder``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from core.errors import TrainingDivergedError
from training.run.folder import BEST_MODEL, CHECKPOINT

DIVERGENCE_FACTOR = 1e3
"""A finite loss this many times the run's first batch loss (taken as at least 1) means the
weights ran away without becoming NaN (a learning rate far too high): the run stops as for NaN.
Segmentation losses start near ln(classes) and fall; none of the recipes' losses grows 1000x in
a healthy run."""


@dataclass
class LossGuard:
    """The divergence bound of one run: its first finite batch loss is the reference.

    Attributes:
        reference: the run's first finite training batch loss (None: no batch yet); a
            checkpoint carries it, so a resumed run keeps the bound it began with.
    """

    reference: float | None = None

    def note(self, value: float) -> None:
        """Take ``value`` as the reference when it is the run's first finite loss."""
        if self.reference is None and math.isfinite(value):
            self.reference = value

    def bound(self) -> float:
        """The largest loss a healthy run reaches (see :data:`DIVERGENCE_FACTOR`)."""
        return DIVERGENCE_FACTOR * max(self.reference or 0.0, 1.0)

    def runaway(self, value: float) -> bool:
        """Whether a loss shows divergence: not finite, or beyond :meth:`bound`."""
        return not math.isfinite(value) or value > self.bound()

    def error(self, value: float, epoch: int, where: str, out: Path, saved_epoch: int,
              best_epoch: int, lr: float | None, precision: str) -> TrainingDivergedError:
        """The one-line error of a run that diverged in ``epoch`` (0-based), ``where`` in it.

        Args:
            value: the loss that showed it.
            epoch: the epoch it happened in, 0-based.
            where: where in the epoch (``training batch 3``, ``validation``).
            out: the run folder.
            saved_epoch: the epoch its checkpoint holds (0: none saved).
            best_epoch: the epoch of the model file's weights (<= 0: none saved).
            lr: the run's learning rate, named in the advice.
            precision: the run's precision, named in the advice.
        """
        checkpoint, best_model = out / CHECKPOINT, out / BEST_MODEL
        if saved_epoch:
            kept = (f"nothing of that epoch was saved: {checkpoint} still holds epoch "
                    f"{saved_epoch}, the last good one")
            if best_epoch > 0:
                kept += f", and {best_model} the best weights (epoch {best_epoch})"
        else:
            kept = "nothing was saved (no epoch had finished)"
        fix = "lower --lr" + (f" (now {lr:g})" if lr is not None else "")
        if precision != "fp32":
            fix += " or train with --precision fp32"
        became = (f"became {value}" if not math.isfinite(value) else
                  f"grew to {value:.3g}, more than {DIVERGENCE_FACTOR:g} times its first value "
                  f"{self.reference:.3g} (the weights ran away)")
        return TrainingDivergedError(
            f"training diverged: the loss {became} in epoch {epoch + 1} ({where}); {kept}."
            f" To train again, {fix}, into a new --out folder")
