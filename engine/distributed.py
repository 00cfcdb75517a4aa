"""Where a training process runs: its rank under ``torchrun`` and its device.

Shared by training (one process per GPU under ``torchrun``, DDP) and evaluation (one process),
so both place themselves the same way.
"""

from __future__ import annotations

import copy
import gc
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from engine import devices


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device_kind: str) -> DistInfo:
    """Join the ``torchrun`` process group when ``WORLD_SIZE`` > 1 (NCCL on GPU, else Gloo)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_kind == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))


def leave_distributed(finished: bool = True) -> None:
    """Leave the process group, if this process joined one, before the process exits.

    Left to interpreter shutdown, Gloo's threads can outlive the group's C++ objects and abort
    the process ("terminate called without an active exception") after a run that succeeded.
    After a run that finished, the ranks first drop the DDP wrappers still waiting for
    collection and wait for each other (a barrier), so that no rank tears its group down
    while another is still working: rank 1, with no files to write, gets here first, and it
    is rank 1 that aborted this way, rarely and only under load, in
    ``tests/training/run/test_trainer.py::test_ddp_under_torchrun_on_cpu`` (the abort did not
    reproduce on demand, so this is a precaution, not a proven cure). After a failure there
    is no barrier: the other ranks may never reach it.
    """
    if dist.is_available() and dist.is_initialized():
        if finished:
            gc.collect()
            dist.barrier()
        dist.destroy_process_group()


def resolve_device(name: str, info: DistInfo) -> torch.device:
    """The device of this process (its local rank's GPU under torchrun), made current."""
    dev = devices.resolve_device(name, info.local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    return dev


def unused_parameters(model: nn.Module, batch: Mapping[str, torch.Tensor],
                      loss: Callable[[object, Mapping[str, torch.Tensor]], torch.Tensor]
                      ) -> list[str]:
    """Trainable parameters that a training step on ``batch`` leaves without a gradient.

    DDP has to be told when there are any (``find_unused_parameters=True``), and that costs
    a walk of the autograd graph on every step (and a warning) when there are none, which is
    the case of every registry model under its own loss; a configuration whose loss ignores
    a head would have some. Measured on a copy, so the model's weights, its norms'
    statistics and the random state are left as they were.
    """
    probe = copy.deepcopy(model).train()
    device = batch["image"].device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        # torch leaves Tensor.backward unannotated
        loss(probe(batch["image"]), batch).backward()  # type: ignore[no-untyped-call]
    return [name for name, p in probe.named_parameters()
            if p.requires_grad and p.grad is None]


def sum_over_ranks(total: float, seen: int, info: DistInfo,
                   device: torch.device) -> tuple[float, int]:
    """A sum and a count added up over every rank (as given in a single process)."""
    if info.world_size == 1:
        return total, seen
    t = torch.tensor([total, float(seen)], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t[0]), int(t[1])
