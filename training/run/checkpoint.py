"""A training run's ``checkpoint.pt`` read back: checked before a run resumes from it.

The checkpoint (written by :class:`training.run.trainer.Trainer` after every epoch) holds the
model, optimizer, schedule, AMP scaler, early-stopping state, history, every RNG (python,
numpy, torch, the loader's generator) and how the steps ran (``runtime``); data order and
augmentations are functions of (seed, epoch, index). So a run stopped after any epoch and
resumed ends with weights bit-identical to an uninterrupted run (CPU, same seed). A file that
is not a checkpoint, one made with other options, or one whose epochs were cut otherwise is
refused in one line saying what to do.

May import: ``core``, ``engine``, ``training.config``, ``training.model_meta``,
``training.modelfile``, ``training.run.folder``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from core.errors import ConfigError, ModelError
from engine import autotune
from training.config import TrainConfig
from training.model_meta import ModelMeta
from training.modelfile import CHECKPOINT_FORMAT, portable_meta
from training.run.folder import config_differences


def run_records(cfg: TrainConfig, meta: ModelMeta) -> dict[str, Any]:
    """The checkpoint's records of its run: ``config`` (its options) and ``meta`` (its model).

    ``config`` holds the options as they were given (what a resume compares, see
    :mod:`training.run.folder`); ``meta``, the description its ``model.pt`` gets, names its
    local paths as the model file does, relative to the run folder
    (:func:`training.modelfile.portable_meta`), never as this process read them back.
    """
    return {"config": cfg.to_dict(), "meta": portable_meta(meta, cfg.run.out_dir).to_dict()}


def read_checkpoint(path: Path, device: torch.device) -> dict[str, Any]:
    """The checkpoint at ``path`` on ``device``, refused when unreadable or not a checkpoint."""
    try:
        ck = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:
        raise ModelError(f"checkpoint {path} is unreadable ({exc}); start a new run in "
                         "another --out folder") from None
    if not isinstance(ck, dict) or ck.get("format") != CHECKPOINT_FORMAT:
        raise ModelError(f"{path} is not an isamap training checkpoint")
    return ck


def check_resumable(ck: dict[str, Any], cfg: TrainConfig, iters_per_epoch: int,
                    same_config: bool) -> None:
    """Refuse to continue ``ck`` with ``cfg``: other options (when ``same_config``), other epochs.

    Raises:
        ConfigError: the options differ from the recorded ones, or the run's epochs hold
            another number of iterations.
    """
    if same_config:
        check_same_options(ck.get("config") or {}, cfg)
    if ck["iters_per_epoch"] != iters_per_epoch:
        raise ConfigError(f"the checkpoint ran {ck['iters_per_epoch']} iterations per epoch, "
                          f"this configuration gives {iters_per_epoch}; resume with the "
                          "same data, batch size and world size")


def check_same_options(recorded: Mapping[str, Any], cfg: TrainConfig) -> None:
    """Refuse to continue a run whose ``recorded`` options differ from ``cfg``'s (one line).

    :func:`training.run.patch_training.train` calls it with the checkpoint's record (read
    memory-mapped) before it builds or times a model; the trainer again when it loads one.

    Raises:
        ConfigError: an option that changes the result differs, named with both values.
    """
    differ = config_differences(recorded, cfg)
    if differ:
        raise ConfigError(
            f"{cfg.run.out_dir} already holds a run made with other options ({'; '.join(differ)});"
            " run its own command again to resume it, pass --resume to continue it with "
            "its options, or choose another --out folder")


def loss_reference(ck: dict[str, Any]) -> float | None:
    """The run's divergence reference: its first batch loss, None before its first epoch.

    Older checkpoints, which do not record it, give their first epoch's mean loss.
    """
    reference = ck.get("loss_reference")
    history = ck.get("history") or []
    return float(reference) if reference is not None else (
        float(history[0]["train_loss"]) if history else None)


def recorded_runtime(path: Path) -> autotune.Choice | None:
    """How the checkpointed run's steps ran (``source="checkpoint"``), None when not recorded.

    The file is memory-mapped, so its weights are not read for this; an unreadable file gives
    None here and is refused, saying why, when the run loads it (:func:`read_checkpoint`).
    """
    if not path.exists():
        return None
    with contextlib.suppress(Exception):
        ck = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        if isinstance(ck, dict) and isinstance(ck.get("runtime"), dict):
            return replace(autotune.Choice.from_dict(ck["runtime"]), source="checkpoint")
    return None
