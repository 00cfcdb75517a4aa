"""The temporal consistency rule on a synthetic series with known change and injected flicker.

How a real series moves where nothing changed is :func:`series_stability`, measured on the
eo-learn Slovenia L1C series by :mod:`experiments.change_pairs` (docs/evidence/change.md).

``python -m experiments.temporal_consistency --out DIR``

A series of ``dates`` class maps whose truth is known: a share of pixels impervious
throughout, a share that becomes impervious at a random date (true gain) and never goes back,
the rest pervious throughout, so every loss in the series is false. Each pixel and date is
then misclassified with probability ``flicker`` (the classifier's independent errors). The
series is scored before and after :func:`inference.predict.change.consistency.consistent_series`:

- false loss: pixel-date pairs going from impervious to pervious (the truth has none);
- false gain: pairs going to impervious where the truth does not change;
- true gain kept: pixels of true gain whose series shows one gain, within a date of the true one;
- true gain found: pixels of true gain whose series shows a gain at any date;
- pixel-date accuracy against the truth.

Writes ``consistency.json`` (the numbers, per flicker rate) and ``consistency.png``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from itertools import pairwise
from pathlib import Path

import numpy as np

from core.commands import (
    add_logging_arguments,
    check_output_folder,
    configure_logging,
    run_command,
)
from core.parsers import CommandParser, seed
from core.storage import atomic_path, atomic_write
from inference.cog.maps import NODATA
from inference.predict.change.consistency import consistent_series


def count_loss(classes: np.ndarray, isa_class: int = 1, nodata: int = NODATA) -> int:
    """Pixel-date pairs that go from impervious to not between consecutive dates."""
    a, b = classes[:-1], classes[1:]
    return int(((a == isa_class) & (b != isa_class) & (a != nodata) & (b != nodata)).sum())


def count_gain(classes: np.ndarray, isa_class: int = 1, nodata: int = NODATA) -> int:
    """Pixel-date pairs that go from not impervious to impervious between consecutive dates."""
    a, b = classes[:-1], classes[1:]
    return int(((a != isa_class) & (b == isa_class) & (a != nodata) & (b != nodata)).sum())


@dataclass(frozen=True)
class SeriesScores:
    """One series scored against its truth."""

    false_loss: int
    false_gain: int
    true_gain_kept: float
    true_gain_any: float
    accuracy: float


@dataclass(frozen=True)
class Measurement:
    flicker: float
    dates: int
    pixels: int
    true_gain_pixels: int
    raw: SeriesScores
    consistent: SeriesScores


def synthetic_series(dates: int = 7, size: int = 200, stable_isa: float = 0.3,
                     gain: float = 0.1, flicker: float = 0.05,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(truth, classified, gain date) arrays: ``(dates, size, size)``; -1 where no gain."""
    rng = np.random.default_rng(seed)
    draw = rng.random((size, size))
    when = np.where((draw >= stable_isa) & (draw < stable_isa + gain),
                    rng.integers(1, dates, (size, size)), -1)
    index = np.arange(dates)[:, None, None]
    truth = ((draw < stable_isa)[None] | ((when >= 0)[None] & (index >= when[None])))
    truth = truth.astype(np.uint8)
    noise = rng.random(truth.shape) < flicker
    return truth, np.where(noise, 1 - truth, truth).astype(np.uint8), when


def score_series(series: np.ndarray, truth: np.ndarray, when: np.ndarray) -> SeriesScores:
    changes_truth = truth[1:] != truth[:-1]
    gained = (series[:-1] != 1) & (series[1:] == 1)
    false_gain = int((gained & ~changes_truth).sum())
    gain_pixels = when >= 0
    kept = anywhere = 0.0
    if gain_pixels.any():
        count = gained.sum(axis=0)
        at = np.argmax(gained, axis=0) + 1  # the date of the (first) gain
        kept = float(((count == 1) & (np.abs(at - when) <= 1))[gain_pixels].mean())
        anywhere = float((count >= 1)[gain_pixels].mean())
    return SeriesScores(count_loss(series), false_gain, kept, anywhere,
                        float((series == truth).mean()))


def measure(flicker: float, dates: int = 7, size: int = 200, seed: int = 0) -> Measurement:
    truth, classified, when = synthetic_series(dates, size, flicker=flicker, seed=seed)
    fixed = consistent_series(classified, isa_class=1)
    assert count_gain(truth) == int((when >= 0).sum())  # the truth's gains are the known ones
    return Measurement(flicker, dates, size * size, int((when >= 0).sum()),
                       score_series(classified, truth, when), score_series(fixed, truth, when))


def series_stability(built: np.ndarray, stretched: np.ndarray | None = None) -> dict:
    """How a real series of built maps ``(dates, H, W)`` moves on ground that did not change.

    ``built_share`` per date and its range (``share_range``); ``flip``: per consecutive pair
    of dates, the share of pixels whose class differs; ``flipped_any``: the share whose class
    is not the same at every date; ``consistent``: the last two after
    :func:`inference.predict.change.consistency.consistent_series` (what ``isamap-map
    --temporal-consistency`` would map); ``stretches``: ``built_share``, ``flip`` and
    ``flipped_any`` of ``stretched``, the series after the stretches rule (what
    ``isamap-map --temporal-consistency stretches`` would map), when given.
    """
    series = np.asarray(built, bool)
    shares = [float(m.mean()) for m in series]
    fixed = consistent_series(series.astype(np.uint8), isa_class=1).astype(bool)
    out = {"built_share": shares, "share_range": max(shares) - min(shares),
           "flip": _flips(series), "flipped_any": _flipped_any(series),
           "consistent": {"built_share": [float(m.mean()) for m in fixed],
                          "flipped_any": _flipped_any(fixed)}}
    if stretched is not None:
        kept = np.asarray(stretched, bool)
        out["stretches"] = {"built_share": [float(m.mean()) for m in kept],
                            "flip": _flips(kept), "flipped_any": _flipped_any(kept)}
    return out


def _flips(series: np.ndarray) -> list[float]:
    return [float((a != b).mean()) for a, b in pairwise(series)]


def _flipped_any(series: np.ndarray) -> float:
    return float((series != series[0]).any(axis=0).mean())


def plot(measurements: Sequence[Measurement], png: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rates = [100 * m.flicker for m in measurements]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.6), dpi=100)
    a.plot(rates, [m.raw.false_loss for m in measurements], "o-", label="false loss, as mapped")
    a.plot(rates, [m.consistent.false_loss for m in measurements], "o-",
           label="false loss, consistent")
    a.plot(rates, [m.raw.false_gain for m in measurements], "s--", label="false gain, as mapped")
    a.plot(rates, [m.consistent.false_gain for m in measurements], "s--",
           label="false gain, consistent")
    a.set_xlabel("flicker (% of pixel-dates misclassified)")
    a.set_ylabel("pixel-date pairs")
    a.legend(fontsize=7)
    b.plot(rates, [100 * m.raw.true_gain_kept for m in measurements], "o-", label="as mapped")
    b.plot(rates, [100 * m.consistent.true_gain_kept for m in measurements], "o-",
           label="consistent")
    b.set_xlabel("flicker (% of pixel-dates misclassified)")
    b.set_ylabel("true gain found (%, within a date)")
    b.set_ylim(0, 101)
    b.legend(fontsize=7)
    fig.suptitle(f"Temporal consistency on a synthetic {measurements[0].dates}-date series")
    fig.tight_layout()
    with atomic_path(png) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return png


def _pct(value: float) -> str:
    return f"{100 * value:6.1f} %"


def main(argv: Sequence[str] | None = None) -> int:
    p = CommandParser(  # exact option names only
        allow_abbrev=False, prog="python -m experiments.temporal_consistency",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--flicker", default="0.01,0.03,0.05,0.1",
                   help="misclassification rates, comma-separated")
    p.add_argument("--dates", type=int, default=7)
    p.add_argument("--size", type=int, default=200)
    p.add_argument("--seed", type=seed, default=0)
    add_logging_arguments(p)
    args = p.parse_args(argv)
    configure_logging(args.verbose, args.quiet, args.debug)

    def run() -> int:
        check_output_folder("--out", args.out)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        found = [measure(float(f), args.dates, args.size, args.seed)
                 for f in args.flicker.split(",")]
        text = json.dumps([asdict(m) for m in found], indent=1)
        atomic_write(out / "consistency.json", lambda fh: fh.write(text.encode()))
        plot(found, out / "consistency.png")
        print(f"{'flicker':>8} {'false loss':>17} {'false gain':>17} {'true gain kept':>17} "
              f"{'true gain found':>17} {'accuracy':>17}")
        for m in found:
            print(f"{m.flicker:8.2f} {m.raw.false_loss:8d} -> {m.consistent.false_loss:5d} "
                  f"{m.raw.false_gain:8d} -> {m.consistent.false_gain:5d} "
                  f"{_pct(m.raw.true_gain_kept)} -> {_pct(m.consistent.true_gain_kept)} "
                  f"{_pct(m.raw.true_gain_any)} -> {_pct(m.consistent.true_gain_any)} "
                  f"{_pct(m.raw.accuracy)} -> {_pct(m.consistent.accuracy)}")
        return 0

    return run_command("temporal_consistency", run, debug=args.debug)


if __name__ == "__main__":
    raise SystemExit(main())
