"""What a run folder says about its run: the configuration recorded in its checkpoint.

A run folder (``--out``) holds ``checkpoint.pt``, whose ``config`` is the whole
:class:`training.config.TrainConfig` the run was started with. Two rules follow from it:

- the identical command resumes: a run started again with the same options continues from
  its checkpoint (Ctrl-C, a crash or a time limit cost only the epoch in progress), while
  other options against the same folder are refused with the options that differ;
- ``isamap-train --out runs/cfn --resume`` needs nothing else: the options come from the run
  folder. Flags given with it must agree with the recorded ones, except the few that do not
  change the result (:data:`RUN_ONLY_KEYS`).

Only the configuration is read: the checkpoint is memory-mapped, so its weights and optimizer
state are not loaded for this, and what it says is kept per file version (its inode, size and
modification time), so the many questions a run of several trainings asks of one checkpoint
read it once.

The same configuration is written beside the model as ``config.yaml``
(:func:`write_resolved_config`), every option with the model's recipe filled in, for people to
read and to copy: ``isamap-train --config <run>/config.yaml`` starts the identical run (and,
against the same folder, resumes it).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import os
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import yaml

from core.errors import ConfigError, ModelError
from core.storage import atomic_write
from training.config import (
    BEFORE_MODEL_KWARG,
    INVOCATION_KEYS,
    OPTIONS,
    PATHS_FROM_FILE,
    TrainConfig,
    apply_recipe,
    as_recorded,
    config_from_mapping,
    read_train_config,
    without_removed,
)
from training.run_paths import converted_paths

#: The files of a run folder: the checkpoint, the kept model, the epoch rows, their curves.
CHECKPOINT = "checkpoint.pt"
BEST_MODEL = "model.pt"
HISTORY = "metrics.jsonl"
CURVES = "learning_curves.png"
RESOLVED_CONFIG = "config.yaml"
RUN_FILES = (CHECKPOINT, BEST_MODEL, HISTORY, CURVES, RESOLVED_CONFIG)
# Options that change how a run is executed, not what it computes.
RUN_ONLY_KEYS = frozenset({"resume", "progress", "stop_after", "num_workers", "cache", "device",
                           "out_dir"})


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """What a run left in its folder: its files, its best epoch, how far it got."""

    out_dir: Path
    model_path: Path
    checkpoint_path: Path
    history_path: Path
    curves_path: Path
    best_epoch: int
    best_miou: float
    epochs_run: int
    finished: bool


def finished_run(out_dir: str | Path) -> TrainResult | None:
    """The run in ``out_dir`` if it has nothing left to do, else None.

    Its checkpoint (memory-mapped: no weights are read) records it finished and its model
    file calibrated: running it again trains, fits and writes nothing, so a caller returns
    this before it reads any data or builds a model.
    """
    ck = _checkpoint(Path(out_dir) / CHECKPOINT)
    if ck is None or not (ck.get("finished") and ck.get("calibrated")):
        return None
    out = Path(out_dir)
    return TrainResult(out, out / BEST_MODEL, out / CHECKPOINT, out / HISTORY, out / CURVES,
                       int(ck["best_epoch"]), float(ck["best_miou"]), int(ck["epoch"]), True)


#: what :func:`finished_run` and :func:`recorded_config` read of a checkpoint
_SUMMARY_KEYS = ("finished", "calibrated", "best_epoch", "best_miou", "epoch", "config")


def _checkpoint(path: Path) -> dict[str, Any] | None:
    """The run-describing entries of the checkpoint at ``path``, None where there is none."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return _summary(str(path), (st.st_ino, st.st_size, st.st_mtime_ns))


@functools.lru_cache(maxsize=64)
def _summary(path: str, version: tuple[int, int, int]) -> dict[str, Any]:
    """The entries of :data:`_SUMMARY_KEYS` of one version of a checkpoint (no tensors)."""
    import torch

    try:
        ck = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:
        raise ModelError(f"checkpoint {path} is unreadable ({exc}); start a new run in "
                         "another --out folder") from None
    if not isinstance(ck, dict):
        return {}
    return {k: ck[k] for k in _SUMMARY_KEYS if k in ck}


def recorded_config(out_dir: str | Path) -> dict[str, Any] | None:
    """The configuration recorded in ``out_dir/checkpoint.pt``, or None without a checkpoint."""
    path = Path(out_dir) / CHECKPOINT
    ck = _checkpoint(path)
    if ck is None:
        return None
    config = ck.get("config")
    if not isinstance(config, dict):
        raise ModelError(f"{path} records no training configuration; it is not an isamap "
                         "training checkpoint")
    return without_removed(copy.deepcopy(config), str(path))  # the caller's own copy


def config_differences(recorded: Mapping[str, Any], cfg: TrainConfig,
                       ignore: frozenset[str] = frozenset()) -> list[str]:
    """``"name: recorded there, current now"`` for every option that changes the result.

    The recorded options are read back through :func:`config_from_mapping` first, so a value
    written as a list compares equal to the same tuple, and an option added to TrainConfig
    after the run was recorded compares as its default. ``ignore``: options the caller
    checks otherwise (a dataset it knows by its parts, not its path). An encoder is compared
    by its name: the file given for it is checked against the name's published digest, so
    another path to it is the same encoder.
    """
    reference = _normalised(recorded)
    current = cfg.to_dict()
    out = []
    for key in sorted(current):
        if key in RUN_ONLY_KEYS or key in ignore or (key == "data" and same_data(recorded,
                                                                                 cfg)):
            continue
        old, new = reference.get(key), current.get(key)
        if key == "encoder":  # its name fixes its file (the file's digest is checked)
            old, new = _encoder_name(old), _encoder_name(new)
        if key == "model_kwargs" and cfg.loop.members == 1:  # one network has no members to
            old, new = _one_network(old), _one_network(new)  # spread views over
        if json.dumps(old, sort_keys=True, default=str) != json.dumps(new, sort_keys=True,
                                                                       default=str):
            out.append(f"{key}: {old!r} there, {new!r} now" + _hint(key, reference, old))
    return out


def _hint(key: str, recorded: Mapping[str, Any], old: Any) -> str:
    """What continues a run whose recorded option a changed default now reads otherwise."""
    if key == "norm" and old == "training" and recorded.get("encoder"):
        return (" (an encoder run took the training statistics by default before it took "
                "its base recipe's: give --norm training to go on with it)")
    return ""


def _one_network(kwargs: Any) -> Any:
    """A single training's network arguments less ``member_views``, which only a join reads.

    A member of a join that spreads the views records ``flips: false`` (its own view), so a
    member of a join that does not still reads otherwise.
    """
    if not isinstance(kwargs, Mapping):
        return kwargs
    return {k: v for k, v in kwargs.items() if k != "member_views"}


def _encoder_name(value: Any) -> Any:
    """``NAME`` of an ``--encoder NAME=PATH``: one published file per name, wherever it lies."""
    if not isinstance(value, str):
        return value
    from training.models.encoders.registry import parse_encoder  # torch: only where needed

    return parse_encoder(value)[0].name


def same_data(recorded: Mapping[str, Any], cfg: TrainConfig) -> bool:
    """Whether the recorded ``data`` and ``cfg.data.root`` name one dataset, given from two folders.

    A relative path was relative to the folder the run started in, which is the run folder
    (``cfg.run.out_dir``) less the recorded relative ``out_dir``: ``data: ds`` of a run started
    as ``--out runs/u`` and ``../../ds`` given in ``runs/u`` are the same folder.
    """
    old, new, old_out = recorded.get("data"), cfg.data.root, recorded.get("out_dir")
    if old == new:
        return True
    if not (isinstance(old, str) and old and new and isinstance(old_out, str) and old_out) \
            or "://" in old + new:
        return False
    if os.path.isabs(old):
        return os.path.normpath(old) == os.path.abspath(new)
    parts = Path(os.path.normpath(old_out)).parts
    if os.path.isabs(old_out) or ".." in parts:
        return False
    start = Path(os.path.abspath(cfg.run.out_dir))
    for _ in parts:
        start = start.parent
    return os.path.normpath(start / old) == os.path.abspath(new)


#: options a run recorded before they existed, read as what those runs did (a unet-s2 run
#: from before weight averaging kept its last weights, one from before balanced sampling
#: drew its patches uniformly, one from before --norm normalised by the training split's
#: statistics, as its model file says, and one from before radiometric augmentation had
#: none, whatever the recipe says now)
BEFORE_OPTION: dict[str, Any] = {"ema": 0, "balanced_sampling": False, "norm": "training",
                                 "radiometric": False}


def _normalised(recorded: Mapping[str, Any]) -> dict[str, Any]:
    values = {**BEFORE_OPTION, **{k: v for k, v in recorded.items() if k in OPTIONS}}
    if "model_kwargs" in values:
        values["model_kwargs"] = as_recorded(str(values.get("model")),
                                             values["model_kwargs"] or {})
    return config_from_mapping(values).to_dict()


def resume_config(out_dir: str | Path, given: Mapping[str, Any],
                  config_file: str | None = None,
                  from_file: Collection[str] = ()) -> TrainConfig:
    """The configuration of the run in ``out_dir``, with ``given`` options checked against it.

    Args:
        out_dir: the run folder.
        given: options the user gave (flags and config file), without ``out_dir``.
        config_file: the ``--config`` file among them, if any.
        from_file: the options of ``given`` that come from that file (no flag gave them).

    Raises:
        ConfigError: no run in the folder and no dataset to start one, or a given option
            that contradicts the recorded run.
    """
    recorded = recorded_config(out_dir)
    if recorded is None:
        if not given.get("data"):
            raise ConfigError(f"--resume: {out_dir} holds no run to resume (no {CHECKPOINT}); "
                              f"start one with --data DATASET --out {out_dir}")
        return config_from_mapping({**given, "out_dir": str(out_dir), "resume": True},
                                   config_file, from_file)
    # how the recorded invocation ran (its --stop-after, --no-progress) is not the run's
    base = {**{k: v for k, v in _normalised(recorded).items() if k not in INVOCATION_KEYS},
            **_paths_from_run(out_dir)}
    if given.get("model_kwargs") is not None and "model_kwargs" in recorded:
        # the flags the run was started with, given again: what the record predates is read
        # as the record reads it, not as today's recipe fills it
        older = {k: v for k, v in base["model_kwargs"].items()
                 if k in BEFORE_MODEL_KWARG and k not in (recorded["model_kwargs"] or {})}
        given = {**given, "model_kwargs": {**older, **dict(given["model_kwargs"])}}
    # The recorded run has its recipe applied (e.g. a head the recipe adds to the model's
    # arguments); the same flags given again must compare equal, so the recipe goes under them too.
    merged = apply_recipe(
        config_from_mapping({**base, **given, "out_dir": str(out_dir), "resume": True},
                            config_file, from_file))
    differ = config_differences(base, merged)
    if differ:
        raise ConfigError(
            f"--resume continues the run in {out_dir} with its own options, but "
            f"{'; '.join(differ)}; {_resume_advice(differ, config_file, from_file)} to resume "
            "it, or start a new run in another --out folder")
    return merged


def _resume_advice(differ: list[str], config_file: str | None,
                   from_file: Collection[str]) -> str:
    """What to undo so that ``--resume`` goes on: the flags given, the file's settings."""
    keys = [line.split(":", 1)[0] for line in differ]
    in_file = [k for k in keys if k in from_file]
    if not in_file:
        return "drop those flags"
    them = "it" if len(in_file) == 1 else "them"
    fix = (f"set {', '.join(in_file)} back in the config file {config_file} (or leave {them} "
           "out of it)")
    return fix if len(in_file) == len(keys) else f"drop those flags, {fix},"


def _paths_from_run(out_dir: str | Path) -> dict[str, Any]:
    """The run's data and encoder file as its ``config.yaml`` names them, from this folder.

    The checkpoint records them as they were typed, relative to the folder the run was started
    in; the run's own file records them relative to itself, so a run resumes from anywhere.
    One that is not there so (a file written before it named the encoder so) is left out.
    """
    path = Path(out_dir) / RESOLVED_CONFIG
    if not path.is_file():
        return {}
    try:
        values = read_train_config(path)
    except ConfigError:  # edited by hand, or of another version: the checkpoint's record holds
        return {}
    found = {"data": values.get("data"),
             "encoder": str(values.get("encoder") or "").partition("=")[2]}
    return {k: values[k] for k, p in found.items() if p and os.path.exists(p)}


def write_resolved_config(cfg: TrainConfig) -> Path:
    """``<out_dir>/config.yaml``: every option of the run, as ``--config`` reads it back.

    Written atomically, and only when its text changes (a resumed run leaves it as it was).
    How one invocation ran is not the run's (:meth:`TrainConfig.run_record`), so
    continuing a run never rewrites its file.
    """
    path = Path(cfg.run.out_dir) / RESOLVED_CONFIG
    values = json.loads(json.dumps(cfg.run_record()))  # tuples (model arguments) become lists
    run = os.path.abspath(cfg.run.out_dir)  # local paths: from the run folder, as they are read
    values = converted_paths(values, lambda path: os.path.relpath(os.path.abspath(path), run))
    text = ("# The resolved configuration of this run: every option, the model's recipe filled "
            "in.\n# `isamap-train --config <this file>` runs it again, from any folder (the "
            "paths below are\n# relative to this file's folder); against its run folder it "
            "resumes the run.\n"
            + yaml.safe_dump({PATHS_FROM_FILE: True, **values}, sort_keys=False,
                             default_flow_style=None))
    if not (path.is_file() and path.read_text() == text):
        atomic_write(path, lambda fh: fh.write(text.encode()))
    return path
