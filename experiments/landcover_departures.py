"""What a land-cover map adds to the product it learnt from: where it departs, and whether right.

A map trained on a coarse product, and decided with rules that read it, gives the product's
class on most pixels. Its accuracy beside the product's says little about the network: the
figures that do are on the pixels where the map departs from the product. Per map and seed,
on the pooled held-out pixels (:func:`departures`):

- ``equal``: the share of pixels where the map gives the product's class;
- ``right`` / ``product_right``: on the departures, the share where the map's class is the
  reference's, and the share where the product's is (the two cannot both be right);
- ``rule_*`` and ``network_*``: the same on the departures inside the product's impervious
  class (where the keep rule decides: the product's impervious pixels unless green) and on
  the others (where the network, or the shares it is given, decides); ``*_pixels`` counts
  them;
- per class the map departs into (``classes``): how many pixels, and how often right;
- impervious ground the product misses: the pixels the map calls impervious outside the
  product's impervious class (``added``), the share of them that are impervious
  (``added_precision``, beside the product's own impervious precision), and the share of the
  impervious pixels outside the product's class that they find (``recall_beyond``).

:func:`summarise` gives mean and sample std over seeds; :func:`rule_alone` scores the keep
rule without any network (the product's impervious pixels that are not green), the part of
the impervious figures a map owes to the rule. Pure functions of class arrays.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from contract.label_schemes import LANDCOVER_CLASSES

IMPERVIOUS = LANDCOVER_CLASSES.index("impervious")
DIGITS = 4


def _share(part: np.ndarray, of: np.ndarray) -> float:
    """``part``'s share of ``of`` (boolean masks); NaN where ``of`` is empty."""
    n = int(of.sum())
    return float((part & of).sum() / n) if n else math.nan


def departures(mapped: np.ndarray, product: np.ndarray, truth: np.ndarray,
               impervious: int = IMPERVIOUS) -> dict:
    """One seed's map against its product and the reference, on the same pooled pixels.

    Args:
        mapped: the map's class indices (1-D).
        product: the product's on the same pixels.
        truth: the reference's on the same pixels.
        impervious: the impervious class.
    """
    mapped, product, truth = (np.asarray(a).ravel() for a in (mapped, product, truth))
    away = mapped != product
    right, product_right = mapped == truth, product == truth
    inside = product == impervious
    out: dict = {"pixels": int(mapped.size), "equal": float((~away).mean()),
                 "right": _share(right, away), "product_right": _share(product_right, away)}
    for name, where in (("rule", away & inside), ("network", away & ~inside)):
        out[f"{name}_pixels"] = int(where.sum())
        out[f"{name}_right"] = _share(right, where)
        out[f"{name}_product_right"] = _share(product_right, where)
    out["classes"] = {}
    for k in np.unique(mapped[away]).tolist():
        into = away & (mapped == k)
        out["classes"][LANDCOVER_CLASSES[k]] = {
            "pixels": int(into.sum()), "right": _share(right, into),
            "product_right": _share(product_right, into)}
    is_imp, true_imp = mapped == impervious, truth == impervious
    added, missed = is_imp & ~inside, true_imp & ~inside
    out.update(added=int(added.sum()), added_precision=_share(true_imp, added),
               recall_beyond=_share(added, missed), missed_by_product=int(missed.sum()),
               product_precision=_share(true_imp, inside))
    return out


def _stats(values: Sequence[float]) -> list[float]:
    """``[mean, sample std]`` of the defined values (NaN where none), rounded."""
    v = np.array([x for x in values if x is not None and math.isfinite(x)], float)
    if not v.size:
        return [math.nan, math.nan]
    std = float(v.std(ddof=1)) if v.size > 1 else 0.0
    return [round(float(v.mean()), DIGITS), round(std, DIGITS)]


SCALARS = ("equal", "right", "product_right", "rule_pixels", "rule_right",
           "rule_product_right", "network_pixels", "network_right", "network_product_right",
           "added", "added_precision", "recall_beyond", "missed_by_product", "product_precision")


def summarise(records: Sequence[Mapping]) -> dict:
    """Every figure of :func:`departures` as ``[mean, std]`` over the seeds' ``records``.

    A class the map departs into in some seeds only counts 0 pixels (and no share) in the
    others.
    """
    out: dict = {k: _stats([r[k] for r in records]) for k in SCALARS}
    names = sorted({c for r in records for c in r["classes"]}, key=LANDCOVER_CLASSES.index)
    out["classes"] = {c: {"pixels": _stats([r["classes"].get(c, {}).get("pixels", 0)
                                            for r in records]),
                          **{k: _stats([r["classes"].get(c, {}).get(k, math.nan)
                                        for r in records])
                             for k in ("right", "product_right")}} for c in names}
    return out


def rule_alone(product: np.ndarray, truth: np.ndarray, green: np.ndarray,
               impervious: int = IMPERVIOUS) -> dict:
    """The keep rule without a network: the product's impervious pixels that are not green.

    Impervious precision, recall and F1 of the product and of the rule on the same pooled
    pixels; ``green`` marks the pixels at or above the green cut.
    """
    product, truth, green = (np.asarray(a).ravel() for a in (product, truth, green))
    true_imp = truth == impervious
    out = {}
    for name, mapped in (("product", product == impervious),
                         ("rule", (product == impervious) & ~green)):
        p, r = _share(true_imp, mapped), _share(mapped, true_imp)
        f1 = 2 * p * r / (p + r) if p + r > 0 else (0.0 if math.isfinite(p + r) else math.nan)
        out[name] = {"pixels": int(mapped.sum()), "precision": p, "recall": r, "f1": f1}
    return out


def _pct(value: float) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{100 * value:.1f}"


def _cell(pair: Sequence[float]) -> str:
    """``mean ± std`` in % (``n/a`` undefined; the std left out where every seed agrees)."""
    mean, std = pair
    if mean is None or not math.isfinite(mean):
        return "n/a"
    return f"{100 * mean:.1f}" + (f" ± {100 * std:.1f}" if std else "")


def _count(pair: Sequence[float]) -> str:
    mean, std = pair
    return f"{mean:,.0f}" + (f" ± {std:,.0f}" if std else "")


def departure_table(summary: Mapping[str, Mapping], product: str) -> list[str]:
    """Markdown: per map, its share equal to ``product`` and its departures scored.

    ``summary`` maps a map's name to :func:`summarise`'s figures.
    """
    lines = [f"Where each map departs from {product}, %, mean ± std over seeds: the share of "
             f"held-out pixels equal to {product}; on the departures, the share where the map "
             f"is right and where {product} is; the departures inside {product}'s impervious "
             f"class (decided by the keep rule in the arms that have it) and elsewhere (decided "
             f"by the network), in pixels and right / {product} right; impervious pixels the "
             f"map adds outside {product}'s impervious class, their precision and the share of the "
             f"impervious pixels outside that class they find (recall beyond {product})", "",
             f"| map | equal to {product} | departures right | {product} right there | "
             f"rule departures (px) | right / {product} right | network departures (px) | right / "
             f"{product} right | impervious added (px) | added precision | recall beyond |",
             "|" + "---|" * 11]
    for name, s in summary.items():
        lines.append(" | ".join([
            f"| {name}", _cell(s["equal"]), _cell(s["right"]), _cell(s["product_right"]),
            _count(s["rule_pixels"]),
            f"{_cell(s['rule_right'])} / {_cell(s['rule_product_right'])}",
            _count(s["network_pixels"]),
            f"{_cell(s['network_right'])} / {_cell(s['network_product_right'])}",
            _count(s["added"]), _cell(s["added_precision"]), _cell(s["recall_beyond"])]) + " |")
    return lines


def class_departure_table(summary: Mapping[str, Mapping], product: str) -> list[str]:
    """Markdown: per map and class it departs into, the pixels and how often right."""
    lines = [f"The departures from {product} per class the map gives them (pixels, mean over "
             f"seeds; % right, and % where {product}'s class is right instead)", "",
             f"| map | class | pixels | right | {product} right |", "|---|---|---|---|---|"]
    for name, s in summary.items():
        for c, v in s["classes"].items():
            lines.append(f"| {name} | {c} | {_count([v['pixels'][0], 0])} | "
                         f"{_cell(v['right'])} | {_cell(v['product_right'])} |")
    return lines


def rule_table(rule: Mapping[str, Mapping], product: str) -> list[str]:
    """Markdown: impervious precision, recall, F1 of the product and of the rule alone."""
    lines = [f"The keep rule without a network on the same pixels: {product}'s impervious "
             "pixels, and those of them that are not green, %", "",
             "| map | impervious pixels | precision | recall | F1 |", "|---|---|---|---|---|"]
    for name, label in (("product", f"{product} (the product)"),
                        ("rule", f"{product}'s impervious unless green (the rule alone)")):
        v = rule[name]
        lines.append(f"| {label} | {v['pixels']:,} | {_pct(v['precision'])} | "
                     f"{_pct(v['recall'])} | {_pct(v['f1'])} |")
    return lines
