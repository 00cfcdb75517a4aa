"""After training: the model file's temperature fitted on the validation split, and recorded.

The fit itself (and what a temperature does to probabilities) is
:mod:`training.calibration.temperature`; this module runs the kept weights over a split and
rewrites their model file with the record, and fits a joined model's own temperature
(:func:`fit_joined`) on the split its members
validated on.

The fit reads the split's outputs as they stream by, one batch at a time: each scene's
labelled pixels are gathered by :class:`training.calibration.pixels.ScenePixels`, which holds
at most twice :data:`training.calibration.temperature.MAX_FIT_PIXELS` of them whatever the
split's size.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from rasterio.crs import CRS
from torch import nn

from core.errors import ConfigError, InputDataError
from engine.outputs import main_output
from training.calibration.pixels import ScenePixels, gather, scenes_of
from training.calibration.temperature import fit_transfer_record
from training.data import NormStats, PatchDataset, Split, scene_norms_for
from training.loader import make_loader
from training.model_meta import ModelMeta
from training.modelfile import read_model_file, save_model_file
from training.patch_files import class_names_of, read_manifest

#: ``outputs(model)``: the split's labelled pixels per scene, gathered from the model's
#: outputs (:func:`training.calibration.pixels.gather` of its batches; the temperature is
#: fitted where it transfers between scenes)
Outputs = Callable[[nn.Module], ScenePixels]


def calibrate_model_file(path: str | os.PathLike, model: nn.Module, outputs: Outputs,
                         split: str = "val") -> dict | None:
    """Fit the temperature of the model file at ``path`` and record it there.

    ``model`` is a network of the file's architecture (the trainer's own: a model file of a
    network defined in a script loads without the registry); the file's weights are loaded
    into it for the fit, in eval mode, and its own weights are given back afterwards.
    ``outputs(model)`` runs it over the split as its training ran (precision, layout) and
    gathers the labelled pixels of its outputs
    (:class:`training.calibration.pixels.ScenePixels`). The file is rewritten atomically with the
    record (:func:`training.calibration.temperature.fit_transfer_record`, per scene); a
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
        with torch.no_grad():
            record = fitted_record(outputs(model), split)
        save_model_file(path, net, ModelMeta.from_dict({**meta.to_dict(),
                                                        "calibration": record}))
    finally:
        net.load_state_dict(kept)
        net.train(was_training)
    return record


def pixel_metres(grid: Any) -> float | None:
    """A dataset grid's metres per pixel; None where unknown or in degrees.

    An import of geographic tiles records its resolution in degrees.
    """
    if not isinstance(grid, dict) or grid.get("resolution") is None:
        return None
    crs = grid.get("crs")
    if crs and CRS.from_user_input(crs).is_geographic:
        return None
    return float(grid["resolution"])


def check_model_data(meta: ModelMeta, data: str | os.PathLike) -> None:
    """Refuse a patch dataset the model file cannot be scored or fine-tuned on, in one line.

    The one owner of that rule (``isamap-evaluate``, ``isamap-prune``): the dataset's classes
    must be the model's, its pixels the model's size (:meth:`ModelMeta.check_pixel_size`),
    and, for a model mapping finer than its input, its fine label at the model's scale. Only
    the manifest is read: nothing runs and nothing is written before it.

    Raises:
        ConfigError: other classes.
        InputDataError: other pixels, or no fine label at the model's scale.
    """
    manifest = read_manifest(data)
    classes = class_names_of(manifest)
    if tuple(classes) != tuple(meta.class_names):
        raise ConfigError(f"the model predicts {list(meta.class_names)} but the dataset {data} "
                          f"has the classes {list(classes)}; give a dataset exported with the "
                          "model's label scheme, or a model trained on this one")
    meta.check_pixel_size(f"the dataset {data}", pixel_metres(manifest.get("grid")),
                          dataset=True)
    scale = meta.output_scale
    if scale > 1:
        fine = (manifest.get("label") or {}).get("fine_scale")
        if fine != scale:
            has = f"its fine label at {fine}x" if fine else "no fine label (label_fine)"
            raise InputDataError(
                f"the model predicts at {scale}x its input's resolution but the dataset {data} "
                f"has {has}; export it with isamap-export --fine-scale {scale}")


def model_split(meta: ModelMeta, data: str | os.PathLike, split: Split) -> PatchDataset:
    """The ``split`` of the patch dataset ``data`` as the file's network reads it.

    Its bands, normalisation (the training split's statistics, or each scene's) and label
    (the fine one for a model mapping finer than its input), as the model was trained.
    """
    return PatchDataset(data, split, bands=meta.bands,
                        norm=NormStats(meta.bands, meta.norm_mean, meta.norm_std),
                        label="label_fine" if meta.output_scale > 1 else "label",
                        scene_norms=scene_norms_for(data, meta.bands, meta.norm))


def fit_joined(model: nn.Module, meta: ModelMeta, data: str | os.PathLike, batch_size: int,
               device: torch.device) -> dict:
    """The joined model's own temperature, fitted where it transfers on the validation split.

    ``model`` is the mean of the members (:class:`training.models.members.MemberMean`, its
    own temperature 1), ``meta`` the joined file's description, ``data`` the patch dataset
    its members trained on. Its log-probabilities are fitted as one network's logits
    (:func:`training.calibration.temperature.fit_transfer_record`, per scene): the record says the
    temperature, or ``method: none`` (T = 1) with the reason. One pass over the split, in
    float32 on ``device``.
    """
    loader = make_loader(model_split(meta, data, "val"), batch_size, False, 0, 0)
    model.to(device).eval()

    def outputs() -> Iterator[tuple[torch.Tensor, torch.Tensor, list[str]]]:
        with torch.no_grad():
            for batch in loader:
                out = main_output(model(batch["image"].to(device)))
                yield out.float().cpu(), batch["label"], scenes_of(batch)

    return fitted_record(gather(outputs()), "val")


def fitted_record(pixels: ScenePixels, split: str) -> dict:
    """The record of a fit on ``pixels`` per scene, or T = 1 with the reason it failed.

    What :func:`calibrate_model_file` records; the trainer fits the weights it is about to
    write with it, so their model file is written once, with its record.
    """
    try:
        if pixels.error is not None:  # labels not on the outputs' grid
            raise ValueError(pixels.error)
        return fit_transfer_record(pixels.result(), split)
    except ValueError as exc:
        return {"method": "none", "temperature": 1.0, "split": split, "reason": str(exc)}
