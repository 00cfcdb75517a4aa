"""A training process under torchrun joins its group, and leaves it before it exits."""

from __future__ import annotations

import torch.distributed as dist

from training.distributed import DistInfo, init_distributed, leave_distributed


def test_one_process_joins_nothing(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert init_distributed("cpu") == DistInfo()
    assert not dist.is_initialized()


def test_leaving_destroys_the_group_once_and_is_then_a_no_op():
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    assert dist.is_initialized()
    leave_distributed()
    assert not dist.is_initialized()
    leave_distributed()  # nothing joined: nothing to do, no error
    assert not dist.is_initialized()
