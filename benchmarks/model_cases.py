"""The models the model benchmarks time, built the same way for every one of them.

``bench_models.py`` and ``bench_int8.py`` both build their cases here: each model at the
papers' widths on six bands, a random batch, and the training step's loss and targets.
"""

from __future__ import annotations

import torch

from engine import autotune
from training.models import create_model, model_loss

BANDS = ["B2", "B3", "B4", "B8", "VV", "VH"]
# input patch side (10 m pixels) per model: the 10 m models at the training patch size, srseg
# at 64 px in (640 px of 1 m out), its benchmark tile
PATCH = {"unet": 128, "crofusenet": 128, "runetpp": 128, "srseg": 64}


def build(name: str, batch: int, patch: int, device: torch.device):
    """Model, input batch, and the training step's loss and targets for ``name``."""
    torch.manual_seed(0)
    kwargs = {"bands": BANDS, **({"scale": 10} if name == "srseg" else {})}
    model = create_model(name, len(BANDS), 2, **kwargs).to(device)
    x = torch.randn(batch, len(BANDS), patch, patch, device=device)
    scale = int(getattr(model, "output_scale", 1))
    targets = {"label": torch.randint(0, 2, (batch, patch * scale, patch * scale),
                                      device=device)}
    loss_fn = model_loss(name).to(device)  # the recipe's loss with its arguments
    if name == "srseg":
        model.train()
        sr = model(x[:1])["sr"]
        targets["image_fine"] = torch.rand(batch, *sr.shape[1:], device=device)
    wants_batch = bool(getattr(loss_fn, "wants_batch", False))

    def loss(out, b):
        return loss_fn(out, b) if wants_batch else loss_fn(out, b["label"])

    step = autotune.TrainStep(loss, lambda p: torch.optim.Adam(p, lr=1e-4), targets)
    return model, x, step
