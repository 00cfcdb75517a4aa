"""One task of the leave-one-tile-out comparison: an arm's seed on a held-out tile, scored.

:func:`score_task` trains the arm (through the experiment's steps) where its map is missing,
maps the held-out tile and scores the map; an arm whose model joins K trainings
(``unet-s2``'s recipe: 9) gives its first training's own map too, as :func:`first_member`.
A map already made is scored, not redone; one its arm would train otherwise now (an older
recipe under the same name, another budget) is refused before any export
(:func:`check_made_maps`), and one of another kind of run than the arm makes now when it is
scored (:func:`map_and_score`).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import ConfigError
from experiments.builtup_arms import arm_of, members_of
from training.run.members import held_members

log = logging.getLogger(__name__)


def first_member(arm: str) -> str:
    """The derived arm of ``arm``'s first training alone (``unet-s2[0]``)."""
    return f"{arm}[0]"


def names_first_member(arm: str) -> bool:
    """Whether ``arm`` names a first training alone (:func:`first_member`), or builds on one."""
    return "[" in arm


def score_task(b: Any, runs: Path, task: tuple[str, Path, str, int], tile: Any, stack: Path,
               area: np.ndarray, budget: Any) -> list[tuple[str, dict]]:
    """One (held-out tile, dataset, arm, seed) task's scores, per arm name it gives.

    An arm whose model joins K trainings (the budget's seed g trains seeds gK to gK + K - 1,
    :func:`experiments.builtup_commands.train`) gives its first training's own map too, as
    :func:`first_member`: one training of the same recipe on the same draws. ``b``: the
    experiment's steps (``experiments.builtup_loto.Steps``).
    """
    held_out, dataset, arm, seed = task
    run = runs / held_out / arm / f"seed{seed}"
    k = members_of(arm_of(arm))
    first = [seed * k + i for i in range(k)]
    scored = [(arm, {**map_and_score(b, run, tile, stack, area, budget, arm, dataset, seed, k),
                     "seed": seed, "training_seeds": first})]
    if k > 1:
        scored.append((first_member(arm), {**map_and_score(b, run / "member0", tile, stack,
                                                           area, budget),
                                           "seed": seed, "training_seeds": first[:1]}))
    for name, scores in scored:
        log.info("%s %s seed %d: F1 %.3f AUC %.3f", held_out, name, seed, scores["f1_built"],
                 scores["auc_built"])
    return scored


def check_made_maps(trained_otherwise: Callable | None, runs: Path,
                    tasks: Sequence[tuple[str, Path, str, int]], budget: Any) -> None:
    """Refuse maps under ``runs`` made otherwise than their arm makes them now, before any export.

    A map already made is scored, not redone; one an older recipe made under a name whose
    recipe has changed since (or an arm's options, the budget or the seeds) would be scored
    as today's; so would one mapped on another ``--tile``. ``trained_otherwise(arm, dataset,
    run, budget)``: how the training ``run`` records, or its maps' tiling, differs
    (:func:`experiments.builtup_commands.trained_otherwise`); None: not checked (fake steps,
    whose runs record no training).

    Raises:
        ConfigError: a task's map was trained otherwise.
    """
    if trained_otherwise is None:
        return
    for held_out, dataset, arm, seed in tasks:
        run = runs / held_out / arm / f"seed{seed}"
        if not (run / "map_class.tif").is_file():
            continue
        differ = trained_otherwise(arm, dataset, run, dataclasses.replace(budget, seed=seed))
        if differ:
            more = f" and {len(differ) - 1} more" if len(differ) > 1 else ""
            raise ConfigError(f"{run} holds a map made otherwise than {arm} makes it now "
                              f"({differ[0]}{more}): give a new --out, or the options it "
                              "was made with")


def map_and_score(b: Any, run: Path, tile: Any, stack: Path, area: np.ndarray, budget: Any,
                  arm: str | None = None, dataset: Path | None = None, seed: int = 0,
                  members: int = 1) -> dict:
    """Scores of the map in ``run``, made first where missing (trained first when ``arm``).

    A map already made is scored, not redone, unless the run is not of the arm's kind (a map
    of one training where the arm joins ``members``: an ``--out`` from before the recipe
    joined them). Without ``arm`` the model file in ``run`` is mapped (a member's).

    Raises:
        ConfigError: ``run`` holds maps of one training where the arm joins several.
    """
    cls, prob = run / "map_class.tif", run / "map_prob.tif"
    model_file = run / "model.pt"
    if arm is not None and members > 1 and cls.is_file() and not held_members(run):
        raise ConfigError(f"{run} holds the map of one training, but {arm} joins {members} "
                          "trainings now: give a new --out")
    if not (cls.is_file() and prob.is_file()):
        if arm is not None and dataset is not None:
            model_file = b.train(arm, dataset, run, dataclasses.replace(budget, seed=seed))
        cls, prob = b.predict(model_file, stack, run / "map", tile.month, budget.tile)
    return b.score_map(tile, cls, prob, area, model_file if model_file.is_file() else None)
