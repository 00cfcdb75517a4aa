"""How batches reach the model: decoded patches cached or not, loader workers, the loader.

:func:`choose_data_path` picks, by the dataset's decoded size, whether patches are decoded
once and cached and how many loader workers read them; :func:`make_loader` builds the loader
(keyed sampler, prefetching, persistent workers, pinning) and :func:`collate` stacks a batch
on the calling thread alone.

May import: ``engine``, ``training.sampling``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, default_collate

from engine.execution import calling_thread_only
from training.sampling import KeyedSampler


def default_workers() -> int:
    return max(min((os.cpu_count() or 2) - 1, 8), 0)


#: Decoded patches are cached when all their copies take at most this share of the machine's
#: memory (the rest is the model's, the optimizer's and the system's)...
CACHE_MEMORY_SHARE = 0.25
#: ...and at most this many bytes.
CACHE_MAX_BYTES = 4 << 30


@dataclass(frozen=True)
class DataPath:
    """How a run feeds its model: decoded patches cached or not, and loader workers.

    Attributes:
        cache: keep decoded patches in memory.
        workers: loader worker processes (0: the training process reads and augments).
        reason: why, in words (logged).
    """

    cache: bool
    workers: int
    reason: str


def choose_data_path(decoded_bytes: int, device_type: str, cache: bool | None = None,
                     workers: int | None = None) -> DataPath:
    """The data path by the dataset's size; given values are kept.

    A dataset whose decoded patches fit in memory (:data:`CACHE_MEMORY_SHARE` of it, at most
    :data:`CACHE_MAX_BYTES`, counting one copy per worker: each worker caches its own) is
    decoded once and cached. Then each item costs only its augmentation, and on a CPU loader
    workers would compete with the training step for the same cores, so none are started;
    on a GPU the workers augment while the device computes. A dataset too large to cache is
    read by :func:`default_workers` workers, which decode the next batches meanwhile.
    """
    memory = _physical_memory()
    limit = min(CACHE_MAX_BYTES, int(CACHE_MEMORY_SHARE * memory)) if memory else CACHE_MAX_BYTES
    cpu = device_type == "cpu"
    if workers is None:
        small = decoded_bytes <= limit and cache is not False
        workers = 0 if small and cpu else default_workers()
    copies = max(workers, 1)
    fits = decoded_bytes * copies <= limit
    use_cache = fits if cache is None else cache
    size = f"{decoded_bytes / 2**20:.0f} MiB decoded"
    reason = (f"{size}, {'cached' if use_cache else 'read each epoch'}"
              f"{' (fits in memory)' if cache is None and fits else ''}"
              f"{' (too large to cache)' if cache is None and not fits else ''}, "
              f"{workers} loader workers")
    return DataPath(use_cache, workers, reason)


def _physical_memory() -> int:
    """The machine's physical memory in bytes (0 when the system does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def collate(items: list[dict]) -> dict:
    """``default_collate`` on the calling thread alone.

    Stacking a batch is a memory-bound copy: with no loader workers it runs in the training
    process between steps, where a second thread halves little of it and its OpenMP wait,
    on a busy machine, can cost more than the copy itself (a worker runs one thread anyway).
    """
    with calling_thread_only():
        return default_collate(items)


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool, seed: int = 0,
                num_workers: int | None = None, rank: int = 0, world_size: int = 1,
                pin_memory: bool = False, weights: np.ndarray | None = None) -> DataLoader:
    """A loader that keeps the model busy: workers, prefetching, persistent workers, pinning.

    Call ``loader.sampler.set_epoch(epoch)`` before each epoch (new order, new augmentations).
    ``weights``: draw items in proportion to them (:class:`KeyedSampler`) instead of
    shuffling.
    """
    workers = default_workers() if num_workers is None else int(num_workers)
    sampler = KeyedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=shuffle, seed=seed,
                           weights=weights)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                      pin_memory=pin_memory, collate_fn=collate, persistent_workers=workers > 0,
                      prefetch_factor=4 if workers > 0 else None,
                      generator=torch.Generator().manual_seed(seed))
