"""The product's commands as the built-up experiments run them, and their training budget.

Each step is the product as a user runs it: ``isamap-export --backend local`` of a tile's
rows (:func:`export`, with the Dynamic World label mapping and the tile's date), then
``isamap-train`` of an arm on the patches (:func:`train`) and ``isamap-predict`` of a stack
(:func:`predict`); :class:`Budget` carries the training budget and patch layout down.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import rasterio
import rasterio.errors

from cli.train import started_config
from core.errors import ConfigError, InputDataError
from experiments.builtup_arms import Arm, arm_of, members_of
from experiments.builtup_tiles import DW_LABEL_MAP, DWTile
from experiments.realscenes import bbox_argument, run_product
from inference.assess.evaluate import EvaluateConfig, evaluate
from inference.predict.config import PredictConfig
from inference.predict.lattice import from_record
from training.config import TrainConfig, read_train_config, with_recipe_filter
from training.modelfile import read_model_file
from training.run.folder import BEST_MODEL, CHECKPOINT, RESOLVED_CONFIG
from training.run.members import held_members, member_configs, member_differences

log = logging.getLogger(__name__)


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


def train(arm: Arm | str, dataset: Path, run: Path, budget: Budget,
          encoders: Mapping[str, str] | None = None) -> Path:
    """``isamap-train`` of ``arm`` on ``dataset``; returns the model file (:func:`train_argv`)."""
    run_product("isamap-train", train_argv(arm, dataset, run, budget, encoders))
    return run / "model.pt"


def train_argv(arm: Arm | str, dataset: Path, run: Path, budget: Budget,
               encoders: Mapping[str, str] | None = None) -> list[str]:
    """The ``isamap-train`` arguments that train ``arm`` on ``dataset`` into ``run``.

    ``encoders``: the encoder files (name -> path) the encoder arms fuse. The arm's own
    options come last, so they win over the budget's. The budget's seed g is the arm's seed:
    an arm whose model joins K trainings (``unet-s2``: 9) trains seeds gK to gK + K - 1, so
    no two of its seeds share a training.
    """
    arm = arm_of(arm) if isinstance(arm, str) else arm
    seed = budget.seed * members_of(arm)
    extra = ["--model-kwargs", json.dumps(dict(arm.model_kwargs))] if arm.model_kwargs else []
    if arm.encoder:
        if arm.encoder not in (encoders or {}):
            raise ConfigError(f"arm {arm.name} fuses {arm.encoder}: give --encoder "
                              f"{arm.encoder}=PATH")
        extra += ["--encoder", f"{arm.encoder}={(encoders or {})[arm.encoder]}"]
    return ["--model", arm.model, "--data", str(dataset), "--out", str(run),
            "--epochs", str(budget.epochs), "--batch-size", str(budget.batch_size),
            *(["--max-iterations", str(budget.iterations)] if budget.iterations else []),
            "--lr", str(budget.lr), "--seed", str(seed), "--workers", "0", "--cache",
            "--precision", "fp32", "--channels-last", "off", "--no-progress", *extra,
            *arm.train_args]


def joined_members(out: str | Path) -> int | None:
    """How many trainings the joined model file in ``out`` joins (None: none is there).

    A join of K finished before a member K + 1 was started in the same folder holds K + 1
    member folders, but its model file still joins K.
    """
    path = Path(out) / BEST_MODEL
    if not path.is_file():
        return None
    meta, _ = read_model_file(path, flag="model file")
    count = dict(meta.model_kwargs).get("members")
    return count if isinstance(count, int) else 1


def recorded_otherwise(cfg: TrainConfig, ignore: frozenset[str] = frozenset()) -> list[str]:
    """How the run in ``cfg.run.out_dir`` was started otherwise than ``cfg`` would start it.

    ``"name: recorded there, current now"`` for every option that changes the result, each
    member's prefixed with its folder (``member1: ...``); the number of trainings where the
    folder holds another (one where several are asked, or the other way round, more
    members, or a finished join of fewer; a run cut short between members is not one).
    Empty where the run agrees, or where no checkpoint records one (nothing to compare).
    The judge reads this before it reuses a finished run's model or maps instead of
    training again. ``ignore``: options it checks otherwise
    (:func:`training.run.folder.config_differences`).
    """
    cfg = with_recipe_filter(cfg)  # as the command resolves it before it trains
    out = Path(cfg.run.out_dir)
    held = held_members(out)
    joined_other = cfg.loop.members > 1 and (held > cfg.loop.members or (
        held < cfg.loop.members and (out / BEST_MODEL).exists()))  # a finished join of fewer
    if (cfg.loop.members > 1 and (out / CHECKPOINT).exists()) or (cfg.loop.members == 1 and held) \
            or joined_other:
        return [f"members: {held or 1} there, {cfg.loop.members} now"]
    joined = joined_members(out) if cfg.loop.members > 1 else None
    if joined is not None and joined != cfg.loop.members:  # a join extended by hand, unfinished
        return [f"members: {joined} joined there, {cfg.loop.members} now"]
    members = member_configs(cfg) if cfg.loop.members > 1 else [cfg]
    return [f"{Path(m.run.out_dir).name}: {d}" if cfg.loop.members > 1 else d
            for _, m, differ in member_differences(cfg, members, ignore) for d in differ]


def trained_otherwise(arm: Arm | str, dataset: Path, run: Path, budget: Budget,
                      encoders: Mapping[str, str] | None = None) -> list[str]:
    """How the training recorded in ``run`` differs from what :func:`train` runs there now.

    Each option that changes the result, as ``isamap-train`` itself compares a run folder
    with a command (:func:`recorded_otherwise`): a recipe changed since the
    run (``ema: 0.0 there, 10 now``), or an arm's options; and its maps'
    tiling (:func:`mapped_otherwise`). Empty where they agree, or where ``run`` records no
    training and holds no map. The dataset's path is not compared: the
    judge's is always its ``--out``'s own ``train/<fold>``, so an ``--out`` moved elsewhere
    keeps its maps (what each fold trained on is checked by its merged dataset's parts,
    :func:`experiments.builtup_extra.check_same_training` and
    :func:`~experiments.builtup_extra.check_fold_parts`).
    """
    argv = train_argv(arm, dataset, run, budget, encoders)
    recorded = recorded_otherwise(started_config(argv), ignore=frozenset({"data"}))
    return recorded + mapped_otherwise(run, budget.tile)


def predict_tiling(tile: int | None) -> dict[str, int]:
    """The tile and overlap :func:`predict` maps on.

    ``tile`` with a quarter of it overlapping, or ``isamap-predict``'s own defaults (None).
    """
    if tile:
        return {"tile": tile, "overlap": tile // 4}
    plain = PredictConfig()
    return {"tile": plain.tile, "overlap": plain.overlap}


def mapped_otherwise(run: Path, tile: int | None) -> list[str]:
    """How the maps in ``run`` were tiled otherwise than :func:`predict` tiles them now.

    Its own map and its first training's, as their COGs' tags record the lattice (tile,
    overlap, blend and placement: :func:`inference.predict.lattice.from_record`); another
    blends the windows otherwise, so such a map is not today's (``--tile``).

    Raises:
        InputDataError: a map cannot be read.
    """
    tiling = predict_tiling(tile)
    want = PredictConfig(tile=tiling["tile"], overlap=tiling["overlap"]).lattice
    differ = []
    for prob in (run / "map_prob.tif", run / "member0" / "map_prob.tif"):
        if not prob.is_file():
            continue
        try:
            with rasterio.open(prob) as ds:
                tags = ds.tags()
        except rasterio.errors.RasterioError as e:
            raise InputDataError(f"{prob} cannot be read ({e}): remove it, or give a new "
                                 "--out") from None
        name = prob.relative_to(run)
        try:
            made = from_record(tags)[0]
        except (KeyError, ValueError):  # no tile or overlap, or not a number
            differ.append(f"{name} records no tiling")
            continue
        if made != want:
            differ.append(f"{name} tiling: {made.describe()} there, {want.describe()} now")
    return differ


def validation_ece(model_file: Path) -> float:
    """A joined model's expected calibration error on its training data's validation split.

    On the validation patches of every region it trained on: its in-region ECE, as mapped.
    A join that fitted the mean's own temperature measured it there (its calibration record's
    ``joined``: after the fit, or before where the fit kept 1), and that is read. A join made
    before the mean had a temperature records only its members' (each of that member alone),
    and a fit on too few labelled pixels records no ECE, so those are measured: what
    ``isamap-evaluate --split val`` reports, run here in-process, one evaluation at a time
    (the judge scores in threads; its plots are pyplot's), its files in ``<model
    folder>/val``, which a later call reads instead while they are newer than the model file,
    on the dataset its first member's ``config.yaml`` names (relative to the run folder, so a
    moved ``--out`` keeps it). NaN, said in the log, where it is gone or cannot be read.
    """
    joined = (read_model_file(model_file)[0].calibration or {}).get("joined")
    held = joined.get("ece_after" if joined.get("method") == "temperature" else "ece_before") \
        if isinstance(joined, Mapping) else None
    if held is not None:
        return float(held)
    done = model_file.parent / "val" / "metrics.json"
    if done.is_file() and done.stat().st_mtime_ns >= model_file.stat().st_mtime_ns:
        return float(json.loads(done.read_text())["calibration"]["ece_before"])
    config = model_file.parent / "member0" / RESOLVED_CONFIG
    data = read_train_config(config).get("data") if config.is_file() else None
    try:
        if not data or not Path(data).is_dir():
            raise InputDataError(f"{data or config} is gone")
        with _EVALUATING:
            result = evaluate(EvaluateConfig(model=model_file, data=str(data),
                                             out_dir=done.parent, split="val", device="cpu",
                                             precision="fp32", channels_last="off",
                                             autotune_cache=False, progress=False))
    except InputDataError as exc:
        log.warning("%s: its training data cannot be read (%s); no in-region ECE",
                    model_file, exc)
        return float("nan")
    return float(result.metrics["calibration"]["ece_before"])


#: one evaluation at a time (:func:`validation_ece`)
_EVALUATING = threading.Lock()


def predict(model_file: Path, stack: Path, out: Path, month: str,
            tile: int | None = None) -> tuple[Path, Path]:
    """``isamap-predict``; returns the class and probability COGs.

    ``tile``: map on that tile (a quarter of it overlapping) even where the model records
    another (``--any-tile``); None: the model's own.
    """
    tiling = predict_tiling(tile)
    other = ["--tile", str(tiling["tile"]), "--overlap", str(tiling["overlap"]),
             "--any-tile"] if tile else []
    run_product("isamap-predict", [
        "--model", str(model_file), "--input", str(stack), "--out", str(out),
        "--month", month, "--precision", "fp32", "--channels-last", "off", *other])
    return Path(f"{out}_class.tif"), Path(f"{out}_prob.tif")
