"""A user's points in a new area: the base model, fine-tuned on them, against a random forest.

``python -m experiments.points_tune --loto-out LOTO_DIR --out DIR [--n 100] [--seeds 5]``

The scenario of ``isamap-fit --from``: a built-up base model trained without an area (the
``unet-s2`` model of ``python -m experiments.builtup --loto``'s fold that holds that tile out,
``LOTO_DIR/runs/<tile>/unet-s2/seed0/model.pt``) meets a user who labels ``--n`` points there,
half built, half not, drawn at random among the held-out area's labelled pixels (Java's
southern ``--holdout-rows``, the Ghana tiles whole). Three maps of the area are scored on the
same pixels, its labelled ones farther than ``--buffer`` pixels from every point (a draw
where those hold fewer than :data:`MIN_SCORED` pixels of a class has no score, and says so):

- ``base``: the base model's map (``isamap-predict``), no point used;
- ``tuned``: ``isamap-fit --from BASE --points P`` (the product's fine-tune, its own block
  cross-validated score in ``fit.json``), mapped by ``isamap-predict``;
- ``forest``: a 100-tree random forest on the stack's bands at the same points (what a Code
  Editor user fits), applied to every scored pixel.

``OUT/points_tune.json`` holds every seed's scores, ``OUT/points_tune.txt`` the table: per
tile and map, F1 of the built class (mean and worst seed), ROC AUC and the mapped built share.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from rasterio.warp import transform as warp_transform
from scipy.ndimage import binary_dilation

from core.commands import add_logging_arguments, check_output_folder, configure_logging, run_command
from core.errors import InputDataError
from core.jsonsafe import dumps
from core.parsers import CommandParser
from core.storage import atomic_write
from experiments.builtup import DEFAULT_BANDS, DEFAULT_HOLDOUT_ROWS
from experiments.builtup_commands import Budget, predict
from experiments.builtup_loto import DEFAULT_TILES
from experiments.builtup_tiles import DW_FOLDER
from experiments.data import add_data_root_argument, existing_folder, sample_folder
from experiments.points import areas, scores
from experiments.points_data import TileArrays, load_tile
from experiments.realscenes import probability_scale, read_on, run_product

log = logging.getLogger("experiments.points_tune")
MAPS = ("base", "tuned", "forest")
MIN_SCORED = 100
"""Scored pixels of each class below which a draw has no score (an F1 of 2 pixels is noise)."""


def draw_stratified(arrays: TileArrays, area: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` usable pixels of ``area`` (flat indexes), half of each class, drawn with ``seed``."""
    rng = np.random.default_rng(seed)
    picked = []
    for k, share in ((1, n // 2), (0, n - n // 2)):
        pool = np.flatnonzero((arrays.usable & area & (arrays.truth == k)).ravel())
        if pool.size < share:
            raise InputDataError(f"tile {arrays.prefix}: {pool.size} pixels of class {k} in "
                                 f"the held-out area, fewer than the {share} asked")
        picked.append(rng.choice(pool, share, replace=False))
    return np.sort(np.concatenate(picked))


def write_points(arrays: TileArrays, picked: np.ndarray, path: Path) -> None:
    """The points as the CSV ``isamap-fit --points`` reads (lon, lat, reference class)."""
    x, y = arrays.xy(picked)
    lon, lat = warp_transform(arrays.tile.footprint.crs, "EPSG:4326", list(x), list(y))
    truth = arrays.truth.ravel()[picked]
    rows = [f"p{i},{a:.8f},{b:.8f},{int(k)}" for i, (a, b, k) in
            enumerate(zip(lon, lat, truth, strict=True))]
    atomic_write(path, lambda handle: handle.write(
        ("id,lon,lat,reference\n" + "\n".join(rows) + "\n").encode()))


def map_probability(model: Path, arrays: TileArrays, out: Path) -> np.ndarray:
    """``isamap-predict``'s built probability of ``model`` over the tile, on the label's grid."""
    _, prob_path = predict(model, arrays.stack, out, str(arrays.tile.month))
    return read_on(prob_path, arrays.tile.footprint) / probability_scale(prob_path)


def forest(arrays: TileArrays, picked: np.ndarray, scored: np.ndarray, seed: int) -> np.ndarray:
    """A 100-tree random forest on the bands at ``picked``: built probability at ``scored``."""
    from sklearn.ensemble import RandomForestClassifier  # the experiments extra's

    bands = arrays.values.reshape(len(arrays.bands), -1)
    rf = RandomForestClassifier(n_estimators=100, random_state=seed, n_jobs=1)
    rf.fit(bands[:, picked].T, arrays.truth.ravel()[picked])
    return rf.predict_proba(bands[:, scored].T)[:, 1]


def one_seed(arrays: TileArrays, base: Path, area: np.ndarray, n: int, seed: int,
             buffer: int, steps: int, folds: int, out: Path) -> dict:
    """The three maps of one tile for one draw of points, scored on the same pixels."""
    folder = out / arrays.prefix / f"seed{seed}"
    picked = draw_stratified(arrays, area, n, seed)
    write_points(arrays, picked, folder / "points.csv")
    near = np.zeros(arrays.truth.size, bool)
    near[picked] = True
    near = binary_dilation(near.reshape(arrays.truth.shape), iterations=buffer)
    usable = arrays.usable & area & ~near
    left = arrays.truth[usable]
    fewest = min(int(left.sum()), int((left == 0).sum()))
    if fewest < MIN_SCORED:  # known before any fit or map is made
        kind = "built" if left.sum() <= (left == 0).sum() else "other"
        why = (f"{fewest} {kind} pixels lie farther than {buffer} pixels from every point, "
               f"fewer than {MIN_SCORED}: no score")
        return {"tile": arrays.prefix, "seed": seed, "points": int(picked.size),
                "scored_pixels": 0, "maps": None, "why_none": why, "fit_json": None}
    run_product("isamap-fit", ["--from", str(base), "--points", str(folder / "points.csv"),
                               "--input", str(arrays.stack), "--steps", str(steps),
                               "--folds", str(folds),
                               "--seed", str(seed), "--out", str(folder / "fit"), "-q"])
    probs = {"base": map_probability(base, arrays, folder / "base" / arrays.prefix),
             "tuned": map_probability(folder / "fit" / "model.pt", arrays,
                                      folder / "tuned" / arrays.prefix)}
    for prob in probs.values():
        usable &= np.isfinite(prob)
    scored = np.flatnonzero(usable.ravel())
    truth = arrays.truth.ravel()[scored]
    out_scores = {name: scores(p.ravel()[scored], truth) for name, p in probs.items()}
    out_scores["forest"] = scores(forest(arrays, picked, scored, seed), truth)
    fit = (folder / "fit" / "fit.json")
    return {"tile": arrays.prefix, "seed": seed, "points": int(picked.size),
            "scored_pixels": int(scored.size), "maps": out_scores, "why_none": None,
            "fit_json": fit.read_text() if fit.is_file() else None}


def table(rows: Sequence[dict]) -> str:
    """Per tile and map: F1 mean and worst seed, AUC mean, mapped / true built share.

    Then the fine-tune's F1 less the base's and less the forest's, mean and worst draw.
    """
    lines = [f"{'tile':<9}{'map':<8}{'seeds':>6}{'F1 mean':>9}{'F1 worst':>10}{'AUC':>7}"
             f"{'built % mapped / true':>24}"]
    for tile in dict.fromkeys(r["tile"] for r in rows):
        mine = [r for r in rows if r["tile"] == tile and r["maps"] is not None]
        if not mine:
            why = next(r["why_none"] for r in rows if r["tile"] == tile)
            lines.append(f"{tile:<9}{'-':<8}  {why}")
            continue
        for name in MAPS:
            s = [r["maps"][name] for r in mine]
            f1 = [v["f1_built"] for v in s]
            lines.append(f"{tile:<9}{name:<8}{len(s):>6}{np.mean(f1):>9.3f}{min(f1):>10.3f}"
                         f"{np.mean([v['auc_built'] for v in s]):>7.3f}"
                         f"{100 * np.mean([v['mapped_built_share'] for v in s]):>17.1f} / "
                         f"{100 * np.mean([v['true_built_share'] for v in s]):.1f}")
        for other in ("base", "forest"):  # per draw: the fine-tune's F1 less the other's
            gain = [r["maps"]["tuned"]["f1_built"] - r["maps"][other]["f1_built"] for r in mine]
            lines.append(f"{tile:<9}{'tuned - ' + other:<17}{np.mean(gain):>+9.3f}"
                         f"{min(gain):>+10.3f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = CommandParser(prog="python -m experiments.points_tune", description=__doc__,
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--loto-out", required=True, type=Path,
                   help="a python -m experiments.builtup --loto --out folder: its exports and "
                        "each fold's unet-s2 model (seed 0)")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--data", type=Path, help=f"the Dynamic World tiles (default: {DW_FOLDER} "
                   "in the data root)")
    add_data_root_argument(p)
    p.add_argument("--tiles", default=",".join(DEFAULT_TILES))
    p.add_argument("--n", type=int, default=100, help="points per tile (default 100)")
    p.add_argument("--seeds", type=int, default=5, help="draws of points (default 5)")
    p.add_argument("--steps", type=int, default=100, help="isamap-fit --steps (default 100)")
    p.add_argument("--folds", type=int, default=5,
                   help="isamap-fit --folds, its own held-out score's (default 5; 2 halves "
                        "the fine-tunes it runs)")
    p.add_argument("--buffer", type=int, default=8,
                   help="scored pixels lie farther than this many pixels from every point")
    add_logging_arguments(p)
    a = p.parse_args(argv)
    configure_logging(a.verbose, a.quiet, a.debug)
    return run_command("python -m experiments.points_tune", lambda: _run(a), debug=a.debug)


def _run(a: argparse.Namespace) -> int:
    started = time.perf_counter()
    data = existing_folder(a.data or sample_folder(DW_FOLDER, a.data_root), "Dynamic World",
                           "--data")
    check_output_folder("--out", a.out)
    tiles = [t for t in a.tiles.split(",") if t]
    bases = {t: a.loto_out / "runs" / t / "unet-s2" / "seed0" / "model.pt" for t in tiles}
    missing = [str(m) for m in bases.values() if not m.is_file()]
    if missing:
        raise InputDataError(f"--loto-out lacks the fold models {', '.join(missing)}; run "
                             "python -m experiments.builtup --loto --out there first")
    budget = Budget()
    arrays = {t: load_tile(data, t, a.loto_out, DEFAULT_BANDS, budget) for t in tiles}
    held, _ = areas(arrays, "java", DEFAULT_HOLDOUT_ROWS, budget)
    rows = [one_seed(arrays[t], bases[t], held[t], a.n, seed, a.buffer, a.steps, a.folds,
                     a.out)
            for t in tiles for seed in range(a.seeds)]
    text = table(rows)
    atomic_write(a.out / "points_tune.json", lambda handle: handle.write(dumps(
        {"rows": rows, "n": a.n, "seeds": a.seeds, "steps": a.steps, "folds": a.folds,
         "buffer": a.buffer,
         "seconds": time.perf_counter() - started}, indent=1).encode()))
    atomic_write(a.out / "points_tune.txt", lambda handle: handle.write(text.encode() + b"\n"))
    print(text)
    print(f"{time.perf_counter() - started:.0f} s; {a.out / 'points_tune.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
