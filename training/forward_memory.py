"""What tiles a model can run: the multiple of its input sides, and the batch of a scaled model.

A super-resolution segmentation model (``srseg``, ``output_scale`` k) predicts k² output
pixels per input pixel, and its decoder holds its feature maps at the output's size: one
batch of ``batch`` tiles of ``tile`` px holds about ``batch · (tile · k)²`` times
:data:`BYTES_PER_OUTPUT_PIXEL`. At the predictor's defaults (512 px tiles, 8 per batch) a x10
model would need about 210 GB; a new user's run was killed by the kernel at 22 GB with no
message. So every path that runs such a model over tiles or patches (``isamap-predict``,
``isamap-map``, ``isamap-evaluate``) refuses, before the model runs, a batch over the budget
of the device that runs it (:func:`memory_budget`: :data:`MEMORY_SHARE` of the host's
available memory but never less than :data:`FALLBACK_BUDGET_BYTES`, or of a CUDA device's
free memory), and names the tile and batch that fit (:func:`check_scaled_batch`).
``isamap-evaluate`` knows its device; ``isamap-predict`` and ``isamap-map`` check before
their runtime is settled, against the host's. A model whose output is on its input's grid
(k = 1) is not bounded here.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from core.errors import ConfigError

#: resident bytes one forward pass of srseg holds per output pixel (fp32, CPU, inference
#: mode): 973 B measured (``/usr/bin/time -v`` of ``SRSeg(4, 2, scale=10)`` on one 64 px tile
#: against one 32 px tile, 2026-11-27), rounded up
BYTES_PER_OUTPUT_PIXEL = 1000
#: the share of the device's free memory one forward pass of a scaled model may hold (the
#: rest is the model, the blend buffers, the process and whatever else runs there)
MEMORY_SHARE = 0.5
#: the least a host's budget is (and the budget where its memory cannot be read): the bound
#: every run was held to before it followed the device, so no run it let through is refused
FALLBACK_BUDGET_BYTES = 2_000_000_000


@dataclasses.dataclass(frozen=True)
class MemoryBudget:
    """What one forward pass may hold, in bytes, and where that figure came from."""

    bytes: int
    source: str


def available_memory() -> int | None:
    """This machine's available physical memory in bytes (None: unknown).

    Linux's ``MemAvailable`` (free memory plus the page cache it can reclaim), else
    ``sysconf``'s free pages (``SC_AVPHYS_PAGES`` x ``SC_PAGE_SIZE``, which leaves the cache
    out).
    """
    try:
        with open("/proc/meminfo") as lines:
            for line in lines:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None
    return free if free > 0 else None


def host_budget() -> MemoryBudget:
    """:data:`MEMORY_SHARE` of this machine's available memory (:func:`available_memory`).

    Never less than :data:`FALLBACK_BUDGET_BYTES`, which is the budget alone where the
    memory cannot be read.
    """
    free = available_memory()
    floor = f"{FALLBACK_BUDGET_BYTES / 1e9:.0f} GB"
    if free is None:
        return MemoryBudget(FALLBACK_BUDGET_BYTES, f"a fixed {floor}: this machine's "
                            "available memory is unknown")
    share = f"{MEMORY_SHARE:.0%} of this machine's {free / 1e9:.1f} GB of available memory"
    if free * MEMORY_SHARE < FALLBACK_BUDGET_BYTES:
        return MemoryBudget(FALLBACK_BUDGET_BYTES, f"the {floor} floor; {share} is less")
    return MemoryBudget(int(free * MEMORY_SHARE), share)


def memory_budget(device: Any = None) -> MemoryBudget:
    """The budget of the device a forward pass runs on (None or a CPU: the host's).

    A CUDA device's is :data:`MEMORY_SHARE` of its free memory (``torch.cuda.mem_get_info``).
    """
    import torch

    dev = torch.device(device) if device is not None else None
    if dev is None or dev.type != "cuda":
        return host_budget()
    free, _ = torch.cuda.mem_get_info(dev)
    return MemoryBudget(int(free * MEMORY_SHARE), f"{MEMORY_SHARE:.0%} of GPU {dev}'s "
                        f"{free / 1e9:.1f} GB of free memory")


def input_multiple(model: object) -> int:
    """The multiple a model's input height and width must be (1: any side).

    A model whose forward refuses other sides (:func:`training.models.blocks.check_divisible`)
    says so with ``divisible_input``; one that pads its input itself (srseg) or needs no
    multiple answers 1, whatever its ``stride``.
    """
    return int(getattr(model, "stride", 1)) if getattr(model, "divisible_input", False) else 1


def batch_bytes(scale: int, side: int, batch: int) -> int:
    """About what one forward pass of ``batch`` inputs of ``side`` px at output ``scale`` holds."""
    return batch * (side * scale) ** 2 * BYTES_PER_OUTPUT_PIXEL


def largest_side(scale: int, budget: int, multiple: int = 8) -> int:
    """The largest input side (a multiple of ``multiple``) of which one fits ``budget`` bytes."""
    side = int((budget / BYTES_PER_OUTPUT_PIXEL) ** 0.5 / scale)
    return max(side - side % multiple, multiple)


def check_scaled_batch(scale: int, side: int, batch: int, *, model: str,
                       side_flag: str | None = "--tile", batch_flag: str = "--batch-size",
                       budget: MemoryBudget | None = None) -> None:
    """Refuse a batch of a scaled model's inputs whose forward pass passes the budget.

    Args:
        scale: the model's ``output_scale`` (1: nothing to check).
        side: the input tile's (or patch's) side, px.
        batch: inputs per forward pass.
        model: the model's name, for the message.
        side_flag: the flag that sets ``side`` (None: the side is the data's, not a flag's).
        batch_flag: the flag that sets ``batch``.
        budget: what one forward pass may hold (None: the host's, :func:`host_budget`).

    Raises:
        ConfigError: one batch would hold more than the budget, which the message names
            with where it came from.
    """
    need = batch_bytes(scale, side, batch)
    if scale <= 1:
        return
    budget = budget or host_budget()
    if need <= budget.bytes:
        return
    fits = budget.bytes // batch_bytes(scale, side, 1)
    if fits >= 1:
        advice = f"give {batch_flag} {fits}"
    elif side_flag is None:
        advice = (f"even {batch_flag} 1 does not fit: {side} px patches are too large for "
                  "this model on this machine's budget")
    else:
        advice = f"give {side_flag} {largest_side(scale, budget.bytes)} {batch_flag} 1"
    shown = f"{side_flag} {side} {batch_flag} {batch}" if side_flag else \
        f"{batch_flag} {batch} of {side} px patches"
    raise ConfigError(
        f"{shown} is {batch} x {side * scale}² output pixels per forward pass at this {model} "
        f"model's x{scale} output, about {need / 1e9:.1f} GB (about "
        f"{BYTES_PER_OUTPUT_PIXEL} bytes each), over the {budget.bytes / 1e9:.1f} GB one "
        f"batch may hold ({budget.source}); {advice}")
