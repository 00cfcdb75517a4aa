"""Several dates into Presto, on the one labelled series the project has (eo-learn Slovenia).

``python -m experiments.presto_dates --out presto_dates [--encoder presto=PATH]
[--points 1000] [--seeds 5]``

Presto reads a pixel's time series (1-24 timesteps); a one-month stack gives it one timestep.
Does a series map built-up ground better? The only labelled series here is the eo-learn
Slovenia tile (1 km, 101 x 100 px of L1C top-of-atmosphere reflectance, five summer dates of
which three are clear, class 8 of the land-use register, artificial surface, 1.96 % of the
ground). Per pixel, the features of each arm:

- ``bands DATE``: the ten Sentinel-2 bands Presto reads, of one clear date;
- ``bands series``: those of every clear date side by side (30 values): more dates, no
  encoder;
- ``presto DATE``: frozen Presto's 128 features of one date (one timestep, its month);
- ``presto mean``: the mean of the one-date features over the clear dates: the dates seen
  one at a time;
- ``presto series``: Presto's features of the clear dates as one series (one timestep each,
  in date order, each with its month): the dates seen together; what ``isamap-fit
  --features presto`` computes for the series stack of the last date
  (tests/experiments/test_presto_series_fit.py).

The tile's northern half (rows 0-49) and southern half are each held out in turn. The
classifier is ``isamap-fit``'s (:func:`training.points.fit.fit_points`: a linear head, its
penalty chosen by cross-validation over 200 m blocks of the training half) fitted on
``--points`` labelled pixels of the other half drawn at random per seed (a user's random
sample; 1,000 of about 5,000, five seeds), or with ``--points 0`` on every one (one fit: the
head is convex, so no seed changes it). The held-out half's labelled pixels are scored: ROC AUC of
the head's probability, F1 of its class (the likelier one), the mapped built share against
the true one; NDBI of each clear date and their mean, on the same pixels, at 0 and at its
best threshold on those pixels (an oracle). And what a model trained once does to the
series, the ground taken as unchanged between the dates: a head fitted on the first date's
bands, or Presto's features of it, maps every date's held-out pixels; per date its built share
and F1, and the share of pixels whose class flips between consecutive dates or ever. With
Presto, whether its features tell implanted change better than the bands
(:mod:`experiments.presto_change`, the ``change`` block).
``OUT/presto_dates.json`` holds every fit's scores, ``OUT/presto_dates.txt`` the tables.

One tile, labels of a land-use register (a road counts as artificial, a yard may not),
three dates within two months: a check of whether a series helps, not a figure for a region.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from rasterio.warp import transform as warp_transform

from core.commands import add_logging_arguments, check_output_folder, configure_logging, run_command
from core.errors import ConfigError
from core.jsonsafe import dumps
from core.parsers import CommandParser
from core.storage import atomic_write
from experiments.builtup_arms import WEIGHT_FOLDERS
from experiments.change_pairs import ARTIFICIAL, load_scenes
from experiments.change_series import dark_object_subtraction
from experiments.data import add_data_root_argument, existing_folder, sample_folder
from experiments.presto_change import change_scores
from experiments.presto_dates_report import report_text
from experiments.scoring import best_threshold_f1, binary_scores, ndbi, roc_auc
from experiments.temporal_consistency import series_stability
from training.models.encoders.presto import prepare
from training.models.encoders.registry import load_encoder, parse_encoder
from training.points.fit import FitOptions, PointFit, fit_points
from training.points.head import probabilities

log = logging.getLogger("experiments.presto_dates")  # also when run as __main__

#: the reference scenes' 13 bands, and the ten of them Presto reads (its names, in its order)
SCENE_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10",
               "B11", "B12")
PRESTO_BANDS = ("B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12")
COLUMNS = tuple(SCENE_BANDS.index(b if len(b) == 3 else "B0" + b[1:]) for b in PRESTO_BANDS)
#: the tile's grid (eolearn_slovenia/bbox.geojson): EPSG:32633, 10 m, row 0 at the north
CRS, WEST, NORTH, PIXEL_M = "EPSG:32633", 465181.05, 5080254.63, 10.0
SPLIT_ROW = 50  # the halves held out in turn: rows [0, 50) and [50, 101)
BLOCK_M = 200.0
PIXELS_PER_CALL = 4096
DEFAULT_POINTS, DEFAULT_SEEDS = 1000, 5


def tile_latlon(shape: tuple[int, int]) -> tuple[float, float]:
    """Latitude, longitude (degrees) of the tile's centre."""
    x = WEST + shape[1] * PIXEL_M / 2
    y = NORTH - shape[0] * PIXEL_M / 2
    lon, lat = warp_transform(CRS, "EPSG:4326", [x], [y])
    return float(lat[0]), float(lon[0])


def presto_series(encoder: torch.nn.Module, scenes: np.ndarray, months: Sequence[int],
                  latlon: tuple[float, float]) -> np.ndarray:
    """``(H * W, 128)`` features of ``scenes`` ``(T, 13, H, W)`` read as one T-step series."""
    t = scenes.shape[0]
    values = torch.from_numpy(scenes[:, list(COLUMNS)].reshape(t, len(COLUMNS), -1)
                              .transpose(2, 0, 1).copy())  # (pixels, T, bands)
    month = torch.tensor(list(months), dtype=torch.long)
    out = []
    with torch.no_grad():
        for start in range(0, values.shape[0], PIXELS_PER_CALL):
            part = values[start:start + PIXELS_PER_CALL]
            x, mask = prepare(part, PRESTO_BANDS)
            n = part.shape[0]
            dw = torch.full((n, t), 9, dtype=torch.long)
            out.append(encoder(x, dw, part.new_tensor(latlon).expand(n, 2), mask,
                               month.expand(n, t)))
    return torch.cat(out).numpy()


def arm_features(scenes: np.ndarray, dates: Sequence[str],
                 encode: Callable[[np.ndarray, Sequence[int]], np.ndarray] | None
                 ) -> dict[str, np.ndarray]:
    """Every arm's ``(H * W, F)`` features (module docstring); Presto's only with ``encode``."""
    pixels = scenes.shape[2] * scenes.shape[3]
    bands = [scenes[i][list(COLUMNS)].reshape(len(COLUMNS), pixels).T for i in range(len(dates))]
    arms = {f"bands {d}": b for d, b in zip(dates, bands, strict=True)}
    arms["bands series"] = np.concatenate(bands, axis=1)
    if encode is not None:
        months = [int(d[5:7]) - 1 for d in dates]
        one = [encode(scenes[i:i + 1], months[i:i + 1]) for i in range(len(dates))]
        arms.update({f"presto {d}": f for d, f in zip(dates, one, strict=True)})
        arms["presto mean"] = np.mean(one, axis=0)
        arms["presto series"] = encode(scenes, months)
    return arms


def score(probability: np.ndarray, truth: np.ndarray) -> dict:
    """AUC, F1 of the likelier class, mapped and true built share of the scored pixels."""
    mapped = (probability >= 0.5).astype(np.int64)
    return {"auc": roc_auc(probability, truth), "f1": binary_scores(mapped, truth).f1,
            "mapped": float(mapped.mean()), "true": float(truth.mean())}


def drawn_pixels(train: np.ndarray, points: int, seed: int) -> np.ndarray:
    """Sorted flat indices of ``points`` pixels of ``train`` drawn by ``seed`` (0: every one)."""
    index = np.flatnonzero(train)
    if points:
        index = np.sort(np.random.default_rng(seed).choice(index, points, replace=False))
    return index


def fitted_on(features: np.ndarray, truth: np.ndarray, train: np.ndarray, points: int,
              seed: int) -> tuple[PointFit, int]:
    """``isamap-fit``'s head on ``train`` (``points`` drawn by ``seed``, 0: every one).

    Returns the fit and the built points it saw.
    """
    index = drawn_pixels(train, points, seed)
    rows, cols = np.divmod(index, truth.shape[1])
    fitted = fit_points(features[index], truth.ravel()[index], cols * PIXEL_M,
                        -rows * PIXEL_M, np.zeros(index.size, np.int64), ("other", "built"),
                        1, FitOptions(block_m=BLOCK_M, seed=seed))
    return fitted, int(truth.ravel()[index].sum())


def built_probability(fitted: PointFit, features: np.ndarray) -> np.ndarray:
    """The fitted head's built probability of each row of ``features``."""
    return probabilities(fitted.head.logits(features, 2))[:, 1]


def fold(features: np.ndarray, truth: np.ndarray, train: np.ndarray, test: np.ndarray,
         points: int, seed: int, fit: tuple[PointFit, int] | None = None) -> dict:
    """Fit on ``train`` (``points`` of them drawn by ``seed``, 0: every one), score ``test``.

    ``fit``: that fit (:func:`fitted_on`'s answer) when it was made already.
    """
    fitted, built_points = fit or fitted_on(features, truth, train, points, seed)
    held = np.flatnonzero(test)
    return {**score(built_probability(fitted, features[held]), truth.ravel()[held]),
            "l2": fitted.cv.l2, "built_points": built_points}


def date_maps(per_date: Sequence[np.ndarray], truth: np.ndarray, train: np.ndarray,
              test: np.ndarray, points: int, seed: int, fitted: PointFit | None = None) -> dict:
    """A head fitted on the first date's features maps every date's held-out pixels.

    What a model trained once does to a series of the same ground: each date's built share
    and F1, and how the class moves between dates (the ground is taken as unchanged, weeks
    apart; :func:`experiments.temporal_consistency.series_stability`). ``fitted``: that head
    when it was fitted already (the first date's arm of :func:`fold`).
    """
    fitted = fitted or fitted_on(per_date[0], truth, train, points, seed)[0]
    held = np.flatnonzero(test)
    label = truth.ravel()[held]
    built = np.stack([built_probability(fitted, f[held]) >= 0.5 for f in per_date])
    stable = series_stability(built[:, None, :])
    return {"built_share": stable["built_share"], "flip": stable["flip"],
            "flipped_any": stable["flipped_any"],
            "f1": [binary_scores(b.astype(np.int64), label).f1 for b in built]}


def level_maps(l2a: np.ndarray, l1c: np.ndarray, truth: np.ndarray, train: np.ndarray,
               test: np.ndarray, points: int, seed: int, fitted: PointFit | None = None
               ) -> dict:
    """A head fitted on one date's L2A-like features maps that date at either level.

    What ``isamap-map --allow-l1c`` does with a model trained on surface reflectance: the
    held-out pixels mapped from the dark-object-subtracted scene (``L2A-like``, what the
    training saw) and from the top-of-atmosphere one (``L1C``), each scored, and the share of
    pixels whose class is the same on both. ``fitted``: that head when it was fitted already.
    """
    fitted = fitted or fitted_on(l2a, truth, train, points, seed)[0]
    held = np.flatnonzero(test)
    label = truth.ravel()[held]
    prob = {name: built_probability(fitted, f[held]) for name, f in (("L2A-like", l2a),
                                                                      ("L1C", l1c))}
    built = {name: p >= 0.5 for name, p in prob.items()}
    return {"auc": {n: roc_auc(p, label) for n, p in prob.items()},
            "f1": {n: binary_scores(b.astype(np.int64), label).f1 for n, b in built.items()},
            "built_share": {n: float(b.mean()) for n, b in built.items()},
            "same_class": float((built["L2A-like"] == built["L1C"]).mean())}


def halves(shape: tuple[int, int], labelled: np.ndarray) -> dict[str, tuple[np.ndarray, ...]]:
    """Held-out half -> (training pixels, held-out pixels), flat masks of labelled pixels."""
    north = np.zeros(shape, bool)
    north[:SPLIT_ROW] = True
    return {"north": ((~north & labelled).ravel(), (north & labelled).ravel()),
            "south": ((north & labelled).ravel(), (~north & labelled).ravel())}


def ndbi_scores(scenes: np.ndarray, dates: Sequence[str], truth: np.ndarray,
                test: np.ndarray) -> dict[str, dict]:
    """NDBI of each date and of their mean on the held-out pixels: AUC, F1 at 0, best F1."""
    b11, b8 = SCENE_BANDS.index("B11"), SCENE_BANDS.index("B08")
    per_date = [ndbi(s[b11], s[b8]).ravel() for s in scenes]
    out = {}
    for name, index in [*zip(dates, per_date, strict=True), ("mean", np.mean(per_date, 0))]:
        value, label = index[test], truth.ravel()[test]
        out[f"NDBI {name}"] = {"auc": roc_auc(value, label),
                               "f1": binary_scores((value >= 0).astype(np.int64), label).f1,
                               "best_f1": best_threshold_f1(value, label)[1]}
    return out


def run(folder: Path, encoder: torch.nn.Module | None, points: int, seeds: int) -> dict:
    """Every arm, held-out half and seed (module docstring); Presto's with ``encoder``."""
    started = time.perf_counter()
    dates, scenes, lulc = load_scenes(folder)
    labelled = lulc > 0
    truth = (lulc == ARTIFICIAL).astype(np.int64)
    parts = halves(lulc.shape, labelled)
    fewest = min(int(train.sum()) for train, _ in parts.values())
    if points > fewest:
        raise ConfigError(f"--points {points}: a training half has {fewest:,} labelled pixels; "
                          "give at most that, or 0 for every one")
    encode = None
    if encoder is not None:
        latlon = tile_latlon(lulc.shape)
        encode = lambda s, m: presto_series(encoder, s, m, latlon)  # noqa: E731
    arms = arm_features(scenes, dates, encode)
    l2a = arm_features(np.stack([dark_object_subtraction(s) for s in scenes]), dates, encode)
    runs: list[dict] = []
    stability: list[dict] = []
    levels: list[dict] = []
    baselines = {}
    kinds = [k for k in ("bands", "presto") if f"{k} {dates[0]}" in arms]
    for held, (train, test) in parts.items():
        baselines[held] = ndbi_scores(scenes, dates, truth, test)
        for seed in range(seeds if points else 1):
            log.info("%s held out, seed %d", held, seed)
            fits = {arm: fitted_on(features, truth, train, points, seed)
                    for arm, features in arms.items()}  # the first dates' serve date_maps too
            runs += [{"held_out": held, "arm": arm, "seed": seed,
                      **fold(features, truth, train, test, points, seed, fits[arm])}
                     for arm, features in arms.items()]
            stability += [{"held_out": held, "features": kind, "seed": seed,
                           **date_maps([arms[f"{kind} {d}"] for d in dates], truth, train,
                                       test, points, seed, fits[f"{kind} {dates[0]}"][0])}
                          for kind in kinds]
            levels += [{"held_out": held, "features": kind, "date": d, "seed": seed,
                        **level_maps(l2a[f"{kind} {d}"], arms[f"{kind} {d}"], truth, train,
                                     test, points, seed)} for kind in kinds for d in dates]
    change = None
    if encode is not None:
        one = encode
        change = change_scores(scenes, dates, lulc, COLUMNS,
                               (SCENE_BANDS.index("B08"), SCENE_BANDS.index("B11")),
                               lambda scene, month: one(scene[None], [month]))
    return {"dates": dates, "points": points or "every labelled pixel of the other half",
            "seeds": seeds if points else 1, "runs": runs, "stability": stability,
            "levels": levels, "change": change,
            "ndbi": baselines, "seconds": round(time.perf_counter() - started, 1)}


def presto_encoder(given: str) -> torch.nn.Module:
    """Presto's encoder from ``--encoder presto=PATH``, its file checked.

    Raises:
        ConfigError: another encoder is named (the arms feed Presto's inputs).
        ModelError: the file is missing or not the published one.
    """
    entry, path = parse_encoder(given)
    if entry.name != "presto":
        raise ConfigError(f"--encoder {given}: the arms read Presto's inputs; give "
                          "presto=PATH (its default_model.pt), or none")
    return load_encoder(entry, path)


def parser() -> argparse.ArgumentParser:
    p = CommandParser(allow_abbrev=False, prog="python -m experiments.presto_dates",
                      description=__doc__,
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="output folder (presto_dates.json, .txt)")
    p.add_argument("--encoder", metavar="presto=PATH",
                   help="Presto's published file (default: weights/presto/default_model.pt "
                        "beside the data folder); 'none': the band arms alone")
    p.add_argument("--points", type=int, default=DEFAULT_POINTS,
                   help="labelled pixels drawn per seed from the training half (0: every "
                        "one, a single fit)")
    p.add_argument("--seeds", type=int, default=DEFAULT_SEEDS, help="draws of --points")
    add_data_root_argument(p)
    add_logging_arguments(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m experiments.presto_dates``; returns the exit status."""
    a = parser().parse_args(argv)
    configure_logging(a.verbose, a.quiet, a.debug)

    def go() -> int:
        if a.points < 0 or a.seeds < 1:
            raise ConfigError("--points must be >= 0 and --seeds >= 1")
        folder = existing_folder(sample_folder("eolearn_slovenia", a.data_root),
                                 "the eo-learn Slovenia series", "--data-root")
        encoder = a.encoder or "presto=" + str(folder.parent.parent / "weights" /
                                               WEIGHT_FOLDERS["presto"] / "default_model.pt")
        out = Path(a.out)
        check_output_folder("--out", out)
        model = None if encoder == "none" else presto_encoder(encoder)  # before any work
        metrics = run(folder, model, a.points, a.seeds)
        out.mkdir(parents=True, exist_ok=True)
        text = report_text(metrics)
        atomic_write(out / "presto_dates.json",
                     lambda handle: handle.write(dumps(metrics).encode()))
        atomic_write(out / "presto_dates.txt", lambda handle: handle.write((text + "\n").encode()))
        print(text)
        print(f"{metrics['seconds']:.0f} s; {out / 'presto_dates.json'}")
        return 0

    return run_command("python -m experiments.presto_dates", go, debug=a.debug,
                       writes_to=[a.out])


if __name__ == "__main__":
    raise SystemExit(main())
