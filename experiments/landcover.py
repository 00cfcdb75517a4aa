"""Whether a 1 m map learnt from a coarse land-cover product beats the product (seed 003).

``python -m experiments.landcover --out landcover_output``

The land-cover paper trains HRNet on 3 m imagery with a 10 m product (FROM-GLC10, 72.8 % OA
globally, 81.24 % on its China test points) as the only label, and finds the 3 m map more
accurate than the product (86.34 % against 81.24 % OA). This tests that claim at 1 m, and
whether the fine map keeps the product's impervious class, in two settings, each scored at
1 m against a 1 m reference on pixels no model trained on:

- ``nlcd``: a **real coarse product**. The eight Chesapeake patches
  (``../shared/data/chesapeake_nlcd``): 1 m NAIP, the 30 m NLCD (mapped to the seven classes,
  crops merged into grassland: :mod:`experiments.chesapeake_nlcd`) as the only label, the
  1 m land cover as the reference. ``--split quadrants`` (default): four folds, fold ``f``
  holds out quadrant ``(f + i) mod 4`` of patch ``i`` and trains on the other three of every
  patch, so each pixel is scored once by models that never trained on it, and every fold
  trains on developed land (patch 0 holds every developed NLCD cell and 770 of the tile's
  835 impervious pixels). ``--split patches`` holds out the patch groups of ``--groups``
  instead; ``--test DIR`` takes held-out patches in the same format and trains on every
  patch of ``--data-dir``.
- ``naip`` (``--settings naip``): **synthetic products on the five GeoBench NAIP tiles**
  (the south-east quadrant of each held out): a product with spatially correlated confusion
  from the paper's Table 2, calibrated to ``--product-oa``, and the mode of the truth per
  10 m cell (:mod:`experiments.coarse_products`).

The same small HRNet (the paper's recipe: SGD 0.01, momentum 0.9, weight decay, poly decay;
narrow for CPU minutes) is trained in every arm:

- the paper's method: the product as the only label, cross-entropy with impervious x3, an
  instance-norm stem, the noisy-sample filter off (the preliminary model) and on (chips
  whose prediction agrees with the product on fewer than 20 % of the pixels lose their
  label, then the model is trained again; no chip dropped: the same model);
- ``nlcd``: plus class weights (median frequency, at most ``--weight-cap``); plus **label
  super-resolution** (Malkin et al. 2019: NLCD's developed codes 21-24 as expected
  impervious fractions of 10, 35, 65, 90 % over each 30 m cell,
  :mod:`training.losses.composition`); plus **NLCD as input channels** (one-hot classes and
  the developed fraction, :func:`experiments.chesapeake_nlcd.product_channels`: the network
  refines the product instead of learning it again); a label SR arm may map impervious by
  the share its cells expect (``impervious by share``); the paper's method and the NLCD
  input arm may keep the product's impervious pixels unless green, and the product's
  classes their training labels lack (:mod:`experiments.landcover_keep`, checked there
  without a network on the GeoBench tiles: ``keep_check`` in the report); the paper's
  method may also give every other pixel the product's class shares per window
  (:mod:`inference.predict.keep.shares`). The ``test`` block's model is :data:`DEFAULT_ARM`,
  the paper's method (:data:`PAPER`) plus the keep rule with the product's shares;
  ``--windows`` adds its decision at other windows (the same models), to show how much its
  figures depend on the window;
- on the true 1 m labels of the training pixels (the ceiling: what the imagery, network
  and budget allow at all; ``nlcd`` adds class weights there too), which tells a target
  that the coarse labels miss from one that the budget misses.

The coarse product is scored on the same pixels as the models. Overall accuracy and every
present class's producer's / user's accuracy and F1 (impervious included wherever the
reference has it) come from the confusion matrix pooled over the held-out pixels, per seed,
then mean ± sample std over seeds. Every map is also scored on one stratified random sample
of the held-out pixels per setting, the same points for the models and the product, with 95 %
intervals (:mod:`experiments.landcover_points`). ``OUT/metrics.json`` holds everything (its
``test`` block: ``oa_model`` and ``f1_model`` of the default arm, ``paper`` the same for the
paper's method, ``oa_product`` and ``f1_product`` of its product, first setting run);
``OUT/comparison.md`` the tables. Each (setting, fold, seed) run is kept in ``OUT/runs/``
keyed by the configuration, so an interrupted run resumes and a finished one is not redone;
``--jobs`` runs that many at once, each in its own process on ``--threads`` torch threads.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from core.commands import (
    add_logging_arguments,
    check_output_folder,
    configure_logging,
    run_command,
)
from core.errors import ConfigError
from core.parsers import CommandParser
from core.storage import atomic_write
from experiments.chesapeake_nlcd import CHESAPEAKE_FOLDER
from experiments.data import add_data_root_argument, existing_folder, sample_folder
from experiments.landcover_arms import (
    CEILING,
    DEFAULT_ARM,
    INPUT,
    KEEP,
    PAPER,
    SETTINGS,
    SHARES,
    SR,
    Arm,
    Setting,
    with_windows,
)
from experiments.landcover_config import LandCoverConfig
from experiments.landcover_departures import departures
from experiments.landcover_fold import SCORE, run_fold
from experiments.landcover_keep import keep_check
from experiments.landcover_points import draw_points, scored_values
from experiments.landcover_report import (
    impervious_ranking,
    report_table,
    scored_truth,
    summarize,
)
from experiments.landcover_scenes import SOFT, naip_folds, nlcd_folds
from experiments.landcover_train import (
    CropDataset,
    Scene,
    filter_labels,
    model_input,
    predict_windows,
    scored_scenes,
)
from experiments.naip import NAIP_FOLDER
from experiments.threads import add_threads_argument, use_threads
from training.metrics import json_safe

__all__ = ["CEILING", "DEFAULT_ARM", "INPUT", "KEEP", "PAPER", "SETTINGS", "SHARES", "SOFT", "SR",
           "Arm",
           "CropDataset", "LandCoverConfig", "Scene", "Setting",
           "filter_labels", "load_folds", "main", "model_input", "naip_folds", "nlcd_folds",
           "predict_windows", "run_experiment", "with_windows"]

log = logging.getLogger(__name__)


def load_folds(cfg: LandCoverConfig) -> dict[str, list[list[Scene]]]:
    """Every setting's folds, read and checked before any training."""
    readers = {"nlcd": nlcd_folds, "naip": naip_folds}
    return {s: readers[s](cfg) for s in cfg.settings}


# ------------------------------------------------------------------ the whole experiment
def _write_json(path: Path, data: dict) -> None:
    text = json.dumps(json_safe(data), indent=1, allow_nan=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda fh: fh.write(text.encode()))


def _unit(cfg: LandCoverConfig, setting: str, fold: int, seed: int, scenes: Sequence[Scene],
          out: Path) -> None:
    """One (setting, fold, seed) run, written to ``out/runs`` (a worker's whole job)."""
    started = time.perf_counter()
    record, maps = run_fold(cfg, setting, scenes, seed)
    stem = out / "runs" / f"{setting}_fold{fold}_seed{seed}"
    arrays = {f"{a}|{i}": m for a, ms in maps.items() for i, m in enumerate(ms)}
    stem.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(stem.with_suffix(".npz"), lambda fh: np.savez_compressed(fh, **arrays))
    _write_json(stem.with_suffix(".json"), {"key": cfg.key(setting, fold, seed),
                                            "seed": seed, "fold": fold,
                                            "wall_seconds": time.perf_counter() - started,
                                            **record})
    log.info("%s fold %d seed %d done", setting, fold, seed)


def _done(cfg: LandCoverConfig, setting: str, fold: int, seed: int, out: Path) -> bool:
    stem = out / "runs" / f"{setting}_fold{fold}_seed{seed}"
    path = stem.with_suffix(".json")
    return (path.exists() and stem.with_suffix(".npz").exists()
            and json.loads(path.read_text()).get("key") == cfg.key(setting, fold, seed))


def _worker_init(threads: int) -> None:
    use_threads(threads)


def _seed_record(cfg: LandCoverConfig, setting: str, folds: Sequence[Sequence[Scene]],
                 seed: int, out: Path) -> dict:
    """A seed's folds as one record: confusion summed, each arm's classes at the points."""
    spec = cfg.spec(setting)
    scored = scored_scenes(folds)
    record: dict = {"seed": seed, "confusion": {}, "filter": {}, "seconds": {}, "points": {}}
    maps: dict[str, list[np.ndarray]] = {a.name: [] for a in spec.arms}
    scores: dict[str, list[np.ndarray]] = {a.name: [] for a in spec.arms}
    for fold in range(len(folds)):
        stem = out / "runs" / f"{setting}_fold{fold}_seed{seed}"
        run = json.loads(stem.with_suffix(".json").read_text())
        with np.load(stem.with_suffix(".npz"), allow_pickle=False) as z:
            held = sum(s.test.any() for s in folds[fold])
            for a in spec.arms:
                maps[a.name] += [z[f"{a.name}|{i}"] for i in range(held)]
                scores[a.name] += [z[f"{a.name}{SCORE}|{i}"] for i in range(held)]
        for a in spec.arms:
            m = np.asarray(run["confusion"][a.name])
            record["confusion"][a.name] = (np.asarray(record["confusion"].get(a.name, 0)) + m
                                           ).tolist()
            record["seconds"][a.name] = record["seconds"].get(a.name, 0) + run["seconds"][
                a.name]
        for a, f in run["filter"].items():
            d = record["filter"].setdefault(a, {"preliminary": f["preliminary"],
                                                "dropped_chips": 0, "scored_chips": 0})
            d["dropped_chips"] += f["dropped_chips"]
            d["scored_chips"] += f["scored_chips"]
    points = draw_points(scored, spec.headline[1], cfg.points_per_stratum, cfg.points_seed)
    record["points"] = {a: points.values(scored, m).tolist() for a, m in maps.items()}
    truth = scored_values(scored, [s.truth for s in scored])
    product = scored_values(scored, [s.products[spec.headline[1]] for s in scored])
    record["departures"] = {a: departures(scored_values(scored, m), product, truth)
                            for a, m in maps.items()}
    truth, developed = scored_truth(scored)
    record["ranking"] = {a: impervious_ranking(np.concatenate(v), truth, developed)
                         for a, v in scores.items()}
    return record


def run_experiment(cfg: LandCoverConfig, out: str | Path, jobs: int = 1,
                   threads: int = 1) -> dict:
    """Every (setting, fold, seed) run, reusing finished ones; returns and writes the report.

    ``jobs`` > 1 runs that many at once in worker processes of ``threads`` torch threads each.
    """
    out = Path(out)
    started, cpu0 = time.perf_counter(), time.process_time()
    load0 = os.getloadavg()
    folds = load_folds(cfg)
    todo = [(s, f, seed) for s in cfg.settings for seed in cfg.seeds
            for f in range(len(folds[s])) if not _done(cfg, s, f, seed, out)]
    log.info("%d runs to do, %d at once", len(todo), jobs)
    if jobs > 1 and len(todo) > 1:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(jobs, ctx, _worker_init, (threads,)) as pool:
            for job in [pool.submit(_unit, cfg, s, f, seed, folds[s][f], out)
                        for s, f, seed in todo]:
                job.result()
    else:
        for s, f, seed in todo:
            _unit(cfg, s, f, seed, folds[s][f], out)
    runs = {s: [_seed_record(cfg, s, folds[s], seed, out) for seed in cfg.seeds]
            for s in cfg.settings}
    report = summarize(asdict(cfg), {s: cfg.spec(s) for s in cfg.settings},
                       {s: scored_scenes(f) for s, f in folds.items()}, runs)
    if "nlcd" in cfg.settings and cfg.naip_dir and Path(cfg.naip_dir).is_dir():
        report["keep_check"] = keep_check(cfg.naip_dir)
    for s, f in folds.items():
        report["settings"][s]["scenes"] = {
            "folds": [[x.id for x in scenes if x.test.any()] for scenes in f]}
    report["timing"] = {"wall_seconds": time.perf_counter() - started,
                        "cpu_seconds_main": time.process_time() - cpu0,
                        "jobs": jobs, "threads_per_job": threads,
                        "load_average_start": list(load0),
                        "load_average_end": list(os.getloadavg()),
                        "runs": _run_seconds(cfg, out, folds, len(todo))}
    _write_json(out / "metrics.json", report)
    table = (report_table(report) + "\n").encode()
    atomic_write(out / "comparison.md", lambda fh: fh.write(table))
    return report


def _run_seconds(cfg: LandCoverConfig, out: Path, folds: dict, done_now: int) -> dict:
    """The (setting, fold, seed) runs of the report: how many, how many done now, and time.

    ``wall_seconds`` sums each run's own wall time (a run reused from an earlier invocation
    took its time there; runs done at once overlap).
    """
    stems = [out / "runs" / f"{s}_fold{f}_seed{seed}" for s in cfg.settings
             for seed in cfg.seeds for f in range(len(folds[s]))]
    seconds = [json.loads(p.with_suffix(".json").read_text())["wall_seconds"] for p in stems]
    return {"count": len(stems), "done_now": done_now, "wall_seconds": float(sum(seconds))}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m experiments.landcover``; returns the exit status."""
    p = CommandParser(  # exact option names only
        allow_abbrev=False, prog="python -m experiments.landcover", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    d = LandCoverConfig.__dataclass_fields__
    p.add_argument("--data-dir", help="folder of the chesapeake_nlcd .npz patches "
                   f"(default: {CHESAPEAKE_FOLDER} in the --data-root)")
    p.add_argument("--naip-dir", help="folder of the GeoBench Chesapeake id_*.hdf5 tiles "
                   f"(default: {NAIP_FOLDER} in the --data-root)")
    add_data_root_argument(p)
    p.add_argument("--test", help="folder of held-out .npz patches in the chesapeake_nlcd "
                   "format (then every --data-dir patch trains)")
    p.add_argument("--split", choices=("quadrants", "patches"), default=d["split"].default,
                   help="without --test: hold out a quadrant of every patch per fold "
                   "(default), or the patch groups of --groups")
    p.add_argument("--groups", nargs="+", default=[",".join(map(str, g))
                                                   for g in d["groups"].default],
                   help="with --split patches: the held-out groups, each comma-separated "
                   "positions (0-based, by name) of patches held out together")
    p.add_argument("--settings", nargs="+", choices=list(SETTINGS),
                   default=list(d["settings"].default))
    p.add_argument("--out", default="landcover_output")
    p.add_argument("--seeds", type=int, nargs="+", default=list(d["seeds"].default))
    p.add_argument("--nlcd-iterations", type=int, default=d["nlcd_iterations"].default)
    p.add_argument("--naip-iterations", type=int, default=d["naip_iterations"].default)
    p.add_argument("--width", type=int, default=8, help="HRNet C")
    p.add_argument("--lr", type=float, default=d["lr"].default)
    p.add_argument("--weight-cap", type=float, default=d["weight_cap"].default,
                   help="the largest class weight of the class-weighted arms")
    p.add_argument("--product-oa", type=float, default=d["product_oa"].default,
                   help="overall accuracy of the synthetic confusion product")
    p.add_argument("--points-per-stratum", type=int,
                   default=d["points_per_stratum"].default,
                   help="points per stratum of the point sample (strata: the product's classes)")
    p.add_argument("--windows", type=int, nargs="+", default=[], metavar="PX",
                   help="nlcd: also decide with the default arm's rule at these shares "
                   "windows (px; the same models, no more training)")
    p.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                   help="(setting, fold, seed) runs at once, each its own process")
    add_threads_argument(p)
    add_logging_arguments(p)
    a = p.parse_args(argv)
    configure_logging(a.verbose, a.quiet, a.debug)
    return run_command("python -m experiments.landcover", lambda: _run(a), debug=a.debug,
                       writes_to=[a.out])


def _groups(values: Sequence[str]) -> tuple[tuple[int, ...], ...]:
    try:
        return tuple(tuple(int(x) for x in v.split(",") if x.strip()) for v in values)
    except ValueError:
        raise ConfigError(f"--groups takes comma-separated patch positions such as 0,1, got "
                          f"{' '.join(values)}") from None


def _run(a: argparse.Namespace) -> int:
    if a.jobs < 1 or a.threads < 0:
        raise ConfigError("--jobs must be >= 1 and --threads >= 0")
    use_threads(a.threads)
    test_dir = existing_folder(a.test, "held-out patches", "--test") if a.test else None
    model = {**LandCoverConfig().model, "width": a.width}
    # the options are checked (LandCoverConfig) before the sample data is looked for, so a
    # wrong option is named as such on a machine without ../shared too
    cfg = LandCoverConfig(data_dir="", naip_dir="",
                          test_dir=str(test_dir) if test_dir else None,
                          split=a.split, groups=_groups(a.groups),
                          settings=tuple(a.settings),
                          seeds=tuple(a.seeds), model=model,
                          nlcd_iterations=a.nlcd_iterations, naip_iterations=a.naip_iterations,
                          lr=a.lr, weight_cap=a.weight_cap, product_oa=a.product_oa,
                          points_per_stratum=a.points_per_stratum, windows=tuple(a.windows))
    data_dir = existing_folder(a.data_dir or sample_folder(CHESAPEAKE_FOLDER, a.data_root),
                               "chesapeake_nlcd", "--data-dir") if "nlcd" in a.settings else ""
    naip_dir = a.naip_dir or sample_folder(NAIP_FOLDER, a.data_root)
    if "naip" in a.settings or a.naip_dir:
        naip_dir = existing_folder(naip_dir, "GeoBench Chesapeake NAIP", "--naip-dir")
    elif not Path(naip_dir).is_dir():
        naip_dir = ""  # the nlcd setting only checks the keep rule there when it has them
    cfg = replace(cfg, data_dir=str(data_dir), naip_dir=str(naip_dir))
    check_output_folder("--out", a.out)
    load_folds(cfg)  # every input checked before the first training
    report = run_experiment(cfg, a.out, a.jobs, a.threads)
    print(report_table(report))
    t = report["timing"]
    print(f"{t['wall_seconds']:.0f} s wall, {a.jobs} runs at once on {a.threads} torch "
          f"thread(s) each; report: {Path(a.out) / 'metrics.json'}, "
          f"{Path(a.out) / 'comparison.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
