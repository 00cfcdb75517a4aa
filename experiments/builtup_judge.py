"""The leave-one-tile-out judge: what a user who trains once gets, tile by tile.

A user trains one model, with one seed. So every arm of ``python -m experiments.builtup
--loto`` is judged by its seeds' spread and its worst seed, not only by their mean: per
held-out tile, the mean F1 with its 95 % Student-t interval, the worst seed's F1, the seeds'
spread (max - min F1), ROC AUC, the built share the maps give against the labels' true share,
and the expected calibration error on the held-out tile beside the one on the training
regions' validation pixels, all beside NDBI on the same pixels at 0 and at its best (oracle)
threshold.

The **default arm** is the one whose worst seed is best: the arm whose smallest margin, over
the held-out tiles, of its worst seed's F1 over NDBI's best-threshold F1 is largest (a
first training scored beside its arm, ``NAME[0]``, is never chosen: it is one member of the
arm asked for, not an arm of its own). Nothing
of a held-out tile chooses anything an arm does: thresholds and temperatures come from the
training regions' validation pixels (the product's own fit), and the default is chosen on
margins every arm is scored alike by. :data:`TARGETS` are the bars the default arm is held
to; :func:`shortfalls` says, per tile, which it misses and by how much.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy.stats import t as student_t

from experiments.builtup_seeds import names_first_member
from experiments.realscenes import format_table

#: The bars on the held-out tiles: (name, what is measured, the bar, higher is better).
#: ``row_split`` bars hold on the tile held out by rows (Java) only.
TARGETS: tuple[tuple[str, str, float, bool, bool], ...] = (
    ("worst seed F1 >= NDBI best F1", "worst_minus_ndbi_best", 0.0, True, False),
    ("every seed F1 >= 0.85", "f1_worst", 0.85, True, True),
    ("every seed ROC AUC >= 0.95", "auc_worst", 0.95, True, True),
    ("seed spread <= 0.10 F1", "f1_spread", 0.10, False, False),
    ("mapped built share within 5 points of the true share", "share_gap_worst", 0.05, False,
     False),
    ("held-out ECE <= 0.05", "ece_worst", 0.05, False, False),
)


def interval(values: Sequence[float]) -> tuple[float, float]:
    """Mean and half-width of its 95 % Student-t interval (NaN half-width for one value)."""
    a = np.asarray([v for v in values if v is not None and np.isfinite(v)], float)
    if a.size == 0:
        return float("nan"), float("nan")
    if a.size == 1:
        return float(a[0]), float("nan")
    half = student_t.ppf(0.975, a.size - 1) * a.std(ddof=1) / np.sqrt(a.size)
    return float(a.mean()), float(half)


def _finite(seeds: Sequence[Mapping], key: str) -> list[float]:
    return [float(s[key]) for s in seeds
            if s.get(key) is not None and np.isfinite(float(s[key]))]


def _extreme(values: list[float], pick) -> float:
    return float(pick(values)) if values else float("nan")


def arm_summary(seeds: Sequence[Mapping], ndbi: Mapping) -> dict:
    """One arm's figures on one held-out tile from its seeds' scores."""
    f1s, aucs = _finite(seeds, "f1_built"), _finite(seeds, "auc_built")
    f1, f1_hw = interval(f1s)
    auc, auc_hw = interval(aucs)
    true = [s["built_pixels"] / s["pixels"] for s in seeds if s.get("pixels")]
    mapped = _finite(seeds, "mapped_built_share")
    gaps = [abs(m - t) for m, t in zip(mapped, true, strict=False)]
    eces = _finite(seeds, "ece_built")
    worst = _extreme(f1s, min)
    return {"f1": f1, "f1_hw": f1_hw, "f1_worst": worst, "f1_best": _extreme(f1s, max),
            "f1_spread": _extreme(f1s, max) - worst if f1s else float("nan"),
            "auc": auc, "auc_hw": auc_hw, "auc_worst": _extreme(aucs, min),
            "share_true": float(np.mean(true)) if true else float("nan"),
            "share_mapped": float(np.mean(mapped)) if mapped else float("nan"),
            "share_mapped_min": _extreme(mapped, min), "share_mapped_max": _extreme(mapped, max),
            "share_gap_worst": _extreme(gaps, max),
            "ece": float(np.mean(eces)) if eces else float("nan"),
            "ece_worst": _extreme(eces, max),
            "ece_t1": _mean(_finite(seeds, "ece_built_uncalibrated")),
            "ece_in_region": _mean(_finite(seeds, "ece_in_region")),
            "seeds": len(seeds),
            "f1_minus_ndbi_best": f1 - ndbi["ndbi_best_f1"],
            "worst_minus_ndbi_best": worst - ndbi["ndbi_best_f1"]}


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def summarise(runs: Mapping[str, Mapping[str, Sequence[Mapping]]],
              ndbi: Mapping[str, Mapping]) -> dict:
    """Per held-out tile and arm: :func:`arm_summary`."""
    return {tile: {arm: arm_summary(seeds, ndbi[tile]) for arm, seeds in arms.items()}
            for tile, arms in runs.items()}


def default_arm(summary: Mapping[str, Mapping[str, Mapping]]) -> tuple[str, float]:
    """The arm whose worst seed is best, and its smallest worst-seed margin over NDBI's best.

    A first training alone (``NAME[0]``, scored beside the arm that trains it) is not a
    candidate: it is one member of the arm asked for, not an arm of its own.
    """
    arms = [a for a in next(iter(summary.values())) if not names_first_member(a)]
    margins = {arm: min(summary[tile][arm]["worst_minus_ndbi_best"] for tile in summary)
               for arm in arms}
    best = max(margins, key=lambda a: (np.nan_to_num(margins[a], nan=-np.inf), a))
    return best, margins[best]


def shortfalls(summary: Mapping[str, Mapping[str, Mapping]], arm: str,
               row_split: str | None) -> dict[str, list[dict]]:
    """Per tile, every bar of :data:`TARGETS` that applies: its value, met, and by how much."""
    out: dict[str, list[dict]] = {}
    for tile, arms in summary.items():
        s = arms[arm]
        rows = []
        for name, key, bar, higher, split_only in TARGETS:
            if split_only and tile != row_split:
                continue
            value = s[key]
            miss = (bar - value) if higher else (value - bar)
            rows.append({"target": name, "value": value, "bar": bar,
                         "met": bool(np.isfinite(value) and miss <= 0),
                         "short_by": float(max(miss, 0.0)) if np.isfinite(value) else None})
        out[tile] = rows
    return out


def _pm(mean: float, half: float) -> str:
    if not np.isfinite(mean):
        return "n/a"
    return f"{mean:.3f} ± {half:.3f}" if np.isfinite(half) else f"{mean:.3f}"


def _f(value: float | None, digits: int = 3) -> str:
    """``value`` to ``digits`` places; "n/a" where it is not a number (null in a summary)."""
    return f"{value:.{digits}f}" if value is not None and np.isfinite(value) else "n/a"


def arms_table(summary: Mapping, ndbi: Mapping) -> str:
    """One row per held-out tile and arm: the worst-seed table, NDBI on the same pixels."""
    rows = []
    for tile, arms in summary.items():
        b = ndbi[tile]
        for arm, s in arms.items():
            rows.append((
                tile, arm, s["seeds"], _pm(s["f1"], s["f1_hw"]), _f(s["f1_worst"]),
                _f(s["f1_spread"]), f"{_pm(s['auc'], s['auc_hw'])} ({_f(s['auc_worst'])})",
                f"{100 * s['share_mapped']:.1f} ({100 * s['share_mapped_min']:.1f}-"
                f"{100 * s['share_mapped_max']:.1f}) / {100 * s['share_true']:.1f}",
                f"{_f(s['ece'])} ({_f(s['ece_in_region'])})", _f(b["ndbi_f1_at_0"]),
                f"{b['ndbi_best_f1']:.3f} @ {b['ndbi_best_threshold']:.3f}",
                f"{s['worst_minus_ndbi_best']:+.3f}"))
    return format_table(rows, (
        "held out", "arm", "seeds", "F1 mean ± 95 %", "F1 worst", "spread", "AUC (worst)",
        "built % mapped (range) / true", "ECE held-out (train val)", "NDBI F1 @ 0",
        "NDBI best F1 @ thr", "worst - NDBI best"))


def judge_table(summary: Mapping, ndbi: Mapping, row_split: str | None = None) -> str:
    """The worst-seed table, the default arm and its shortfalls, as ``--loto`` prints them."""
    arm, margin = default_arm(summary)
    lines = [arms_table(summary, ndbi), "", f"default arm (its worst seed is best): {arm}, "
             f"worst seed {margin:+.3f} F1 against NDBI's best threshold on its hardest tile"]
    for tile, targets in shortfalls(summary, arm, row_split).items():
        missed = [f"{t['target']} (not measured: the arm's maps give no such score)"
                  if t["short_by"] is None else
                  f"{t['target']} ({_f(t['value'])}, short by {_f(t['short_by'])})"
                  for t in targets if not t["met"]]
        lines.append(f"  {tile}: " + ("every target met" if not missed else
                                      "missed: " + "; ".join(missed)))
    return "\n".join(lines)
