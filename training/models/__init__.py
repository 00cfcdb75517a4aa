"""The papers' networks by name: ``create_model(name, in_channels, num_classes)``, with recipes.

Every model takes one ``(N, C, H, W)`` tensor in the dataset manifest's band order and returns
logits ``(N, K, H*s, W*s)`` (``s`` the output scale) or a dict whose ``"out"`` entry is that
tensor.

Each model module exports its models as a plain table, ``MODELS = {"name": ModelEntry(build,
recipe=RECIPE)}``, and this package merges the built-in tables below, explicitly, into one
immutable :class:`~training.models.registry.ModelRegistry` (:data:`REGISTRY`, whose entries are
the package's own ``MODELS`` table), refusing a name defined twice. A built-in model is added
by exporting it from a module's table and, for a new module, naming that module in the merge.
A model defined outside the package stays in its own module's ``MODELS`` table and is reached
with ``module="package.module"`` (:func:`create_model`, :func:`recipe_for`), which is what a
model file records (``ModelMeta.module``) so that it can be rebuilt.

May import: ``core``, ``contract``, :mod:`engine`,
:mod:`training.losses`, torch; nothing else of ``training`` (data, trainer, model files, pruning
and the srseg experiment code sit above the models).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import nn

from contract.bands import LABEL_NODATA
from core.errors import ConfigError
from training.models import crofusenet, hrnet, runetpp, srseg, unet
from training.models.members import join
from training.models.registry import ModelEntry, ModelRecipe, ModelRegistry

#: Every built-in model, merged from the model modules' ``MODELS`` tables.
REGISTRY: ModelRegistry = ModelRegistry.merge(unet, crofusenet, runetpp, hrnet, srseg)
#: The package's own table, every built-in model: model files that record the package rather
#: than the model's module (``module="training.models"``) find their model here.
MODELS: Mapping[str, ModelEntry] = REGISTRY.entries


def create_model(name: str, in_channels: int, num_classes: int = 2, module: str | None = None,
                 **kw) -> nn.Module:
    """Build a model by name.

    Args:
        name: a built-in model (``available_models()``), or one in ``module``'s table.
        in_channels: number of input bands (``len(manifest["bands"])``).
        num_classes: output classes.
        module: the module whose ``MODELS`` table defines ``name`` (a model defined outside
            ``training.models``); it is imported and the name looked up in its table.
        **kw: model keyword arguments, e.g. ``bands=[...]`` (needed by the modality models).
            The recipe's ``model_kwargs`` are NOT added here (``create_model`` builds what it
            is asked for, which is how model files are rebuilt); the trainer adds them.
            ``members=K`` builds K such networks joined in a
            :class:`~training.models.members.MemberMean` (a file of ``isamap-train
            --members K``).
    """
    return join(lambda c, k, **rest: REGISTRY.create(name, c, k, module, **rest),
                in_channels, num_classes, **kw)


def recipe_for(name: str, module: str | None = None) -> ModelRecipe:
    """The recipe of model ``name`` (from ``module``'s ``MODELS`` table if given)."""
    return REGISTRY.recipe(name, module)


def available_models() -> tuple[str, ...]:
    """Every built-in model name, sorted."""
    return REGISTRY.names()


def check_trainable(name: str) -> None:
    """Refuse, in one line, to start training a retired built-in model.

    Raises:
        ConfigError: ``name`` is retired (``ModelEntry.retired`` says why and what instead).
    """
    entry = REGISTRY.entries.get(name)
    if entry is not None and entry.retired:
        raise ConfigError(f"--model {name} is retired: {entry.retired}")


def upsamples(name: str) -> bool:
    """Whether model ``name`` takes ``scale=k`` and predicts ``k`` times finer than its input."""
    return REGISTRY.upsamples(name)


def reads_product(name: str) -> bool:
    """Whether model ``name`` expands an input band named ``product`` itself."""
    return REGISTRY.reads_product(name)


def model_module(name: str) -> str:
    """The module whose ``MODELS`` table defines built-in model ``name`` (model files record it)."""
    return REGISTRY.module_of(name)


def context_warning(name: str, patch_size: int, model: nn.Module | None = None) -> str | None:
    """One line saying why ``patch_size`` px patches starve the model's context, or None.

    See :meth:`~training.models.registry.ModelRegistry.context_warning`.
    """
    return REGISTRY.context_warning(name, patch_size, model)


def model_loss(model_name: str, class_names: Sequence[str] | None = None) -> nn.Module:
    """The loss of a model's recipe with the recipe's arguments: what ``isamap-train`` uses.

    It lives with the models, not the losses, because it reads the model registry; the
    losses know nothing of the models that name them.
    """
    recipe = recipe_for(model_name)
    return recipe.loss.make(LABEL_NODATA, class_names, **recipe.loss_kwargs)


__all__ = ["MODELS", "REGISTRY", "ModelEntry", "ModelRecipe", "ModelRegistry", "available_models",
           "check_trainable", "context_warning", "create_model", "model_loss", "model_module",
           "reads_product", "recipe_for", "upsamples"]
