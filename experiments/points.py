"""Points to map on the Dynamic World tiles, each held out in turn, beside NDBI and patches.

``python -m experiments.points --out points_output [--counts 50,200,1000] [--seeds 5]
[--arms bands,presto,presto+bands] [--encoder presto=PATH] [--patch-runs LOTO.json]``

What ``isamap-fit`` does, measured where nobody labelled: the held-out areas are those of
``python -m experiments.builtup --loto`` (the southern ``--holdout-rows`` of Java, and
``ghana_a`` and ``ghana_b`` whole); each fold fits on points drawn from the other areas (Java's
rows north of its held-out block, as the patch experiment's training export stops, when Java
is held out) and maps the held-out area. Per training area and seed, ``N`` points are drawn
at random among its labelled pixels (a user's random sample of what they can label), so the
built share of the points follows each area's.

An arm is ``isamap-fit --features ARM``: ``bands`` (each stack normalised by its own
statistics), ``presto`` (the frozen encoder's 128 features), ``presto+bands``. The fit is the
product's (:func:`training.points.fit.fit_points`: block cross-validation, penalty, head); the
map of the held-out area is the fitted model's probability on its usable pixels (labelled,
every band present), which is what ``isamap-predict`` maps there: ``--check`` runs the
product end to end on one fold (``isamap-fit`` on a points file, ``isamap-predict`` on the
held-out stack) and reports both scores side by side.

Scores per held-out tile, arm and count, over the seeds: built F1 at the map's rule (the
likelier class), ROC AUC, the worst seed's F1, the mapped built share against the true one,
and NDBI on the same pixels at 0 and at its best (oracle) threshold. ``--patch-runs`` adds
a ``--loto`` run's patch-trained arm (its per-seed scores, on the same pixels: the counts are
compared). ``OUT/points.json`` holds every seed's scores; ``OUT/points.txt`` the table.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from rasterio.warp import transform as warp_transform

from core.commands import add_logging_arguments, check_output_folder, configure_logging, run_command
from core.errors import ConfigError, InputDataError
from core.jsonsafe import dumps
from core.parsers import CommandParser
from core.storage import atomic_write
from experiments.builtup import DEFAULT_BANDS, DEFAULT_HOLDOUT_ROWS, score_ndbi, training_rows
from experiments.builtup_commands import Budget, predict
from experiments.builtup_loto import DEFAULT_TILES
from experiments.builtup_tiles import DW_FOLDER
from experiments.data import add_data_root_argument, existing_folder, sample_folder
from experiments.points_data import PrestoFeatures, TileArrays, band_features, load_tile
from experiments.points_report import patch_rows, summarise, table
from experiments.realscenes import map_scores, run_product
from experiments.scoring import best_threshold_f1, binary_scores, roc_auc
from experiments.threads import add_threads_argument, use_threads
from training.models.encoders.registry import parse_encoder
from training.points.fit import FitOptions, fit_points
from training.points.head import probabilities

log = logging.getLogger("experiments.points")  # also when run as __main__

DEFAULT_COUNTS = (50, 200, 1000)
DEFAULT_ARMS = ("bands", "presto", "presto+bands")
DEFAULT_SEEDS = 5
CLASSES = ("pervious", "impervious")


def areas(tiles: dict[str, TileArrays], row_split: str, holdout_rows: int,
          budget: Budget) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Per tile, the held-out area and the area its points may come from in other folds.

    The row-split tile trains, when held out itself, on its rows north of the patch
    experiment's training grid (:func:`experiments.builtup.training_rows`); elsewhere on all.
    """
    held, north = {}, {}
    for prefix, arrays in tiles.items():
        shape = arrays.truth.shape
        held[prefix] = np.ones(shape, bool)
        north[prefix] = np.ones(shape, bool)
        if prefix == row_split:
            start = shape[0] - holdout_rows
            if not 0 < start < shape[0]:
                raise ConfigError(f"--holdout-rows must be between 1 and {shape[0] - 1}")
            held[prefix][:start] = False
            north[prefix][training_rows(arrays.tile, start, budget.patch, budget.stride):] = False
    return held, north


def draw(usable: np.ndarray, allowed: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` random usable pixels of ``allowed`` (all of them when fewer), as flat indexes."""
    pool = np.flatnonzero((usable & allowed).ravel())
    return np.sort(rng.choice(pool, min(n, pool.size), replace=False))


class Features:
    """Each arm's features of a tile's usable pixels, as the fold's model computes them."""

    def __init__(self, tiles: dict[str, TileArrays], encoder: str | None, out: Path) -> None:
        self.tiles, self.encoder, self.out = tiles, encoder, out
        self._presto: dict[tuple, PrestoFeatures] = {}

    def presto(self, prefix: str, place: tuple) -> PrestoFeatures:
        if self.encoder is None:
            raise ConfigError("Presto arms need --encoder presto=PATH")
        if (prefix, place) not in self._presto:
            self._presto[prefix, place] = PrestoFeatures(self.tiles[prefix], self.encoder,
                                                         self.out, *place)
        return self._presto[prefix, place]

    def of(self, arm: str, prefix: str, index: np.ndarray, scene_rows: slice, pooled,
           place: tuple) -> np.ndarray:
        """``(len(index), F)`` features of usable pixels ``index``.

        ``bands``: normalised by the scene's statistics; Presto's at ``place`` (latitude and
        longitude, month), with the bands by the pooled statistics for ``presto+bands``.
        """
        arrays = self.tiles[prefix]
        if arm == "bands":
            return band_features(arrays, arrays.stats(scene_rows), index)
        parts = [self.presto(prefix, place).rows(index)]
        if arm == "presto+bands":
            parts.append(band_features(arrays, pooled, index))
        return np.concatenate(parts, axis=1)


def one_fold(features: Features, arm: str, held: str, train: dict[str, np.ndarray],
             area: np.ndarray, n: int, seed: int) -> dict:
    """Fit ``arm`` on ``n`` points per training area, score the held-out area.

    The model tells Presto the first training tile's place and month, as ``isamap-fit``
    tells it its first input's.
    """
    tiles = features.tiles
    rows = {p: slice(0, int(np.flatnonzero(a.any(axis=1)).max()) + 1) for p, a in train.items()}
    pooled = _pooled(tiles, rows) if arm == "presto+bands" else None
    first = tiles[next(iter(train))]
    place = (first.latlon, first.month)
    feats, labels, xs, ys, group = [], [], [], [], []
    for g, (prefix, allowed) in enumerate(train.items()):
        arrays = tiles[prefix]
        rng = np.random.default_rng([seed, g, n])
        picked = draw(arrays.usable, allowed, n, rng)
        position = np.cumsum(arrays.usable.ravel()) - 1  # flat index -> row of the features
        feats.append(features.of(arm, prefix, position[picked], rows[prefix], pooled, place))
        labels.append(arrays.truth.ravel()[picked].astype(np.int64))
        x, y = arrays.xy(picked)
        xs.append(x)
        ys.append(y)
        group.append(np.full(picked.size, g))
    labels_all = np.concatenate(labels)
    try:
        fit = fit_points(np.concatenate(feats), labels_all, np.concatenate(xs),
                         np.concatenate(ys), np.concatenate(group), CLASSES, 1, FitOptions(),
                         source=f"{n} points per area")
    except InputDataError as exc:
        return {"seed": seed, "refused": str(exc), "points": int(labels_all.size),
                "built_points": int(labels_all.sum())}
    arrays = tiles[held]
    keep = np.flatnonzero(area.ravel()[arrays.usable.ravel()])  # the held-out area's pixels
    test = features.of(arm, held, keep, slice(None), pooled, place)
    prob = probabilities(fit.head.logits(test, 2))[:, 1]
    truth = arrays.truth[arrays.usable & area]
    return {"seed": seed, **scores(prob, truth), "points": int(labels_all.size),
            "built_points": int(labels_all.sum()), "l2": fit.cv.l2,
            "cv_f1": fit.cv.f1["impervious"], "cv_auc": fit.cv.auc}


def check_product(features: Features, arm: str, held: str, train: dict[str, np.ndarray],
                  area: np.ndarray, n: int, out: Path) -> dict:
    """Seed 0 of one fold through the product's commands, beside the in-memory fit's scores.

    The same points (the draw of seed 0) go to ``isamap-fit`` as a CSV with every training
    tile's stack as ``--input``; ``isamap-predict`` maps the held-out stack and the map is
    scored as the built-up experiment scores its maps (:func:`experiments.realscenes.map_scores`).
    Use a fold whose training areas are whole tiles: the product normalises by each stack's
    statistics, the in-memory fit by the training area's.
    """
    tiles = features.tiles
    folder = out / "check" / f"{held}_{arm.replace('+', '_')}_{n}"
    rows = []
    for g, (prefix, allowed) in enumerate(train.items()):
        arrays = tiles[prefix]
        picked = draw(arrays.usable, allowed, n, np.random.default_rng([0, g, n]))
        x, y = arrays.xy(picked)
        lon, lat = warp_transform(arrays.tile.footprint.crs, "EPSG:4326", list(x), list(y))
        truth = arrays.truth.ravel()[picked]
        rows += [f"{prefix}{i},{a:.8f},{b:.8f},{int(k)}"
                 for i, (a, b, k) in enumerate(zip(lon, lat, truth, strict=True))]
    points = folder / "points.csv"
    atomic_write(points, lambda handle: handle.write(
        ("id,lon,lat,reference\n" + "\n".join(rows) + "\n").encode()))
    encoder = ["--encoder", f"presto={features.encoder}"] if arm != "bands" else []
    run_product("isamap-fit", ["--points", str(points), "--input",
                               *[str(tiles[p].stack) for p in train], "--features", arm,
                               *encoder, "--out", str(folder / "fit"), "-q"])
    arrays = tiles[held]
    class_path, prob_path = predict(folder / "fit" / "model.pt", arrays.stack,
                                    folder / "map" / held, str(arrays.tile.month))
    product = map_scores(arrays.truth, arrays.tile.footprint, class_path, prob_path, area)
    memory = one_fold(features, arm, held, train, area, n, 0)
    keys = ("f1_built", "auc_built", "pixels", "built_pixels", "mapped_built_share")
    return {"fold": held, "arm": arm, "points_per_area": n,
            "product": {k: product[k] for k in keys}, "in_memory": {k: memory[k] for k in keys}}


def _pooled(tiles: dict[str, TileArrays], rows: dict[str, slice]):
    """The training areas' bands pooled (``isamap-fit --norm training``'s statistics)."""
    from training.data import band_stats

    first = tiles[next(iter(rows))]
    return band_stats([tiles[p].values[:, r] for p, r in rows.items()], first.bands,
                      where="the training tiles")


def scores(prob: np.ndarray, truth: np.ndarray) -> dict:
    """Built F1 at the likelier class, AUC, best-threshold F1, mapped and true built share."""
    mapped = (prob >= 0.5).astype(np.int64)
    s = binary_scores(mapped, truth)
    threshold, best = best_threshold_f1(prob, truth)
    return {"f1_built": s.f1, "auc_built": roc_auc(prob, truth), "best_f1_built": best,
            "best_threshold": threshold, "pixels": s.pixels, "built_pixels": s.built,
            "mapped_built_share": float(mapped.mean()), "true_built_share": float(truth.mean())}


def run_points(data: Path, out: Path, *, tiles: Sequence[str] = DEFAULT_TILES,
               row_split: str = "java", arms: Sequence[str] = DEFAULT_ARMS,
               counts: Sequence[int] = DEFAULT_COUNTS, seeds: int = DEFAULT_SEEDS,
               encoder: str | None = None, holdout_rows: int = DEFAULT_HOLDOUT_ROWS,
               patch_runs: Path | None = None, check: bool = False) -> dict:
    """The whole comparison; writes ``OUT/points.json`` and ``OUT/points.txt``."""
    start = time.perf_counter()
    budget = Budget()
    loaded = {p: load_tile(data, p, out, DEFAULT_BANDS, budget) for p in tiles}
    held_areas, train_areas = areas(loaded, row_split, holdout_rows, budget)
    features = Features(loaded, encoder, out)
    ndbi = {p: score_ndbi(loaded[p].tile, held_areas[p] & loaded[p].usable) for p in tiles}
    runs: dict = {}
    for held in tiles:
        train = {p: np.ones_like(loaded[p].usable) for p in tiles if p != held}
        if held == row_split:  # its rows north of the held-out block train too
            train[held] = train_areas[held]
        for arm in arms:
            for n in counts:
                seeds_scores = [one_fold(features, arm, held, train, held_areas[held], n, s)
                                for s in range(seeds)]
                runs.setdefault(held, {}).setdefault(arm, {})[str(n)] = seeds_scores
                done = [s["f1_built"] for s in seeds_scores if "f1_built" in s]
                log.info("%s %s %d points/area: F1 %s", held, arm, n,
                         ", ".join(f"{v:.3f}" for v in done) or "refused")
    checks = []
    if check:  # the last tile's fold: its training areas are whole tiles
        held = tiles[-1]
        train = {p: np.ones_like(loaded[p].usable) for p in tiles if p != held}
        checks = [check_product(features, arm, held, train, held_areas[held], max(counts), out)
                  for arm in arms]
    summary = summarise(runs, ndbi)
    patches = patch_rows(patch_runs, ndbi) if patch_runs else {}
    metrics = {"summary": summary, "runs": runs, "ndbi": ndbi, "patches": patches,
               "product_checks": checks,
               "tiles": list(tiles), "arms": list(arms), "counts": list(counts),
               "seeds": seeds, "holdout_rows": holdout_rows,
               "seconds": round(time.perf_counter() - start, 1)}
    text = dumps(metrics, indent=2)
    atomic_write(out / "points.json", lambda handle: handle.write(text.encode()))
    rendered = table(summary, ndbi, patches)
    atomic_write(out / "points.txt", lambda handle: handle.write(rendered.encode() + b"\n"))
    return metrics


def _ints(text: str, flag: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"{flag} takes whole numbers separated by commas") from None
    if not values or min(values) < 1:
        raise ConfigError(f"{flag} takes whole numbers >= 1")
    return values


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m experiments.points``; returns the exit status."""
    p = CommandParser(allow_abbrev=False, prog="python -m experiments.points",
                                description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help=f"folder of the tiles (default: {DW_FOLDER} in the "
                   "--data-root)")
    add_data_root_argument(p)
    p.add_argument("--tiles", default=",".join(DEFAULT_TILES), help="held out in turn")
    p.add_argument("--arms", default=",".join(DEFAULT_ARMS),
                   help="isamap-fit --features values, comma-separated")
    p.add_argument("--counts", default=",".join(map(str, DEFAULT_COUNTS)),
                   help="points drawn per training area, comma-separated")
    p.add_argument("--seeds", type=int, default=DEFAULT_SEEDS, help="draws per count")
    p.add_argument("--encoder", metavar="presto=PATH", help="Presto's file (Presto arms)")
    p.add_argument("--holdout-rows", type=int, default=DEFAULT_HOLDOUT_ROWS)
    p.add_argument("--patch-runs", metavar="LOTO.json",
                   help="a python -m experiments.builtup --loto run's loto.json: its first "
                        "arm (--arms) beside, on the same pixels")
    p.add_argument("--check", action="store_true",
                   help="also run one fold through isamap-fit and isamap-predict, and report "
                        "its scores beside the in-memory fit's")
    p.add_argument("--out", default="points_output")
    add_threads_argument(p)
    add_logging_arguments(p)
    a = p.parse_args(argv)
    configure_logging(a.verbose, a.quiet, a.debug)
    return run_command("python -m experiments.points", lambda: _run(a), debug=a.debug,
                       writes_to=[a.out])


def _run(a: argparse.Namespace) -> int:
    # the options first, then the files they name: a wrong option is said without the data
    check_output_folder("--out", a.out)
    arms = tuple(x for x in a.arms.split(",") if x)
    unknown = [x for x in arms if x not in DEFAULT_ARMS]
    if unknown:
        raise ConfigError(f"--arms {','.join(unknown)}: choose among {','.join(DEFAULT_ARMS)}")
    if a.seeds < 1:
        raise ConfigError("--seeds must be >= 1")
    data = existing_folder(a.data or sample_folder(DW_FOLDER, a.data_root), "Dynamic World",
                           "--data")
    encoder = parse_encoder(a.encoder)[1] if a.encoder else None
    if any(x.startswith("presto") for x in arms) and encoder is None:
        raise ConfigError("--arms presto... need --encoder presto=PATH")
    use_threads(a.threads)
    out = Path(os.path.abspath(a.out))
    metrics = run_points(data, out, tiles=tuple(t for t in a.tiles.split(",") if t),
                         arms=arms, counts=_ints(a.counts, "--counts"), seeds=a.seeds,
                         encoder=encoder, holdout_rows=a.holdout_rows,
                         patch_runs=Path(a.patch_runs) if a.patch_runs else None,
                         check=a.check)
    print(table(metrics["summary"], metrics["ndbi"], metrics["patches"]))
    for c in metrics["product_checks"]:
        print(f"product check, {c['fold']} held out, {c['arm']}, {c['points_per_area']} points "
              f"per area: isamap-fit + isamap-predict F1 {c['product']['f1_built']:.4f} AUC "
              f"{c['product']['auc_built']:.4f} on {c['product']['pixels']} px; in memory F1 "
              f"{c['in_memory']['f1_built']:.4f} AUC {c['in_memory']['auc_built']:.4f} on "
              f"{c['in_memory']['pixels']} px")
    print(f"{metrics['seconds']:.0f} s; metrics: {out / 'points.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
