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


def duration(seconds: float) -> str:
    """A duration as people read it: ``45 s``, ``12 min``, ``3.4 h``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def first_run_estimate(first_s: float, per_batch_s: float, batches: int,
                       epochs_left: int) -> str:
    """What the first batches of a run say about its length (logged once, early).

    Args:
        first_s: seconds of the first batch (start-up included: loader workers, the runtime's
            first kernels).
        per_batch_s: seconds of each later batch.
        batches: batches of an epoch.
        epochs_left: epochs this run still has, this one included.
    """
    epoch_s = first_s + per_batch_s * (batches - 1)
    rest = epoch_s + per_batch_s * batches * (epochs_left - 1)
    return (f"time estimate: the first batch took {duration(first_s)} (start-up included), "
            f"each later one {per_batch_s:.2f} s; an epoch of {batches} batches takes about "
            f"{duration(epoch_s)}, the {epochs_left} epoch(s) to go about {duration(rest)} of "
            "training (validation adds to it; early stopping may end the run sooner)")


def epoch_line(row: dict, epochs: int, left_s: float | None = None) -> str:
    """One line per epoch: loss, validation metrics and time (what -q hides, bars or not).

    ``left_s``: the time the epochs still to go are expected to take, at the mean epoch so far.
    """
    parts = [f"epoch {row['epoch']}/{epochs}", f"loss {row['train_loss']:.4f}"]
    if "val_loss" in row:
        parts += [f"val loss {row['val_loss']:.4f}", f"val MIoU {100 * row['val_miou']:.2f} %",
                  f"val OA {100 * row['val_oa']:.2f} %"]
    parts.append(f"{row['seconds']:.1f} s" + (" (best)" if row.get("best") else ""))
    if left_s is not None and row["epoch"] < epochs:
        parts.append(f"about {duration(left_s)} to go")
    return "  ".join(parts)
