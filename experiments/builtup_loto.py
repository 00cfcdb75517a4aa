"""Leave-one-tile-out comparison of built-up recipes on every labelled Dynamic World tile.

``python -m experiments.builtup --loto [--arms A,B] [--seeds N] --out DIR``

Every tile of the set is held out in turn. The row-split tile (``--train``, default Java) is
held out by its southern ``--holdout-rows`` (the training export stops north of them, checked
from its manifest, as in the single-tile experiment); the other tiles are held out whole. Each
fold trains on everything it does not hold out: the other tiles whole, and the row-split
tile's northern rows when its own southern rows are held out, and the four TerraMesh cells
labelled by a land-cover product (``--terramesh``, :mod:`experiments.builtup_extra`;
``--terramesh none``: the tiles alone).
Training on several tiles means one patch dataset: :func:`merge_datasets` lists the exports
(each on its own grid and CRS) in one index, so ``isamap-train`` sees one dataset and the
normalisation statistics are those of all its parts.

Every arm trains once per seed and fold; an arm whose model joins K trainings (``unet-s2``'s
recipe: 9, ``training.run.members``) trains them with seeds ``gK`` to ``gK + K - 1`` for its seed
``g``, so no two of its seeds share a training, and its first training's own map is scored
beside it as the arm ``NAME[0]`` (what one training of the same recipe maps, on the same
draws). Every map is scored on the held-out pixels beside
NDBI on the same pixels (the labelled pixels the maps cover: the composite's cloud mask leaves
some without a map, and the built ones among them are counted beside), at its natural
threshold 0 and at its best (oracle) threshold. The table gives each arm's mean over seeds
with the half-width of the 95 % Student-t interval. A run cut short continues with the same
command: the maps already made under ``DIR/runs`` are scored
again, not retrained. A new budget or recipe needs a new ``--out``: before any export, maps
their arm would train otherwise now (the options their run folders record,
:func:`experiments.builtup_seeds.check_made_maps`) and an ``--out`` of other added regions
or labelled tiles (:func:`experiments.builtup_extra.check_same_training`,
:func:`~experiments.builtup_extra.check_fold_parts`) are refused.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from contract.dataset import merge_datasets
from core.errors import ConfigError
from core.jsonsafe import dumps
from core.storage import atomic_write
from experiments.builtup_arms import ARMS
from experiments.builtup_extra import (
    check_fold_parts,
    check_same_training,
    extra_names,
    find_cells,
    terramesh_exports,
)
from experiments.builtup_judge import (
    arms_table,
    default_arm,
    judge_table,
    shortfalls,
    summarise,
)
from experiments.builtup_labels import check_table
from experiments.builtup_seeds import (
    check_made_maps,
    first_member,
    names_first_member,
    score_task,
)
from training.models import REGISTRY

log = logging.getLogger(__name__)

DEFAULT_TILES = ("java", "ghana_a", "ghana_b")
DEFAULT_ARMS = ("unet-s2",)
DEFAULT_SEEDS = 5
DEFAULT_ITERATIONS = 50


@dataclass(frozen=True)
class Fold:
    """One held-out tile: what is scored and which exports the model trains on."""

    held_out: str
    train_sets: tuple[str, ...]  # export names (``<tile>`` whole, ``<tile>_north``)


def folds(tiles: Sequence[str], row_split: str) -> list[Fold]:
    """Each tile held out once; the others (the row-split tile whole) train the model."""
    out = []
    for held in tiles:
        others = [t for t in tiles if t != held]
        train = [f"{held}_north"] if held == row_split else []
        out.append(Fold(held, tuple(train + others)))
    return out


@dataclass(frozen=True)
class Steps:
    """The single-tile experiment's steps (:mod:`experiments.builtup` passes its own)."""

    find_tile: Callable
    scene_folder: Callable
    export: Callable
    training_rows: Callable
    check_no_overlap: Callable
    score_ndbi: Callable
    train: Callable
    predict: Callable
    score_map: Callable
    covered: Callable | None = None  # (tile, class map) -> bool pixels the map covers
    # (arm, dataset, run, budget) -> how the training a run records differs from the arm's now
    trained_otherwise: Callable | None = None
    # (tile, picture path) -> the tile's label check (experiments.builtup_labels.label_check)
    label_check: Callable | None = None
    # tile -> bool pixels inside its coarse outlines, or None (scored without them too)
    outlines: Callable | None = None


def build_base(steps: Steps, data: Path, out: Path, *, bands: Sequence[str], budget: Any,
               tiles: Sequence[str] = DEFAULT_TILES, arm: str = DEFAULT_ARMS[0],
               dates: dict[str, str] | None = None) -> Path:
    """The base model: ``arm`` trained on every labelled tile whole, nothing held out.

    What ``isamap-fit --from`` adapts to a user's points where no tile here lies. The tiles
    are exported as the comparison exports them (``out/exports/<tile>``, reused), merged into
    ``out/train/base`` and trained into ``out/base/seed<seed>`` (:data:`DEFAULT_ITERATIONS`
    iterations unless the budget says otherwise); returns its model file, an ordinary one.
    """
    if budget.iterations is None:
        budget = dataclasses.replace(budget, iterations=DEFAULT_ITERATIONS)
    check_options(tiles, tiles[0], [arm], 1, 1)
    found = {p: steps.find_tile(data, p, (dates or {}).get(p)) for p in tiles}
    exports = {}
    for prefix, tile in found.items():
        steps.export(tile, steps.scene_folder(tile, out / "scenes"), out / "exports" / prefix,
                     bands, budget)
        exports[prefix] = out / "exports" / prefix
    merge_datasets(exports, out / "train" / "base")
    return steps.train(arm, out / "train" / "base", out / "base" / f"seed{budget.seed}", budget)


def on_mapped_pixels(mapped: dict, labelled: dict) -> dict:
    """NDBI's scores on the pixels the maps cover (``mapped``), with what they leave out.

    ``labelled`` is NDBI on every labelled pixel of the held-out area, kept as
    ``all_labelled``. A composite's cloud mask leaves pixels without a map; a map is scored
    where it maps, so NDBI is compared on those pixels, and the labelled (built) pixels the
    maps leave nodata are counted beside, since a user gets no map there.
    """
    return {**mapped, "pixels_scored": "mapped",
            "unmapped_pixels": labelled["pixels"] - mapped["pixels"],
            "unmapped_built_pixels": labelled["built_pixels"] - mapped["built_pixels"],
            "all_labelled": labelled}


def check_options(tiles: Sequence[str], row_split: str, arms: Sequence[str], seeds: int,
                  jobs: int) -> None:
    """Refuse options the comparison cannot run, before any export (one line each).

    Raises:
        ConfigError: the row-split tile is not among the tiles, ``jobs`` or ``seeds`` below
            1, or an arm of no known name.
    """
    if row_split not in tiles:
        raise ConfigError(f"--train {row_split} is not among the tiles {list(tiles)}")
    if jobs < 1:
        raise ConfigError(f"--jobs must be >= 1, got {jobs}")
    if seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, got {seeds}")
    for arm in arms:
        if names_first_member(arm):
            raise ConfigError(f"--arms {arm}: a first training alone is scored beside the arm "
                              "that trains it, not trained itself: give that arm")
        if arm not in ARMS and arm not in REGISTRY.trainable():
            raise ConfigError(f"--arms {arm} is neither an arm of the comparison nor an "
                              "isamap-train model (python -m experiments.builtup --help "
                              "names them)")


def run_loto(steps: Steps, data: Path, out: Path, *, bands: Sequence[str], holdout_rows: int,
             budget: Any, tiles: Sequence[str] = DEFAULT_TILES, row_split: str = "java",
             arms: Sequence[str] = DEFAULT_ARMS, seeds: int = DEFAULT_SEEDS,
             dates: dict[str, str] | None = None, jobs: int = 1,
             terramesh: Path | None = None) -> dict:
    """The whole comparison; returns (and writes) ``DIR/loto.json`` and ``DIR/loto.txt``.

    ``budget`` is the single-tile experiment's ``Budget`` (a frozen dataclass); its
    ``iterations`` default to :data:`DEFAULT_ITERATIONS` here. ``terramesh``: a folder of
    TerraMesh cells every fold trains on too (:mod:`experiments.builtup_extra`); None: the
    labelled tiles alone.
    """
    b = steps
    start = time.perf_counter()
    if budget.iterations is None:  # several tiles: a fixed budget, not epochs of their patches
        budget = dataclasses.replace(budget, iterations=DEFAULT_ITERATIONS)
    dates = dates or {}
    check_options(tiles, row_split, arms, seeds, jobs)
    cells = find_cells(terramesh)
    found = {p: b.find_tile(data, p, dates.get(p)) for p in tiles}
    split_tile = found[row_split]
    holdout_start = first_held_out_row(split_tile.footprint.height, holdout_rows)
    end = b.training_rows(split_tile, holdout_start, budget.patch, budget.stride)
    check_same_training(out, extra_names(cells))
    check_fold_parts(out, {f.held_out: f.train_sets for f in folds(tiles, row_split)})
    tasks = [(f.held_out, out / "train" / f.held_out, arm, seed)
             for f in folds(tiles, row_split) for arm in arms
             for seed in range(seeds)]
    check_made_maps(b.trained_otherwise, out / "runs", tasks, budget)
    extra = terramesh_exports(cells, out / "exports" / "terramesh", bands, budget)
    scenes = out / "scenes"
    exports: dict[str, Path] = {}
    stacks: dict[str, Path] = {}
    for prefix, tile in found.items():
        folder = b.scene_folder(tile, scenes)
        stacks[prefix] = b.export(tile, folder, out / "exports" / prefix, bands, budget)
        exports[prefix] = out / "exports" / prefix
    north = out / "exports" / f"{row_split}_north"
    b.export(split_tile, scenes / row_split, north, bands, budget, (0, end))
    b.check_no_overlap(north, split_tile, holdout_start)
    exports[f"{row_split}_north"] = north
    areas = held_out_areas(found, row_split, holdout_start)
    ndbi = {p: b.score_ndbi(found[p], areas[p]) for p in tiles}
    runs: dict[str, dict[str, list[dict]]] = {p: {a: [] for a in arms} for p in tiles}
    for fold in folds(tiles, row_split):
        merge_datasets({**{n: exports[n] for n in fold.train_sets}, **extra},
                       out / "train" / fold.held_out)

    def one(task: tuple[str, Path, str, int]) -> list[tuple[str, dict]]:
        return score_task(b, out / "runs", task, found[task[0]], stacks[task[0]],
                          areas[task[0]], budget)

    if jobs > 1:  # one torch thread per training process, so the jobs share the cores
        os.environ.setdefault("OMP_NUM_THREADS", "1")
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for task, scored in zip(tasks, pool.map(one, tasks), strict=True):
            for name, scores in scored:
                runs[task[0]].setdefault(name, []).append(scores)
    if b.covered is not None:  # every arm maps the same stack: one map's cover is theirs
        ndbi = ndbi_on_cover(b, found, areas, out, arms, runs, ndbi)
    summary = summarise(runs, ndbi)
    chosen, margin = default_arm(summary)
    checks = {p: b.label_check(found[p], out / "evidence" / f"label_check_{p}.png")
              for p in tiles} if b.label_check is not None else {}
    metrics = {"summary": summary, "runs": runs, "ndbi": ndbi, "default_arm": chosen,
               "label_check": checks,
               "without_outlines": without_outlines(b, found, areas, out, tasks, arms),
               "default_margin": margin, "row_split": row_split,
               "targets": shortfalls(summary, chosen, row_split),
               "folds": [f.__dict__ for f in folds(tiles, row_split)],
               "extra_training": sorted(extra),
               "split": {row_split: f"rows {holdout_start}-{split_tile.footprint.height} held "
                         f"out; rows 0-{end} train the other folds' models"},
               "arms": list(arms), "seeds": seeds, "bands": list(bands),
               "budget": budget.__dict__, "jobs": jobs,  # trainings at once: what seconds took
               "seconds": round(time.perf_counter() - start, 1)}
    write_report(out, metrics)
    return metrics


def without_outlines(b: Steps, found: dict, areas: dict[str, np.ndarray], out: Path,
                     tasks: Sequence[tuple[str, Path, str, int]], arms: Sequence[str]) -> dict:
    """The trained arms' maps scored again without their tiles' coarse outlines.

    Per held-out tile with such outlines (``b.outlines``): every map of every trained arm's
    seeds (and a members arm's first training) on the held-out pixels outside them, NDBI on
    the same pixels, their summary, and how many pixels the outlines take. Empty where no
    tile has any.
    """
    if b.outlines is None:
        return {}
    masks = {p: b.outlines(tile) for p, tile in found.items()}
    runs: dict[str, dict[str, list[dict]]] = {}
    for held, _, arm, seed in tasks:
        if masks[held] is None:
            continue
        area = areas[held] & ~masks[held]
        run = out / "runs" / held / arm / f"seed{seed}"
        for name, folder in ((arm, run), (first_member(arm), run / "member0")):
            if not (folder / "map_class.tif").is_file():
                continue
            model = folder / "model.pt"
            scores = b.score_map(found[held], folder / "map_class.tif", folder / "map_prob.tif",
                                 area, model if model.is_file() else None)
            runs.setdefault(held, {}).setdefault(name, []).append({**scores, "seed": seed})
    if not runs:
        return {}
    first = arms[0]
    ndbi = {}
    for held in runs:
        area = areas[held] & ~masks[held]
        if b.covered is not None:
            area &= b.covered(found[held], out / "runs" / held / first / "seed0" /
                              "map_class.tif")
        ndbi[held] = b.score_ndbi(found[held], area)
    return {"summary": summarise(runs, ndbi), "ndbi": ndbi,
            "outline_pixels": {p: int(m.sum()) for p, m in masks.items() if m is not None}}


def first_held_out_row(height: int, holdout_rows: int) -> int:
    """The first of the last ``holdout_rows`` rows of a tile ``height`` rows tall.

    Raises:
        ConfigError: the block would be empty or the whole tile.
    """
    if not 0 < holdout_rows < height:
        raise ConfigError(f"--holdout-rows must be between 1 and {height - 1}, "
                          f"got {holdout_rows}")
    return height - holdout_rows


def held_out_areas(found: dict, row_split: str, holdout_start: int) -> dict[str, np.ndarray]:
    """Each tile's scored pixels: the whole tile, the row-split tile's rows from the block on."""
    areas = {}
    for prefix, tile in found.items():
        area = np.ones((tile.footprint.height, tile.footprint.width), bool)
        if prefix == row_split:
            area[:holdout_start] = False
        areas[prefix] = area
    return areas


def ndbi_on_cover(b: Steps, found: dict, areas: dict[str, np.ndarray], out: Path,
                  arms: Sequence[str], runs: dict[str, dict[str, list[dict]]],
                  ndbi: dict[str, dict]) -> dict[str, dict]:
    """NDBI scored again on the pixels the maps cover; warns of an arm scored elsewhere."""
    first = arms[0]
    scored = {}
    for p in found:
        cover = b.covered(found[p], out / "runs" / p / first / "seed0" / "map_class.tif")
        scored[p] = on_mapped_pixels(b.score_ndbi(found[p], areas[p] & cover), ndbi[p])
        for arm, seeds_scores in runs[p].items():
            if any(s.get("pixels") != scored[p]["pixels"] for s in seeds_scores):
                log.warning("%s: %s is scored on other pixels than NDBI (%d)", p, arm,
                            scored[p]["pixels"])
    return scored


def write_report(out: Path, metrics: dict) -> None:
    """``out/loto.json`` (everything) and ``out/loto.txt`` (the table and the judge), atomically."""
    text = dumps(metrics, indent=2)
    atomic_write(out / "loto.json", lambda handle: handle.write(text.encode()))
    table = figures_markdown(metrics).strip().removeprefix("```text").removesuffix("```").strip()
    atomic_write(out / "loto.txt", lambda handle: handle.write(table.encode() + b"\n"))


FIGURES_JSON = "docs/figures/builtup_default.json"


def figures_markdown(metrics: dict) -> str:
    """The page's block of figures: the table ``--loto`` printed, from its ``loto.json``.

    The judge's table (:func:`experiments.builtup_judge.judge_table`), then the maps scored
    without the coarse outlines and the label check where the run has them.
    """
    table = judge_table(metrics["summary"], metrics["ndbi"], metrics.get("row_split"))
    outside = metrics.get("without_outlines") or {}
    if outside.get("summary"):
        taken = ", ".join(f"{p}: {n:,} px" for p, n in outside["outline_pixels"].items())
        table += ("\n\nscored without the coarse outlines (one polygon over a mixed area; "
                  f"{taken} of the tile left out)\n" + arms_table(outside["summary"],
                                                                    outside["ndbi"]))
    if metrics.get("label_check"):
        table += ("\n\nlabel check (every labelled pixel of each tile; pictures: "
                  "evidence/label_check_TILE.png)\n" + check_table(metrics["label_check"]))
    return "```text\n" + table + "\n```\n"


def update_page(figures_json: str, page_path: str) -> bool:
    """Rewrite the page's ``<!-- figures: JSON -->`` block from the JSON; True when changed."""
    from inference.assess.figures import rewrite_block

    return rewrite_block(figures_json, page_path,
                         lambda metrics: "\n" + figures_markdown(metrics))
