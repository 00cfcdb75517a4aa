"""The papers' losses by name: ``build_loss(name, ignore_index=255, class_names=None, **kw)``.

Each loss module exports its factories as a plain table ``LOSSES = {name: LossFactory}``
(:mod:`~training.losses.segmentation`: ``ce``, ``weighted_ce``, ``crofusenet``, ``dice_focal``;
:mod:`~training.losses.srseg`: ``srseg``; :mod:`~training.losses.composition`:
``composition``, label super-resolution); this package merges them here, explicitly, into one
read-only table, refusing a name defined twice. Importing this package therefore gives every
loss, whatever was imported before. A loss added to the project is a factory in a module's
table, and that module is merged below.

Which loss a model trains with is part of its recipe (``training.models.registry.ModelRecipe``
holds the factory itself); ``training.models.model_loss`` builds a model's loss with its
recipe's arguments. Every loss honours the nodata label (``ignore_index``, 255 by default).

May import: ``core``, ``contract``, :mod:`engine`, torch; never
``training.models`` or anything above (the models name their losses, not the reverse).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import nn

from contract.bands import LABEL_NODATA
from core.errors import ConfigError
from training.losses import composition, segmentation, srseg
from training.losses.factory import LossFactory, merge_losses

LOSSES: Mapping[str, LossFactory] = merge_losses(segmentation.LOSSES, srseg.LOSSES,
                                                 composition.LOSSES)


def available_losses() -> tuple[str, ...]:
    """Every loss name ``build_loss`` knows, sorted."""
    return tuple(sorted(LOSSES))


def build_loss(name: str, ignore_index: int = LABEL_NODATA,
               class_names: Sequence[str] | None = None, **kw) -> nn.Module:
    """The loss called ``name`` (``available_losses()``) with its arguments ``kw``.

    Args:
        name: ``ce``, ``weighted_ce``, ``crofusenet``, ``dice_focal``, ``srseg`` or
            ``composition``: the name
            ``TrainConfig.loss`` and model files record.
        ignore_index: the label value that contributes nothing (nodata).
        class_names: the dataset's class names, to resolve class weights given by name.
        **kw: the loss's arguments (``TrainConfig.loss_kwargs``).
    """
    if name not in LOSSES:
        raise ConfigError(f"unknown loss {name!r}; choose {', '.join(available_losses())}")
    return LOSSES[name].make(ignore_index, class_names, **kw)


__all__ = ["LOSSES", "LossFactory", "available_losses", "build_loss"]
