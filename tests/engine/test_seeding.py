"""The random state a checkpoint carries goes back into every generator, wherever it loaded."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from engine.seeding import rng_state, set_rng_state


def _draws(gen: torch.Generator) -> tuple:
    return (random.random(), np.random.random(),  # noqa: NPY002 - the global state restored
            torch.rand(3).tolist(), torch.rand(2, generator=gen).tolist())


def _moved(state, device: str):
    """The state as ``torch.load(map_location=device)`` gives it back."""
    def move(value):
        if isinstance(value, torch.Tensor):
            return value.to(device)
        if isinstance(value, (list, tuple)):
            return type(value)(move(v) for v in value)
        return value
    return {k: move(v) for k, v in state.items()}


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device"))])
def test_a_restored_state_draws_what_the_saved_one_drew(device):
    """A training resumed on a GPU stopped with "RNG state must be a torch.ByteTensor": its
    checkpoint is loaded onto the GPU, and so were the generators' states."""
    gen = torch.Generator().manual_seed(5)
    state = rng_state(gen)
    first = _draws(gen)
    set_rng_state(_moved(state, device), gen)
    assert _draws(gen) == first
