"""A training process under torchrun joins its group, wraps DDP as its model needs, and leaves."""

from __future__ import annotations

import torch
import torch.distributed as dist

from engine.distributed import (
    DistInfo,
    init_distributed,
    leave_distributed,
    unused_parameters,
)


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


class _TwoHeads(torch.nn.Module):
    """A body and two heads; a loss may read one head or both."""

    def __init__(self) -> None:
        super().__init__()
        self.body = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.norm = torch.nn.BatchNorm2d(4)
        self.main = torch.nn.Conv2d(4, 2, 1)
        self.aux = torch.nn.Conv2d(4, 2, 1)

    def forward(self, x):
        h = torch.relu(self.norm(self.body(x)))
        return {"out": self.main(h), "aux": self.aux(h)}


def test_unused_parameters_are_found_on_a_copy_that_leaves_the_model_alone():
    torch.manual_seed(0)
    model = _TwoHeads().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    batch = {"image": torch.randn(2, 3, 8, 8), "label": torch.randint(0, 2, (2, 8, 8))}
    ce = torch.nn.functional.cross_entropy

    def main_only(out, b):
        return ce(out["out"], b["label"])

    def both(out, b):
        return ce(out["out"], b["label"]) + 0.4 * ce(out["aux"], b["label"])

    rng = torch.get_rng_state()
    assert unused_parameters(model, batch, main_only) == ["aux.weight", "aux.bias"]
    assert unused_parameters(model, batch, both) == []
    assert torch.equal(torch.get_rng_state(), rng)
    assert not model.training and all(p.grad is None for p in model.parameters())
    for k, v in model.state_dict().items():  # weights and running statistics untouched
        assert torch.equal(v, before[k]), k
