"""The land-cover experiment's figures: metrics over seeds and the tables it prints.

Pure functions of confusion matrices and the report dict, apart from the training and the
scenes of ``experiments.landcover``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from gee_export.contract.label_schemes import LANDCOVER_CLASSES
from training.metrics import compute_metrics


def _stats(values: Sequence[float]) -> dict:
    v = np.array([np.nan if x is None else x for x in values], dtype=float)
    ok = v[np.isfinite(v)]
    return {"mean": float(ok.mean()) if ok.size else math.nan,
            "std": float(ok.std(ddof=1)) if ok.size > 1 else 0.0,
            "per_seed": [float(x) for x in v]}


def metric_summary(matrices: Sequence[np.ndarray], present: Sequence[str]) -> dict:
    """OA and per-class PA, UA, F1 of the ``present`` classes, mean ± std over the matrices."""
    rows = [compute_metrics(np.asarray(m), LANDCOVER_CLASSES) for m in matrices]
    idx = {c: LANDCOVER_CLASSES.index(c) for c in present}
    return {"OA": _stats([r.oa for r in rows]),
            **{what: {c: _stats([getattr(r, what.lower())[i] for r in rows])
                      for c, i in idx.items()} for what in ("PA", "UA", "F1")}}


def _cell(s: dict) -> str:
    if s["mean"] is None or not math.isfinite(s["mean"]):
        return "n/a"
    return f"{100 * s['mean']:.1f} ± {100 * s['std']:.1f}"


def report_table(report: dict) -> str:
    """Markdown tables per setting: OA and per-class F1, PA, UA (mean ± std over seeds, %)."""
    lines = []
    for name, s in report["settings"].items():
        present = s["classes_present"]
        pixels = ", ".join(f"{c} {n:,}" for c, n in s["test_pixels"].items())
        lines += [f"**{name}** (held-out pixels: {pixels})", ""]
        rows = {**{f"{p} (the product)": v for p, v in s["products"].items()}, **s["arms"]}
        for what in ("F1", "PA", "UA"):
            head = ["map", "OA"] + [f"{what} {c}" for c in present]
            lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            for m, v in rows.items():
                lines.append("| " + " | ".join([m, _cell(v["OA"])] + [_cell(v[what][c])
                                                                     for c in present]) + " |")
            lines.append("")
        for seed, f in s["filter"].items():
            for arm, d in f.items():
                lines.append(f"seed {seed}, {arm}: {d['dropped_chips']} of {d['scored_chips']} "
                             "chips dropped")
        lines.append("")
    return "\n".join(lines).rstrip()
