"""The land-cover experiment's arms: which networks it trains and how each decides.

Apart from :mod:`experiments.landcover` (the folds, training runs and command) so that each
stays small; that module re-exports every name here. docs/evidence/landcover.md has the arms table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from experiments.landcover_scenes import SOFT
from experiments.landcover_train import TRUTH
from inference.predict.postprocess import KEEP_WINDOW

__all__ = ["CEILING", "DEFAULT_ARM", "INPUT", "KEEP", "NAIP_WINDOW", "PAPER", "SETTINGS", "SHARES",
           "SR", "Arm", "Setting", "with_windows"]


@dataclass(frozen=True)
class Arm:
    """One trained model of a setting.

    Attributes:
        name: the arm's name in the tables.
        label: a product's name, :data:`TRUTH`, or a scene's soft labels (:data:`SOFT`).
        stem_norm: ``instance`` or ``batch``.
        filtered: the noisy-sample filter, decided by the setting's preliminary model.
        weights: ``recipe`` (impervious x3) or ``balanced`` (median frequency of the labels).
        product_input: the network also reads the product (``Scene.product_input``).
        share_rule: soft-labelled pixels are impervious by the share their labels expect
            (``landcover_train.share_decision``), not by the argmax; the same model as the
            arm without the rule.
        keep_rule: the product's impervious pixels stay impervious unless green, and its
            classes the training labels lack stay as the product has them
            (``landcover_keep.keep_decision``); the same model as the arm without the rule.
        window: with the keep rule, every other pixel takes the class of the model's
            probabilities given the product's class shares per ``window`` px window
            (:mod:`inference.predict.keep.shares`); 0: the argmax.
    """

    name: str
    label: str
    stem_norm: str
    filtered: bool = False
    weights: str = "recipe"
    product_input: bool = False
    share_rule: bool = False
    keep_rule: bool = False
    window: int = 0


@dataclass(frozen=True)
class Setting:
    """A data set, its products and arms; ``headline`` is (the default arm, its product)."""

    products: tuple[str, ...]
    arms: tuple[Arm, ...]
    headline: tuple[str, str]
    paper: str  # the paper's method


SR = "hrnet IN + filter + class weights + label SR"
INPUT = "hrnet IN + filter + NLCD input"
#: the same network on the 1 m reference of the training pixels: not a method (a user has no
#: such labels) but the ceiling of the imagery, network and budget, which tells a target the
#: labels miss from one the budget misses
CEILING = "hrnet IN, true labels"
#: the decision that keeps the product's impervious class (``experiments.landcover_keep``)
KEEP = "product's impervious unless green"


def shares(window: int) -> str:
    """An arm's name for the decision that gives each window the product's class shares.

    The decision is :mod:`inference.predict.keep.shares` with ``window`` px windows.
    """
    return f"product's shares per {window} px window"


SHARES = shares(KEEP_WINDOW)
#: the ``naip`` setting's shares window: two cells of its synthetic products (10 px each by
#: default), as 64 px is about two NLCD cells on the ``nlcd`` tile
NAIP_WINDOW = 20
#: the land-cover paper's method: the product as the only label, an IN stem, the filter
PAPER = "hrnet IN + filter"
#: the ``nlcd`` setting's default arm: the paper's method plus the keep rule with the
#: product's shares per window, the arm at least NLCD's overall accuracy and impervious F1 on
#: the held-out pixels of both splits (means over seeds; docs/evidence/landcover.md)
DEFAULT_ARM = f"{PAPER}, {KEEP}, {SHARES}"
SETTINGS: dict[str, Setting] = {
    "nlcd": Setting(("NLCD",), (
        Arm("hrnet IN", "NLCD", "instance"),
        Arm(PAPER, "NLCD", "instance", filtered=True),
        Arm(f"{PAPER}, {KEEP}", "NLCD", "instance", filtered=True, keep_rule=True),
        Arm(DEFAULT_ARM, "NLCD", "instance", filtered=True, keep_rule=True,
            window=KEEP_WINDOW),
        Arm(SR, SOFT, "instance", True, "balanced"),
        Arm(f"{SR}, impervious by share", SOFT, "instance", True, "balanced", share_rule=True),
        Arm(INPUT, "NLCD", "instance", True, product_input=True),
        Arm(f"{INPUT}, {KEEP}", "NLCD", "instance", True, product_input=True, keep_rule=True),
        Arm(f"{INPUT} + label SR", SOFT, "instance", True, product_input=True),
        Arm(f"{INPUT} + label SR, impervious by share", SOFT, "instance", True,
            product_input=True, share_rule=True),
        Arm(CEILING, TRUTH, "instance"),
        Arm(f"{CEILING}, class weights", TRUTH, "instance", weights="balanced"),
    ), (DEFAULT_ARM, "NLCD"), PAPER),
    "naip": Setting(("confusion product", "mode product"), (
        Arm("hrnet BN, confusion product", "confusion product", "batch"),
        Arm("hrnet BN + filter, confusion product", "confusion product", "batch",
            filtered=True),
        Arm("hrnet BN, mode product", "mode product", "batch"),
        Arm("hrnet BN, true labels", TRUTH, "batch"),
        Arm(f"hrnet BN + filter, confusion product, {KEEP}, {shares(NAIP_WINDOW)}",
            "confusion product", "batch", filtered=True, keep_rule=True, window=NAIP_WINDOW),
        Arm(f"hrnet BN, mode product, {KEEP}, {shares(NAIP_WINDOW)}", "mode product", "batch",
            keep_rule=True, window=NAIP_WINDOW),
    ), ("hrnet BN + filter, confusion product", "confusion product"),
        "hrnet BN + filter, confusion product"),
}


def with_windows(spec: Setting, windows: Sequence[int]) -> Setting:
    """``spec`` with its default arm's decision at more shares windows, right after it.

    Each added arm is the default arm with another ``window`` (named by :func:`shares`): the
    same model decided differently, so it costs no training. They measure how much the
    default arm's figures depend on the window it was given. A window equal to the default
    arm's adds nothing; a setting whose default arm has no window is returned unchanged.
    """
    default = next(a for a in spec.arms if a.name == spec.headline[0])
    suffix = shares(default.window)
    if not default.window or not default.name.endswith(suffix):
        return spec
    stem = default.name.removesuffix(suffix)
    extra = tuple(replace(default, name=stem + shares(w), window=w)
                  for w in sorted(set(windows)) if w != default.window)
    at = spec.arms.index(default) + 1
    return replace(spec, arms=spec.arms[:at] + extra + spec.arms[at:])
