"""A training run's epoch rows: the values ``metrics.jsonl`` holds and the line logged for each.

:class:`HistoryFile` writes the rows and draws the learning curves from them, at most once a
:data:`PLOT_EVERY_S` within a run and always at its end, so a short run draws them once.

May import: ``core``, ``training.plots``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

from core.storage import atomic_write
from training.plots import dataset_label, plot_learning_curves

#: Seconds between two drawings of the learning curves within a run (and always at its end).
PLOT_EVERY_S = 60.0


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


def members_estimate(member: int, members: int, rest: int, seconds: float) -> str:
    """The line told once a joined model's member ``member`` (1-based) of ``members`` trained.

    ``seconds``: what it took, from its start to its model file (a first member's one-time
    costs, such as measuring ``--precision auto``, included); the ``rest`` members after it
    not yet started train alike (the same options and data), so about as long each.
    """
    return (f"member {member} of {members} took {duration(seconds)}; the {rest} after it not "
            f"yet started, trained alike, take about {duration(seconds * rest)} more")


ESTIMATE_AFTER = 3
"""Batches after the first that a run's time estimate is measured on (logged once, early)."""


class FirstEstimate:
    """The time a run will take, told once from its first batches (start-up kept apart).

    :meth:`begin` is called when an epoch starts (before its loader's first batch) and
    :meth:`tick` before each of its batches; ``tick`` returns the estimate's line once, before
    batch ``ESTIMATE_AFTER + 2`` of the first epoch that has that many, else None.
    """

    def __init__(self) -> None:
        self.told = False
        self._start = self._first = 0.0

    def begin(self) -> None:
        """An epoch starts now."""
        self._start, self._first = time.perf_counter(), 0.0

    def tick(self, i: int, batches: int, epochs_left: int) -> str | None:
        """Note that batch ``i`` (0-based) of an epoch of ``batches`` starts now."""
        now = time.perf_counter()
        if i == 1:
            self._first = now - self._start
        elif i == ESTIMATE_AFTER + 1 and not self.told:
            self.told = True
            per_batch = (now - self._start - self._first) / ESTIMATE_AFTER
            return first_run_estimate(self._first, per_batch, batches, epochs_left)
        return None


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


def resume_line(out: Path, epochs_done: int, finished: bool, best_epoch: int) -> str:
    """What a run says of the run it found in its folder: resumed, or finished and kept."""
    if finished:
        epochs = f"{epochs_done} epoch" + ("" if epochs_done == 1 else "s")
        return (f"the run in {out} is finished ({epochs}, the best {best_epoch}): "
                "nothing left to train, its model.pt is kept; to train again, choose another "
                "--out or delete that folder")
    return f"resuming the run in {out} after epoch {epochs_done}"


class HistoryFile:
    """A run's ``metrics.jsonl`` and its learning curves, rewritten after every epoch.

    Args:
        rows: where the epoch rows go (JSON lines, written atomically).
        curves: where the learning curves go (PNG); None: none are drawn.
        model: the model's name and ``data`` its dataset, named in the curves' title.
        schedule: the learning-rate schedule in words, drawn with the curves.
    """

    def __init__(self, rows: Path, curves: Path | None, model: str, data: str,
                 schedule: str) -> None:
        self.rows, self.curves, self.schedule = rows, curves, schedule
        self.model, self.data = model, data
        self._plotted = time.monotonic()  # when the learning curves were last drawn

    def write(self, history: Sequence[dict], plot: bool) -> None:
        """Write ``history``, and draw the curves when ``plot`` or :data:`PLOT_EVERY_S` passed."""
        text = "".join(json.dumps(r) + "\n" for r in history)
        atomic_write(self.rows, lambda fh: fh.write(text.encode()))
        now = time.monotonic()
        if self.curves is None or (not plot and now - self._plotted < PLOT_EVERY_S):
            return
        self._plotted = now
        title = f"Learning curves: {self.model} on {dataset_label(self.data)}"
        plot_learning_curves(list(history), self.curves, title, schedule=self.schedule)
