"""``train(cfg)``: a run on a patch dataset, wired to the :class:`training.run.trainer.Trainer`.

Bands from the manifest, normalisation from the training split (or each scene's), the data
path by the dataset's size, the paper's model and loss from the model's recipe, and the model
file's description (:class:`training.model_meta.ModelMeta`) recording all of it. Every check
of the options and the data runs before the first training step.

May import: ``core``, ``engine``, ``training`` (below this module).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from core.commands import DETAIL
from core.errors import ConfigError, ModelError
from engine.distributed import init_distributed, resolve_device
from engine.seeding import seed_everything
from training.band_ranges import band_ranges, judge_patches
from training.config import ModelOptions, TrainConfig, apply_recipe, recipe_values
from training.data import NormStats, PatchDataset
from training.loader import choose_data_path
from training.losses import build_loss
from training.model_meta import ModelMeta
from training.models import create_model
from training.run.checkpoint import check_same_options
from training.run.encoder import MODULE as ENCODER_MODULE
from training.run.encoder import NAME as ENCODER_MODEL
from training.run.encoder import check_encoder_bands, encoder_config, encoder_kwargs, encoder_model
from training.run.folder import CHECKPOINT, TrainResult, finished_run, recorded_config
from training.run.history import resume_line
from training.run.inputs import (
    augmentation_record,
    check_context,
    check_crop,
    check_labels,
    dataset_record,
    judge_roots,
    model_kwargs_for_product,
    model_kwargs_for_scale,
    norm_for,
    patch_splits,
)
from training.run.trainer import Trainer

log = logging.getLogger(__name__)


def train(cfg: TrainConfig, exclude: Collection[str] | None = None,
          epoch_end: Callable[[nn.Module, int], None] | None = None,
          announce: str = "", model_chosen: bool = False, curves: bool = True) -> TrainResult:
    """Train ``cfg.model.name`` on the patch dataset ``cfg.data.root`` (see ``Trainer``).

    Options left unset come from the model's recipe (``apply_recipe``): its loss, its label
    (``label_fine`` for super-resolution models), its optimisation and its training crops; a
    fine image is loaded when the recipe's targets ask for it and the dataset has one.

    Args:
        cfg: the run configuration; with ``filter_noisy`` set, run it through the two-stage
            :func:`training.noisy.train_filtered`, which calls this with ``exclude``.
        exclude: training patch ids (``"<month>/<id>"``) left out of the training split
            (given, even empty, it also means the filtering has been done).
        epoch_end: ``Trainer``'s, called after each training epoch.
        announce: a line logged once every check passed, before the line naming the model
            (what this run is for, e.g. a preliminary model): a refused run prints none.
        model_chosen: the user chose ``cfg.model.name`` (a flag, a config key, a resumed run's
            record); otherwise the line naming it says where it is the default.
        curves: draw the learning curves (``Trainer``'s; False where nobody looks at them).

    A finished run in ``cfg.run.out_dir`` (run with its options) is said and returned before any
    data is read or model built: there is nothing left to do.
    """
    if cfg.data.filter_noisy is not None and exclude is None:
        raise ConfigError("filter_noisy is a two-stage run: call training.noisy.train_filtered "
                          "(isamap-train --filter-noisy does)")
    cfg = apply_recipe(encoder_config(cfg))  # an encoder's file is checked before any pixel
    recipe = recipe_values(cfg)
    if not cfg.data.root:
        raise ConfigError("no dataset given: set data (a patch dataset root) in the config "
                          "or pass --data")
    recorded = None if cfg.run.resume else recorded_config(cfg.run.out_dir)
    if recorded is not None:  # the identical command resumes: others are refused at once
        check_same_options(recorded, cfg)
    done = finished_run(cfg.run.out_dir)
    if done is not None:
        if os.environ.get("RANK", "0") == "0":  # (under torchrun, every rank returns here)
            log.info("%s", resume_line(done.out_dir, done.epochs_run, True, done.best_epoch))
        return done
    dev_kind = "cuda" if cfg.runtime.device.startswith("cuda") or (
        cfg.runtime.device == "auto" and torch.cuda.is_available()) else "cpu"
    info = init_distributed(dev_kind)
    device = resolve_device(cfg.runtime.device, info)
    exclude = tuple(exclude or ())
    raw = PatchDataset(cfg.data.root, "train", bands=cfg.data.bands, label=recipe.label,
                       exclude=exclude)
    product = model_kwargs_for_product(cfg.model.name, raw.bands, raw.manifest)  # before any pixel
    check_encoder_bands(cfg.model, raw.bands)
    pixels = judge_patches(f"the training patches of {cfg.data.root}", lambda i: raw.read_raw(i)[0],
                           len(raw), raw.bands, physics=False)  # no scene: fill only
    pixels |= judge_roots(raw, cfg.data.allow_implausible)  # each root against the first's
    path = choose_data_path(raw.decoded_bytes(), device.type, cfg.data.cache, cfg.data.num_workers)
    log.log(DETAIL, "data: %s", path.reason)  # how, not what: -v
    cfg = cfg.with_(cache=path.cache, num_workers=path.workers)
    norm = norm_for(cfg, raw, Path(cfg.run.out_dir) / CHECKPOINT)
    train_set, val_set = patch_splits(cfg, raw.bands, norm, exclude)
    learnt = check_labels(train_set, val_set)
    check_crop(cfg, raw.patch_size)
    seed_everything(cfg.loop.seed)
    scale = int((raw.manifest.get("label") or {}).get("fine_scale") or 1) \
        if recipe.label == "label_fine" else 1
    model, kwargs = _build_model(cfg, raw, norm, product, scale)
    check_context(cfg, raw.patch_size, model)
    problem = train_set.target_warning(cfg.model.name)
    if problem:
        log.warning(problem)
    loss = build_loss(recipe.loss, class_names=raw.class_names, **dict(cfg.model.loss_kwargs))
    meta = _model_meta(cfg, raw, norm, model, kwargs, scale, learnt, exclude, pixels)
    if info.main:  # every check passed: the run starts
        for line in (announce, model_line(cfg.model.name, model_chosen)):
            if line:
                log.info("%s", line)
    trainer = Trainer(cfg, model, loss, train_set, val_set, meta, info, device, epoch_end,
                      curves)
    return trainer.fit()


def model_line(model: str, chosen: bool = False) -> str:
    """The line that names the network a run trains, and says so where it is the default.

    A configuration without ``model:`` trains the default; no other line would name it. A
    model the user ``chosen`` (``--model crofusenet`` too) is only named.
    """
    if model == ModelOptions.name and not chosen:
        return (f"training {model}, the default model (--model, or model: in a --config "
                "file, chooses another)")
    return f"training {model}"


def _build_model(cfg: TrainConfig, raw: PatchDataset, norm: NormStats,
                 product: Mapping[str, Any], scale: int) -> tuple[nn.Module, dict[str, Any]]:
    """The run's network and the keyword arguments its model file records.

    Raises:
        ModelError: the network predicts at another scale than the labels it learns from.
    """
    label = recipe_values(cfg).label
    kwargs = model_kwargs_for_scale(cfg.model.name, label, scale, {
        "bands": list(raw.bands), **product, **dict(cfg.model.model_kwargs)})
    classes = len(raw.class_names)
    if cfg.model.encoder:
        kwargs = encoder_kwargs(cfg.model, raw.bands, norm.mean, norm.std, raw.manifest)
        model = encoder_model(cfg.model, kwargs, classes)
    else:
        model = create_model(cfg.model.name, len(raw.bands), classes, **kwargs)
    if int(getattr(model, "output_scale", 1)) != scale:
        raise ModelError(f"model {cfg.model.name!r} predicts at "
                         f"{getattr(model, 'output_scale', 1)}x "
                         f"its input but the {label!r} labels are at {scale}x")
    return model, kwargs


def _model_meta(cfg: TrainConfig, raw: PatchDataset, norm: NormStats, model: nn.Module,
                kwargs: Mapping[str, Any], scale: int, learnt: tuple[str, ...] | None,
                exclude: Collection[str],
                pixels: Mapping[str, Any]) -> ModelMeta:
    """What the run's model file records: network, inputs, classes, data and options.

    ``pixels``: the training patches' fingerprint and the input check's notes
    (:func:`training.band_ranges.judge_patches`), which inference compares its stacks with.
    """
    resolution = (raw.manifest.get("grid") or {}).get("resolution")
    names = raw.class_names
    return ModelMeta(
        name=ENCODER_MODEL if cfg.model.encoder else cfg.model.name,
        module=ENCODER_MODULE if cfg.model.encoder else "",
        in_channels=len(raw.bands), num_classes=len(names),
        bands=raw.bands, norm_mean=norm.mean, norm_std=norm.std,
        class_scheme=str((raw.manifest.get("label") or {}).get("scheme", "isa")),
        class_names=names, output_scale=scale, model_kwargs=dict(kwargs),
        pixel_size=float(resolution) if resolution else None,
        window=getattr(model, "prediction_window", None),
        norm=cfg.data.norm or "training", learnt_classes=learnt,
        band_ranges=band_ranges(lambda i: raw.read_raw(i)[0], len(raw), raw.bands),
        extra={"config": cfg.run_record(), "augmentation": augmentation_record(cfg),
               "dataset": {**dataset_record(cfg.data.root, raw.manifest),
                           "excluded_patches": sorted(exclude)},
               **pixels})
