"""A training run's epoch rows: the values ``metrics.jsonl`` holds and the line logged for each.

May import: nothing of the project (numpy only).
"""

from __future__ import annotations

import math

import numpy as np


def json_row(row: dict) -> dict:
    """``row`` with numpy floats as floats and NaN as ``None`` (JSON has no NaN)."""
    out = {}
    for k, v in row.items():
        if isinstance(v, float | np.floating):
            out[k] = None if math.isnan(float(v)) else float(v)
        else:
            out[k] = v
    return out


def epoch_line(row: dict, epochs: int) -> str:
    """One line per epoch: loss, validation metrics and time (what -q hides, bars or not)."""
    parts = [f"epoch {row['epoch']}/{epochs}", f"loss {row['train_loss']:.4f}"]
    if "val_loss" in row:
        parts += [f"val loss {row['val_loss']:.4f}", f"val MIoU {100 * row['val_miou']:.2f} %",
                  f"val OA {100 * row['val_oa']:.2f} %"]
    parts.append(f"{row['seconds']:.1f} s" + (" (best)" if row.get("best") else ""))
    return "  ".join(parts)
