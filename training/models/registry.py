"""The model registry: names -> factories ``f(in_channels, num_classes, **kw) -> nn.Module``.

Model modules register themselves at import (``@register_model("name")``); the package
``training.models`` imports every built-in model module, so importing it fills the registry.
Model files record the defining module so ``create_model(..., module=...)`` can import a model
registered outside this package before building it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from torch import nn

from gee_export.core.errors import ModelError

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
_UPSAMPLING: set[str] = set()


def register_model(name: str, *, upsamples: bool = False
                   ) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering a model factory ``f(in_channels, num_classes, **kw) -> nn.Module``.

    Args:
        name: registry name.
        upsamples: the factory takes ``scale=k`` and returns logits ``k`` times finer than its
            input (super-resolution models). The trainer passes the dataset's fine scale to
            these when training on ``label_fine``, and refuses ``label_fine`` for the others.
    """

    def deco(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY and _REGISTRY[name] is not factory:
            raise ModelError(f"model name {name!r} is already registered")
        _REGISTRY[name] = factory
        if upsamples:
            _UPSAMPLING.add(name)
        return factory

    return deco


def upsamples(name: str) -> bool:
    """Whether model ``name`` takes ``scale=k`` and predicts ``k`` times finer than its input."""
    return name in _UPSAMPLING


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
    """
    if module and name not in _REGISTRY:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ModelError(f"cannot import {module!r} which defines model {name!r}: {exc}") \
                from None
    if name not in _REGISTRY:
        raise ModelError(f"unknown model {name!r}; available: {', '.join(available_models())}")
    if int(in_channels) < 1 or int(num_classes) < 2:
        raise ModelError(f"need in_channels >= 1 and num_classes >= 2, got {in_channels}, "
                         f"{num_classes}")
    try:
        return _REGISTRY[name](int(in_channels), int(num_classes), **kw)
    except TypeError as exc:
        raise ModelError(f"bad arguments for model {name!r}: {exc}") from None
