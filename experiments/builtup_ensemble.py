"""An averaged arm of the leave-one-tile-out comparison: trained arms' mean probability.

An arm named ``A+B`` (``unet-s2-window+unet-s2-both``; any number of ``+``-joined trained arms,
but not ending in ``+stack`` or ``+thr``, :mod:`experiments.builtup_stack`) trains nothing. For each
held-out tile and seed it reads the held-out tile's probability maps of the member arms' models
of that fold and seed, averages them pixel by pixel and cuts the mean at one half. The members
are scored on the same pixels, so the averaged arm's scores differ from theirs only by the
averaging: models whose cut at one half errs in opposite directions on a new tile (one maps too
much, the other too little) can cancel, and averaging two rankings usually ranks better than
either. Nothing of the held-out tile but the members' maps enters.

An arm named ``AxK`` (``unet-s2-onex3``) averages ``K`` trainings of one recipe instead: what
a user gets who trains ``A`` ``K`` times with other seeds and averages the maps (for
``unet-s2-one``, nearly what ``isamap-train --members 3 --model-kwargs '{"member_views":
false}'`` maps: that averages before the map is rounded). Its seed ``g``
is the mean of ``A``'s seeds ``gK`` to ``gK + K - 1``, so the groups share no training and
``--seeds 15`` gives five of them; seeds beyond the last whole group are left out.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from contract.bands import LABEL_NODATA
from experiments.builtup_arms import ARMS
from experiments.builtup_stack import base_arm, cut_scores
from experiments.realscenes import Footprint, probability_scale, read_on
from training.calibration.temperature import binary_reliability
from training.models import trainable_models

SEPARATOR = "+"


def members(arm: str) -> tuple[str, ...] | None:
    """The trained arms an averaged arm averages (two or more), else None.

    ``unet-s2-window+unet-s2-both`` gives both names; a stacked or threshold arm (``BASE+stack``,
    ``BASE+thr``) and a plain arm give None.
    """
    if SEPARATOR not in arm or base_arm(arm) is not None:
        return None
    parts = tuple(arm.split(SEPARATOR))
    return parts if all(parts) and len(parts) >= 2 else None


_REPEATED = re.compile(r"(?P<arm>.+)x(?P<times>[0-9]+)")


def repeated(arm: str) -> tuple[str, int] | None:
    """The trained arm and the number of its seeds an ``AxK`` arm averages (K >= 2), else None.

    ``unet-s2-onex3`` gives ``("unet-s2-one", 3)``; a plain, averaged or stacked arm gives
    None, and so does a name that is itself an arm or a model, whatever it ends in.
    """
    match = _REPEATED.fullmatch(arm)
    if match is None or SEPARATOR in arm or int(match["times"]) < 2 or _named(arm):
        return None
    return match["arm"], int(match["times"])


def _named(arm: str) -> bool:
    """Whether ``arm`` is a named arm or a registry model (never read as ``AxK``)."""
    return arm in ARMS or arm in trainable_models()


def averaged(arm: str) -> tuple[str, ...] | None:
    """The trained arms whose maps an averaged arm (``A+B`` or ``AxK``) reads, else None."""
    times = repeated(arm)
    return (times[0],) if times else members(arm)


def member_maps(arm: str, seeds: int) -> list[list[tuple[str, int]]]:
    """Per seed of an averaged arm, the (trained arm, seed) whose maps it averages.

    ``A+B``: seed ``s`` of each member, for every seed; ``AxK``: seeds ``gK`` to
    ``gK + K - 1`` of ``A`` for each whole group ``g`` of the ``seeds`` trained.
    """
    times = repeated(arm)
    if times is not None:
        name, k = times
        return [[(name, g * k + i) for i in range(k)] for g in range(seeds // k)]
    return [[(name, seed) for name in members(arm) or ()] for seed in range(seeds)]


def mean_probability(prob_paths: Sequence[Path], footprint: Footprint) -> np.ndarray:
    """The pixel-wise mean of the probability maps on ``footprint`` (NaN where any is nodata)."""
    maps = [read_on(p, footprint) / probability_scale(p) for p in prob_paths]
    return np.mean(maps, axis=0)


def average_seed(prob_paths: Sequence[Path], footprint: Footprint, truth: np.ndarray,
                 area: np.ndarray) -> dict:
    """Scores of the members' mean probability on the labelled pixels of ``area``.

    With the held-out calibration error of that mean (``ece_built``); the one on the training
    regions' validation pixels belongs to a model, which an averaged arm has not.
    """
    prob = mean_probability(prob_paths, footprint)
    scored = area & (truth != LABEL_NODATA) & np.isfinite(prob)
    return {**cut_scores(prob[scored], truth[scored]),
            "ece_built": binary_reliability(prob[scored], truth[scored], "built").ece}


def average_runs(arms: Sequence[str], seeds: int, held_out: Sequence[str], out: Path,
                 tile_data: Callable[[str], tuple[Footprint, np.ndarray]],
                 areas: Mapping[str, np.ndarray]) -> dict[str, dict[str, list[dict]]]:
    """Every averaged arm's scores per held-out tile and seed.

    Args:
        arms: the comparison's arms; those with :func:`averaged` are computed here.
        seeds: seeds per trained arm.
        held_out: the held-out tiles.
        out: the comparison's folder (``runs/<tile>/<arm>/seed<k>/map_prob.tif`` hold the
            members' maps of the held-out tile).
        tile_data: tile prefix -> (footprint, built label).
        areas: held-out tile -> its scored pixels.
    """
    result: dict[str, dict[str, list[dict]]] = {}
    for arm in arms:
        if averaged(arm) is None:
            continue
        for held in held_out:
            footprint, truth = tile_data(held)
            for seed, maps in enumerate(member_maps(arm, seeds)):
                paths = [out / "runs" / held / name / f"seed{k}" / "map_prob.tif"
                         for name, k in maps]
                scores = average_seed(paths, footprint, truth, areas[held])
                result.setdefault(held, {}).setdefault(arm, []).append({**scores, "seed": seed})
    return result
