"""What a loss table holds: a named, frozen way to build one loss, and class weights by name.

Every loss module of this package exports its factories as a plain table ``LOSSES = {name:
LossFactory}``; :mod:`training.losses` merges the tables with :func:`merge_losses`. A factory is
a value (a name and a builder), so a model recipe names its loss by holding the factory itself
(``ModelRecipe(loss=DICE_FOCAL)``) while configs, checkpoints and model files record its name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from torch import nn

from contract.bands import LABEL_NODATA
from core.errors import ConfigError


@dataclass(frozen=True)
class LossFactory:
    """One loss by name: ``build(ignore_index=..., **loss_kwargs) -> nn.Module``.

    Attributes:
        name: the name ``build_loss``, ``TrainConfig.loss``, checkpoints and model files use.
        build: the loss module's constructor (or a function checking its arguments first);
            it takes ``ignore_index`` and the loss's own keyword arguments.
    """

    name: str
    build: Callable[..., nn.Module] = field(repr=False)

    def make(self, ignore_index: int = LABEL_NODATA, class_names: Sequence[str] | None = None,
             **kw) -> nn.Module:
        """The loss with ``kw``; class weights given by name are resolved with ``class_names``.

        Arguments the loss does not take are refused as a ``ConfigError`` naming the loss, so
        a mistyped ``--loss-kwargs`` reads as a configuration error rather than a traceback.
        """
        if kw.get("class_weights") is not None:
            kw["class_weights"] = resolve_class_weights(kw["class_weights"], class_names)
        try:
            return self.build(ignore_index=ignore_index, **kw)
        except TypeError as exc:
            raise ConfigError(f"bad arguments for loss {self.name!r}: {exc}") from None


def merge_losses(*tables: Mapping[str, LossFactory]) -> Mapping[str, LossFactory]:
    """One read-only table from the modules' ``LOSSES`` tables; a name defined twice is refused.

    Each key must be its factory's own name: the name a run records is the one it is built
    back from.
    """
    merged: dict[str, LossFactory] = {}
    for table in tables:
        for name, factory in table.items():
            if not isinstance(factory, LossFactory) or factory.name != name:
                raise ConfigError(f"loss table entry {name!r} must be a LossFactory named "
                                  f"{name!r}, got {factory!r}")
            if name in merged:
                raise ConfigError(f"loss name {name!r} is defined twice")
            merged[name] = factory
    return MappingProxyType(merged)


def resolve_class_weights(weights: Sequence[float] | Mapping[str, float],
                          class_names: Sequence[str] | None) -> list[float]:
    """Per-class weights from a list (one per class) or ``{class name: weight}`` (others 1).

    Weights by name let a recipe say "impervious counts 3 times" without knowing the class
    order of the dataset it will meet.
    """
    if not isinstance(weights, Mapping):
        return [float(w) for w in weights]
    if not class_names:
        raise ConfigError("class weights given by name need the dataset's class names")
    unknown = sorted(set(weights) - set(class_names))
    if unknown:
        raise ConfigError(f"class weights name classes {unknown} that the dataset does not have "
                          f"(it has {list(class_names)})")
    return [float(weights.get(name, 1.0)) for name in class_names]
