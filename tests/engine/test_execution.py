"""How ``auto`` cuts the measured batch, decides on fewer threads, and times its candidates."""

from __future__ import annotations

import time

import torch

from engine import autotune, execution
from engine.execution import Setting, SettingRunner, cut_batch
from tests.support import REPO_ROOT

CPU = torch.device("cpu")


def _runner(n: int = 4, size: int = 48, mode: str = "inference") -> SettingRunner:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(6, 8, 3, padding=1), torch.nn.BatchNorm2d(8),
                                torch.nn.ReLU(), torch.nn.Conv2d(8, 2, 3, padding=1))
    x = torch.randn(n, 6, size, size)
    if mode == "inference":
        return SettingRunner(model, {"image": x}, CPU, mode, None, torch.get_num_threads())
    step = autotune.TrainStep(
        lambda out, b: torch.nn.functional.cross_entropy(out, b["label"]),
        lambda p: torch.optim.SGD(p, lr=0.01),
        {"label": torch.randint(0, 2, (n, size, size))})
    return SettingRunner(model, {"image": x, **step.targets}, CPU, mode, step,
                         torch.get_num_threads())


def test_the_batch_shrinks_to_fit_but_the_tile_is_never_cropped():
    runner = _runner(n=4, size=96)
    tight, _ = runner.fit_batch(0.0, 4)
    assert tuple(tight["image"].shape) == (1, 6, 96, 96)
    roomy, _ = runner.fit_batch(1e6, 4)
    assert tuple(roomy["image"].shape) == (4, 6, 96, 96)
    trainer = _runner(n=4, size=96, mode="training")
    cut, _ = trainer.fit_batch(0.0, 4)  # batch norm needs two samples to train
    assert tuple(cut["image"].shape) == (2, 6, 96, 96)
    assert tuple(cut["label"].shape) == (2, 96, 96)


def test_fewer_threads_are_tried_only_when_the_cores_look_busy(monkeypatch):
    saved = torch.get_num_threads()
    runner = _runner()
    runner.threads = 2
    try:
        monkeypatch.setattr(execution, "BUSY_UTILISATION", 0.0)  # never busy: not tried
        monkeypatch.setattr(execution, "FEWER_THREADS_GAIN", 0.0)  # would win if tried
        assert runner.fit_batch(1.0, 4)[1] is None
        monkeypatch.setattr(execution, "BUSY_UTILISATION", 1e9)  # always busy: tried
        assert runner.fit_batch(1.0, 4)[1] == 1
        monkeypatch.setattr(execution, "FEWER_THREADS_GAIN", 1e9)  # never clearly faster
        assert runner.fit_batch(1.0, 4)[1] is None
    finally:
        torch.set_num_threads(saved)


def test_a_model_chosen_without_threads_gets_the_process_count_back_after_one_lowered_it(
        monkeypatch):
    """A busy moment's one-thread choice must not leave later models in the process on it."""
    saved = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        small = torch.nn.Conv2d(6, 2, 1)
        autotune.apply(autotune.Choice(Setting("fp32", threads=1), "measured"), small, CPU)
        assert torch.get_num_threads() == 1
        assert execution.process_threads() == 2
        # a later measurement times (and keys its cache by) the process's own count
        assert "2 threads" in autotune.describe_device(CPU)
        timed_with = []

        class Recording(SettingRunner):
            def __init__(self, *args) -> None:
                super().__init__(*args)
                timed_with.append(self.threads)

        monkeypatch.setattr(autotune, "SettingRunner", Recording)
        autotune.choose(torch.nn.Conv2d(6, 2, 3), torch.randn(1, 6, 16, 16), CPU,
                        precision="fp32", channels_last="auto", budget_s=0.05, cache=False)
        assert timed_with == [2]
        autotune.apply(autotune.Choice(Setting("fp32")), torch.nn.Conv2d(6, 2, 1), CPU)
        assert torch.get_num_threads() == 2  # given back
        assert execution.process_threads() == 2
        # a count the user sets after a lowering is the process's own from then on
        autotune.apply(autotune.Choice(Setting("fp32", threads=1), "measured"), small, CPU)
        torch.set_num_threads(3)
        autotune.apply(autotune.Choice(Setting("fp32")), small, CPU)
        assert torch.get_num_threads() == 3
    finally:
        execution.use_threads(None)
        torch.set_num_threads(saved)


class _SleepingRunner:
    """Stands in for :class:`SettingRunner` in the timing loop: each setting sleeps its time."""

    def __init__(self, seconds: dict[Setting, float]) -> None:
        self.seconds, self.calls = seconds, dict.fromkeys(seconds, 0)

    def call(self, setting: Setting, batch):
        def run() -> None:
            self.calls[setting] += 1
            time.sleep(self.seconds[setting])
        return run


def test_every_candidate_is_timed_even_past_the_deadline_and_close_ones_twice(monkeypatch):
    monkeypatch.setattr(autotune, "RACE_MARGIN", 3.0)  # wide: scheduler jitter never matters
    fast, close, slow = Setting("fp32"), Setting("bf16"), Setting("fp32", True)
    # equal times 30 ms apart from the slow one's 300: scheduler jitter cannot reorder them
    runner = _SleepingRunner({fast: 0.03, close: 0.03, slow: 0.3})
    times = autotune._time(runner, [slow, fast, close], {}, deadline=0.0, measure=None)
    assert set(times) == {fast, close, slow}  # none loses by never being timed
    assert runner.calls[slow] == 1  # 10x slower than the lead after round one: out
    assert runner.calls[fast] == runner.calls[close] == autotune.MIN_ROUNDS
    assert times[slow] >= 0.3 > times[fast]


def test_rounds_go_on_for_the_close_candidates_while_the_budget_lasts(monkeypatch):
    monkeypatch.setattr(autotune, "RACE_MARGIN", 3.0)
    a, b = Setting("fp32"), Setting("bf16")
    runner = _SleepingRunner({a: 0.03, b: 0.03})
    autotune._time(runner, [a, b], {}, deadline=time.perf_counter() + 60, measure=None)
    assert runner.calls[a] == runner.calls[b] == autotune.MAX_REPS


def test_cut_batch_cuts_targets_at_their_own_resolution():
    batch = {"image": torch.zeros(4, 3, 8, 8), "fine": torch.zeros(4, 1, 80, 80),
             "label": torch.zeros(4, 8, 8), "scale": torch.tensor(2.0)}
    out = cut_batch(batch, 2, 4, 4)
    assert tuple(out["image"].shape) == (2, 3, 4, 4)
    assert tuple(out["fine"].shape) == (2, 1, 40, 40)
    assert tuple(out["label"].shape) == (2, 4, 4)
    assert out["scale"] is batch["scale"]


def test_only_the_engine_sets_torch_threads():
    """One owner of the thread count, so ``process_threads`` knows what was lowered."""
    callers = sorted(str(path.relative_to(REPO_ROOT))
                     for package in ("gee_export", "training", "inference", "experiments")
                     for path in (REPO_ROOT / package).rglob("*.py")
                     if "torch.set_num_threads(" in path.read_text())
    assert callers == ["engine/execution.py"]
