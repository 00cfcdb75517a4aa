"""The figures of :mod:`experiments.change_pairs`: its summary, tables and the docs' block.

Apart from the experiment (the scenes, models and scores) so that each stays small; that
module re-exports the names its tests and docs use (:func:`figures_markdown`,
:func:`update_page`, :func:`summarise`, :data:`GATE`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from experiments.builtup_judge import interval
from experiments.change_series import INPUTS
from experiments.realscenes import format_table
from inference.predict.change import arrays as change

ARMS = ("differenced", "normalised", "margin", "both", "training stats", "spectral")
GATE = "spectral gate, NDBI direction"  # the model-free baseline's row in the summary
FIGURES_JSON = "docs/figures/change_pairs.json"


def summarise(runs: dict, baseline: dict, gate: dict | None = None) -> dict:
    """Per recipe and arm: mean ± 95 % interval over seeds and pairs; baselines over pairs.

    The baselines are NDBI gain (``baseline``) and, when given, the spectral gate with NDBI's
    direction (``gate``), each a row beside the models'.
    """
    keys = ("false_change", "false_gain", "f1", "auc")
    table: dict[str, dict] = {}
    for recipe, items in runs.items():
        arms = {arm for item in items for arm in item["arms"]}
        table[recipe] = {arm: {k: interval([it["arms"][arm][k] for it in items
                                            if k in it["arms"][arm]]) for k in keys}
                         for arm in sorted(arms, key=_arm_order)}
    table["NDBI gain"] = {"natural": {k: interval([b[k] for b in baseline.values()])
                                      for k in keys}}
    if gate:
        table[GATE] = {"natural": {k: interval([b[k] for b in gate.values()]) for k in keys}}
    return table


def _arm_order(arm: str) -> tuple[int, str]:
    name = arm.split(" ")[0] if arm.startswith(("margin ", "spectral ")) else arm
    return (ARMS.index(name) if name in ARMS else len(ARMS), arm)


def table_text(metrics: dict) -> str:
    """The summary as text (what the command prints and the docs quote)."""
    def cell(pair: tuple[float, float] | list, pct: bool = False) -> str:
        mean, half = pair
        scale = 100 if pct else 1
        if mean is None or not np.isfinite(mean):
            return ""
        text = f"{scale * mean:.2f}" if pct else f"{mean:.3f}"
        return text + (f" ± {scale * half:.2f}" if pct else f" ± {half:.3f}") \
            if half is not None and np.isfinite(half) else text

    rows = []
    for recipe, arms in metrics["summary"].items():
        for arm, s in arms.items():
            name = (f"t = {metrics['ndbi_gain']:g}" if recipe == "NDBI gain"
                    else f"NDBI direction, k = {metrics['gate_threshold']:g}" if recipe == GATE
                    else "NDBI gain, t matched to 'both'" if arm == "NDBI gain matched" else arm)
            rows.append((recipe.split(",")[0], name,
                         cell(s["false_change"], True), cell(s.get("false_gain", (None, None)),
                                                             True),
                         cell(s["f1"]), cell(s["auc"])))
    return format_table(rows, ("model", "arm", "false change %", "false gain %",
                               "implanted gain F1", "gain ROC AUC"))


#: the arms whose gain ROC AUC :func:`seed_ranking` gives per seed: the model's own score
#: (the two dates' probabilities) and the product's default rule (the gate, the model's way)
RANKED = ("differenced", f"spectral {change.DEFAULT_SPECTRAL_THRESHOLD:g}")


def seed_ranking(runs: dict, gate: dict) -> dict:
    """Each seed's gain ROC AUC (mean over pairs) of the :data:`RANKED` arms, and the gate's.

    ``gate``: the spectral gate with NDBI's direction per pair (:func:`score_gate`); its AUC
    does not depend on a seed.
    """
    out: dict = {}
    for recipe, items in runs.items():
        seeds = sorted({it["seed"] for it in items})
        out[recipe] = {arm: [float(np.mean([it["arms"][arm]["auc"] for it in items
                                            if it["seed"] == s])) for s in seeds]
                       for arm in RANKED}
    out[GATE] = float(np.mean([g["auc"] for g in gate.values()]))
    return out


def ranking_text(metrics: dict) -> str:
    """Per model: each seed's gain ROC AUC of its own score and of the default rule, the gate's."""
    ranking = metrics["seed_ranking"]
    gate = ranking[GATE]
    rows = [(recipe, *(" ".join(f"{v:.3f}" for v in seeds[arm]) for arm in RANKED),
             f"{min(seeds[RANKED[0]]) - gate:+.3f}", f"{min(seeds[RANKED[1]]) - gate:+.3f}")
            for recipe, seeds in ranking.items() if recipe != GATE]
    return format_table(rows, ("model", "own score, per seed", f"{RANKED[1]}, per seed",
                               "worst own - gate", f"worst {RANKED[1]} - gate")) + (
        f"\ngate alone ({GATE}): ROC AUC {gate:.3f}")


def per_date_text(metrics: dict) -> str:
    """Per model and input, each clear date's map, its stability; what the pixels show."""
    dates = metrics["dates"]
    summary = metrics["date_summary"]
    table = format_table(dates_rows(summary, dates), dates_header(dates, summary))
    quality = format_table(quality_rows(summary), quality_header(summary))
    ndbi_row = format_table([("NDBI ROC AUC vs class 8 (L1C)",
                              *(f"{a:.3f}" for a in metrics["ndbi_class8_auc"]))],
                            ("baseline", *dates))
    levels = format_table(level_rows(metrics["level_facts"], dates),
                          ("level the pixels show (blue excess, floor excess)", *dates))
    return f"{table}\n\n{quality}\n\n{ndbi_row}\n\n{levels}"


def figures_markdown(metrics: dict) -> str:
    """The docs' block: the dates, the implanted pixels and the tables."""
    return (f"\nClear dates: {', '.join(metrics['dates'])}; pairs {', '.join(metrics['pairs'])}; "
            f"{metrics['implanted']['pixels']} implanted pixels per pair; 'both' at margin "
            f"{metrics['margin']:g}; 'spectral k': changed where the bands' RMS robust z-score "
            f"exceeds k; {metrics['seeds']} seeds per model, {metrics['iterations']} "
            f"iterations through isamap-train, {metrics.get('frozen_iterations', 300)} for the "
            f"models on a frozen encoder and bands; ± the 95 % Student-t half-width over "
            f"seeds x pairs (baselines: over pairs); per-date tables: the mean over seeds "
            f"(lowest-highest seed).\n\n```text\n{table_text(metrics)}\n\n"
            f"{ranking_text(metrics)}\n\n{per_date_text(metrics)}\n```\n")


def update_page(source: str = FIGURES_JSON, page: str = "docs/evidence/change.md",
                root: str = ".") -> bool:
    """Rewrite the page's block of ``source``'s figures; True when it changed."""
    from inference.assess.figures import rewrite_block

    return rewrite_block(source, page, figures_markdown, root)


def _cell(triple: Sequence[float], scale: float = 100.0, digits: int = 1) -> str:
    """``mean (min-max)`` of a :func:`_spread`, scaled."""
    mean, low, high = (scale * v for v in triple)
    if not np.isfinite(mean):
        return "n/a"
    return f"{mean:.{digits}f} ({low:.{digits}f}-{high:.{digits}f})"


def dates_rows(summary: Mapping[str, Mapping], dates: Sequence[str]) -> list[tuple[str, ...]]:
    """Per recipe and input: the built share of each date and the series' stability."""
    kept = _stretched(summary)
    return [(recipe, name, *(_cell(v) for v in row[name]["built_share"]),
             _cell(row[name]["share_range"]), _cell(row[name]["flip"]),
             _cell(row[name]["flipped_any"]), _cell(row[name]["consistent_flipped_any"]),
             *((_cell(row[name]["stretches_flip"]), _cell(row[name]["stretches_flipped_any"]))
               if kept else ()))
            for recipe, row in summary.items() for name in INPUTS]


def _stretched(summary: Mapping[str, Mapping]) -> bool:
    """Whether the run measured the stretches rule (runs made before it did not)."""
    return all("stretches_f1" in row[name] for row in summary.values() for name in INPUTS)


def dates_header(dates: Sequence[str], summary: Mapping[str, Mapping]) -> tuple[str, ...]:
    """The columns of :func:`dates_rows`."""
    return ("model", "input", *(f"built % {d}" for d in dates), "built range (points)",
            "flips %", "ever flipped %", "ever flipped, consistent %",
            *(("flips, stretches %", "ever flipped, stretches %") if _stretched(summary)
              else ()))


def quality_rows(summary: Mapping[str, Mapping]) -> list[tuple[str, ...]]:
    """Per recipe and input: F1 and ROC AUC against class 8, and L1C's agreement with DOS."""
    kept = _stretched(summary)
    return [(recipe, name, _cell(row[name]["f1"], 1, 3),
             *((_cell(row[name]["stretches_f1"], 1, 3),) if kept else ()),
             _cell(row[name]["auc"], 1, 3), _cell(row["same_class"]) if name == "L1C" else "")
            for recipe, row in summary.items() for name in INPUTS]


def quality_header(summary: Mapping[str, Mapping]) -> tuple[str, ...]:
    """The columns of :func:`quality_rows`."""
    return ("model", "input", "built F1 vs class 8",
            *(("built F1, stretches",) if _stretched(summary) else ()),
            "built ROC AUC vs class 8", "same class on L1C and DOS %")


def level_rows(facts: Mapping[str, Sequence[Mapping]], dates: Sequence[str]
               ) -> list[tuple[str, ...]]:
    """Per input: the level each date's pixels show and the two path-radiance figures."""
    def cell(f: Mapping) -> str:
        if f["blue_excess"] is None:
            return f"{f['shown'] or 'cannot tell'}"
        return (f"{f['shown'] or 'cannot tell'} ({f['blue_excess']:+.3f}, "
                f"{f['floor_excess']:+.3f})")

    return [(name, *(cell(f) for f in facts[name])) for name in INPUTS]
