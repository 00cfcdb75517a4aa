"""``isamap-train --members K``: the recipe trained K times, joined in one model file.

Each member is an ordinary run of its own (``OUT/member0`` ... ``OUT/member{K-1}``, seeds
``seed`` to ``seed + K - 1``, every other option the command's): it validates, stops early,
fits its temperature and writes its model file as one training does, and running the same
command again resumes or reuses each. When every member has finished, their model files are
joined in ``OUT/model.pt`` (:class:`training.models.members.MemberMean`: the mean of the
members' calibrated probabilities), which every prediction path reads as it reads one network.
The mean has a temperature of its own, fitted on the validation split where it transfers
between scenes, as one training's is (:func:`training.calibration.record.fit_joined`): each
member calibrated alone leaves their mean too unsure. The joined file is made from the
members' files once they finish, and made again by a later run only where they changed (no
training; one pass over the validation split), so it always holds what they hold.

Why: on ground unlike its training tiles one training is one draw, and seeds part widely
(``python -m experiments.builtup --loto`` prints their spread). The mean of several trainings
is steadier; it costs K times the training and K times every map (``unet-s2``'s members
spread its four flips over them, so its map costs K passes, not 4K). A command that gives no
``--members`` trains its model's recipe's number (:func:`recipe_members`; ``unet-s2``: 9).
The join itself: :mod:`training.run.member_join`.

May import: ``core``, ``training`` (below this module).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from core.errors import ConfigError
from training.config import TrainConfig, apply_recipe, as_recorded, with_recipe_filter
from training.models import available_models, recipe_for
from training.models.members import VIEWS
from training.run.encoder import encoder_config
from training.run.folder import (
    BEST_MODEL,
    CHECKPOINT,
    HISTORY,
    TrainResult,
    config_differences,
    recorded_config,
)
from training.run.history import members_estimate
from training.run.member_join import join_model_files

log = logging.getLogger(__name__)

@dataclasses.dataclass(frozen=True)
class MembersResult:
    """The members' runs and where the joined model file is (None until every member finished).

    :func:`train_members` says where; :func:`join_members` writes it there.
    """

    results: tuple[TrainResult, ...]
    model_path: Path | None


def held_members(out: str | Path) -> int:
    """How many member folders (``member0``, ``member1``, ...) the run folder ``out`` holds."""
    held = 0
    while (Path(out) / f"member{held}").is_dir():
        held += 1
    return held


def recipe_members(model: str) -> int:
    """How many trainings ``isamap-train --model MODEL`` joins when it gives no ``--members``."""
    return recipe_for(model).members if model in available_models() else 1


def check_members(cfg: TrainConfig) -> None:
    """Refuse what ``--members`` cannot do, before any work (one line each).

    Fewer than four members that spread the views over them (``member_views``) leave some
    of the four out: said once, in a warning, and trained as asked.

    Raises:
        ConfigError: the noisy-sample filtering, given or from the model's recipe (a
            two-stage run of its own, not repeated per member).
    """
    members = cfg.loop.members
    if members < 2:
        return
    if members < len(VIEWS) and member_kwargs(apply_recipe(cfg).model.model_kwargs).get(
            "member_views"):
        log.warning("--members %d with member_views: the joined model maps each window %d of "
                    "the %d ways its flips would (as it is, then mirrored); give --members %d "
                    "or more for every view, or --model-kwargs '{\"member_views\": false}' "
                    "for each member to map all of them", members, members, len(VIEWS),
                    len(VIEWS))
    if cfg.data.filter_noisy is not None:
        raise ConfigError(f"--members {members} (given, or {cfg.model.name}'s recipe's when "
                          "none is) trains the recipe several times; --filter-noisy is a "
                          "two-stage run of its own: give --members 1 with it")
    if with_recipe_filter(cfg).data.filter_noisy is not None:
        raise ConfigError(f"{cfg.model.name}'s recipe filters noisy samples, a two-stage run of "
                          "its own that --members does not repeat: train it without --members")


def check_run_folder(cfg: TrainConfig) -> None:
    """Refuse a ``--members`` run where one training's run is, and one training where members are.

    Either would overwrite the other's ``model.pt``.

    Raises:
        ConfigError: ``out_dir`` holds the other kind of run.
    """
    out, members, model = Path(cfg.run.out_dir), cfg.loop.members, cfg.model.name
    if members > 1 and (out / CHECKPOINT).exists():
        there = (recorded_config(out) or {}).get("model")
        raise ConfigError(f"--out {out} holds a run of one training (checkpoint.pt) of --model "
                          f"{there}; --members {members} (given, or {model}'s recipe's "
                          "when none is) would replace its model.pt: give another --out"
                          + (", or --members 1 to train once there" if there == model else ""))
    held = held_members(out)
    if 1 < members < held:
        raise ConfigError(f"--out {out} holds a run of {held} trainings; --members "
                          f"{members} (given, or {model}'s recipe's when none is) would "
                          f"join fewer and replace its model.pt: give --members {held}, or "
                          "another --out")
    if members == 1 and held:
        raise ConfigError(f"--out {out} holds a run of several trainings (member0, ...); "
                          "one training would replace its model.pt: give another --out, or "
                          "--members as that run had")


def check_resume(out_dir: str) -> None:
    """Refuse ``--resume`` of a members run, whose checkpoints are its members' (one line).

    Raises:
        ConfigError: ``out_dir`` holds a run of several trainings.
    """
    if held_members(out_dir):
        raise ConfigError(f"--resume: {out_dir} holds a run of several trainings (member0, "
                          "...); run the command that started it again (with its --members): "
                          "each member resumes where it stopped")


def member_configs(cfg: TrainConfig) -> list[TrainConfig]:
    """One configuration per member: its own folder and seed, the command's other options.

    Where the joined model spreads the flips over its members (``member_views``), each
    member is trained without its own (:func:`member_kwargs`).
    """
    out = Path(cfg.run.out_dir)
    kwargs = {**dict(cfg.model.model_kwargs),
              **member_kwargs(apply_recipe(cfg).model.model_kwargs)}
    return [cfg.with_(out_dir=str(out / f"member{i}"), seed=cfg.loop.seed + i, members=1,
                      model_kwargs=kwargs) for i in range(cfg.loop.members)]


def member_kwargs(model_kwargs: Mapping) -> dict:
    """The network arguments a member of a join takes otherwise than the command's.

    With ``member_views`` the joined network gives each member one view of a window
    (:class:`training.models.members.MemberMean`), so each member validates, selects its
    weights and fits its temperature on one view too, as it will map (``flips: false``):
    a temperature fitted on the mean of four views would leave one view's probabilities
    over-confident. Each member records whether the join spreads the views (a network
    without flips of its own has none to spread), and the join reads it from them.
    """
    spread = bool(model_kwargs.get("member_views") and model_kwargs.get("flips"))
    if "member_views" not in model_kwargs:
        return {}
    return {"member_views": spread, **({"flips": False} if spread else {})}


def check_member_folders(cfg: TrainConfig, members: Sequence[TrainConfig]) -> None:
    """Refuse member folders that hold another command's run, before the first trains.

    Raises:
        ConfigError: a member's checkpoint records options that differ from its own
            (:func:`member_differences`).
    """
    found = member_differences(cfg, members)
    if found:
        i, member, differ = found[0]
        raise ConfigError(f"{member.run.out_dir} (member {i}) holds a run of other options "
                          f"({differ[0]}); give the options it was started with "
                          f"({member.run.out_dir}/config.yaml), or another --out")


def member_differences(cfg: TrainConfig, members: Sequence[TrainConfig],
                 ignore: frozenset[str] = frozenset(),
                 ) -> list[tuple[int, TrainConfig, list[str]]]:
    """Each member whose checkpoint records other options than its own, with them.

    The command's options are resolved as a run resolves them (recipe, encoder file) once,
    and only where a member has a checkpoint to compare with.
    """
    resolved: TrainConfig | None = None
    found = []
    for i, member in enumerate(members):
        recorded = recorded_config(member.run.out_dir)
        if recorded is None:
            continue
        resolved = resolved or apply_recipe(encoder_config(cfg))
        kwargs = resolved.model.model_kwargs
        own = resolved.with_(out_dir=member.run.out_dir, seed=member.loop.seed, members=1,
                             model_kwargs={**dict(kwargs), **member_kwargs(kwargs)})
        differ = config_differences(recorded, own, ignore) + _views_differ(recorded, own)
        if differ:
            found.append((i, member, differ))
    return found


def _epochs_recorded(member: TrainConfig) -> int:
    history = Path(member.run.out_dir) / HISTORY
    return len(history.read_text().splitlines()) if history.exists() else 0


def _views_differ(recorded: Mapping, own: TrainConfig) -> list[str]:
    """Whether a member's record spreads the views otherwise than ``own`` would.

    One training ignores ``member_views`` (:func:`training.run.folder.config_differences`);
    a member of a join does not: the joined network reads it from its members.
    """
    kwargs = as_recorded(str(recorded.get("model")), recorded.get("model_kwargs") or {})
    there, now = bool(kwargs.get("member_views")), bool(own.model.model_kwargs.get("member_views"))
    return [] if there == now else [f"member_views: {there} there, {now} now"]


def train_members(cfg: TrainConfig,
                  train: Callable[[TrainConfig], TrainResult]) -> MembersResult:
    """Train each member with ``train`` (one run each, resumed or reused).

    Its ``model_path`` is where :func:`join_members` writes the joined file once every
    member finished. With ``--stop-after``, one run of the command trains at most one
    member's slice: it stops after the first member that trained any epoch (the next run
    goes on). Under DDP every rank trains each member.
    """
    members = member_configs(cfg)
    check_member_folders(cfg, members)
    encoder_config(cfg)  # the encoder's file, checked before any member's line
    results, told = [], False
    for i, member in enumerate(members):
        log.info("member %d of %d (seed %d): %s", i + 1, cfg.loop.members, member.loop.seed,
                 member.run.out_dir)
        before, start = _epochs_recorded(member), time.monotonic()
        result = train(member)
        results.append(result)
        if not told and before == 0 and result.finished and os.environ.get("RANK", "0") == "0":
            told, rest = True, sum(_epochs_recorded(m) == 0 for m in members[i + 1:])
            if rest:  # the first member trained from its start tells the unstarted rest's time
                log.info(members_estimate(i + 1, len(members), rest, time.monotonic() - start))
        sliced = cfg.run.stop_after is not None and _epochs_recorded(member) > before
        if not result.finished or (sliced and i < len(members) - 1):
            return MembersResult(tuple(results), None)
    return MembersResult(tuple(results), Path(cfg.run.out_dir) / BEST_MODEL)


def join_members(cfg: TrainConfig, done: MembersResult) -> MembersResult:
    """Join the members of ``done`` in its ``model_path`` when every one finished (rank 0).

    Called after a distributed run left its group: fitting the mean's temperature is a pass
    over the validation split on one device, which the other ranks do not wait for.
    """
    if done.model_path is not None and os.environ.get("RANK", "0") == "0":
        join_model_files([r.model_path for r in done.results], done.model_path, cfg)
    return done
