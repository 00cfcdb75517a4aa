"""After training: the model file's temperature fitted on the validation split, and recorded.

The fit itself (and what a temperature does to probabilities) is :mod:`training.calibration`;
this module runs the kept weights over a split and rewrites their model file with the record.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from torch import nn

from training.calibration import fit_record, labelled_logits
from training.model_meta import ModelMeta
from training.modelfile import read_model_file, save_model_file

#: ``outputs(model)``: the model's logits ``(N, K, H, W)`` and labels ``(N, H, W)`` per batch
Outputs = Callable[[nn.Module], Iterable[tuple[torch.Tensor, torch.Tensor]]]


def calibrate_model_file(path: str | os.PathLike, model: nn.Module, outputs: Outputs,
                         split: str = "val") -> dict | None:
    """Fit the temperature of the model file at ``path`` and record it there.

    ``model`` is a network of the file's architecture (the trainer's own: a model file of a
    network defined in a script loads without the registry); the file's weights are loaded
    into it for the fit, in eval mode, and its own weights are given back afterwards.
    ``outputs(model)`` runs it over the split as its training ran (precision, layout). The
    file is rewritten atomically with the record (:func:`training.calibration.fit_record`); a
    split whose labels are not on the outputs' grid leaves the model uncalibrated, saying
    why. Returns the record, or None when the file already holds one (a resumed run).
    """
    path = Path(path)
    meta, state = read_model_file(path, flag="model file")
    if meta.calibration:
        return None
    net = getattr(model, "_orig_mod", model)  # a compiled model's own module
    kept = {k: v.detach().clone() for k, v in net.state_dict().items()}
    was_training = net.training
    try:
        net.load_state_dict(state)
        net.eval()
        try:
            with torch.no_grad():
                logits, labels = labelled_logits(outputs(model))
            record = fit_record(logits, labels, split)
        except ValueError as exc:
            record = {"method": "none", "temperature": 1.0, "split": split, "reason": str(exc)}
        save_model_file(path, net, ModelMeta.from_dict({**meta.to_dict(),
                                                        "calibration": record}))
    finally:
        net.load_state_dict(kept)
        net.train(was_training)
    return record
