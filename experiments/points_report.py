"""The tables of :mod:`experiments.points`: per held-out tile, arm and count, over the seeds.

Mean with the half-width of its 95 % Student-t interval, the worst seed's F1 (what a user gets
who fits once), the mapped built share against the true one, and NDBI's scores on the same
pixels (at 0 and at its best, oracle, threshold); a ``--loto`` run's patch arm beside, checked
to be scored on the same pixels.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from core.errors import InputDataError
from experiments.builtup_judge import interval
from experiments.realscenes import format_table


def summarise(runs: dict, ndbi: dict) -> dict:
    """Per held-out tile, arm and count: mean ± interval, worst seed, shares, NDBI beside."""
    out: dict = {}
    for held, arms in runs.items():
        for arm, counts in arms.items():
            for n, seeds in counts.items():
                done = [s for s in seeds if "refused" not in s]
                f1 = [s["f1_built"] for s in done]
                auc = [s["auc_built"] for s in done]
                row = {"seeds": len(seeds), "refused": len(seeds) - len(done)}
                if done:
                    worst = min(done, key=lambda s: s["f1_built"])
                    row |= {"f1": interval(f1), "auc": interval(auc), "worst_f1": worst["f1_built"],
                            "worst_auc": min(auc), "spread_f1": max(f1) - min(f1),
                            "mapped_share": float(np.mean([s["mapped_built_share"] for s in done])),
                            "true_share": done[0]["true_built_share"],
                            "worst_minus_ndbi_best": worst["f1_built"] - ndbi[held]["ndbi_best_f1"]}
                out.setdefault(held, {}).setdefault(arm, {})[str(n)] = row
    return out


def patch_rows(path: Path, ndbi: dict, arm: str | None = None) -> dict:
    """A ``--loto`` run's ``arm`` per held-out tile, checked to be scored on the same pixels.

    ``arm``: None reads the run's first arm (``--arms unet-s2-pooled`` gives that one).
    """
    record = json.loads(path.read_text())
    arm = arm or (record.get("arms") or ["unet-s2"])[0]
    out = {}
    for held, arms in (record.get("runs") or {}).items():
        seeds = arms.get(arm) or []
        if held not in ndbi or not seeds:
            continue
        if any(s["pixels"] != ndbi[held]["pixels"] for s in seeds):
            raise InputDataError(f"--patch-runs {path}: {held} was scored on other pixels "
                                 f"({seeds[0]['pixels']}) than here ({ndbi[held]['pixels']})")
        f1 = [s["f1_built"] for s in seeds]
        out[held] = {"arm": arm, "seeds": len(seeds), "f1": interval(f1),
                     "auc": interval([s["auc_built"] for s in seeds]), "worst_f1": min(f1),
                     "mapped_share": float(np.mean([s["mapped_built_share"] for s in seeds]))}
    return out


def table(summary: dict, ndbi: dict, patches: dict) -> str:
    """One row per held-out tile, arm and count; NDBI's and the patch arm's beside."""
    def pm(pair) -> str:
        mean, half = pair
        return f"{mean:.3f} ± {half:.3f}" if np.isfinite(half) else f"{mean:.3f}"

    rows = []
    for held, arms in summary.items():
        b = ndbi[held]
        base = (f"{b['ndbi_f1_at_0']:.3f}", f"{b['ndbi_best_f1']:.3f}", f"{b['ndbi_auc']:.3f}")
        for arm, counts in arms.items():
            for n, s in counts.items():
                if "f1" not in s:
                    rows.append((held, arm, n, f"refused {s['refused']}/{s['seeds']}", "", "", "",
                                 *base))
                    continue
                rows.append((held, arm, n, pm(s["f1"]), f"{s['worst_f1']:.3f}", pm(s["auc"]),
                             f"{s['mapped_share']:.3f} / {s['true_share']:.3f}", *base))
        if held in patches:
            p = patches[held]
            rows.append((held, f"{p['arm']} (patches)", "-", pm(p["f1"]), f"{p['worst_f1']:.3f}",
                         pm(p["auc"]), f"{p['mapped_share']:.3f}", *base))
    return format_table(rows, ("held out", "arm", "points/area", "F1 built", "worst F1",
                               "ROC AUC", "built share map / true", "NDBI F1 @ 0",
                               "NDBI best F1", "NDBI AUC"))
