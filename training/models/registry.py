"""The model registry: names -> model factories, each with the training recipe of its paper.

Factories are ``f(in_channels, num_classes, **kw) -> nn.Module``.
Model modules register themselves at import (``@register_model("name", recipe=...)``); the
package ``training.models`` imports every built-in model module, so importing it fills the
registry. Model files record the defining module so ``create_model(..., module=...)`` can import
a model registered outside this package before building it.

A model's loss, the targets it learns from and its optimisation are part of its registration
(:class:`ModelRecipe`), so ``isamap-train --model NAME`` trains every model the way its paper
does without the command line having to know the models: ``training.config.apply_recipe`` fills
every option the user left unset from the recipe, ``training.losses.build_loss`` builds the
recipe's loss, ``PatchDataset`` loads the recipe's targets, and :func:`context_warning` says
when patches are too small for a model's context modules.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from torch import nn

from gee_export.core.errors import ConfigError, ModelError

Optimizer = Literal["adam", "sgd"]
TARGETS = ("label", "label_fine", "image_fine")


@dataclass(frozen=True)
class ModelRecipe:
    """How a model is trained by default: its paper's loss, targets, patches and optimisation.

    Every field is a default: options given to ``isamap-train`` (flags or YAML) win. Fields
    the paper does not give are the project's choice and are listed with their reason in
    docs/training.md ("Recipes").

    Attributes:
        loss: loss name for ``training.losses.build_loss`` (``crofusenet``, ``dice_focal``,
            ``ce``, ``weighted_ce``, ``srseg``).
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
        optimizer: ``adam`` or ``sgd``.
        lr, momentum, weight_decay: optimiser settings (``momentum`` is used by SGD only).
        poly_power: exponent of the per-iteration poly schedule ``(1 - it/max_it)^power``.
        batch_size, epochs, patience: batch, epoch budget and early-stopping patience (epochs
            without a validation-MIoU gain).
        model_kwargs: constructor arguments the recipe sets (e.g. ``{"output_stride": 16}``);
            they are passed explicitly, so model files record them.
        source: where the paper states the recipe (seed file and lines).
    """

    loss: str = "ce"
    loss_kwargs: Mapping[str, Any] = field(default_factory=dict)
    targets: tuple[str, ...] = ("label",)
    patch_size: int = 128
    crop_size: int | None = None
    output_stride: int = 16
    min_patch_size: int | None = None
    optimizer: Optimizer = "adam"
    lr: float = 1e-4
    momentum: float = 0.9
    weight_decay: float = 0.0
    poly_power: float = 0.9
    batch_size: int = 32
    epochs: int = 400
    patience: int = 50
    model_kwargs: Mapping[str, Any] = field(default_factory=dict)
    source: str = ""

    def __post_init__(self) -> None:
        targets = tuple(self.targets)
        object.__setattr__(self, "targets", targets)
        object.__setattr__(self, "loss_kwargs", dict(self.loss_kwargs))
        object.__setattr__(self, "model_kwargs", dict(self.model_kwargs))
        problems = []
        if not targets or targets[0] not in ("label", "label_fine"):
            problems.append(f"targets must start with 'label' or 'label_fine', got {targets}")
        if any(t not in TARGETS for t in targets):
            problems.append(f"targets must be among {TARGETS}, got {targets}")
        if "image_fine" in targets and targets[0] != "label_fine":
            problems.append("an 'image_fine' target needs 'label_fine' (the same fine grid)")
        if self.crop_size is not None and self.crop_size < 8:
            problems.append(f"crop_size must be >= 8 or None, got {self.crop_size}")
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
        """The loss a run uses: the recipe's (its kwargs under the given ones), or the given one.

        Naming a different loss drops the recipe's loss arguments (they belong to its loss).
        """
        given = dict(loss_kwargs or {})
        if loss is None or loss == self.loss:
            return self.loss, {**self.loss_kwargs, **given}
        return loss, given


DEFAULT_RECIPE = ModelRecipe()

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
_UPSAMPLING: set[str] = set()
_RECIPES: dict[str, ModelRecipe] = {}


def register_model(name: str, *, upsamples: bool = False, recipe: ModelRecipe | None = None
                   ) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering a model factory ``f(in_channels, num_classes, **kw) -> nn.Module``.

    Args:
        name: registry name.
        upsamples: the factory takes ``scale=k`` and returns logits ``k`` times finer than its
            input (super-resolution models). The trainer passes the dataset's fine scale to
            these when training on ``label_fine``, and refuses ``label_fine`` for the others.
        recipe: how the model's paper trains it (loss, targets, patch size, optimiser...);
            ``DEFAULT_RECIPE`` (cross-entropy, Adam 1e-4, 128 px) when omitted.
    """
    recipe = recipe or DEFAULT_RECIPE
    if (recipe.label == "label_fine") != upsamples:
        raise ModelError(f"model {name!r}: a recipe on 'label_fine' needs upsamples=True and "
                         "an upsampling model needs a 'label_fine' recipe")

    def deco(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY and _REGISTRY[name] is not factory:
            raise ModelError(f"model name {name!r} is already registered")
        _REGISTRY[name] = factory
        _RECIPES[name] = recipe
        if upsamples:
            _UPSAMPLING.add(name)
        return factory

    return deco


def _ensure(name: str, module: str | None = None) -> None:
    """Import ``module`` (or the built-in models) so that ``name`` is registered, or fail."""
    if name not in _REGISTRY:
        try:
            importlib.import_module(module or "training.models")
        except ImportError as exc:
            raise ModelError(f"cannot import {module!r} which defines model {name!r}: {exc}") \
                from None
    if name not in _REGISTRY:
        raise ModelError(f"unknown model {name!r}; available: {', '.join(available_models())}")


def upsamples(name: str) -> bool:
    """Whether model ``name`` takes ``scale=k`` and predicts ``k`` times finer than its input."""
    return name in _UPSAMPLING


def recipe_for(name: str, module: str | None = None) -> ModelRecipe:
    """The registered recipe of model ``name`` (importing ``module`` first if given)."""
    _ensure(name, module)
    return _RECIPES[name]


def available_models() -> tuple[str, ...]:
    return tuple(sorted(_REGISTRY))


def model_module(name: str) -> str:
    """The module that defines a registered model (recorded in model files)."""
    return getattr(_REGISTRY[name], "__module__", __name__)


def create_model(name: str, in_channels: int, num_classes: int = 2, module: str | None = None,
                 **kw) -> nn.Module:
    """Build a registered model.

    Args:
        name: registry name (``available_models()``).
        in_channels: number of input bands (``len(manifest["bands"])``).
        num_classes: output classes.
        module: import this module first (a model registered outside ``training.models``).
        **kw: model keyword arguments, e.g. ``bands=[...]`` (needed by the modality models).
            The recipe's ``model_kwargs`` are NOT added here (``create_model`` builds what it
            is asked for, which is how model files are rebuilt); the trainer adds them.
    """
    if module and name not in _REGISTRY:
        _ensure(name, module)
    if name not in _REGISTRY:
        raise ModelError(f"unknown model {name!r}; available: {', '.join(available_models())}")
    if int(in_channels) < 1 or int(num_classes) < 2:
        raise ModelError(f"need in_channels >= 1 and num_classes >= 2, got {in_channels}, "
                         f"{num_classes}")
    try:
        return _REGISTRY[name](int(in_channels), int(num_classes), **kw)
    except TypeError as exc:
        raise ModelError(f"bad arguments for model {name!r}: {exc}") from None


def context_warning(name: str, patch_size: int, model: nn.Module | None = None) -> str | None:
    """One line saying why ``patch_size`` px patches starve the model's context, or None.

    With a built ``model``, its own ``context_problem(patch_size)`` decides (it knows its output
    stride and context modules as built); without one, the recipe's ``min_patch_size``.
    The line ends with what to do: export larger patches (the paper's size).
    """
    recipe = recipe_for(name)
    problem: str | None
    if model is not None and hasattr(model, "context_problem"):
        problem = model.context_problem(int(patch_size))
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
