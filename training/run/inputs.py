"""What a run trains on: its datasets, their record, the model arguments they imply.

Kept apart from the training loop (``training.run.trainer``) because pruning's fine-tuning and the
mapping of a model file's recorded dataset use the same rules without running a trainer.
May import: ``contract``, ``core``, ``training.config``,
``training.data``, ``training.models``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from contract.bands import LABEL_NODATA, PRODUCT, is_code_band
from contract.input_check import Fingerprint, judge_stacks, pixel_sample
from contract.label_schemes import landcover_source
from core.errors import ConfigError, InputDataError, ModelError
from training.augmentation import Augment, Radiometric
from training.config import DataOptions, TrainConfig
from training.data import (
    NormStats,
    PatchDataset,
    compute_norm_stats,
    scene_norms_for,
)
from training.models import (
    available_models,
    context_warning,
    reads_product,
    recipe_for,
    upsamples,
)
from training.sampling import balanced_weights

log = logging.getLogger(__name__)


def check_context(cfg: TrainConfig, patch_size: int, model: nn.Module) -> None:
    """Refuse (or warn about) training inputs smaller than the model's context modules need.

    The input is the recipe's crop when the patches are larger, else the whole patch. A recipe
    with ``small_patches="refuse"`` makes that a configuration error unless
    ``cfg.data.allow_small_patches``; otherwise it is a warning.
    """
    size = min(patch_size, cfg.data.crop_size) if cfg.data.crop_size else patch_size
    problem = context_warning(cfg.model.name, size, model)
    if problem is None:
        return
    if recipe_for(cfg.model.name).small_patches == "refuse" and not cfg.data.allow_small_patches:
        raise ConfigError(f"{problem}; or pass --allow-small-patches to train on them anyway")
    log.warning(problem)


def norm_for(cfg: TrainConfig, raw: PatchDataset, checkpoint: Path) -> NormStats:
    """A resumed run's normalisation comes from its ``checkpoint``, else from the train split."""
    if cfg.run.resume and checkpoint.exists():
        meta = torch.load(checkpoint, map_location="cpu", weights_only=True).get("meta", {})
        if tuple(meta.get("bands", ())) == raw.bands:
            return NormStats(raw.bands, tuple(meta["norm_mean"]), tuple(meta["norm_std"]))
    return compute_norm_stats(raw)


def patch_splits(cfg: TrainConfig, bands: tuple[str, ...], norm: NormStats,
                 exclude: Collection[str] = ()) -> tuple[PatchDataset, PatchDataset]:
    """The training (augmented, cropped, ``exclude`` left out) and validation datasets.

    ``cfg`` has its recipe applied (``apply_recipe``): the targets are its label, plus the
    recipe's fine image when it trains on ``label_fine``. With ``cfg.data.norm == "scene"`` both
    normalise each patch by its scene's statistics (:func:`training.data.scene_norms_for`)
    instead of ``norm``.
    """
    scenes = scene_norms_for(cfg.data.root, bands, cfg.data.norm or "training")
    label = cfg.data.label or "label"
    targets = (label, *(t for t in recipe_for(cfg.model.name).targets[1:] if label == "label_fine"))
    aug = augment_for(cfg)
    train_set = PatchDataset(cfg.data.root, "train", bands, norm, aug, seed=cfg.loop.seed,
                             cache=bool(cfg.data.cache), targets=targets, crop=cfg.data.crop_size,
                             exclude=exclude,
                             radiometric=Radiometric() if cfg.data.radiometric else None,
                             scene_norms=scenes)
    val_set = PatchDataset(cfg.data.root, "val", bands, norm, None, seed=cfg.loop.seed,
                           cache=bool(cfg.data.cache), targets=targets, scene_norms=scenes)
    return train_set, val_set


def augment_for(cfg: TrainConfig) -> Augment | None:
    """The geometric augmentation of a run: none, or flips, turns and the blur.

    A frozen encoder's run (``--encoder`` without ``--no-freeze-encoder``) leaves the blur out:
    its features are cached per patch, and flips and turns reuse them turned, but a blurred
    patch is other pixels, which the encoder would encode afresh every epoch.
    """
    if not cfg.data.augment:
        return None
    return Augment(blur=0.0) if cfg.model.encoder and cfg.model.freeze_encoder else Augment()


def augmentation_record(cfg: TrainConfig) -> dict:
    """What a model file records of its training augmentations: each one's parameters, or None."""
    aug = augment_for(cfg)
    return {"geometric": dataclasses.asdict(aug) if aug is not None else None,
            "radiometric": dataclasses.asdict(Radiometric()) if cfg.data.radiometric else None,
            "balanced_sampling": bool(cfg.data.balanced_sampling)}


def sampling_weights(data: DataOptions, train_set, num_classes: int) -> np.ndarray | None:
    """Per-patch class-balanced draw weights when the run balances its sampling, else None."""
    if not data.balanced_sampling:
        return None
    if not hasattr(train_set, "patch_label_counts"):
        raise ConfigError("balanced sampling needs a patch dataset (its labels give the "
                          "weights); train without it")
    return balanced_weights(train_set.patch_label_counts(num_classes))


def check_labels(train_set: PatchDataset, val_set: PatchDataset) -> tuple[str, ...]:
    """Refuse labels the loss cannot take, before the run folder is made.

    A code outside the scheme's ``0..K-1`` (and not nodata, 255) would stop the first epoch
    with torch's "Target N is out of bounds"; a training split without a labelled pixel
    would "finish" without ever saving a model.

    Returns:
        The classes the training labels hold, in the scheme's order
        (``training.model_meta.ModelMeta.learnt_classes``).
    """
    k = len(train_set.class_names)
    counts = {name: ds.label_counts() for name, ds in (("train", train_set), ("val", val_set))}
    for split, count in counts.items():
        seen = np.flatnonzero(count)
        bad = [int(c) for c in seen if c >= k and c != LABEL_NODATA]
        if bad:
            raise InputDataError(
                f"the {split} labels ({train_set.label_key}) of {train_set.root} hold the codes "
                f"{bad}, outside the scheme's classes 0..{k - 1} {list(train_set.class_names)} "
                f"(and {LABEL_NODATA} for nodata); remap them, or name every class in "
                "the manifest's label.classes, then train again")
    if not counts["train"][:k].any():
        raise InputDataError(f"the train labels of {train_set.root} hold no labelled pixel (all "
                             f"nodata, {LABEL_NODATA}); nothing can be learnt: export labels "
                             "for the area first")
    learnt = tuple(name for i, name in enumerate(train_set.class_names) if counts["train"][i])
    if len(learnt) < 2:
        raise InputDataError(
            f"the train labels of {train_set.root} hold only the class {learnt[0]!r} "
            f"({int(counts['train'][:k].sum()):,} labelled pixels, none of "
            f"{[c for c in train_set.class_names if c not in learnt]}): a model trained on one "
            "class maps every pixel as it, whatever the input; export labels of an area that "
            "holds the other classes too, then train again")
    return learnt


def check_crop(cfg: TrainConfig, patch_size: int) -> None:
    """Refuse a ``--crop-size`` larger than the dataset's patches, which would crop nothing.

    A crop the model's recipe sets (hrnet: 513 px) larger than the patches means whole
    patches, as the recipe's documentation says; a crop given otherwise is a mistake.
    """
    crop = cfg.data.crop_size
    if not crop or crop <= patch_size or (cfg.model.name in available_models()
                                          and crop == recipe_for(cfg.model.name).crop_size):
        return
    raise ConfigError(f"--crop-size {crop} is larger than the dataset's {patch_size} px "
                      f"patches, so nothing would be cropped; give --crop-size {patch_size} "
                      "or less (0 trains on whole patches)")


def judge_roots(raw: PatchDataset, allow_implausible: bool = False) -> dict[str, Any]:
    """Each ``--data`` root's training patches against the first root's fingerprint.

    The fingerprint its manifest recorded at export or import (else the one of its patches):
    a later root of a merge whose bands are transposed, on another scale or shifted against
    it, or a root's patches replaced since its manifest was written, is refused in one line
    naming the root (:func:`contract.input_check.judge_stacks`), unless ``allow_implausible``.

    Returns:
        ``{"input_notes": [...]}``, the doubts accepted with ``allow_implausible``, for the
        model file; {} without any.
    """
    recorded = Fingerprint.from_dict(raw.manifest.get("pixel_fingerprint"))
    parts = list(raw.manifest.get("merged_from") or [""])  # "": one root
    if recorded is None and len(parts) == 1:
        return {}  # nothing to compare with
    roots = {name: os.path.realpath(os.path.join(raw.root, name)) if name else raw.root
             for name in parts}
    against = (f"the fingerprint the manifest of {roots[parts[0]]} records" if recorded
               else f"the patches of {roots[parts[0]]}")
    picks = {name: [i for i, r in enumerate(raw.records)
                    if not name or str(r["id"]).startswith(f"{name}/")] for name in parts}
    stacks = {f"--data {roots[name]} (against {against})": _sample(raw, picks[name])
              for name in parts if picks[name]}
    notes = judge_stacks(stacks, recorded, allow_implausible=allow_implausible,
                         recorded_in="the model file")
    return {"input_notes": list(notes)} if notes else {}


def _sample(raw: PatchDataset, picks: list[int]) -> dict[str, np.ndarray]:
    """Band -> pixels of the patches ``picks`` (:func:`contract.input_check.pixel_sample`)."""
    pixels = pixel_sample(lambda k: raw.read_raw(picks[k])[0], len(picks), len(raw.bands))
    return {b: pixels[i] for i, b in enumerate(raw.bands) if not is_code_band(b)}


def dataset_record(root: str, manifest: dict) -> dict:
    """What a model file records of its dataset: where it is, and how its stack was made.

    The recipe, bands, grid and backend travel with the model so that ``isamap-map`` builds a
    map's inputs exactly as the training patches were built, even where the dataset itself is
    not reachable any more.
    """
    return {"root": root, "created": manifest.get("created"),
            "code_version": manifest.get("code_version"), "backend": manifest.get("backend"),
            "region": manifest.get("region"), "months": list(manifest.get("months") or []),
            "bands": list(manifest.get("bands") or []), "grid": manifest.get("grid"),
            "recipe": manifest.get("recipe") or {}, "label": manifest.get("label") or {},
            "sources": manifest.get("sources") or {}}


def model_kwargs_for_product(model: str, bands: tuple[str, ...], manifest: dict) -> dict:
    """``{"product_scheme": source}`` when the input holds the coarse product band, else {}.

    The network expands the ``product`` band's codes with its land-cover source's table
    (:mod:`training.models.product`), so it is told the source the dataset was exported with
    (the manifest's recipe, :func:`contract.label_schemes.landcover_source`).
    Refused before any pixel is read: the band for a model that cannot expand it, the band
    without a land-cover source, and a recipe that reads the product on a dataset without it.
    """
    if PRODUCT not in bands:
        if recipe_for(model).product_input:
            raise ConfigError(f"model {model!r} reads the coarse product as input, and the "
                              f"dataset's bands {list(bands)} hold no {PRODUCT!r}: export "
                              "with isamap-export --labels landcover:<source> --bands "
                              f"{','.join(bands)},{PRODUCT}; or train --model hrnet")
        return {}
    if not reads_product(model):
        raise ConfigError(f"model {model!r} cannot read the {PRODUCT!r} band (the coarse "
                          f"product's codes); train hrnet-coarse or hrnet, or leave it out "
                          f"with --bands {','.join(b for b in bands if b != PRODUCT)}")
    source = landcover_source(manifest.get("recipe"))
    if source is None:
        raise InputDataError(f"the dataset holds a {PRODUCT!r} band but its manifest names no "
                             "land-cover label source (recipe label landcover:<source>): "
                             "export it again with isamap-export --labels landcover:<source>")
    return {"product_scheme": source}


def model_kwargs_for_scale(model: str, label: str, scale: int, kwargs: dict) -> dict:
    """``kwargs`` with ``scale`` set from the dataset for models that upsample.

    The output scale of a super-resolution model must equal the ratio between the label and
    the image grids of the dataset (the manifest's ``fine_scale`` for ``label_fine``, 1 for
    ``label``), so it is taken from there instead of being typed again in --model-kwargs;
    a typed value that disagrees, or a pairing that cannot produce labels of the right size,
    is refused before any training.
    """
    if not upsamples(model):
        if label == "label_fine":
            raise ModelError(
                f"model {model!r} predicts at the input's resolution and cannot learn the "
                f"{scale}x finer label_fine; train a super-resolution model (srseg, "
                "bilinear-unet, unet-upsample) on it, or use --label label")
        return kwargs
    if label != "label_fine":
        raise ConfigError(f"model {model!r} predicts k times finer than its input; train it "
                          "with --label label_fine on a dataset exported with fine labels")
    if scale <= 1:
        raise ConfigError(f"the dataset's manifest records no fine_scale > 1 (got {scale}); "
                          "export it with fine labels (isamap-export --fine-scale) to train on "
                          "label_fine")
    given = kwargs.get("scale")
    if given is not None and given != scale:
        raise ConfigError(f"--model-kwargs scale={given!r} disagrees with the dataset's fine "
                          f"scale {scale}; drop scale from --model-kwargs (it is taken from "
                          "the manifest)")
    return {**kwargs, "scale": scale}
