"""Built-up area from real Sentinel-2 L2A with hand-drawn labels, through the product's commands.

``python -m experiments.builtup [--data DIR] [--test PREFIX ...] --out DIR``, or
``python -m experiments.builtup --loto --out DIR`` for the leave-one-tile-out comparison of
several arms and seeds over every labelled tile (:mod:`experiments.builtup_loto`).

The data are Dynamic World training tiles (``dynamicworld_s2`` in the sample data root): per
tile ``PREFIX_s2l2a.tif`` (12 named bands, DN = reflectance x 10000), ``PREFIX_scl.tif``
(Sen2Cor scene classification) and ``PREFIX_label.tif`` (hand-drawn classes, 7 = built area,
0 unmarked, 10 cloud). Each tile gets a scene folder in the local backend's input layout
(links to the three files), and then everything is the product as a user runs it:

1. ``isamap-export --backend local`` with ``--label-map 7=1,0=255,10=255,*=0`` (built 1, the
   other labelled classes 0, unmarked and cloud ignored) and ``--scene-date`` (the files carry
   no date) writes the training patches; the SCL file masks clouds;
2. ``isamap-train`` trains each model (``unet-s2``, on each scene's statistics, by default) on
   them;
3. ``isamap-export`` of the test tile gives its stack, ``isamap-predict`` maps it;
4. the labelled pixels of the test area score the map (:mod:`experiments.scoring`): built F1,
   IoU and ROC AUC, beside NDBI (B11, B8) as a probability (AUC), at 0 and at its best F1
   threshold on the same pixels; and the expected calibration error of the built
   probability (15 equal-width bins), as mapped (at the temperature ``isamap-train`` fitted
   on the validation split) and as the network gave it (temperature 1), with a reliability
   diagram per map (``DIR/maps/MODEL/TILE_reliability.png``).

Without ``--test`` the test area is the southern rows of the Java tile
(``--holdout-rows``, default the last 100 of 340): the training export covers only the rows
north of it, and the experiment checks from the dataset's manifest that no training patch
reaches into it. With ``--test PREFIX`` the model trains on the whole ``--train`` tile and
maps each test tile whole.

``DIR/metrics.json`` holds ``test.f1_built``, ``test.iou_built``, ``test.auc_built`` (the
first model) and ``test.ndbi_auc``, every model's scores under ``models``, and the commands.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from contract.bands import LABEL_NODATA
from contract.dataset import read_manifest
from contract.grid import Grid
from core.commands import (
    add_logging_arguments,
    check_output_folder,
    configure_logging,
    run_command,
)
from core.errors import ConfigError
from core.jsonsafe import dumps
from core.parsers import CommandParser, seed
from core.storage import atomic_write
from experiments.builtup_arms import ARMS, encoder_files
from experiments.builtup_commands import (
    Budget,
    export,
    predict,
    train,
    trained_otherwise,
    validation_ece,
)
from experiments.builtup_extra import FOLDER as EXTRA_FOLDER
from experiments.builtup_extra import terramesh_folder
from experiments.builtup_labels import label_check, outline_mask
from experiments.builtup_loto import (
    DEFAULT_ARMS,
    DEFAULT_SEEDS,
    DEFAULT_TILES,
    Steps,
    build_base,
    check_options,
    figures_markdown,
    on_mapped_pixels,
    run_loto,
)
from experiments.builtup_tiles import (
    DW_FOLDER,
    DW_LABEL_MAP,
    DWTile,
    built_label,
    find_tile,
    reflectance,
    scene_folder,
)
from experiments.data import add_data_root_argument, existing_folder, sample_folder
from experiments.realscenes import format_table, map_scores, read_on
from experiments.scoring import index_baseline, ndbi
from experiments.threads import add_threads_argument, usable_cores, use_threads
from gee_export.local.stack import scl_mask_classes
from training.modelfile import read_model_file
from training.models.encoders.cache import CACHE_ENV
from training.plots import plot_reliability

log = logging.getLogger(__name__)

DEFAULT_TRAIN = "java"
DEFAULT_BANDS = ("B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12")
DEFAULT_MODELS = ("unet-s2",)
DEFAULT_HOLDOUT_ROWS = 100
DEFAULT_BUDGET = Budget()


def training_rows(tile: DWTile, holdout_start: int, patch: int, stride: int) -> int:
    """The last row (exclusive) of the training area whose export grid stays north of the block.

    The export builds its grid from a box in degrees, which covers a little more than the
    rows asked for; rows are taken off until the grid's southern edge is at or north of the
    held-out block's northern edge.
    """
    north_of_block = tile.footprint.bounds(holdout_start)[3]
    for end in range(holdout_start, patch, -1):
        grid = Grid.from_lonlat_bounds(tile.footprint.lonlat_bbox(0, end), tile.footprint.crs,
                                       patch_size=patch, stride=stride)
        if grid.bounds[1] >= north_of_block - 1e-6:
            return end
    raise ConfigError(f"no training rows north of row {holdout_start} of {tile.prefix}; lower "
                      "--holdout-rows")


def check_no_overlap(dataset: Path, tile: DWTile, holdout_start: int) -> float:
    """The southern edge (m) of the training dataset's grid; refuses one reaching the block."""
    manifest = read_manifest(dataset)
    grid = Grid.from_dict(manifest["grid"])
    north_of_block = tile.footprint.bounds(holdout_start)[3]
    if grid.bounds[1] < north_of_block - 1e-6:
        raise ConfigError(f"the training grid reaches {north_of_block - grid.bounds[1]:.0f} m "
                          "into the held-out rows; the split is not clean")
    return float(grid.bounds[1])


def score_map(tile: DWTile, class_path: Path, prob_path: Path, area: np.ndarray,
              model_file: Path | None = None) -> dict:
    """Scores of one map on the labelled pixels of ``area`` (bool, tile pixels).

    With ``model_file``, the expected calibration error of the probabilities at the file's
    temperature (as mapped) and at temperature 1 (as the network gave them), and the one on
    the training regions' validation pixels (``ece_in_region``): its calibration record's, or
    a join's (:func:`validation_ece`; scored as mapped only: its members' temperatures are
    inside the mean, and its map re-expressed at 1 would overstate it).
    """
    meta = read_model_file(model_file)[0] if model_file else None
    joined = meta is not None and (meta.calibration or {}).get("method") == "members"
    scores = map_scores(built_label(tile), tile.footprint, class_path, prob_path, area,
                        meta.temperature if meta and not joined else None)
    if meta is not None:
        record = dict(meta.calibration or {})
        fitted = record.get("method") == "temperature"
        in_region = validation_ece(model_file) if joined and model_file else record.get(
            "ece_after" if fitted else "ece_before", float("nan"))
        scores.update(calibration=record.get("method", "none"), ece_in_region=in_region)
    return scores


def score_ndbi(tile: DWTile, area: np.ndarray) -> dict:
    """NDBI (B11, B8) on the labelled pixels of ``area``: AUC, F1 at 0 and at its best.

    Also how many pixels (and built ones) were scored. Give ``area`` the pixels the maps
    cover (:func:`covered`) to score NDBI on the pixels a map is scored on: a composite's
    cloud mask leaves some labelled pixels without a map.
    """
    truth = built_label(tile)
    bands = reflectance(tile, ("B8", "B11"))
    index = ndbi(bands["B11"], bands["B8"])
    keep = area & (truth != LABEL_NODATA) & np.isfinite(index)
    result = index_baseline(index[keep], truth[keep])
    return {"ndbi_auc": result["auc"], "ndbi_f1_at_0": result["f1"],
            "ndbi_best_f1": result["best_f1"], "ndbi_best_threshold": result["best_threshold"],
            "pixels": int(keep.sum()), "built_pixels": int((truth[keep] == 1).sum())}


def covered(tile: DWTile, class_path: Path) -> np.ndarray:
    """The tile's pixels (bool, on its label grid) where the class map is not nodata."""
    return np.isfinite(read_on(class_path, tile.footprint))


def run_builtup(data: Path, out: Path, *, tests: Sequence[str] = (), train_prefix: str =
                DEFAULT_TRAIN, models: Sequence[str] = DEFAULT_MODELS,
                bands: Sequence[str] = DEFAULT_BANDS, holdout_rows: int = DEFAULT_HOLDOUT_ROWS,
                budget: Budget = DEFAULT_BUDGET, dates: dict[str, str] | None = None) -> dict:
    """The whole experiment; returns (and writes) ``metrics.json``."""
    start = time.perf_counter()
    dates = dates or {}
    if train_prefix in tests:
        raise ConfigError(f"--test {train_prefix} is the training tile; give --train PREFIX")
    trained_on = find_tile(data, train_prefix, dates.get(train_prefix))
    scenes = out / "scenes"
    runs: dict[str, dict] = {}
    if tests:
        test_tiles = [find_tile(data, p, dates.get(p)) for p in tests]
        areas = {t.prefix: np.ones((t.footprint.height, t.footprint.width), bool)
                 for t in test_tiles}
        train_rows: tuple[int, int | None] = (0, None)
        split = {"train": f"tile {train_prefix} (whole)", "test": list(tests)}
    else:
        holdout_start = trained_on.footprint.height - holdout_rows
        if not 0 < holdout_start < trained_on.footprint.height:
            raise ConfigError(f"--holdout-rows must be between 1 and "
                              f"{trained_on.footprint.height - 1}, got {holdout_rows}")
        end = training_rows(trained_on, holdout_start, budget.patch, budget.stride)
        test_tiles = [trained_on]
        area = np.zeros((trained_on.footprint.height, trained_on.footprint.width), bool)
        area[holdout_start:] = True
        areas = {train_prefix: area}
        train_rows = (0, end)
        split = {"train": f"tile {train_prefix} rows 0-{end}",
                 "test": f"tile {train_prefix} rows {holdout_start}-{trained_on.footprint.height}"}
    train_set = out / f"train_{train_prefix}"
    export(trained_on, scene_folder(trained_on, scenes), train_set, bands, budget, train_rows)
    if not tests:
        split["train_grid_south_m"] = check_no_overlap(train_set, trained_on, holdout_start)
    stacks = {t.prefix: export(t, scene_folder(t, scenes), out / f"map_{t.prefix}", bands, budget)
              for t in test_tiles}
    first_maps: dict[str, Path] = {}
    for model in models:
        model_file = train(model, train_set, out / "runs" / model, budget)
        per_tile = {}
        for tile in test_tiles:
            class_path, prob_path = predict(model_file, stacks[tile.prefix],
                                            out / "maps" / model / tile.prefix, tile.month)
            scores = score_map(tile, class_path, prob_path, areas[tile.prefix], model_file)
            curves = ({"uncalibrated (T = 1)": scores["reliability"]["uncalibrated"],
                       f"as mapped (T = {scores['temperature']:.2f})":
                       scores["reliability"]["mapped"]} if "temperature" in scores
                      else {"as mapped (the mean of its trainings)":
                            scores["reliability"]["mapped"]})
            plot_reliability(curves,
                             out / "maps" / model / f"{tile.prefix}_reliability.png",
                             f"{model} on {tile.prefix}: built probability, held-out pixels")
            per_tile[tile.prefix] = scores
            first_maps.setdefault(tile.prefix, class_path)
        runs[model] = per_tile
    # every model maps the same stack, so the first one's map covers the pixels all are scored on
    baselines = {t.prefix: on_mapped_pixels(
        score_ndbi(t, areas[t.prefix] & covered(t, first_maps[t.prefix])),
        score_ndbi(t, areas[t.prefix])) for t in test_tiles}
    first = models[0]
    head = test_tiles[0].prefix
    metrics = {
        "test": {**runs[first][head], **baselines[head], "model": first, "tile": head},
        "models": runs, "ndbi": baselines, "split": split, "bands": list(bands),
        "budget": budget.__dict__, "label_map": DW_LABEL_MAP,
        "seconds": round(time.perf_counter() - start, 1),
    }
    text = dumps(metrics, indent=2)
    atomic_write(out / "metrics.json", lambda handle: handle.write(text.encode()))
    table = results_table(metrics)
    atomic_write(out / "results.txt", lambda handle: handle.write(table.encode() + b"\n"))
    log.info("built-up on the labelled pixels of %s", split["test"])
    print(table)
    print(f"{metrics['seconds']:.0f} s; metrics: {out / 'metrics.json'}")
    return metrics


def results_table(metrics: dict) -> str:
    """One row per model and test tile, then the NDBI rows."""
    rows = []
    for model, tiles in metrics["models"].items():
        for tile, s in tiles.items():
            rows.append((model, tile, s["f1_built"], s["iou_built"], s["auc_built"],
                         s.get("ece_built_uncalibrated", ""), s.get("ece_built", ""),
                         s["pixels"], s["built_pixels"]))
    for tile, b in metrics["ndbi"].items():
        pixels = (b.get("pixels", ""), b.get("built_pixels", ""))
        rows.append(("NDBI >= 0", tile, b["ndbi_f1_at_0"], "", b["ndbi_auc"], "", "", *pixels))
        rows.append((f"NDBI >= {b['ndbi_best_threshold']:.3f} (best on test)", tile,
                     b["ndbi_best_f1"], "", "", "", "", *pixels))
    return format_table(rows, ("map", "tile", "F1 built", "IoU built", "ROC AUC",
                               "ECE T=1", "ECE mapped", "pixels", "built"))




def _names(text: str) -> list[str]:
    return [n for n in text.split(",") if n]


def _dates(items: Sequence[str]) -> dict[str, str]:
    out = {}
    for item in items:
        prefix, sep, date = item.partition("=")
        if not sep:
            raise ConfigError(f"--date takes PREFIX=YYYY-MM-DD, got {item!r}")
        out[prefix] = date
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m experiments.builtup``; returns the exit status."""
    p = CommandParser(  # exact option names only
        allow_abbrev=False, prog="python -m experiments.builtup", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    d = Budget()
    p.add_argument("--data", help=f"folder of the tiles (default: {DW_FOLDER} in the "
                   "--data-root)")
    add_data_root_argument(p)
    p.add_argument("--test", nargs="+", default=[], metavar="PREFIX",
                   help="held-out tiles (PREFIX_s2l2a.tif, PREFIX_scl.tif, PREFIX_label.tif); "
                        "default: the southern --holdout-rows of the --train tile")
    p.add_argument("--train", default=DEFAULT_TRAIN, metavar="PREFIX", help="training tile")
    p.add_argument("--date", nargs="+", default=[], metavar="PREFIX=YYYY-MM-DD",
                   help="acquisition dates of tiles outside the shared sample set")
    p.add_argument("--holdout-rows", type=int, default=DEFAULT_HOLDOUT_ROWS)
    p.add_argument("--models", help="isamap-train models, comma-separated (default: "
                   f"{','.join(DEFAULT_MODELS)}; without --loto)")
    p.add_argument("--bands", default=",".join(DEFAULT_BANDS))
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr, help="learning rate (Adam)")
    p.add_argument("--patch-size", type=int, default=d.patch)
    p.add_argument("--stride", type=int, default=d.stride)
    p.add_argument("--seed", type=seed, default=d.seed,
                   help="the arms' seed g: a model of K trainings (unet-s2: 9) trains seeds "
                        "gK to gK + K - 1")
    p.add_argument("--iterations", type=int, default=None,
                   help="total training iterations (replaces --epochs)")
    p.add_argument("--loto", action="store_true",
                   help="leave-one-tile-out over --tiles: every arm, --seeds seeds, NDBI beside")
    p.add_argument("--base", action="store_true",
                   help="the base model: the first of --arms (default unet-s2) trained on "
                        "every --tiles tile whole, nothing held out, written to "
                        "OUT/base/seed<--seed>/model.pt for isamap-fit --from")
    p.add_argument("--tiles", help=f"--loto: the labelled tiles (PREFIX,...; default: "
                   f"{','.join(DEFAULT_TILES)})")
    p.add_argument("--arms", help=f"--loto: arms (default: {','.join(DEFAULT_ARMS)}; "
                   f"isamap-train models or {', '.join(ARMS)})")
    p.add_argument("--tile", type=int, default=None,
                   help="--loto: prediction tile of the maps (default: each model's own)")
    p.add_argument("--seeds", type=int,
                   help=f"--loto: seeds per arm (default: {DEFAULT_SEEDS})")
    p.add_argument("--terramesh", metavar="DIR|none",
                   help=f"--loto: TerraMesh cells every fold trains on too, labelled by a "
                        f"land-cover product (default: {EXTRA_FOLDER} in the --data-root; "
                        "none: the tiles alone)")
    p.add_argument("--ignore-outlines", action="store_true",
                   help="--loto: the training exports leave the coarse outlines' pixels "
                        "unlabelled (the Java tile's eastern strip); the held-out pixels are "
                        "scored as labelled, whole and without the outlines")
    p.add_argument("--scl-mask", metavar="CLASSES",
                   help="SCL classes the composites leave out (isamap-export --scl-mask; "
                        "default 3,8,9,10,11); 3,11 keeps what Sen2Cor flags as cloud or cirrus")
    p.add_argument("--encoder", nargs="+", default=[], metavar="NAME=PATH",
                   help="the encoder files the encoder arms fuse (default: presto's "
                        "default_model.pt in weights/presto beside the --data-root)")
    p.add_argument("--jobs", type=int, default=None,
                   help="--loto: trainings run at once, each its own process (default: one "
                        "per core this process may use); at --threads 1 the scores are the "
                        "same for any number")
    p.add_argument("--out", default="builtup_output")
    add_threads_argument(p)
    add_logging_arguments(p)
    a = p.parse_args(argv)
    configure_logging(a.verbose, a.quiet, a.debug)
    return run_command("python -m experiments.builtup", lambda: _run(a), debug=a.debug,
                       writes_to=[a.out])


#: the options of one of the two experiments: the leave-one-tile-out comparison (``--loto``)
#: and the single-tile one; either refuses the other's, which it would ignore
LOTO_ONLY = ("--arms", "--tiles", "--seeds", "--jobs", "--terramesh")
SINGLE_ONLY = ("--models", "--test")


def check_experiment(a: argparse.Namespace) -> None:
    """Refuse the other experiment's options, and ``--loto``'s arms, before any work.

    The options given neither way (None: their parser's default) are then set to their
    defaults.

    Without ``--loto`` an ``--arms`` list was ignored (the single-tile experiment ran its
    ``--models`` for 15 minutes); an unknown arm is refused at once, not after the data checks.

    Raises:
        ConfigError: an option the run would ignore, or :func:`check_options`' refusals.
    """
    if a.base and a.loto:
        raise ConfigError("--base trains one model on every tile and --loto holds each out "
                          "in turn: give one of them")
    other = SINGLE_ONLY if a.loto or a.base else LOTO_ONLY
    given = [f for f in other if getattr(a, f.removeprefix("--").replace("-", "_")) not in
             (None, [])]
    if given:
        them, kind = ("it", "an option") if len(given) == 1 else ("them", "options")
        raise ConfigError(f"{', '.join(given)}: {kind} of the single-tile experiment, and this "
                          f"run is {'--base' if a.base else '--loto (it compares --arms)'}; "
                          f"leave {them} out" if a.loto or a.base
                          else f"{', '.join(given)}: {kind} of the leave-one-tile-out "
                          "comparison, and this run is the single-tile experiment (it trains "
                          f"--models); give --loto too, or leave {them} out")
    for name, default in (("arms", ",".join(DEFAULT_ARMS)), ("tiles", ",".join(DEFAULT_TILES)),
                          ("seeds", DEFAULT_SEEDS), ("models", ",".join(DEFAULT_MODELS))):
        if getattr(a, name) is None:
            setattr(a, name, default)
    if a.loto:
        check_options(_names(a.tiles), a.train, _names(a.arms), a.seeds,
                      usable_cores() if a.jobs is None else a.jobs)


def _run(a: argparse.Namespace) -> int:
    check_experiment(a)
    data = existing_folder(a.data or sample_folder(DW_FOLDER, a.data_root), "Dynamic World",
                           "--data")
    check_output_folder("--out", a.out)
    if a.scl_mask is not None:
        scl_mask_classes(a.scl_mask)  # a bad class list is refused before any export
    use_threads(a.threads)
    budget = Budget(epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, patch=a.patch_size,
                    stride=a.stride, seed=a.seed, iterations=a.iterations, tile=a.tile,
                    scl_mask=a.scl_mask)
    if a.base:
        model = build_base(Steps(find_tile, scene_folder, export, training_rows,
                                 check_no_overlap, score_ndbi, train, predict, score_map),
                           data, Path(os.path.abspath(a.out)), bands=_names(a.bands),
                           budget=budget, tiles=_names(a.tiles), arm=_names(a.arms)[0],
                           dates=_dates(a.date))
        print(f"base model: {model}")
        return 0
    if a.loto:
        out = Path(os.path.abspath(a.out))
        encoders = encoder_files(_names(a.arms), a.encoder, data.parent)
        if encoders:  # the seeds and arms share one encoding of every patch
            os.environ.setdefault(CACHE_ENV, str(out / "encoder_cache"))
        check_labels(out, a.ignore_outlines)
        folders = (functools.partial(scene_folder, ignore=outline_mask) if a.ignore_outlines
                   else scene_folder)
        steps = Steps(find_tile, folders, export, training_rows, check_no_overlap,
                      score_ndbi, functools.partial(train, encoders=encoders), predict,
                      score_map, covered,
                      functools.partial(trained_otherwise, encoders=encoders), label_check,
                      outline_mask)
        metrics = run_loto(steps, data, out, tiles=_names(a.tiles), row_split=a.train,
                           arms=_names(a.arms), seeds=a.seeds, bands=_names(a.bands),
                           holdout_rows=a.holdout_rows, budget=budget, dates=_dates(a.date),
                           jobs=usable_cores() if a.jobs is None else a.jobs,
                           terramesh=terramesh_folder(a.terramesh, a.data_root))
        print(figures_markdown(metrics).strip().removeprefix("```text").removesuffix("```")
              .strip())
        print(f"{metrics['seconds']:.0f} s; metrics: {out / 'loto.json'}")
        return 0
    run_builtup(data, Path(os.path.abspath(a.out)), tests=a.test, train_prefix=a.train,
                models=[m for m in a.models.split(",") if m],
                bands=[b for b in a.bands.split(",") if b], holdout_rows=a.holdout_rows,
                budget=budget, dates=_dates(a.date))
    return 0


def check_labels(out: Path, ignore_outlines: bool) -> None:
    """Record in ``out`` how its exports label the coarse outlines; refuse the other way."""
    record, wanted = out / "labels.json", {"outlines": "ignored" if ignore_outlines else "kept"}
    if record.is_file() and json.loads(record.read_text()) != wanted:
        raise ConfigError(f"--out {out}: its exports were made with the coarse outlines "
                          f"{json.loads(record.read_text())['outlines']}, and this run would "
                          f"have them {wanted['outlines']}; give another --out")
    if (out / "exports").is_dir() and not record.is_file() and ignore_outlines:
        raise ConfigError(f"--out {out} holds exports made with the outlines labelled; give "
                          "another --out for --ignore-outlines")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(record, lambda handle: handle.write(json.dumps(wanted).encode()))


if __name__ == "__main__":
    raise SystemExit(main())
