"""Training configuration: frozen parts, one per stage, filled from a YAML file and/or CLI flags.

Files, flags and records name every option flat (``lr``, ``out_dir``); :data:`OPTIONS` says
which part holds each (``cfg.optim.lr``, ``cfg.run.out_dir``).

Options left unset (``None``) come from the model's recipe (``training.models.ModelRecipe``,
part of its registry entry) through :func:`apply_recipe`: its paper's loss,
label, optimiser, learning rate, batch, epochs and patience, and the constructor arguments it
sets. For CroFuseNet (section IV-A) that is Adam, lr 1e-4, a poly schedule with power 0.9 per
iteration, batch 32, 400 epochs and early stopping after 50 epochs without a gain in
validation MIoU; ``isamap-train --model runetpp``, ``--model srseg`` or ``--model hrnet``
(SGD 0.01 with momentum 0.9, random 513 px crops, class-weighted CE) get their own.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import typing
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from contract.bands import band_list
from core.config_file import check_config, config_file_error, read_config_file
from core.errors import ConfigError, OptionError
from core.parsers import SEED_RULE, is_seed
from engine.devices import PRECISIONS, Layout, Precision, layout_flag
from training.models import available_models, recipe_for
from training.models.registry import DEFAULT_RECIPE
from training.run_paths import PATH_KEYS, PATHS_FROM_FILE, encoder_from_folder, from_folder

MAX_WORKERS = 64  # data-loader processes; more only adds start-up time and memory
Optimizer = Literal["adam", "sgd"]
#: what the input bands are normalised by: the training split's statistics, recorded in the
#: model file (``training``), or the statistics of the scene each patch or map comes from
#: (``scene``: the training patches' own scene in training, the input stack in prediction)
Norm = Literal["training", "scene"]
NORMS: tuple[Norm, ...] = ("training", "scene")
# Filled from the model's recipe when left at None (same names in ModelRecipe).
RECIPE_FIELDS = ("label", "optimizer", "lr", "momentum", "weight_decay", "poly_power",
                 "batch_size", "epochs", "patience", "crop_size", "radiometric",
                 "balanced_sampling", "norm", "ema")


#: options this isamap no longer has -> what it always does now: a file or run folder that
#: records that reads as it did, one that records otherwise is refused (:func:`without_removed`)
REMOVED_OPTIONS: dict[str, Any] = {"balanced_scenes": False}


FLAGS = {"out_dir": "--out", "num_workers": "--workers"}  #: flags not the name with dashes
#: a config file's key as its flag names it -> the option it sets (``out: runs/x``, as an
#: ``isamap-map`` file says it); the option's own name (``out_dir``, which a run folder's
#: ``config.yaml`` records) is read too
FLAG_KEYS = {flag.removeprefix("--").replace("-", "_"): key for key, flag in FLAGS.items()}


def _unset_or(value: Any, ok: Callable[[Any], bool]) -> bool:
    return value is None or ok(value)


def _refuse(part: object, checks: list[tuple[str, bool, str]]) -> None:
    """Raise the first of ``part``'s options that fails its check, named as its flag."""
    for key, ok, rule in checks:  # the flag as typed; config_from_mapping names a file's key
        if not ok:
            raise OptionError(key, f"{rule}, got {getattr(part, key)!r}", FLAGS.get(key))


@dataclass(frozen=True)
class ModelOptions:
    """The network and its loss (the option names of :data:`OPTIONS`: ``name`` is ``model``).

    Attributes:
        name / model_kwargs: registry name and extra constructor arguments (on top of the
            recipe's ``model_kwargs``).
        loss / loss_kwargs: loss name (default: the model's recipe loss, whose arguments sit
            under the given ones) and its arguments.
        encoder: ``NAME=PATH``, a pretrained encoder from its published file
            (:mod:`training.models.encoders`) fused with the U-Net; None: none.
        freeze_encoder: keep the encoder's weights as published (its features are computed
            once per patch and cached); False fine-tunes it with the rest.
        fusion: how the encoder's features join the U-Net: ``concat`` (beside the image
            channels) or ``head`` (the encoder as backbone, a light decoder).
    """

    name: str = "crofusenet"
    model_kwargs: Mapping = field(default_factory=dict)
    loss: str | None = None
    loss_kwargs: Mapping = field(default_factory=dict)
    encoder: str | None = None
    freeze_encoder: bool = True
    fusion: str = "concat"

    def __post_init__(self) -> None:
        _refuse(self, [("fusion", self.fusion in ("concat", "head"), "must be concat or head")])
        problems = model_kwargs_problems(self.model_kwargs) + (
            ["--model-kwargs cannot set members: give --members K, which trains the K networks "
             "one by one and joins them"] if "members" in dict(self.model_kwargs) else [])
        if problems:
            raise OptionError("model_kwargs", problems[0].removeprefix("--model-kwargs "))


@dataclass(frozen=True)
class DataOptions:
    """The patches a run reads and how they are drawn (``root`` is the option ``data``).

    Attributes:
        root: patch dataset root (local folder or gs://bucket/prefix).
        bands: input bands (default: every band of the manifest, in its order).
        label: ``label`` or ``label_fine`` (default: the first of the recipe's targets).
        crop_size: random square training crops of this many pixels (input grid); ``None``:
            the recipe's (hrnet: 513), 0: whole patches. Validation always sees whole patches.
        augment: the paper's augmentations on the training split.
        radiometric: radiometric augmentation of the optical bands on the training split
            (gamma, gain, offset, haze: :class:`training.augmentation.Radiometric`); None: the
            model's recipe.
        balanced_sampling: draw training patches in proportion to their rare-class pixels
            (:func:`training.sampling.balanced_weights`) instead of shuffling; None: the recipe.
        norm: what the input bands are normalised by (:data:`Norm`): ``training`` (the
            training split's per-band statistics, recorded in the model file) or ``scene``
            (each patch by its scene's statistics, :func:`training.data.compute_scene_norms`;
            every map by its input stack's, so a scene-wide gain or offset does not move the
            network's input while the statistics still span a whole scene); None: the
            model's recipe.
        cache: keep decoded patches in memory (None: when they fit,
            :func:`training.loader.choose_data_path`).
        num_workers: loader worker processes (None: by the dataset's size and the device,
            :func:`training.loader.choose_data_path`: none for a cached dataset on a CPU, else
            cores - 1, at most 8).
        allow_small_patches: train a model whose recipe refuses patches (or crops) smaller
            than its context modules need (RU-Net++'s ASPP) anyway, with a warning.
        allow_implausible: train on a ``--data`` root whose patches the input check doubts
            against the first root's fingerprint (:func:`training.run.inputs.judge_roots`),
            the reasons recorded in the model file's ``input_notes``.
        filter_noisy: run noisy-sample filtering first (``training.noisy``): drop training
            patches whose preliminary prediction agrees with their label on fewer than this
            share of pixels, then retrain; None trains on every patch.
    """

    root: str = ""
    bands: tuple[str, ...] | None = None
    label: str | None = None
    crop_size: int | None = None
    augment: bool = True
    radiometric: bool | None = None
    balanced_sampling: bool | None = None
    norm: Norm | None = None
    cache: bool | None = None
    num_workers: int | None = None
    allow_small_patches: bool = False
    allow_implausible: bool = False
    filter_noisy: float | None = None

    def __post_init__(self) -> None:
        _refuse(self, [
            ("label", _unset_or(self.label, lambda v: v in ("label", "label_fine")),
             "must be label or label_fine"),
            ("crop_size", _unset_or(self.crop_size, lambda v: v == 0 or v >= 8),
             "must be 0 (whole patches) or >= 8"),
            ("filter_noisy", self.filter_noisy is None or 0.0 < self.filter_noisy < 1.0,
             "must be an agreement share in (0, 1), e.g. 0.2"),
            ("norm", _unset_or(self.norm, lambda v: v in NORMS), f"must be {' or '.join(NORMS)}"),
            ("num_workers", self.num_workers is None or 0 <= self.num_workers <= MAX_WORKERS,
             f"must be between 0 and {MAX_WORKERS} data-loader processes")])


@dataclass(frozen=True)
class OptimOptions:
    """The optimiser and its learning-rate schedule (``None``: the model's recipe).

    Attributes:
        optimizer, lr, momentum, weight_decay: :func:`training.run.optim.make_optimizer`'s
            (``momentum`` is SGD's).
        poly_power: the poly schedule's power (:class:`training.run.optim.PolyLR`).
    """

    optimizer: Optimizer | None = None
    lr: float | None = None
    momentum: float | None = None
    weight_decay: float | None = None
    poly_power: float | None = None

    def __post_init__(self) -> None:
        _refuse(self, [
            ("lr", _unset_or(self.lr, lambda v: v > 0), "must be positive"),
            ("optimizer", _unset_or(self.optimizer, lambda v: v in ("adam", "sgd")),
             "must be adam or sgd"),
            ("momentum", _unset_or(self.momentum, lambda v: 0.0 <= v < 1.0), "must be in [0, 1)")])


@dataclass(frozen=True)
class LoopOptions:
    """How long and on what draw the training loop runs (``None``: the model's recipe).

    Attributes:
        batch_size, epochs, patience: the batch, the epochs and the early stopping's
            patience in epochs without a gain in validation MIoU.
        ema: keep the exponential moving average of the weights (:mod:`training.run.averaging`)
            with this half-life in training iterations: validation, the best-epoch
            choice, the temperature and the model file use the average; 0: off (the
            last iterate); None: the model's recipe (``unet-s2``: 10).
        max_batches: cap on training batches per epoch (quick demos and benchmarks).
        max_iterations: total training-iteration budget; when set it replaces ``epochs``
            (the last epoch is cut short and the poly schedule ends at the budget).
        seed: seeds model init, data order and augmentation.
        members: trainings of the model, seeds ``seed`` to ``seed + members - 1``, each a run
            of its own under ``out_dir/memberK``, joined in one model file whose maps are the
            mean of their calibrated probabilities (:mod:`training.run.members`); 1: one training.
            ``isamap-train`` without ``--members`` takes the model's recipe's
            (``ModelRecipe.members``); a configuration built here trains once unless told.
    """

    batch_size: int | None = None
    epochs: int | None = None
    patience: int | None = None
    ema: float | None = None
    max_batches: int | None = None
    max_iterations: int | None = None
    seed: int = 0
    members: int = 1

    def __post_init__(self) -> None:
        _refuse(self, [
            ("epochs", _unset_or(self.epochs, lambda v: v >= 1), "must be >= 1"),
            ("batch_size", _unset_or(self.batch_size, lambda v: v >= 1), "must be >= 1"),
            ("patience", _unset_or(self.patience, lambda v: v >= 1), "must be >= 1"),
            ("ema", self.ema is None or self.ema == 0 or 1 <= self.ema < math.inf,
             "is a half-life in training iterations (>= 1, e.g. 20; 0: off), not a decay"),
            ("members", self.members >= 1, "must be >= 1"),
            ("seed", is_seed(self.seed) and is_seed(self.seed + self.members - 1),
             f"{SEED_RULE} (with --members K, seed + K - 1 too)"),
            ("max_batches", self.max_batches is None or self.max_batches >= 1, "must be >= 1"),
            ("max_iterations", self.max_iterations is None or self.max_iterations >= 1,
             "must be >= 1")])


@dataclass(frozen=True)
class StepOptions:
    """Where and how the training steps run (:func:`training.run.step_runtime.choose_runtime`).

    Attributes:
        precision: ``auto`` = measured at the start of the run on the real model, batch and
            device (``engine.autotune``: the fastest training step of fp32/bf16, and fp16
            on CUDA, whose output agrees with fp32); a resumed run keeps the choice its
            checkpoint recorded. A recipe that needs one precision for reproducibility states
            it here (``fp32``, ``bf16``, ``fp16``), and it is never overridden.
        channels_last: NHWC memory format: ``auto`` (measured with the precision), ``on``
            or ``off`` (YAML booleans are accepted).
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:1``...
        autotune_cache: reuse a choice measured earlier for the same model, batch shape and
            device (``$XDG_CACHE_HOME/isamap/autotune.json``) instead of measuring again.
    """

    precision: Precision = "auto"
    channels_last: Layout = "auto"
    device: str = "auto"
    autotune_cache: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels_last", layout_flag(self.channels_last))
        _refuse(self, [("precision", self.precision in PRECISIONS,
                        f"must be {', '.join(PRECISIONS)}")])


@dataclass(frozen=True)
class RunOptions:
    """Where the run lives and how this invocation of it goes.

    Attributes:
        out_dir: run folder (checkpoint, best model, metrics.jsonl, curves PNG).
        resume: continue from ``out_dir/checkpoint.pt``.
        stop_after: leave after this many epochs in this invocation (time-sliced jobs);
            ``resume`` continues exactly where it stopped.
        progress: show tqdm bars.
    """

    out_dir: str = "runs/train"
    resume: bool = False
    stop_after: int | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        _refuse(self, [("stop_after", self.stop_after is None or self.stop_after >= 1,
                        "must be >= 1")])


RENAMED = {"data": "root", "model": "name"}  #: an option -> its name in its part


def _where(key: str) -> tuple[str, str]:
    """The part of :class:`TrainConfig` that holds the option ``key``, and its name there."""
    if key not in OPTIONS:
        raise TypeError(f"unknown training option {key!r}")
    return OPTIONS[key], RENAMED.get(key, key)


@dataclass(frozen=True)
class TrainConfig:
    """Every knob of a training run (all recorded in the checkpoint and the model file).

    In parts, each handed to the stage that reads it; files, flags and records name the
    options flat (:data:`OPTIONS`: :meth:`of`, :meth:`with_`, :meth:`option`, :meth:`to_dict`).

    Attributes:
        model: the network, its loss and encoder (:class:`ModelOptions`).
        data: the patches and how they are drawn and loaded (:class:`DataOptions`).
        optim: the optimiser and its schedule (:class:`OptimOptions`).
        loop: batch, epochs, patience, weight averaging, budget, seed, members
            (:class:`LoopOptions`).
        runtime: device, precision, layout (:class:`StepOptions`).
        run: the run folder and how this invocation goes (:class:`RunOptions`).
    """

    model: ModelOptions = field(default_factory=ModelOptions)
    data: DataOptions = field(default_factory=DataOptions)
    optim: OptimOptions = field(default_factory=OptimOptions)
    loop: LoopOptions = field(default_factory=LoopOptions)
    runtime: StepOptions = field(default_factory=StepOptions)
    run: RunOptions = field(default_factory=RunOptions)

    @classmethod
    def of(cls, **options: Any) -> TrainConfig:
        """A configuration from options named flat (``TrainConfig.of(model="unet", lr=1e-3)``)."""
        return cls().with_(**options)

    def with_(self, **options: Any) -> TrainConfig:
        """This configuration with ``options`` (named flat, :data:`OPTIONS`) replaced."""
        parts: dict[str, dict[str, Any]] = {}
        for key, value in options.items():
            part, name = _where(key)
            parts.setdefault(part, {})[name] = value
        return dataclasses.replace(self, **{part: dataclasses.replace(getattr(self, part), **kw)
                                            for part, kw in parts.items()})

    def option(self, key: str) -> Any:
        """The option named flat ``key`` (:data:`OPTIONS`)."""
        part, name = _where(key)
        return getattr(getattr(self, part), name)

    def to_dict(self) -> dict:
        d = {key: self.option(key) for key in OPTIONS}
        d["model_kwargs"] = dict(self.model.model_kwargs)
        d["loss_kwargs"] = dict(self.model.loss_kwargs)
        d["bands"] = list(self.data.bands) if self.data.bands is not None else None
        return d

    def run_record(self) -> dict:
        """What a run records of its options (the model file, ``config.yaml``).

        :meth:`to_dict` with how one invocation ran (:data:`INVOCATION_KEYS`) at the
        defaults, so continuing a run records the same run.
        """
        return {**self.to_dict(), **{k: TrainConfig().option(k) for k in INVOCATION_KEYS}}


#: each option as files, flags and records name it -> the part of :class:`TrainConfig` that
#: holds it, under its own name but for :data:`RENAMED`: the one place the flat options meet
#: the parts (in the parts' order: what a run's ``config.yaml`` lists)
OPTIONS: dict[str, str] = {
    {v: k for k, v in RENAMED.items()}.get(option.name, option.name): part.name
    for part in dataclasses.fields(TrainConfig)
    for option in dataclasses.fields(typing.get_type_hints(TrainConfig)[part.name])}


#: options of one invocation, not of the run (``--resume``, ``--stop-after``, ``--no-progress``)
INVOCATION_KEYS = ("resume", "stop_after", "progress")


def apply_recipe(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` with every unset option taken from its model's recipe (idempotent).

    The recipe's ``model_kwargs`` go under the given ones, and the recipe's loss arguments
    under the given ``loss_kwargs`` when the loss is the recipe's (see
    ``ModelRecipe.loss_settings``).
    """
    # A name outside the registry (a model built by hand for Trainer) gets the default
    # recipe; train() still refuses such a name when it builds the model.
    name = cfg.model.name
    recipe = recipe_for(name) if name in available_models() else DEFAULT_RECIPE
    filled = {key: getattr(recipe, key) for key in RECIPE_FIELDS if cfg.option(key) is None}
    loss, loss_kwargs = recipe.loss_settings(cfg.model.loss, cfg.model.loss_kwargs)
    return cfg.with_(**filled, loss=loss, loss_kwargs=loss_kwargs,
                     model_kwargs={**recipe.model_kwargs, **dict(cfg.model.model_kwargs)})


#: model arguments a recipe fills that runs and model files recorded before the argument
#: existed, read as what those did (a unet-s2 run or file from before test-time flips maps
#: each window once, whatever the recipe says now; one from before its members spread the
#: flips gives each member all four)
BEFORE_MODEL_KWARG: dict[str, Any] = {"flips": False, "member_views": False}


def as_recorded(model: str, model_kwargs: Mapping) -> dict:
    """Recorded network arguments with those that predate them filled as they were.

    Only for arguments ``model``'s recipe sets (another model's constructor may not take
    them); an argument the record names stays as recorded. Without it, :func:`apply_recipe`
    would put today's recipe under an old record and change what it trains or resumes.
    """
    if model not in available_models():
        return dict(model_kwargs)
    recipe_kwargs = recipe_for(model).model_kwargs
    return {**{k: v for k, v in BEFORE_MODEL_KWARG.items() if k in recipe_kwargs},
            **dict(model_kwargs)}


def with_recipe_filter(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` with its recipe's noisy-sample threshold when the run gives none.

    Kept apart from :func:`apply_recipe`, which every stage of a filtered run applies: the
    filter is decided once, by the command, and its two trainings run unfiltered.
    """
    if cfg.data.filter_noisy is not None or cfg.model.name not in available_models():
        return cfg
    return cfg.with_(filter_noisy=recipe_for(cfg.model.name).filter_noisy)


@dataclass(frozen=True)
class RecipeValues:
    """The recipe-filled options a run reads, none of them unset (:func:`recipe_values`)."""

    label: str
    loss: str
    batch_size: int
    epochs: int
    patience: int
    poly_power: float


def recipe_values(cfg: TrainConfig) -> RecipeValues:
    """``cfg``'s recipe-filled options with the recipe applied: read once, never ``None``.

    Raises:
        ConfigError: one is still unset (a recipe gives every one of them, so only a
            hand-made recipe can leave one out).
    """
    cfg = apply_recipe(cfg)
    values = {f.name: cfg.option(f.name) for f in dataclasses.fields(RecipeValues)}
    unset = [name for name, value in values.items() if value is None]
    if unset:
        raise ConfigError(f"the model's recipe leaves {', '.join(unset)} unset: give "
                          f"{'them' if len(unset) > 1 else 'it'} in the training config")
    return RecipeValues(**values)


def config_from_mapping(values: Mapping, config_file: str | None = None,
                        from_file: Collection[str] = ()) -> TrainConfig:
    """Build a config from a dict (YAML content, CLI flags), rejecting unknown keys.

    A value out of range is told naming its flag, or, among ``from_file`` (the keys that the
    ``--config`` file ``config_file`` gave), naming the file and its key.
    """
    unknown = sorted(set(values) - set(OPTIONS))
    if unknown:
        raise ConfigError(f"unknown training options {unknown}; known: {sorted(OPTIONS)}")
    kw = dict(values)
    if kw.get("bands") is not None:
        kw["bands"] = band_list(kw["bands"])
    try:
        return TrainConfig.of(**kw)
    except OptionError as exc:
        if config_file is None or exc.key not in from_file:
            raise
        raise config_file_error(exc, config_file) from None  # as the schema rule
    except TypeError as exc:
        raise ConfigError(f"bad training options: {exc}") from None


def read_train_config(path: str | Path) -> dict[str, Any]:
    """The options of a training YAML file, each checked against :class:`TrainConfig`'s type.

    The file is read by the commands' one reader and checked by their one schema rule
    (:func:`core.config_file.check_config`; the schema is :class:`TrainConfig`'s typed
    fields): an unknown key is told with the closest option, ``epochs: 1.5`` or
    ``batch_size: true`` are refused naming the key, ``lr: 1e-3`` (text to YAML 1.1) is the
    number it says. A file
    that says :data:`PATHS_FROM_FILE` (a run's ``config.yaml``) has its paths read from its
    own folder.

    Raises:
        ConfigError: the file is missing or not YAML, or a value is not of its option's type.
    """
    values = without_removed(option_keys(read_config_file(path), str(path)), str(path))
    if values.pop(PATHS_FROM_FILE, False) is True:
        folder = os.path.dirname(os.fspath(path))
        for key in PATH_KEYS:
            if isinstance(values.get(key), str):
                values[key] = from_folder(folder, values[key])
        if isinstance(values.get("encoder"), str):  # a file written before named it as typed
            moved = encoder_from_folder(folder, values["encoder"])
            if os.path.exists(moved.partition("=")[2]):
                values["encoder"] = moved
    return check_config(values, option_types(), str(path))


def option_types() -> dict[str, Any]:
    """Each option, named flat (:data:`OPTIONS`), with the type its part gives it."""
    parts = typing.get_type_hints(TrainConfig)  # each part's class
    return {key: typing.get_type_hints(parts[part])[name]
            for key, (part, name) in zip(OPTIONS, map(_where, OPTIONS), strict=True)}


def without_removed(values: Mapping[str, Any], source: str) -> dict[str, Any]:
    """``values`` less the :data:`REMOVED_OPTIONS` that record what this isamap does now.

    Raises:
        ConfigError: ``source`` records one otherwise (a run this isamap cannot repeat).
    """
    kept = dict(values)
    for key, now in REMOVED_OPTIONS.items():
        if kept.pop(key, now) not in (now, None):
            raise ConfigError(f"{source} records {key}: {values[key]!r}, an option this isamap "
                              "no longer has; use the isamap version that trained it, or "
                              "train again without it")
    return kept


def option_keys(values: Mapping[str, Any], source: str) -> dict[str, Any]:
    """A training file's ``values`` keyed by option: a flag's name (``out``) read as its option.

    Raises:
        ConfigError: a flag's name and its option's name both given (``out`` and ``out_dir``).
    """
    keyed = dict(values)
    for name, key in FLAG_KEYS.items():
        if name in keyed:
            if key in keyed:
                raise ConfigError(f"{source}: {name} and {key} are one option ({FLAGS[key]}); "
                                  f"keep {name}")
            keyed[key] = keyed.pop(name)
    return keyed


def model_kwargs_problems(kwargs: Mapping) -> list[str]:
    """What is wrong with the channel widths of ``--model-kwargs`` (empty: nothing).

    Every argument named ``width``/``widths``/``..._width`` of the papers' networks is a number
    of channels, or a list of them: whole numbers of at least 1. torch itself would fail deep
    inside the network's construction or its first forward pass, with a traceback.
    """
    problems = []
    for key, value in dict(kwargs).items():
        if "width" not in key:
            continue
        values = value if isinstance(value, list | tuple) else [value]
        if values and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1
                          for v in values):
            continue
        many = isinstance(value, list | tuple) or key.endswith("s")
        example = '[32, 64, 128, 256, 512]' if many else "32"
        what = "a list of whole numbers" if many else "a whole number"
        problems.append(f"--model-kwargs {key} must be {what} of channels >= 1, got "
                        f"{json.dumps(value, default=repr)}; "
                        f'e.g. {{"{key}": {example}}}')
    return problems
