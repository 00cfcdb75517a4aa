"""The tables of :mod:`experiments.presto_dates`, from its JSON: what it prints and the page shows.

``table``: every arm's held-out scores beside NDBI; ``stability_table``: every date mapped by a
head fitted on the first; ``level_table``: the maps of Level-1C input by a head fitted on the
dark-object-subtracted scenes. :func:`update_page` rewrites docs/evidence/points.md's block.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from experiments.builtup_judge import interval
from experiments.presto_change import change_table

#: the committed summary of the default run, which docs/evidence/points.md quotes
FIGURES_JSON = "docs/figures/presto_dates.json"


def table(metrics: Mapping) -> str:
    """One row per held-out half and arm: AUC and F1 (mean ± 95 %, worst seed), built share.

    Without ``--points`` each arm is one deterministic fit (a convex head on every pixel):
    no interval.
    """
    def cell(values: list[float]) -> str:
        mean, half = interval(values)
        spread = f" ± {half:.3f}" if np.isfinite(half) else ""
        return f"{mean:.3f}{spread} ({min(values):.3f})".ljust(26)

    lines = [f"{'held out':9}{'arm':24}{'AUC mean (worst seed)':26}{'F1 mean (worst seed)':26}"
             "built % mapped / true"]
    for held in ("north", "south"):
        runs = [r for r in metrics["runs"] if r["held_out"] == held]
        for arm in dict.fromkeys(r["arm"] for r in runs):
            mine = [r for r in runs if r["arm"] == arm]
            auc, f1 = [r["auc"] for r in mine], [r["f1"] for r in mine]
            share = np.mean([r["mapped"] for r in mine])
            lines.append(f"{held:9}{arm:24}{cell(auc)}{cell(f1)}"
                         f"{100 * share:.1f} / {100 * mine[0]['true']:.1f}")
        for name, s in metrics["ndbi"][held].items():
            lines.append(f"{held:9}{name:24}{s['auc']:.3f}".ljust(59) +
                         f"F1 at 0 {s['f1']:.3f}, best {s['best_f1']:.3f} (oracle)")
    return "\n".join(lines)


def _by_half_and_features(records: list) -> list[tuple[str, str, list]]:
    """``(held-out half, features, its records)``, north first, features in run order."""
    kinds = dict.fromkeys(r["features"] for r in records)
    return [(held, kind, [r for r in records if r["held_out"] == held and r["features"] == kind])
            for held in ("north", "south") for kind in kinds]


def stability_table(metrics: Mapping) -> str:
    """One row per held-out half and features: every date's map by a head fitted on the first.

    Means over the seeds; the worst seed's share that ever flips in brackets.
    """
    dates = metrics["dates"]
    lines = [f"{'held out':9}{'features':10}{'built % per date':22}{'F1 per date':24}"
             f"{'flips % per pair':20}ever flipped % (worst seed)"]
    for held, kind, mine in _by_half_and_features(metrics["stability"]):
        shares = np.mean([s["built_share"] for s in mine], axis=0)
        f1 = np.mean([s["f1"] for s in mine], axis=0)
        flips = np.mean([s["flip"] for s in mine], axis=0)
        ever = [s["flipped_any"] for s in mine]
        lines.append(f"{held:9}{kind:10}"
                     f"{' / '.join(f'{100 * v:.1f}' for v in shares):22}"
                     f"{' / '.join(f'{v:.3f}' for v in f1):24}"
                     f"{' / '.join(f'{100 * v:.1f}' for v in flips):20}"
                     f"{100 * np.mean(ever):.1f} ({100 * max(ever):.1f})")
    return "\n".join(lines) + f"\n(dates {', '.join(dates)}; true built % " + ", ".join(
        f"{held} {100 * next(r['true'] for r in metrics['runs'] if r['held_out'] == held):.1f}"
        for held in ("north", "south")) + ")"


def report_text(metrics: Mapping) -> str:
    """Every table the command prints; Presto's change scores where it ran with Presto."""
    tables = [t(metrics) for t in (table, stability_table, level_table)]
    if metrics.get("change"):
        tables.append(change_table(metrics["change"]))
    return "\n\n".join(tables)


def figures_markdown(metrics: dict) -> str:
    """The evidence page's block: the table the command printed, from its JSON."""
    return f"\n```text\n{report_text(metrics)}\n```\n"


def update_page(source: str = FIGURES_JSON, page: str = "docs/evidence/points.md",
                root: str = ".") -> bool:
    """Rewrite the page's block of ``source``'s figures; True when it changed."""
    from inference.assess.figures import rewrite_block

    return rewrite_block(source, page, figures_markdown, root)


def _pair(rows: list, key: str, scale: float = 1.0, digits: int = 3) -> str:
    """``L2A-like / L1C`` means of ``key`` over ``rows``."""
    return " / ".join(f"{scale * np.mean([r[key][n] for r in rows]):.{digits}f}"
                      for n in ("L2A-like", "L1C"))


def level_table(metrics: Mapping) -> str:
    """One row per held-out half and features: a head fitted on the L2A-like scenes.

    It maps the L1C ones too: means over the dates and seeds, the worst date and seed's
    share of the same class in brackets.
    """
    lines = [f"{'held out':9}{'features':10}{'F1 L2A-like / L1C':22}{'AUC L2A-like / L1C':22}"
             f"{'built % L2A-like / L1C':24}same class % (worst)"]
    for held, kind, mine in _by_half_and_features(metrics["levels"]):
        same = [r["same_class"] for r in mine]
        lines.append(f"{held:9}{kind:10}{_pair(mine, 'f1'):22}{_pair(mine, 'auc'):22}"
                     f"{_pair(mine, 'built_share', 100, 1):24}"
                     f"{100 * np.mean(same):.1f} ({100 * min(same):.1f})")
    return "\n".join(lines)
