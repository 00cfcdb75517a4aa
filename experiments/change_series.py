"""The per-date maps of a real L1C series: stable where nothing changed, and against L2A-like input.

Part of :mod:`experiments.change_pairs` (which pairs the dates); this module trains its
models (:func:`trained_model`: through ``isamap-train``, or on a frozen encoder) and scores
each model's map of every clear date of the eo-learn Slovenia series, the
ground taken as unchanged between them (weeks apart, one summer):

- **as given** (``L1C``): the top-of-atmosphere reflectance the series holds, what
  ``isamap-map --allow-l1c`` maps;
- **dark-object subtracted** (``DOS``): each band of each scene minus its darkest
  :data:`DOS_PERCENTILE` % less a dark surface's :data:`DOS_FLOOR` (Chavez 1988's
  dark-object subtraction, the simplest surface-reflectance estimate): the series holds no
  Level-2A product of the same ground, so this stands in for it, and is named as such.

Per model, seed, input and date: the built share of the map (class 8, artificial surface,
is 1.96 % of the ground), its built F1 and the ROC AUC of its probability against class 8;
per model, seed and input the series' stability on unchanged ground
(:func:`experiments.temporal_consistency.series_stability`); per date the share of pixels
whose class is the same on both inputs. :func:`level_facts` gives what the input check
(:mod:`contract.input_facts`) reads of each scene and input.

Models on a frozen pretrained encoder are named ``NAME`` (its features beside the bands,
``concat``) or ``NAME:head`` (the encoder as backbone), ``bands`` the same loop without an
encoder (:func:`frozen_recipe`, :func:`train_frozen`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

import numpy as np
import torch
from torch import nn

from contract.dataset import MANIFEST
from contract.input_facts import input_facts, shown_level
from core.digest import chunks_sha256
from core.errors import ConfigError
from experiments.builtup import DEFAULT_BANDS
from experiments.builtup_arms import Arm
from experiments.builtup_commands import Budget, export
from experiments.builtup_commands import train as train_arm
from experiments.builtup_encoders import BANDS as ENCODER_BANDS
from experiments.builtup_encoders import MONTHS, presto_features, read_tile
from experiments.builtup_encoders import predict as frozen_predict
from experiments.builtup_encoders import train_arm as frozen_train
from experiments.builtup_tiles import find_tile, scene_folder
from experiments.scoring import binary_scores, roc_auc
from experiments.temporal_consistency import series_stability
from inference.predict.change import arrays as change
from inference.predict.change.stretches import stretched_series
from training.models.encoders.galileo import galileo_features
from training.models.encoders.registry import ENCODERS, load_encoder

#: The recipes beyond the registry's models, each one training of ``unet-s2``'s network with
#: no flips, weight average, radiometric augmentation or balanced sampling, on the training
#: statistics: ``unet-s2-global`` as they leave the bands, ``unet-s2-window`` (the retired
#: model's recipe) each window standardised by its own statistics.
RECIPES = {name: Arm(name, "unet-s2", {"input_norm": norm, "flips": False,
                                       "member_views": False},
                     ("--no-radiometric", "--no-balanced-sampling",
                      "--norm", "training", "--ema", "0", "--members", "1"))
           for name, norm in (("unet-s2-global", "none"), ("unet-s2-window", "patch"))}

#: the darkest share (%) of each band taken as a dark object's top-of-atmosphere value
DOS_PERCENTILE = 0.5
#: what a dark object reflects at the surface (water, deep shadow): 1 %
DOS_FLOOR = 0.01
INPUTS = ("L1C", "DOS")
FUSION_SEPARATOR = ":"


def dark_object_subtraction(scene: np.ndarray) -> np.ndarray:
    """``scene`` ``(C, H, W)`` less each band's path radiance as its dark objects show it.

    Each band loses its :data:`DOS_PERCENTILE` % value less :data:`DOS_FLOOR` (never a
    negative amount): additive haze only, no transmittance; NaN stays NaN.
    """
    flat = scene.reshape(scene.shape[0], -1)
    floor = np.nanpercentile(flat, DOS_PERCENTILE, axis=1)
    haze = np.maximum(floor - DOS_FLOOR, 0.0)
    return (scene - haze[:, None, None]).astype(np.float32)


def as_input(scene: np.ndarray, name: str) -> np.ndarray:
    """The scene as input ``name`` of :data:`INPUTS`."""
    return scene if name == "L1C" else dark_object_subtraction(scene)


def frozen_recipe(recipe: str) -> tuple[str | None, str] | None:
    """``bands``, ``NAME`` or ``NAME:FUSION`` as (encoder, arm); None for other recipes.

    ``NAME`` is an encoder of the registry (``presto``, ``galileo-nano``), ``FUSION``
    ``concat`` (the default) or ``head``; ``bands`` is the same U-Net and loop without an
    encoder (the control).
    """
    if recipe == "bands":
        return None, "bands"
    name, _, fusion = recipe.partition(FUSION_SEPARATOR)
    if name not in ENCODERS:
        return None
    if fusion not in ("", "concat", "head"):
        raise ConfigError(f"recipe {recipe!r}: the fusion is concat or head")
    return name, fusion or "concat"


def check_recipe(recipe: str, encoders: Mapping[str, str]) -> None:
    """Refuse an encoder recipe whose encoder file ``--encoder NAME=PATH`` did not give."""
    frozen = frozen_recipe(recipe)
    if frozen and frozen[0] and frozen[0] not in encoders:
        raise ConfigError(f"recipe {recipe!r} needs the encoder's file: pass --encoder "
                          f"{frozen[0]}=PATH ({ENCODERS[frozen[0]].where()})")


@dataclass
class FrozenModel:
    """A U-Net (or light decoder) on a frozen encoder's features, trained on one L2A tile.

    The architecture of ``isamap-train --encoder NAME=PATH --fusion concat|head``
    (:class:`training.models.encoders.fused.EncoderUNet`): the bands normalised by the
    training tile's statistics, beside (``concat``) or replaced by (``head``) the encoder's
    128 features per pixel, computed with the training tile's location and month.
    """

    encoder_name: str | None
    encoder: nn.Module | None
    arm: str
    net: nn.Module
    mean: np.ndarray
    std: np.ndarray
    latlon: tuple[float, float]
    month: int
    cache: dict[str, np.ndarray] = field(default_factory=dict)

    def features(self, image: np.ndarray) -> np.ndarray:
        """The encoder's ``(128, H, W)`` features of reflectance ``(10, H, W)`` (none: 1 zero).

        Kept in :attr:`cache` by the image's bytes (a frozen encoder's features do not
        depend on the seed: models of one encoder may share one cache).
        """
        if self.encoder is None:
            return np.zeros((1, *image.shape[1:]), np.float32)
        key = f"{self.encoder_name} {image.shape} " + chunks_sha256(
            [np.ascontiguousarray(image, np.float32).tobytes()])
        if key not in self.cache:
            self.cache[key] = self._encode(image)
        return self.cache[key]

    def _encode(self, image: np.ndarray) -> np.ndarray:
        raw = torch.from_numpy(np.ascontiguousarray(image, np.float32))[None]
        with torch.no_grad():
            rows = [(presto_features(self.encoder, raw[..., r:r + 64, :], ENCODER_BANDS,
                                     self.latlon, self.month)
                     if self.encoder_name == "presto" else
                     galileo_features(self.encoder, raw[..., r:r + 64, :], ENCODER_BANDS,
                                      self.month, 4, self.latlon))
                    for r in range(0, raw.shape[-2], 64)]
        return torch.cat(rows, dim=-2)[0].numpy().astype(np.float32)

    def tile(self, image: np.ndarray) -> dict:
        """``image`` as the training loop's tile: normalised bands and features."""
        bands = (image - self.mean[:, None, None]) / self.std[:, None, None]
        return {"bands": bands.astype(np.float32), "feats": self.features(image)}

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """The built probability of reflectance ``(10, H, W)`` in :data:`ENCODER_BANDS`."""
        return frozen_predict(self.net, self.arm, self.tile(image)).astype(np.float64)


def train_frozen(recipe: str, encoders: Mapping[str, str], image: np.ndarray,
                 target: np.ndarray, latlon: tuple[float, float], month: int, seed: int,
                 iterations: int, cache: dict[str, np.ndarray] | None = None) -> FrozenModel:
    """``recipe`` (:func:`frozen_recipe`) trained on one tile, as experiments.builtup_encoders.

    Args:
        recipe: ``bands``, ``NAME`` or ``NAME:FUSION``.
        encoders: encoder name -> its published file (checked).
        image: the tile's reflectance ``(10, H, W)`` in :data:`ENCODER_BANDS`.
        target: 1 built, 0 other, 255 not scored.
        latlon: what the encoder is told of where (the tile's centre).
        month: what it is told of when (0-11, the tile's month).
        seed: the training seed.
        iterations: Adam steps of 8 random 64 px crops with flips and turns.
        cache: features already computed (:meth:`FrozenModel.features`), shared.
    """
    frozen = frozen_recipe(recipe)
    if frozen is None:
        raise ConfigError(f"{recipe!r} is not an encoder recipe")
    name, arm = frozen
    encoder = load_encoder(ENCODERS[name], encoders[name]) if name else None
    flat = image.reshape(image.shape[0], -1)
    model = FrozenModel(name, encoder, arm, nn.Identity(), flat.mean(1),
                        flat.std(1) + 1e-6, latlon, month, {} if cache is None else cache)
    tile = {**model.tile(image), "target": target}
    model.net = frozen_train(arm, [tile], seed, iterations)
    return model


def level_facts(scenes: np.ndarray, index: Mapping[str, int]) -> dict[str, list]:
    """Per input, per scene: the level the pixels show and the path-radiance figures.

    ``index`` gives the positions of B2, B3, B4 and B8 in the scenes' bands.
    """
    out: dict[str, list] = {}
    for name in INPUTS:
        rows = []
        for scene in scenes:
            x = as_input(scene, name)
            facts = input_facts({b: x[i] for b, i in index.items()})
            o = facts.optical
            rows.append({"shown": shown_level(facts),
                         "blue_excess": None if o is None else o.blue_excess,
                         "floor_excess": None if o is None else o.floor["B2"] - o.floor["B3"]})
        out[name] = rows
    return out


def date_maps(probability: Callable[[np.ndarray], np.ndarray], scenes: np.ndarray,
              truth: np.ndarray, index: Sequence[int]) -> dict:
    """One model's maps of every scene on both inputs, scored against ``truth``.

    Args:
        probability: the model's built probability of a ``(C, H, W)`` scene.
        scenes: ``(T, bands, H, W)``, the dates of unchanged ground.
        truth: the reference's built pixels (land use class 8).
        index: the model's bands among the scenes'.
    """
    pick = list(index)
    out: dict = {}
    maps = {}
    for name in INPUTS:
        inputs = [as_input(s, name)[pick] for s in scenes]
        probs = np.stack([probability(x) for x in inputs])
        maps[name] = probs >= 0.5
        kept = stretched_series(maps[name].astype(np.uint8), probs,
                                np.stack(stretch_cuts(inputs))).astype(bool)
        out[name] = {"built_share": [float(m.mean()) for m in maps[name]],
                     "f1": [binary_scores(m, truth).f1 for m in maps[name]],
                     "auc": [roc_auc(p.ravel(), truth.ravel()) for p in probs],
                     "stability": series_stability(maps[name], kept),
                     "stretches_f1": [binary_scores(m, truth).f1 for m in kept]}
    out["same_class"] = [float((a == b).mean()) for a, b in zip(maps["L1C"], maps["DOS"],
                                                                 strict=True)]
    return out


def stretch_cuts(inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Where each consecutive pair's bands changed, as ``isamap-map`` cuts stretches.

    Each later date scored against the earlier with that pair's own fit
    (:func:`inference.predict.change.arrays.fit_spectral_change`), above the spectral rule's default
    threshold; a NaN magnitude cuts too.
    """
    return [change.spectral_changed(change.spectral_magnitude(b, a, change.fit_spectral_change(
        b, a)), change.DEFAULT_SPECTRAL_THRESHOLD) for a, b in pairwise(inputs)]


def _spread(values: Sequence[float]) -> list[float]:
    """``[mean, min, max]`` over seeds of the defined values (NaN where none)."""
    v = np.array([x for x in values if x is not None and np.isfinite(x)], float)
    return [float(v.mean()), float(v.min()), float(v.max())] if v.size else [np.nan] * 3


def summarise_dates(runs: Mapping[str, Sequence[dict]]) -> dict:
    """Per recipe and input: each figure of :func:`date_maps` as ``[mean, min, max]`` over seeds.

    ``built_share`` per date; ``f1``, ``auc`` and (per recipe) ``same_class`` each seed's
    mean over the dates; the stability figures of
    :func:`experiments.temporal_consistency.series_stability` (``flip``: each seed's mean over
    consecutive pairs).
    """
    out: dict = {}
    for recipe, seeds in runs.items():
        row: dict = {}
        for name in INPUTS:
            dates = len(seeds[0][name]["built_share"])
            st = [s[name]["stability"] for s in seeds]
            row[name] = {
                "built_share": [_spread([s[name]["built_share"][d] for s in seeds])
                                for d in range(dates)],
                **{k: _spread([float(np.mean(s[name][k])) for s in seeds]) for k in ("f1", "auc")},
                "share_range": _spread([x["share_range"] for x in st]),
                "flip": _spread([float(np.mean(x["flip"])) for x in st]),
                "flipped_any": _spread([x["flipped_any"] for x in st]),
                "consistent_flipped_any": _spread([x["consistent"]["flipped_any"] for x in st]),
                **_stretches(seeds, name)}
        row["same_class"] = _spread([float(np.mean(s["same_class"])) for s in seeds])
        out[recipe] = row
    return out


def _stretches(seeds: Sequence[dict], name: str) -> dict:
    """The stretches rule's figures over seeds (none in a run made before it was measured)."""
    if "stretches_f1" not in seeds[0][name]:
        return {}
    kept = [s[name]["stability"]["stretches"] for s in seeds]
    return {"stretches_flip": _spread([float(np.mean(x["flip"])) for x in kept]),
            "stretches_flipped_any": _spread([x["flipped_any"] for x in kept]),
            "stretches_f1": _spread([float(np.mean(s[name]["stretches_f1"])) for s in seeds])}


def probability(model, bands: np.ndarray) -> np.ndarray:
    """The model's impervious probability of one scene ``(C, H, W)`` (reflect-padded).

    A model on each scene's statistics (``unet-s2``, ``--norm scene``) is given the scene's
    own, over all its pixels, as ``isamap-predict`` gives it its input stack's.
    """
    from inference.predict.runtime import RuntimeOptions, TilePredictor
    from inference.predict.workflow import isa_class_index
    from training.data import band_stats

    scene = (band_stats([bands], tuple(model.meta.bands), where="the scene")
             if model.meta.norm == "scene" else None)
    predictor = TilePredictor.for_model(model.module, model.meta, scene, options=RuntimeOptions(
        device="cpu", precision="fp32", channels_last="off", autotune_cache=False))
    h, w = bands.shape[1:]
    side = 32 * int(np.ceil(max(h, w) / 32))
    padded = np.pad(bands, ((0, 0), (0, side - h), (0, side - w)), mode="reflect")
    probs = predictor(padded[None].astype(np.float32))
    return probs[0, isa_class_index(tuple(model.meta.class_names)), :h, :w].astype(np.float64)


#: the frozen encoders' features of every image mapped in one run (they depend on the encoder
#: and the image only, not on the seed or the fusion)
_FEATURES: dict[str, np.ndarray] = {}


def trained_model(recipe: str, seed: int, out: Path, dw: Path, iterations: int,
             frozen_iterations: int, encoders: Mapping[str, str]
             ) -> tuple[Callable[[np.ndarray], np.ndarray], tuple[Sequence[float],
                                                                 Sequence[float]]]:
    """``recipe`` trained on the whole Java tile: its probability function, training stats.

    ``out`` holds the export and the ``isamap-train`` runs; ``dw`` is the Dynamic World folder.

    A recipe on a frozen encoder (or ``bands``) by :func:`experiments.change_series.
    train_frozen`; any other through ``isamap-export`` and ``isamap-train``.
    """
    if frozen_recipe(recipe):
        image, target, latlon = read_tile(dw, "java")
        frozen = train_frozen(recipe, encoders, image, target, latlon, MONTHS["java"], seed,
                              frozen_iterations, _FEATURES)
        return frozen, (frozen.mean.tolist(), frozen.std.tolist())
    from training.modelfile import load_model

    java = find_tile(dw, "java")
    dataset = out / "train_java"
    if not (dataset / MANIFEST).exists():
        export(java, scene_folder(java, out / "scenes"), dataset, DEFAULT_BANDS, Budget())
    model = load_model(train_arm(RECIPES.get(recipe, recipe), dataset,
                                 out / "runs" / f"{recipe}_{seed}",
                                 Budget(seed=seed, iterations=iterations)))
    return (lambda bands: probability(model, bands)), (model.meta.norm_mean,
                                                       model.meta.norm_std)
