"""What a model's forward returns, and where its prediction is in it.

Every registered model returns logits ``(N, K, H, W)``, or a dict whose ``"out"`` entry is
those logits beside auxiliary outputs (CroFuseNet's branch heads, srseg's deep supervision and
reconstruction). Whatever runs a model (the engine's timing runs, losses, evaluation,
inference) takes the prediction through :func:`main_output`, so the convention has one owner.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

Output = torch.Tensor | Mapping[str, torch.Tensor]


def main_output(output: Output) -> torch.Tensor:
    """The prediction of a model output: the tensor itself or its ``"out"`` entry."""
    return output["out"] if isinstance(output, Mapping) else output
