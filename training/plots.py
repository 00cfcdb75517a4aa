"""Quick-look PNGs of training and evaluation (headless matplotlib).

Figures are made with :class:`matplotlib.figure.Figure` on an Agg canvas, not through pyplot:
no global backend switch, no figure manager to close. The learning curves and the reliability
diagram have fixed margins (room for their titles, tick and axis labels) rather than
``tight_layout`` plus ``bbox_inches="tight"``, each of which lays out every text once more.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import numpy as np

from contract.quicklook import titled
from core.storage import atomic_write

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def new_figure(**kwargs) -> Figure:
    """A new figure, matplotlib imported when a plot is drawn.

    Importing it takes about a second: ``isamap-train``'s start (each torchrun rank's) and a
    rank that draws nothing no longer pay it.
    """
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def save_png(fig: Figure, path: Path, *, tight: bool = False) -> Path:
    """Write ``fig`` as a 110 dpi PNG; ``tight`` crops it to its drawn elements.

    ``tight`` costs a second layout of every text: only for figures without fixed margins.
    """
    return atomic_write(path, lambda fh: fig.savefig(
        fh, format="png", dpi=110, bbox_inches="tight" if tight else None))


def dataset_label(data: str | os.PathLike) -> str:
    """A dataset as a title names it: its last two path parts, never an absolute path.

    ``/home/me/isa/data/wuhan`` -> ``data/wuhan``, ``gs://bucket/isamap/wuhan`` ->
    ``isamap/wuhan``: a picture is shared beyond the machine that made it, and a title with a
    home folder says nothing to its reader (and gives away where it was made).
    """
    text = str(data).rstrip("/")
    if "://" in text:
        text = text.split("://", 1)[1]
    parts = [p for p in PurePosixPath(text.replace(os.sep, "/")).parts if p not in ("/", "")]
    return "/".join(parts[-2:]) or str(data)


def plot_learning_curves(history: Sequence[dict], path: Path, title: str | None = None,
                         schedule: str | None = None) -> Path:
    """Loss, validation MIoU/OA and learning rate per epoch (best epochs marked).

    ``title`` names the run (model, dataset) above the three panels; ``schedule`` the run's
    learning-rate schedule (``PolyLR.describe()``: recipes differ in it), in the third panel's
    title. Without one the panel says only "learning rate".
    """
    ep = [r["epoch"] for r in history]

    def col(key):
        return [np.nan if r.get(key) is None else r[key] for r in history]

    fig = new_figure(figsize=(13, 3.6))
    axes = fig.subplots(1, 3)
    axes[0].plot(ep, col("train_loss"), label="train")
    axes[0].plot(ep, col("val_loss"), label="val")
    axes[0].set_title("loss")
    axes[1].plot(ep, col("train_miou"), label="train MIoU")
    axes[1].plot(ep, col("val_miou"), label="val MIoU")
    axes[1].plot(ep, col("val_oa"), label="val OA", alpha=0.6)
    best = [r["epoch"] for r in history if r.get("best")]
    if best:
        axes[1].axvline(best[-1], color="k", ls=":", lw=1, label=f"best (epoch {best[-1]})")
    axes[1].set_title("accuracy")
    axes[1].set_ylabel("fraction (0-1)")
    axes[2].plot(ep, col("lr"))
    axes[2].set_title(f"learning rate ({schedule})" if schedule else "learning rate", wrap=True)
    axes[2].ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].legend()
    axes[1].legend(fontsize=8)
    fig.suptitle(titled(title or "Learning curves"), fontweight="bold")
    # fixed margins in inches: tick labels and the middle panel's y label fit between panels
    fig.subplots_adjust(left=0.65 / 13, right=1 - 0.2 / 13, bottom=0.5 / 3.6, top=1 - 0.6 / 3.6,
                        wspace=0.22)
    return save_png(fig, path)


def plot_confusion(matrix: np.ndarray, class_names: Sequence[str], path: Path,
                   title: str = "confusion matrix") -> Path:
    """Counts with row-normalised colours (rows = reference, columns = prediction)."""
    m = np.asarray(matrix, dtype=np.float64)
    rows = m.sum(1, keepdims=True)
    norm = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
    k = len(class_names)
    fig = new_figure(figsize=(1.2 * k + 2.5, 1.0 * k + 2))
    ax = fig.subplots()
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            ax.text(j, i, f"{int(m[i, j])}\n{100 * norm[i, j]:.1f}%", ha="center", va="center",
                    color="white" if norm[i, j] > 0.5 else "black", fontsize=8)
    ax.set_xticks(range(k), class_names, rotation=30, ha="right")
    ax.set_yticks(range(k), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("reference")
    ax.set_title(titled(title))
    return save_png(fig, path, tight=True)  # class names of any length: cropped to what is drawn


def plot_reliability(curves: Mapping[str, Mapping], path: Path,
                     title: str = "reliability diagram") -> Path:
    """Observed frequency against mean predicted probability per bin, one curve per entry.

    ``curves``: label -> a :meth:`training.calibration.temperature.Reliability.to_dict` record (its
    bins,
    counts, mean probabilities, observed frequencies and ECE). The diagonal is perfect
    calibration; the lower panel gives each bin's pixel count (log scale).
    """
    fig = new_figure(figsize=(5.2, 6.2))
    ax, counts = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], color="0.5", ls="--", lw=1, label="perfect calibration")
    first = next(iter(curves.values()), {})
    bins = int(first.get("bins", 15))
    edges = np.linspace(0.0, 1.0, bins + 1)
    width = 1.0 / bins / max(len(curves), 1)
    for i, (label, rec) in enumerate(curves.items()):
        mean = np.asarray(rec["mean_probability"], dtype=np.float64)
        seen = np.asarray(rec["observed"], dtype=np.float64)
        ax.plot(mean, seen, marker="o", ms=4, label=f"{label} (ECE {rec['ece']:.3f})")
        counts.bar(edges[:-1] + i * width, np.maximum(rec["count"], 0), width=width,
                   align="edge", alpha=0.7, label=label)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("observed frequency")
    ax.set_title(titled(title), wrap=True)  # a long title wraps inside the fixed margins
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    counts.set_yscale("log")
    counts.set_xticks(edges[::3])
    counts.set_xlabel(f"predicted probability ({first.get('binned', '')}, {bins} bins)")
    counts.set_ylabel("pixels per bin")
    counts.grid(alpha=0.3)
    fig.subplots_adjust(left=0.9 / 5.2, right=1 - 0.15 / 5.2, bottom=0.55 / 6.2,
                        top=1 - 0.6 / 6.2, hspace=0.08)
    return save_png(fig, path)
