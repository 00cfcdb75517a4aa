"""The model registry's parts: a model's entry, its training recipe, and the merged registry.

A model module exports its models as a plain table, ``MODELS = {"name": ModelEntry(build,
recipe=RECIPE)}``, where ``build(in_channels, num_classes, **kw) -> nn.Module``. The package
:mod:`training.models` merges the built-in modules' tables, explicitly, into one immutable
:class:`ModelRegistry` (a name defined twice is refused). A model defined outside the package
stays in its own module's table and is reached by naming that module (``module=``, which model
files record): :func:`outside_entry` imports it and reads its table. This module is the
mechanism only and imports no model module, so which models exist is decided where the tables
are merged, never by what happened to be imported before.

A model's loss, the targets it learns from and its optimisation are part of its entry
(:class:`ModelRecipe`), so ``isamap-train --model NAME`` trains every model the way its paper
does without the command line having to know the models: ``training.config.apply_recipe`` fills
every option the user left unset from the recipe, ``training.losses.build_loss`` builds the
recipe's loss by the name the run records, ``PatchDataset`` loads the recipe's targets, and
:meth:`ModelRegistry.context_warning` says when patches are too small for a model's context
modules.

May import: ``core``, ``contract``, :mod:`training.losses`, torch.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType, ModuleType
from typing import Any, Literal

from torch import nn

from core.errors import ConfigError, ModelError
from training.losses.factory import LossFactory
from training.losses.segmentation import CE

Optimizer = Literal["adam", "sgd"]
TARGETS = ("label", "label_fine", "image_fine")


@dataclass(frozen=True)
class ModelRecipe:
    """How a model is trained by default: its paper's loss, targets, patches and optimisation.

    Every field is a default: options given to ``isamap-train`` (flags or YAML) win. Fields
    the paper does not give are the project's choice and are listed with their reason in
    docs/training.md ("Recipes").

    Attributes:
        loss: the loss factory itself (``training.losses.segmentation.CE``, ``WEIGHTED_CE``,
            ``CROFUSENET``, ``DICE_FOCAL``; ``training.losses.srseg.SRSEG``); runs, checkpoints
            and model files record its ``name``, which ``training.losses.build_loss`` takes.
        loss_kwargs: its arguments, e.g. ``{"class_weights": {"impervious": 3.0}}`` (weights
            by class name are resolved against the dataset's class names).
        targets: what a training sample must carry, the label first: ``("label",)``, or
            ``("label_fine", "image_fine")`` for a super-resolution model (the fine image is
            loaded when the dataset has one; training without it is allowed, with a warning).
        patch_size: the edge in input pixels of the patches (or crops) the paper trains on;
            export with ``isamap-export --patch-size`` this size to follow the paper.
        crop_size: random square crops of this edge cut from every training patch, anew
            each epoch (the land-cover HRNet: 513 px of 1024 px chips); None trains on whole
            patches (``TrainConfig.crop_size``).
        output_stride: the encoder's total downsampling with ``model_kwargs`` (documentation;
            the built model's ``stride`` is what inputs are checked against).
        min_patch_size: the smallest patch edge on which the model's context modules still
            work (e.g. an ASPP map larger than its largest dilation); default 2 x
            ``output_stride`` (a 3x3 convolution on a 1x1 map is a 1x1 convolution).
        small_patches: what training on patches (or crops) below that edge does: ``"warn"``
            (a warning, then training) or ``"refuse"`` (a configuration error unless the run
            sets ``allow_small_patches``): for a model whose paper credits its context
            modules with its accuracy.
        optimizer: ``adam`` or ``sgd``.
        lr, momentum, weight_decay: optimiser settings (``momentum`` is used by SGD only).
        poly_power: exponent of the per-iteration poly schedule ``(1 - it/max_it)^power``.
        batch_size, epochs, patience: batch, epoch budget and early-stopping patience (epochs
            without a validation-MIoU gain).
        model_kwargs: constructor arguments the recipe sets (e.g. ``{"output_stride": 16}``);
            they are passed explicitly, so model files record them.
        radiometric: radiometric augmentation of the optical bands in training
            (:class:`training.augmentation.Radiometric`).
        balanced_sampling: draw training patches in proportion to their rare-class pixels
            (:func:`training.sampling.balanced_weights`) instead of shuffling them.
        norm: what the input bands are normalised by (``training.config.Norm``): the training
            split's statistics (``training``) or each scene's own (``scene``).
        ema: half-life in training iterations of the weight average the run keeps
            (:mod:`training.run.averaging`); 0: the last weights.
        product_input: the model reads the coarse product as an input band (``product``,
            exported with ``isamap-export --bands ...,product``); a dataset without it is
            refused before training. The model's entry must read it (``reads_product``).
        filter_noisy: noisy-sample filtering's threshold when the run gives none
            (``isamap-train --filter-noisy``; None: no filtering by default).
        members: trainings ``isamap-train`` makes and joins when the command gives no
            ``--members`` (:mod:`training.run.members`); 1: one training.
        source: where the paper states the recipe (seed file and lines).
    """

    loss: LossFactory = CE
    loss_kwargs: Mapping[str, Any] = field(default_factory=dict)
    targets: tuple[str, ...] = ("label",)
    patch_size: int = 128
    crop_size: int | None = None
    output_stride: int = 16
    min_patch_size: int | None = None
    small_patches: Literal["warn", "refuse"] = "warn"
    optimizer: Optimizer = "adam"
    lr: float = 1e-4
    momentum: float = 0.9
    weight_decay: float = 0.0
    poly_power: float = 0.9
    batch_size: int = 32
    epochs: int = 400
    patience: int = 50
    model_kwargs: Mapping[str, Any] = field(default_factory=dict)
    radiometric: bool = False
    balanced_sampling: bool = False
    norm: str = "training"
    ema: float = 0.0
    product_input: bool = False
    filter_noisy: float | None = None
    members: int = 1
    source: str = ""

    def __post_init__(self) -> None:
        targets = tuple(self.targets)
        object.__setattr__(self, "targets", targets)
        object.__setattr__(self, "loss_kwargs", dict(self.loss_kwargs))
        object.__setattr__(self, "model_kwargs", dict(self.model_kwargs))
        problems = []
        if not isinstance(self.loss, LossFactory):
            problems.append(f"loss must be a LossFactory (e.g. training.losses.segmentation.CE), "
                            f"got {self.loss!r}")
        if not targets or targets[0] not in ("label", "label_fine"):
            problems.append(f"targets must start with 'label' or 'label_fine', got {targets}")
        if any(t not in TARGETS for t in targets):
            problems.append(f"targets must be among {TARGETS}, got {targets}")
        if "image_fine" in targets and targets[0] != "label_fine":
            problems.append("an 'image_fine' target needs 'label_fine' (the same fine grid)")
        if self.crop_size is not None and self.crop_size < 8:
            problems.append(f"crop_size must be >= 8 or None, got {self.crop_size}")
        if self.filter_noisy is not None and not 0.0 < self.filter_noisy < 1.0:
            problems.append(f"filter_noisy must be in (0, 1) or None, got {self.filter_noisy}")
        if self.norm not in ("training", "scene"):
            problems.append(f"norm must be 'training' or 'scene', got {self.norm!r}")
        if self.small_patches not in ("warn", "refuse"):
            problems.append(f"small_patches must be 'warn' or 'refuse', got "
                            f"{self.small_patches!r}")
        if self.optimizer not in ("adam", "sgd"):
            problems.append(f"optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")
        if min(self.patch_size, self.output_stride, self.batch_size, self.epochs,
               self.patience) < 1 or self.lr <= 0:
            problems.append("patch_size, output_stride, batch_size, epochs and patience must be "
                            ">= 1 and lr > 0")
        if problems:
            raise ConfigError("bad model recipe: " + "; ".join(problems))

    @property
    def label(self) -> str:
        """The label file a training sample is scored against (``label`` or ``label_fine``)."""
        return self.targets[0]

    @property
    def min_patch(self) -> int:
        """``min_patch_size``, or twice the output stride when the recipe does not say."""
        return self.min_patch_size or 2 * self.output_stride

    def loss_settings(self, loss: str | None, loss_kwargs: Mapping[str, Any] | None
                      ) -> tuple[str, dict[str, Any]]:
        """The loss a run uses, by name: the recipe's (its kwargs under given ones) or the given.

        Names, not factories, because the run's configuration (YAML files, checkpoints, model
        files) records them. Naming a different loss drops the recipe's loss arguments (they
        belong to its loss).
        """
        given = dict(loss_kwargs or {})
        if loss is None or loss == self.loss.name:
            return self.loss.name, {**self.loss_kwargs, **given}
        return loss, given


DEFAULT_RECIPE = ModelRecipe()

Builder = Callable[..., nn.Module]  # build(in_channels, num_classes, **kw) -> nn.Module


@dataclass(frozen=True)
class ModelEntry:
    """One model of a module's ``MODELS`` table: how to build it and how its paper trains it.

    Attributes:
        build: ``build(in_channels, num_classes, **kw) -> nn.Module``.
        recipe: how the model's paper trains it (loss, targets, patch size, optimiser...);
            ``DEFAULT_RECIPE`` (cross-entropy, Adam 1e-4, 128 px) when omitted.
        upsamples: ``build`` takes ``scale=k`` and returns logits ``k`` times finer than its
            input (super-resolution models). The trainer passes the dataset's fine scale to
            these when training on ``label_fine``, and refuses ``label_fine`` for the others.
        reads_product: ``build`` takes ``product_scheme=<source>`` and expands an input band
            named ``product`` itself (:mod:`training.models.product`); the trainer passes
            the dataset's land-cover source to these, and refuses the band for the others.
        retired: empty for a model ``isamap-train`` offers; else why it left the recipes
            and what to train instead. A retired model's files still rebuild and map
            (its entry stays for them); ``isamap-train`` refuses to start it.
    """

    build: Builder
    recipe: ModelRecipe = DEFAULT_RECIPE
    upsamples: bool = False
    reads_product: bool = False
    retired: str = ""

    def __post_init__(self) -> None:
        if not callable(self.build):
            raise ModelError(f"a model entry's build must be callable, got {self.build!r}")
        if (self.recipe.label == "label_fine") != bool(self.upsamples):
            raise ModelError("a model entry whose recipe trains on 'label_fine' needs "
                             "upsamples=True, and an upsampling model a 'label_fine' recipe")
        if self.recipe.product_input and not self.reads_product:
            raise ModelError("a model entry whose recipe reads the product band needs "
                             "reads_product=True")


def exported_models(module: ModuleType) -> Mapping[str, ModelEntry]:
    """The ``MODELS`` table a model module exports, checked: names to :class:`ModelEntry`."""
    table = getattr(module, "MODELS", None)
    if not isinstance(table, Mapping):
        raise ModelError(f"module {module.__name__!r} exports no MODELS table; a model module "
                         "defines MODELS = {'name': ModelEntry(build, recipe=...)}")
    for name, entry in table.items():
        if not isinstance(name, str) or not isinstance(entry, ModelEntry):
            raise ModelError(f"module {module.__name__!r}: MODELS must map names to "
                             f"ModelEntry values, got {name!r}: {entry!r}")
    return table


def outside_entry(name: str, module: str) -> ModelEntry:
    """Model ``name`` from the ``MODELS`` table of ``module``, which is imported for it.

    This is how a model defined outside :mod:`training.models` is built, and how a model file
    that records its defining module (``ModelMeta.module``) is rebuilt.
    """
    try:
        imported = importlib.import_module(module)
    except ImportError as exc:
        raise ModelError(f"cannot import {module!r}, which defines model {name!r}: {exc}") \
            from None
    table = exported_models(imported)
    if name not in table:
        raise ModelError(f"module {module!r} defines no model {name!r} in its MODELS table "
                         f"(it defines {', '.join(sorted(table)) or 'none'})")
    return table[name]


@dataclass(frozen=True)
class ModelRegistry:
    """Model names -> entries, merged from model modules' tables; read-only.

    Build it with :meth:`merge`. ``modules`` records the module whose table holds each name:
    model files record it, and :func:`outside_entry` finds the name there again.
    """

    entries: Mapping[str, ModelEntry]
    modules: Mapping[str, str]

    def __post_init__(self) -> None:
        object.__setattr__(self, "entries", MappingProxyType(dict(self.entries)))
        object.__setattr__(self, "modules", MappingProxyType(dict(self.modules)))
        if set(self.entries) != set(self.modules):
            raise ModelError("every registered model needs its defining module, and only those")

    @classmethod
    def merge(cls, *modules: ModuleType) -> ModelRegistry:
        """The registry of every model in the modules' ``MODELS`` tables.

        A name in two tables is refused: which model a name builds must not depend on the
        order of the merge.
        """
        entries: dict[str, ModelEntry] = {}
        owners: dict[str, str] = {}
        for module in modules:
            for name, entry in exported_models(module).items():
                if name in entries:
                    raise ModelError(f"model name {name!r} is defined twice, by "
                                     f"{owners[name]} and by {module.__name__}")
                entries[name], owners[name] = entry, module.__name__
        return cls(entries, owners)

    def names(self) -> tuple[str, ...]:
        """Every registered model name, sorted (retired ones too: their files rebuild)."""
        return tuple(sorted(self.entries))

    def trainable(self) -> tuple[str, ...]:
        """The registered model names ``isamap-train`` offers (not retired), sorted."""
        return tuple(name for name in self.names() if not self.entries[name].retired)

    def unknown(self, name: str) -> ModelError:
        """The error for a name outside the registry: it lists the models one can train.

        A retired name is registered (its files still rebuild and map), so it never gets
        this error, and the error does not offer it.
        """
        close = difflib.get_close_matches(name, self.trainable(), n=1, cutoff=0.6)
        return ModelError(f"unknown model {name!r}; " + (f"did you mean {close[0]!r}? " if close
                                                          else "") +
                          f"available: {', '.join(self.trainable())}")

    def entry(self, name: str, module: str | None = None) -> ModelEntry:
        """The entry of model ``name``: registered here, or in ``module``'s table if given."""
        if module:
            return outside_entry(name, module)
        if name not in self.entries:
            raise self.unknown(name)
        return self.entries[name]

    def create(self, name: str, in_channels: int, num_classes: int = 2,
               module: str | None = None, **kw) -> nn.Module:
        """Build model ``name`` (see ``training.models.create_model``)."""
        entry = self.entry(name, module)
        if int(in_channels) < 1 or int(num_classes) < 2:
            raise ModelError(f"need in_channels >= 1 and num_classes >= 2, got {in_channels}, "
                             f"{num_classes}")
        try:
            return entry.build(int(in_channels), int(num_classes), **kw)
        except TypeError as exc:
            raise ModelError(f"bad arguments for model {name!r}: {exc}") from None

    def recipe(self, name: str, module: str | None = None) -> ModelRecipe:
        """The recipe of model ``name`` (from ``module``'s table if given)."""
        return self.entry(name, module).recipe

    def upsamples(self, name: str) -> bool:
        """Whether registered model ``name`` predicts ``k`` times finer than its input.

        False for a name outside the registry, so the trainer's checks on the label reach
        the "unknown model" error of :meth:`create` instead of failing here first.
        """
        return name in self.entries and self.entries[name].upsamples

    def reads_product(self, name: str) -> bool:
        """Whether registered model ``name`` can read the ``product`` band (False outside)."""
        return name in self.entries and self.entries[name].reads_product

    def module_of(self, name: str) -> str:
        """The module whose ``MODELS`` table defines registered model ``name``."""
        if name not in self.modules:
            raise self.unknown(name)
        return self.modules[name]

    def context_warning(self, name: str, patch_size: int, model: nn.Module | None = None
                        ) -> str | None:
        """One line saying why ``patch_size`` px patches starve the model's context, or None.

        With a built ``model``, its own ``context_problem(patch_size)`` decides (it knows its output
        stride and context modules as built); without one, the recipe's ``min_patch_size``.
        The line ends with what to do: export larger patches (the paper's size).
        """
        recipe = self.recipe(name)
        problem: str | None
        context_problem = getattr(model, "context_problem", None)
        if model is not None and context_problem is not None:
            problem = context_problem(int(patch_size))
            need = int(getattr(model, "min_input_size", recipe.min_patch))
        elif model is not None:
            stride = int(getattr(model, "stride", recipe.output_stride))
            need = 2 * stride
            problem = (f"its deepest 3x3 convolutions see a {patch_size // stride}x"
                       f"{patch_size // stride} map and act as 1x1 convolutions"
                       if patch_size < need else None)
        else:
            need = recipe.min_patch
            problem = (f"its context modules see too small a map (it needs {need} px)"
                       if patch_size < need else None)
        if problem is None:
            return None
        return (f"model {name!r} on {patch_size} px patches: {problem}; export patches of at "
                f"least {need} px (isamap-export --patch-size {max(recipe.patch_size, need)}; its "
                f"recipe trains on {recipe.patch_size} px)")
