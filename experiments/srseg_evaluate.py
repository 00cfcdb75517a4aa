"""Fine-scale evaluation of super-resolution segmentation models.

A model built for scale ``k`` is scored against the fine labels themselves (never against a
down-sampled copy): the streaming confusion matrix of training/metrics.py gives IoU / PA / UA /
F1 / OA / kappa, and :class:`experiments.srseg_boundary.BoundaryF1` adds the outline score that thin
roads and small buildings need. Baselines and ``srseg`` go through the very same function, so their
numbers are comparable by construction.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from engine.outputs import main_output
from experiments.srseg_boundary import BoundaryF1
from training.metrics import ConfusionMatrix

CLASS_NAMES = ("pervious", "impervious")


@dataclass(frozen=True)
class FineEvaluation:
    """Area metrics, boundary metrics and timing of one model on one dataset."""

    metrics: dict
    boundary: dict
    table: str
    seconds: float
    fine_pixels: int

    def to_dict(self) -> dict:
        return {**self.metrics, **self.boundary, "eval_seconds": self.seconds,
                "fine_pixels": self.fine_pixels}


@torch.no_grad()
def predict_fine(model: nn.Module, image: torch.Tensor) -> torch.Tensor:
    """Class map ``(N, kH, kW)`` of a batch of normalised coarse images ``(N, C, H, W)``."""
    model.eval()
    return main_output(model(image)).argmax(dim=1)


@torch.no_grad()
def evaluate_fine(model: nn.Module, dataset: Dataset, num_classes: int = 2,
                  tolerance: float = 2.0, batch_size: int = 4) -> FineEvaluation:
    """Score ``model`` on every item of ``dataset`` at the labels' (fine) scale.

    Args:
        model: a model whose output is at the dataset's label scale.
        dataset: items with ``image`` (coarse, normalised) and ``label`` (fine) tensors.
        num_classes: classes of the confusion matrix.
        tolerance: boundary-match distance in fine pixels.
        batch_size: evaluation batch size.
    """
    cm = ConfusionMatrix(num_classes)
    boundary = BoundaryF1(tolerance=tolerance)
    pixels = 0
    start = time.perf_counter()
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        pred = predict_fine(model, batch["image"])
        cm.update(pred, batch["label"])
        boundary.update(pred.numpy().astype(np.uint8), batch["label"].numpy())
        pixels += int(batch["label"].numel())
    seconds = time.perf_counter() - start
    metrics = cm.compute(CLASS_NAMES[:num_classes] if num_classes == 2 else None)
    return FineEvaluation(metrics.to_dict(), boundary.compute(), metrics.table(), seconds, pixels)
