"""Seeds and the random state a checkpoint carries.

A resumed training run ends bit-identical to an uninterrupted one only if every generator it
draws from (Python, NumPy's global state, torch, CUDA and the data loader's own) continues
where it stopped; the state is stored as tensors and plain values so that checkpoints load
with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy's global state and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - third-party code may draw from the global state
    torch.manual_seed(seed)


def rng_state(loader_gen: torch.Generator) -> dict[str, Any]:
    """Every generator's state, with the data loader's ``loader_gen``."""
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)  # noqa: NPY002
    assert not isinstance(keys, str)  # the legacy state's key array
    state = {"python": random.getstate(), "torch": torch.get_rng_state(),
             "numpy": (name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss),
                       float(cached)),
             "loader": loader_gen.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any], loader_gen: torch.Generator) -> None:
    """Restore what :func:`rng_state` returned, wherever its tensors were loaded.

    A checkpoint loaded onto the GPU (``map_location`` a CUDA device) holds these states as
    CUDA tensors; every generator takes its state as a CPU byte tensor.
    """
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"].cpu())
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name,  # noqa: NPY002
                          keys.cpu().numpy().astype(np.uint32), pos, has_gauss, cached))
    loader_gen.set_state(state["loader"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
