"""How ``auto`` cuts the measured batch and times its candidates."""

from __future__ import annotations

import torch

from engine import autotune
from engine.execution import CALLS_PER_CANDIDATE, SettingRunner, cut_batch
from tests.support import LIBRARY_PACKAGES, REPO_ROOT

CPU = torch.device("cpu")


def _runner(n: int = 4, size: int = 48, mode: str = "inference") -> SettingRunner:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(6, 8, 3, padding=1), torch.nn.BatchNorm2d(8),
                                torch.nn.ReLU(), torch.nn.Conv2d(8, 2, 3, padding=1))
    x = torch.randn(n, 6, size, size)
    if mode == "inference":
        return SettingRunner(model, {"image": x}, CPU, mode, None)
    step = autotune.TrainStep(
        lambda out, b: torch.nn.functional.cross_entropy(out, b["label"]),
        lambda p: torch.optim.SGD(p, lr=0.01),
        {"label": torch.randint(0, 2, (n, size, size))})
    return SettingRunner(model, {"image": x, **step.targets}, CPU, mode, step)


def test_the_batch_shrinks_to_fit_but_the_tile_is_never_cropped():
    runner = _runner(n=4, size=96)
    tight = runner.fit_batch(0.0, 4)
    assert tuple(tight["image"].shape) == (1, 6, 96, 96)
    roomy = runner.fit_batch(1e6, 4)
    assert tuple(roomy["image"].shape) == (4, 6, 96, 96)
    trainer = _runner(n=4, size=96, mode="training")
    cut = trainer.fit_batch(0.0, 4)  # batch norm needs two samples to train
    assert tuple(cut["image"].shape) == (2, 6, 96, 96)
    assert tuple(cut["label"].shape) == (2, 96, 96)


def test_cut_batch_cuts_targets_at_their_own_resolution():
    batch = {"image": torch.zeros(4, 3, 8, 8), "fine": torch.zeros(4, 1, 80, 80),
             "label": torch.zeros(4, 8, 8), "scale": torch.tensor(2.0)}
    out = cut_batch(batch, 2, 4, 4)
    assert tuple(out["image"].shape) == (2, 3, 4, 4)
    assert tuple(out["fine"].shape) == (2, 1, 40, 40)
    assert tuple(out["label"].shape) == (2, 4, 4)
    assert out["scale"] is batch["scale"]


def test_only_the_engine_sets_torch_threads():
    """One owner of the thread count, so a count changed for a while is always given back."""
    callers = sorted(str(path.relative_to(REPO_ROOT))
                     for package in (*LIBRARY_PACKAGES, "experiments")
                     for path in (REPO_ROOT / package).rglob("*.py")
                     if "torch.set_num_threads(" in path.read_text())
    assert callers == ["engine/execution.py"]


def test_a_batch_size_already_timed_is_not_timed_again():
    """The probe's size fits the budget but twice it does not: the probe's timing is kept."""
    runner = _runner(n=4, size=32)
    seconds = runner.probe()  # per sample, at the smallest batch (1)
    assert runner.model is not None
    forwards: list[int] = []
    runner.model.register_forward_hook(lambda *_: forwards.append(1))
    # room for 1.5 samples a call: the linear estimate gives the size the probe timed
    batch = runner.fit_batch(1.5 * seconds * CALLS_PER_CANDIDATE * 4, 4)
    assert batch["image"].shape[0] == 1 and forwards == []
