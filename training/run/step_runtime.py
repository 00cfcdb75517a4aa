"""How a run's training steps run: precision, layout and threads, chosen once per run.

Explicit settings as given; ``auto`` from the checkpoint of a resumed run (so it continues
exactly as it began), else measured by rank 0 on a real batch (items ``0..batch-1`` of the
training set, the first epoch's augmentation) and shared with the other ranks. Measuring takes
at most its share of the run's samples (:func:`job_samples`; a short run measures nothing).
DDP's check for the parameters a step leaves unused runs on the same batch.

May import: ``engine``, ``training.run.checkpoint``, ``training.config``, ``training.run.optim``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Dataset, default_collate

from engine import autotune
from engine.distributed import DistInfo, unused_parameters
from training.config import LoopOptions, TrainConfig
from training.run.checkpoint import recorded_runtime
from training.run.folder import CHECKPOINT
from training.run.optim import make_optimizer

log = logging.getLogger(__name__)

Batch = Mapping[str, torch.Tensor]
BatchLoss = Callable[[Any, Batch], torch.Tensor]


def first_batch(train_set: Dataset, per_rank: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Items ``0..batch-1`` (first epoch's augmentation) on the device, for set-up probes."""
    items = [train_set[i] for i in range(min(per_rank, len(train_set)))]  # type: ignore[arg-type]
    return {k: v.to(device) for k, v in default_collate(items).items() if torch.is_tensor(v)}


def choose_runtime(cfg: TrainConfig, model: nn.Module, device: torch.device, info: DistInfo,
                   first: Callable[[], Batch], loss: BatchLoss,
                   samples: int) -> autotune.Choice:
    """How the training steps run (see the module's description).

    Args:
        cfg: the run's configuration (precision, layout, cache, resume, out_dir).
        model: the network, on ``device``, its optimizer already built.
        device: where the steps run.
        info: the process's rank (rank 0 measures and tells the others).
        first: the first batch, collated once (shared with :func:`has_unused_parameters`).
        loss: ``loss(output, batch)``, the run's loss on a whole batch.
        samples: the samples the run's steps take (:func:`job_samples`).
    """
    runtime = cfg.runtime
    explicit = autotune.explicit(runtime.precision, runtime.channels_last, device, "training")
    if explicit is not None:
        return explicit
    resumed = recorded_runtime(Path(cfg.run.out_dir) / CHECKPOINT) if cfg.run.resume else None
    if resumed is not None:
        return resumed
    shared: list = [None]
    if info.main:
        batch = first()
        step = autotune.TrainStep(
            loss=loss, optimizer=lambda params: make_optimizer(cfg.optim, params),
            targets={k: v for k, v in batch.items() if k != "image"})
        shared[0] = autotune.choose(
            model, batch["image"], device, mode="training", step=step,
            precision=runtime.precision, channels_last=runtime.channels_last,
            cache=None if runtime.autotune_cache else False, samples=samples).to_dict()
    if info.world_size > 1:
        dist.broadcast_object_list(shared, src=0)
    return autotune.Choice.from_dict(shared[0])


def has_unused_parameters(model: nn.Module, info: DistInfo, first: Callable[[], Batch],
                          loss: BatchLoss) -> bool:
    """Whether DDP must look for parameters a step leaves unused.

    Rank 0 checks one step on a copy of the model and tells the others: every rank must wrap
    the model alike.
    """
    shared: list = [None]
    if info.main:
        unused = unused_parameters(model, first(), loss)
        if unused:
            log.info("%d parameters get no gradient (%s%s): DDP looks for them every step",
                     len(unused), ", ".join(unused[:3]), ", ..." if len(unused) > 3 else "")
        shared[0] = bool(unused)
    dist.broadcast_object_list(shared, src=0)
    return bool(shared[0])


def job_samples(loop: LoopOptions, epochs: int, per_rank: int, train_size: int) -> int:
    """The samples one rank's steps take over the run: what bounds ``auto``'s measuring."""
    per_epoch = min(train_size, loop.max_batches * per_rank) if loop.max_batches else train_size
    if loop.max_iterations:
        return loop.max_iterations * per_rank
    return max(epochs, 1) * max(per_epoch, 1)
