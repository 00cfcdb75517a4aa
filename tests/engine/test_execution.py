"""How ``auto`` cuts the measured batch and times its candidates."""

from __future__ import annotations

import copy
import time

import torch

from engine import autotune
from engine.execution import CALLS_PER_CANDIDATE, Setting, SettingRunner, cut_batch
from tests.support import LIBRARY_PACKAGES, REPO_ROOT
from tests.support.clocks import all_cores

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


class _SleepingRunner:
    """Stands in for :class:`SettingRunner` in the timing loop: each setting sleeps its time."""

    def __init__(self, seconds: dict[Setting, float]) -> None:
        self.seconds, self.calls = seconds, dict.fromkeys(seconds, 0)

    def call(self, setting: Setting, batch):
        def run() -> None:
            self.calls[setting] += 1
            time.sleep(self.seconds[setting])
        return run


def test_no_call_starts_past_the_deadline(monkeypatch):
    """The clock is read before every call: past the deadline nothing more is timed, and a
    candidate never timed is left out (the caller reports it as skipped); a further round
    starts only when its calls, at their best times, end before the deadline (below)."""
    monkeypatch.setattr(autotune, "RACE_MARGIN", 3.0)  # wide: scheduler jitter never matters
    fast, close, slow = Setting("fp32"), Setting("bf16"), Setting("fp32", True)
    runner = _SleepingRunner({fast: 0.03, close: 0.03, slow: 0.3})
    assert autotune._time(runner, [slow, fast], {}, deadline=0.0, measure=None) == {}
    assert runner.calls == {fast: 0, close: 0, slow: 0}
    # the slow one's call takes the time left: the next candidate's call is not started
    times = autotune._time(runner, [slow, fast, close], {},
                           deadline=time.perf_counter() + 0.2, measure=None)
    assert set(times) == {slow} and runner.calls == {fast: 0, close: 0, slow: 1}


def test_rounds_go_on_for_the_close_candidates_while_the_budget_lasts(monkeypatch):
    monkeypatch.setattr(autotune, "RACE_MARGIN", 3.0)
    a, b = Setting("fp32"), Setting("bf16")
    runner = _SleepingRunner({a: 0.03, b: 0.03})
    autotune._time(runner, [a, b], {}, deadline=time.perf_counter() + 60, measure=None)
    assert runner.calls[a] == runner.calls[b] == autotune.MAX_REPS


def test_no_further_round_once_the_jobs_share_at_the_fastest_speed_is_spent(monkeypatch):
    """The probe's fp32 time is known (not timed again in round one); the rounds stop where
    the job's share at the fastest time seen says so, long before the deadline."""
    monkeypatch.setattr(autotune, "RACE_MARGIN", 3.0)
    a, b = Setting("fp32"), Setting("bf16")
    runner = _SleepingRunner({a: 0.03, b: 0.03})
    leads: list[float] = []

    def spent(lead: float) -> float:
        leads.append(lead)
        return 0.0

    times = autotune._time(runner, [b], {}, deadline=time.perf_counter() + 60, measure=None,
                           known={a: 0.05}, rounds_until=spent)
    assert runner.calls == {a: 0, b: 1} and times[a] == 0.05 and len(leads) == 1


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


def test_a_further_round_starts_only_when_the_time_left_pays_for_it():
    a, b = Setting("fp32"), Setting("bf16")
    runner = _SleepingRunner({a: 0.1, b: 0.1})
    # round one takes 0.2 s, leaving about 0.05 s: too little for a second round of 0.2 s
    autotune._time(runner, [a, b], {}, deadline=time.perf_counter() + 0.25, measure=None)
    assert runner.calls[a] == runner.calls[b] == 1


def test_in_training_the_budget_bounds_the_agreement_checks_too():
    """A step longer than the budget: it is the only step; no unchecked candidate wins."""
    runner = _runner(n=4, size=32, mode="training")
    model, step = copy.deepcopy(runner.model), runner.step
    assert step is not None
    x = runner.example["image"]
    losses: list[int] = []

    def counted(out, batch):
        losses.append(1)
        return step.loss(out, batch)

    forwards: list[int] = []
    model.register_forward_hook(lambda *_: forwards.append(1))  # the copy inherits it
    spent = autotune.choose(model, x, CPU, mode="training", budget_s=0.0, cache=False,
                            step=autotune.TrainStep(counted, step.optimizer, step.targets),
                            cpu_time=all_cores)
    assert spent.setting == Setting() and set(spent.errors) == {"fp32/nchw"}
    assert set(spent.skipped) == {"fp32/nhwc", "bf16/nchw", "bf16/nhwc"}
    # the probe's first step ended past the deadline: no second step; then the reference
    assert len(losses) == 1 and len(forwards) == 2
    roomy = autotune.choose(model, x, CPU, mode="training", step=step, budget_s=600.0,
                            cache=False, cpu_time=all_cores)
    assert set(roomy.errors) == {"fp32/nchw", "fp32/nhwc", "bf16/nchw", "bf16/nhwc"}
    assert roomy.errors["fp32/nchw"] == 0.0  # the reference is fp32 NCHW's own check


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
