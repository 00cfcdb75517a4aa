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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio

from contract.bands import LABEL_NODATA
from contract.dataset import read_manifest
from contract.grid import Grid
from core.commands import (
    add_logging_arguments,
    check_output_folder,
    configure_logging,
    run_command,
)
from core.errors import ConfigError, InputDataError
from core.jsonsafe import dumps
from core.parsers import CommandParser
from core.storage import atomic_write
from experiments.builtup_loto import (
    DEFAULT_ARMS,
    DEFAULT_SEEDS,
    DEFAULT_TILES,
    Steps,
    figures_markdown,
    on_mapped_pixels,
    run_loto,
)
from experiments.data import add_data_root_argument, existing_folder, sample_folder
from experiments.realscenes import (
    Footprint,
    bbox_argument,
    format_table,
    link_into,
    map_scores,
    mapped_label,
    read_on,
    run_product,
)
from experiments.scoring import index_baseline, ndbi
from experiments.threads import add_threads_argument, usable_cores, use_threads
from gee_export.local.stack import scl_mask_classes
from training.modelfile import read_model_file
from training.models.encoders.cache import CACHE_ENV
from training.models.encoders.registry import encoder_entry, load_encoder, parse_encoder
from training.plots import plot_reliability

log = logging.getLogger(__name__)

DW_FOLDER = "dynamicworld_s2"
DW_LABEL_MAP = "7=1,0=255,10=255,*=0"  # 7 built area -> 1; 0 unmarked, 10 cloud ignored
DW_DATES = {"java": "2019-07-13", "ghana_a": "2018-12-26", "ghana_b": "2018-12-26"}
DEFAULT_TRAIN = "java"
DEFAULT_BANDS = ("B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12")
DEFAULT_MODELS = ("unet-s2",)
DEFAULT_HOLDOUT_ROWS = 100
#: the sample weights' folder of each encoder (``weights/<folder>/<file>``)
WEIGHT_FOLDERS = {"presto": "presto", "galileo-nano": "galileo_nano"}


@dataclass(frozen=True)
class DWTile:
    """One Dynamic World tile's three files and its grid."""

    prefix: str
    s2: Path
    scl: Path
    label: Path
    footprint: Footprint
    date: str | None

    @property
    def month(self) -> str | None:
        return self.date[:7] if self.date else None


def find_tile(folder: str | Path, prefix: str, date: str | None = None) -> DWTile:
    """The files ``PREFIX_s2l2a.tif``, ``PREFIX_scl.tif``, ``PREFIX_label.tif`` in ``folder``.

    The three must share one grid. ``date`` (``YYYY-MM-DD``) defaults to the shared sample's
    known dates (:data:`DW_DATES`); the export reads it from the files' tags when they have one.
    """
    folder = Path(folder)
    given = Path(prefix)
    if given.parent != Path("."):  # a path: read there, but name every output by the tile
        folder, prefix = given.parent, given.name  # only, so all of them stay under --out
    paths = {kind: Path(folder) / f"{prefix}_{kind}.tif" for kind in ("s2l2a", "scl", "label")}
    missing = [p.name for p in paths.values() if not p.is_file()]
    if missing:
        raise InputDataError(f"tile {prefix!r} lacks {', '.join(missing)} in {folder}; a tile "
                             "is PREFIX_s2l2a.tif, PREFIX_scl.tif and PREFIX_label.tif")
    grids = {kind: Footprint.of(p) for kind, p in paths.items()}
    if len(set(grids.values())) != 1:
        shown = ", ".join(f"{k}: {g.crs} {g.width}x{g.height}" for k, g in grids.items())
        raise InputDataError(f"tile {prefix!r}: the three files are not on one grid ({shown})")
    return DWTile(prefix, paths["s2l2a"], paths["scl"], paths["label"], grids["label"],
                  date or DW_DATES.get(prefix))


def built_label(tile: DWTile) -> np.ndarray:
    """The tile's label as 0 other / 1 built / 255 ignored, through the export's own mapping."""
    return mapped_label(tile.label, DW_LABEL_MAP)


def reflectance(tile: DWTile, bands: Sequence[str]) -> dict[str, np.ndarray]:
    """Named bands of the S2 file as reflectance (DN / 10000; DN 0 is NaN)."""
    from gee_export.local.scenes import canonical_band

    with rasterio.open(tile.s2) as src:
        index = {canonical_band(d or ""): i for i, d in enumerate(src.descriptions, 1)}
        missing = [b for b in bands if b not in index]
        if missing:
            raise InputDataError(f"{tile.s2} has no band {', '.join(missing)} (descriptions "
                                 f"{src.descriptions})")
        out = {}
        for band in bands:
            dn = src.read(index[band]).astype(np.float64)
            out[band] = np.where(dn == 0, np.nan, dn / 10000.0)
    return out


def scene_folder(tile: DWTile, root: Path) -> Path:
    """``root/<prefix>/`` with links to the tile's files: the local backend's input layout."""
    folder = root / tile.prefix
    for path in (tile.s2, tile.scl, tile.label):
        link_into(path, folder)
    return folder


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


@dataclass(frozen=True)
class Budget:
    """The training budget and patch layout (the defaults finish in minutes on 2 cores)."""

    epochs: int = 20
    batch_size: int = 8
    lr: float = 1e-3
    patch: int = 64
    stride: int = 32
    split_block: int = 2
    min_valid_fraction: float = 0.5  # hand labels leave gaps (unmarked): half a patch suffices
    seed: int = 0
    iterations: int | None = None  # total training iterations (replaces epochs when set)
    tile: int | None = None  # prediction tile (None: the model's own, isamap-predict's default)
    scl_mask: str | None = None  # SCL classes the composites leave out (None: the export's)


def export(tile: DWTile, scenes: Path, out: Path, bands: Sequence[str], budget: Budget,
           rows: tuple[int, int | None] = (0, None)) -> Path:
    """``isamap-export --backend local`` of rows ``rows`` of ``tile`` into ``out``."""
    if tile.month is None:
        raise ConfigError(f"no date known for tile {tile.prefix!r}; give --date "
                          f"{tile.prefix}=YYYY-MM-DD")
    argv = ["--backend", "local", "--scenes", str(scenes),
            bbox_argument(tile.footprint.lonlat_bbox(*rows, inset=0.5)),
            "--crs", tile.footprint.crs, "--month", tile.month, "--bands", ",".join(bands),
            "--label-map", DW_LABEL_MAP, "--patch-size", str(budget.patch),
            "--stride", str(budget.stride), "--split-block", str(budget.split_block),
            "--min-valid-fraction", str(budget.min_valid_fraction),
            "--seed", str(budget.seed), "--out", str(out), "--no-progress"]
    if tile.date:
        argv += ["--scene-date", tile.date]
    if budget.scl_mask is not None:
        argv += ["--scl-mask", budget.scl_mask]
    run_product("isamap-export", argv)
    return out / "stacks" / f"stack_{tile.month}_image.tif"


@dataclass(frozen=True)
class Arm:
    """One trained map of the comparison: an ``isamap-train`` model and its extra arguments.

    ``encoder``: the pretrained encoder (``--encoder NAME=PATH``) it fuses, the file given to
    the experiment (never recorded in its results).
    """

    name: str
    model: str
    model_kwargs: Mapping = field(default_factory=dict)
    train_args: tuple[str, ...] = ()
    encoder: str | None = None


def _s2_arm(name: str, input_norm: str, indices: Sequence[str] = (), radiometric: bool = False,
            balanced: bool = False, window: int | None = None, norm: str = "training",
            ema: float = 0.0, flips: bool = False) -> Arm:
    """A ``unet-s2`` arm that states every option it compares (none left to the recipe).

    The optical recipes differ in ``input_norm`` and ``norm`` (``unet-s2``: none and scene;
    ``unet-s2-window``: patch and training) and share the widths, so stating both, with the
    augmentations, makes the arm the same whichever recipe the name ``unet-s2`` holds.
    ``ema``: the half-life in iterations of the weight average kept (``isamap-train --ema``;
    0: the last weights), stated too, as ``unet-s2``'s recipe averages; ``flips``: the
    mean of each window's four mirror images in every map (``model_kwargs`` ``flips``),
    stated as ``unet-s2``'s recipe sets it.
    """
    box = {"norm_window": window} if window else {}
    return Arm(name, "unet-s2", {"input_norm": input_norm, "indices": list(indices),
                                 "flips": flips, **box},
               ("--radiometric" if radiometric else "--no-radiometric",
                "--balanced-sampling" if balanced else "--no-balanced-sampling",
                "--no-balanced-scenes", "--norm", norm, "--ema", f"{ema:g}"))


INDICES = ("ndbi", "ndvi", "mndwi")

#: Named arms beside the registry's models (any ``isamap-train`` model name is an arm too, with
#: its own recipe: ``unet-s2`` on each scene's statistics, ``unet-s2-window`` standardising
#: each window). Each states the window standardisation (``patch``: each window's bands by
#: their own mean and deviation; ``global``: the training set's statistics alone), the index
#: channels (``idx``: NDBI, NDVI, MNDWI), the radiometric augmentation (``radio``) and the
#: class-balanced sampling (``bal``) it trains with; ``emaN``: ``unet-s2``'s recipe keeping the
#: moving average of its weights with a half-life of N iterations, ``last``: its last weights.
#: Every arm states the half-life (0 unless named) and maps each window once (no ``flips``):
#: ``unet-s2-ema10`` is ``unet-s2``'s recipe without its test-time flips; ``unet-s2-radio``
#: and ``unet-s2-bal`` are ``unet-s2``'s recipe, flips included, with radiometric
#: augmentation or class-balanced sampling.
ARMS = {arm.name: arm for arm in (
    _s2_arm("unet-s2-global", "none"),
    _s2_arm("unet-s2-patch", "patch"),
    _s2_arm("unet-s2-patch-radio", "patch", radiometric=True),
    _s2_arm("unet-s2-global-radio", "none", radiometric=True),
    _s2_arm("unet-s2-patch-idx", "patch", INDICES),
    _s2_arm("unet-s2-global-idx", "none", INDICES),
    _s2_arm("unet-s2-global-idx-radio", "none", INDICES, radiometric=True),
    _s2_arm("unet-s2-patch-idx-radio", "patch", INDICES, radiometric=True),
    _s2_arm("unet-s2-patch-bal", "patch", balanced=True),
    _s2_arm("unet-s2-global-radio-bal", "none", radiometric=True, balanced=True),
    _s2_arm("unet-s2-patch-idx-bal", "patch", INDICES, balanced=True),
    _s2_arm("unet-s2-global-idx-radio-bal", "none", INDICES, radiometric=True, balanced=True),
    _s2_arm("unet-s2-both-radio", "both", radiometric=True),
    _s2_arm("unet-s2-both-idx-radio", "both", INDICES, radiometric=True),
    _s2_arm("unet-s2-both", "both"),
    _s2_arm("unet-s2-local", "local", window=63),
    _s2_arm("unet-s2-local31", "local", window=31),
    _s2_arm("unet-s2-scene-both", "both", norm="scene"),
    _s2_arm("unet-s2-last", "none", norm="scene"),
    _s2_arm("unet-s2-ema25", "none", norm="scene", ema=25),
    _s2_arm("unet-s2-ema10", "none", norm="scene", ema=10),
    _s2_arm("unet-s2-radio", "none", norm="scene", ema=10, flips=True, radiometric=True),
    _s2_arm("unet-s2-bal", "none", norm="scene", ema=10, flips=True, balanced=True),
    _s2_arm("unet-s2-radio-bal", "none", norm="scene", ema=10, flips=True, radiometric=True,
            balanced=True),
    _s2_arm("unet-s2-flips", "none", norm="scene", ema=10, flips=True),
    # unet-s2's recipe with each scene's patches drawn by their number (the recipe before
    # balanced scenes): the large tile's class shares set the prior
    Arm("unet-s2-pooled", "unet-s2", {}, ("--no-balanced-scenes",)),
)}


#: Where the encoder arms tell the encoder they are: one place and month for every fold (the
#: equator at the prime meridian, January), so a patch's features are the same whichever tiles
#: a fold trains on and are encoded once for all of them; a model file maps every region with
#: the location and month it records.
ENCODER_PLACE = {"latlon": [0.0, 0.0], "month": 0}


def _encoder_arm(name: str, encoder: str, fusion: str, norm: str) -> Arm:
    """An arm fusing ``encoder`` (frozen) with ``fusion``, normalised by ``norm``.

    Every option it compares is stated: plain shuffling, no radiometric augmentation, no
    weight average.
    """
    return Arm(name, "unet-s2", dict(ENCODER_PLACE),
               ("--fusion", fusion, "--norm", norm, "--no-balanced-sampling",
                "--no-balanced-scenes", "--no-radiometric", "--ema", "0"), encoder)


#: The pretrained-encoder arms: Presto's features and the bands, with their means over 5 and
#: 15 px squares, read out linearly (``--fusion context``); ``presto-context`` normalises by
#: each scene's statistics (the encoder reads each scene matched to the training data's),
#: ``presto-context-raw`` by the training statistics (the encoder reads the stack as it is).
ENCODER_ARMS = {arm.name: arm for arm in (
    _encoder_arm("presto-context", "presto", "context", "scene"),
    _encoder_arm("presto-context-raw", "presto", "context", "training"),
)}
ARMS.update(ENCODER_ARMS)


def arm_of(name: str) -> Arm:
    """The named arm, or the registry model ``name`` with its own recipe."""
    return ARMS.get(name, Arm(name, name))


def train(arm: Arm | str, dataset: Path, run: Path, budget: Budget,
          encoders: Mapping[str, str] | None = None) -> Path:
    """``isamap-train`` of ``arm`` on ``dataset``; returns the model file.

    ``encoders``: the encoder files (name -> path) the encoder arms fuse. The arm's own
    options come last, so they win over the budget's.
    """
    arm = arm_of(arm) if isinstance(arm, str) else arm
    extra = ["--model-kwargs", json.dumps(dict(arm.model_kwargs))] if arm.model_kwargs else []
    if arm.encoder:
        if arm.encoder not in (encoders or {}):
            raise ConfigError(f"arm {arm.name} fuses {arm.encoder}: give --encoder "
                              f"{arm.encoder}=PATH")
        extra += ["--encoder", f"{arm.encoder}={(encoders or {})[arm.encoder]}"]
    run_product("isamap-train", [
        "--model", arm.model, "--data", str(dataset), "--out", str(run),
        "--epochs", str(budget.epochs), "--batch-size", str(budget.batch_size),
        *(["--max-iterations", str(budget.iterations)] if budget.iterations else []),
        "--lr", str(budget.lr), "--seed", str(budget.seed), "--workers", "0", "--cache",
        "--precision", "fp32", "--channels-last", "off", "--no-progress", *extra,
        *arm.train_args])
    return run / "model.pt"


def predict(model_file: Path, stack: Path, out: Path, month: str,
            tile: int | None = None) -> tuple[Path, Path]:
    """``isamap-predict``; returns the class and probability COGs.

    ``tile``: map on that tile (a quarter of it overlapping) even where the model records
    another (``--any-tile``); None: the model's own.
    """
    other = ["--tile", str(tile), "--overlap", str(tile // 4), "--any-tile"] if tile else []
    run_product("isamap-predict", [
        "--model", str(model_file), "--input", str(stack), "--out", str(out),
        "--month", month, "--precision", "fp32", "--channels-last", "off", *other])
    return Path(f"{out}_class.tif"), Path(f"{out}_prob.tif")


def score_map(tile: DWTile, class_path: Path, prob_path: Path, area: np.ndarray,
              model_file: Path | None = None) -> dict:
    """Scores of one map on the labelled pixels of ``area`` (bool, tile pixels).

    With ``model_file``, the expected calibration error of the probabilities at the file's
    temperature (as mapped) and at temperature 1 (as the network gave them), and the one on
    the training regions' validation pixels its calibration record holds (``ece_in_region``).
    """
    meta = read_model_file(model_file)[0] if model_file else None
    scores = map_scores(built_label(tile), tile.footprint, class_path, prob_path, area,
                        meta.temperature if meta else None)
    if meta is not None:
        record = dict(meta.calibration or {})
        fitted = record.get("method") == "temperature"
        scores.update(calibration=record.get("method", "none"), ece_in_region=record.get(
            "ece_after" if fitted else "ece_before", float("nan")))
    return scores


def tile_ndbi(tile: DWTile) -> np.ndarray:
    """NDBI (B11, B8) over the whole tile (NaN where a band is nodata)."""
    bands = reflectance(tile, ("B8", "B11"))
    return ndbi(bands["B11"], bands["B8"])


def score_ndbi(tile: DWTile, area: np.ndarray) -> dict:
    """NDBI (B11, B8) on the labelled pixels of ``area``: AUC, F1 at 0 and at its best.

    Also how many pixels (and built ones) were scored. Give ``area`` the pixels the maps
    cover (:func:`covered`) to score NDBI on the pixels a map is scored on: a composite's
    cloud mask leaves some labelled pixels without a map.
    """
    truth = built_label(tile)
    index = tile_ndbi(tile)
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
                budget: Budget = Budget(), dates: dict[str, str] | None = None) -> dict:
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
            plot_reliability({"uncalibrated (T = 1)":
                              scores["reliability"]["uncalibrated"],
                              f"as mapped (T = {scores['temperature']:.2f})":
                              scores["reliability"]["mapped"]},
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


def encoder_files(arms: Sequence[str], given: Sequence[str], data: Path) -> dict[str, str]:
    """The checked encoder file of every encoder the ``arms`` fuse (name -> path).

    ``given``: ``NAME=PATH`` items; an encoder not given is looked for where the sample sets'
    weights lie (``weights/presto/default_model.pt`` beside the data folder's parent). Each
    file is checked (exists, the published SHA-256) before any export.
    """
    files = {}
    for item in given:
        entry, path = parse_encoder(item)
        files[entry.name] = path
    wanted = {arm_of(part).encoder for arm in arms for part in arm.split("+")} - {None}
    out = {}
    for name in sorted(n for n in wanted if n):
        entry = encoder_entry(name)
        path = files.get(name) or str(data.parent / "weights" / WEIGHT_FOLDERS[name] /
                                      entry.file_name)
        load_encoder(entry, path)
        out[name] = path
    return out


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
    p.add_argument("--models", default=",".join(DEFAULT_MODELS),
                   help="isamap-train models, comma-separated")
    p.add_argument("--bands", default=",".join(DEFAULT_BANDS))
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr, help="learning rate (Adam)")
    p.add_argument("--patch-size", type=int, default=d.patch)
    p.add_argument("--stride", type=int, default=d.stride)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--iterations", type=int, default=None,
                   help="total training iterations (replaces --epochs)")
    p.add_argument("--loto", action="store_true",
                   help="leave-one-tile-out over --tiles: every arm, --seeds seeds, NDBI beside")
    p.add_argument("--tiles", default=",".join(DEFAULT_TILES),
                   help="--loto: the labelled tiles (PREFIX,...)")
    p.add_argument("--arms", default=",".join(DEFAULT_ARMS),
                   help=f"--loto: arms (isamap-train models or {', '.join(ARMS)}; BASE+stack: "
                        "BASE's maps stacked with the tile's NDBI, BASE+thr: BASE's maps cut "
                        "at the training tiles' best threshold, experiments.builtup_stack; "
                        "BASE+prior: BASE's maps at the tile's own estimated built share, "
                        "experiments.builtup_prior; "
                        "A+B: the mean of A's and B's maps, experiments.builtup_ensemble)")
    p.add_argument("--tile", type=int, default=None,
                   help="--loto: prediction tile of the maps (default: each model's own)")
    p.add_argument("--seeds", type=int, default=DEFAULT_SEEDS, help="--loto: seeds per arm")
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


def _run(a: argparse.Namespace) -> int:
    data = existing_folder(a.data or sample_folder(DW_FOLDER, a.data_root), "Dynamic World",
                           "--data")
    check_output_folder("--out", a.out)
    if a.scl_mask is not None:
        scl_mask_classes(a.scl_mask)  # a bad class list is refused before any export
    use_threads(a.threads)
    budget = Budget(epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, patch=a.patch_size,
                    stride=a.stride, seed=a.seed, iterations=a.iterations, tile=a.tile,
                    scl_mask=a.scl_mask)
    if a.loto:
        out = Path(os.path.abspath(a.out))
        encoders = encoder_files(_names(a.arms), a.encoder, data.parent)
        if encoders:  # the seeds and arms share one encoding of every patch
            os.environ.setdefault(CACHE_ENV, str(out / "encoder_cache"))
        steps = Steps(find_tile, scene_folder, export, training_rows, check_no_overlap,
                      score_ndbi, functools.partial(train, encoders=encoders), predict,
                      score_map, built_label, tile_ndbi, covered)
        metrics = run_loto(steps, data, out, tiles=_names(a.tiles), row_split=a.train,
                           arms=_names(a.arms), seeds=a.seeds, bands=_names(a.bands),
                           holdout_rows=a.holdout_rows, budget=budget, dates=_dates(a.date),
                           jobs=usable_cores() if a.jobs is None else a.jobs)
        print(figures_markdown(metrics).strip().removeprefix("```text").removesuffix("```")
              .strip())
        print(f"{metrics['seconds']:.0f} s; metrics: {out / 'loto.json'}")
        return 0
    run_builtup(data, Path(os.path.abspath(a.out)), tests=a.test, train_prefix=a.train,
                models=[m for m in a.models.split(",") if m],
                bands=[b for b in a.bands.split(",") if b], holdout_rows=a.holdout_rows,
                budget=budget, dates=_dates(a.date))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
