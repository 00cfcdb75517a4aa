"""``auto``'s measuring inside its budget: what is checked and timed, in what order, until when.

One :class:`Clock` holds the deadline from the moment ``auto`` was asked (every step counts:
the cache key, the model's copy, each call) and is read before every call: a call starts only
when the calls before it say it ends inside the budget. The order:

1. fp32 NCHW on a crop of the first tile (:data:`engine.execution.CHECK_SIDE` pixels a side):
   the agreement checks' reference, and the only call made before anything is known about
   the model's speed; a second crop call, when the first leaves time for it, is timed and
   estimates a full-size call (:meth:`~engine.execution.SettingRunner.probe_estimate`).
2. The probe, fp32 NCHW at the smallest batch at full size (training: an untimed and a timed
   step), only when that estimate fits the budget and the job's share of it
   (:func:`job_budget`); otherwise nothing is timed and the first candidate runs, every
   other one reported skipped with the estimate that ruled it out.
3. The job's share at the probe's speed bounds the rest; the timed batch is cut to it.
4. Each candidate's agreement with fp32 on the crop (training: a fresh fp32 reference on
   the same crop after the probe's steps, with the same weights as the candidates').
5. Training: each agreeing candidate's untimed first step.
6. Timed calls, in turns, while the time left pays for them.

A candidate is dropped only by a measurement (it disagrees or fails: ``rejected``; it is
timed slower than the fastest); one the budget could not check or time is ``skipped``, and
the ``-v`` log names it and why. The measuring ends at its budget, overrun by at most one
call's misestimate (a call slower than the calls before it said: the first crop call, or a
load that rose during a call).

May import: ``engine.execution``, ``engine.choice_value``, ``core``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from core.commands import DETAIL
from engine.choice_value import Choice
from engine.execution import SettingRunner, set_threads
from engine.setting import Batch, Mode, Setting, TrainStep

log = logging.getLogger(__name__)

#: Timed repetitions per candidate at most (fast models stop here, long before the budget).
MAX_REPS = 8
#: After each round only candidates within this factor of the fastest keep being timed.
RACE_MARGIN = 1.3
#: At most this share of a job's model time goes to measuring (:func:`job_budget`);
#: an inference job of fewer samples than (candidates + 3) / MEASURE_SHARE with no cached
#: choice runs the first candidate unmeasured: the fewest calls measuring needs cost more.
MEASURE_SHARE = 0.1

#: ``measure(setting, run) -> seconds per call``: replaces the timing loop (tests inject one;
#: fake timings spend no budget, so with one every candidate is checked and timed).
Measure = Callable[[Setting, Callable[[], None]], float]


@dataclass
class Clock:
    """The measuring's deadline, read before every call, and why candidates were left out.

    Attributes:
        started: when ``auto`` was asked (``time.perf_counter``): the budget counts from here.
        total_s: the budget given (``budget_s``).
        fake: timings are injected (tests): they spend no budget, every call fits.
        budget_s: the budget now, at most ``total_s``: the job's share once its speed is
            estimated, then measured (:meth:`limit`).
        reasons: why each candidate left out was left out, for the ``-v`` log.
    """

    started: float
    total_s: float
    fake: bool = False
    budget_s: float = math.inf
    reasons: dict[Setting, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.budget_s = self.total_s

    @property
    def deadline(self) -> float | None:
        """When the budget ends (None: fake timings, no deadline)."""
        return None if self.fake else self.started + self.budget_s

    def limit(self, samples: int | None, seconds_per_sample: float) -> None:
        """Bound the budget by the job's share at ``seconds_per_sample`` (:func:`job_budget`)."""
        self.budget_s = job_budget(self.total_s, samples, seconds_per_sample)

    def fits(self, seconds: float) -> bool:
        """Whether a call expected to take ``seconds`` ends inside the budget."""
        deadline = self.deadline
        return deadline is None or time.perf_counter() + seconds <= deadline

    def spent(self) -> float:
        """Seconds since ``auto`` was asked."""
        return round(time.perf_counter() - self.started, 3)

    def skip(self, setting: Setting, what: str) -> None:
        self.reasons[setting] = f"not {what}: the budget ({self.budget_s:.3g} s) ran out"


def fewest_samples(mode: Mode, candidates: int) -> int:
    """The fewest samples the measuring of ``candidates`` runs, whatever the budget.

    Inference: the probe and a timed call of each candidate, one sample each, and a further
    round (``candidates + 3``). Training, two samples a step: the probe's two steps, each
    other candidate's warm-up and timed step, a further round, and about one step for the
    agreement checks (``2 * (3 * candidates + 1)``). A job of fewer than this over
    :data:`MEASURE_SHARE` samples is not measured: its share could not pay for it.
    """
    if mode == "training":
        return 2 * (3 * candidates + 1)
    return candidates + 3


def job_budget(budget_s: float, samples: int | None, seconds_per_sample: float) -> float:
    """Seconds a job's measuring may take, probe, checks and timed calls included.

    At most ``budget_s`` and, when the job's sample count is known, :data:`MEASURE_SHARE`
    of its model time at ``seconds_per_sample`` (estimated from the crop, then the probe's
    fp32 NCHW speed; for further timing rounds, the fastest seen): no candidate can save
    more than the job takes.
    """
    if samples is None:
        return budget_s
    return min(budget_s, MEASURE_SHARE * samples * seconds_per_sample)


def measure_candidates(model: nn.Module, example: torch.Tensor, device: torch.device,
                       mode: Mode, cands: list[Setting], samples: int | None,
                       step: TrainStep | None, clock: Clock, tolerance: float,
                       measure: Measure | None) -> Choice:
    """Check every candidate against fp32, then time those that agree, inside the budget.

    The model, the process's threads, cuDNN flags and RNG are left as they were.
    """
    with borrowed_runner(model, example, device, mode, step) as runner:
        return _measure_with(runner, mode, cands, samples, clock, tolerance, measure)


@contextmanager
def borrowed_runner(model: nn.Module, example: torch.Tensor, device: torch.device, mode: Mode,
                    step: TrainStep | None) -> Iterator[SettingRunner]:
    """A :class:`SettingRunner` of ``model`` on ``example`` (with the step's targets).

    Whatever it runs, the model's mode, the process's threads, the cuDNN flags and the RNG
    are given back as they were when it ends.
    """
    saved_threads = torch.get_num_threads()
    saved_cudnn = torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic
    was_training = model.training
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        batch = {**(dict(step.targets) if step else {}), "image": example.to(device)}
        runner = SettingRunner(model, batch, device, mode, step)
        try:
            yield runner
        finally:
            set_threads(saved_threads)
            torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved_cudnn
            model.train(was_training)
            runner.close()


def _measure_with(runner: SettingRunner, mode: Mode, cands: list[Setting],
                  samples: int | None, clock: Clock, tolerance: float,
                  measure: Measure | None) -> Choice:
    t0 = time.perf_counter()
    check, reference = runner.check_reference()
    first_s = time.perf_counter() - t0
    if not clock.fits(first_s):  # the first call alone spent the budget
        return _nothing_timed(cands, clock, mode, tolerance,
                              f"fp32's first call on a crop took {first_s:.3g} s")
    estimate, per_sample = runner.probe_estimate(check)
    clock.limit(samples, per_sample)
    if not clock.fits(estimate):
        return _nothing_timed(cands, clock, mode, tolerance,
                              f"a full-size call (about {estimate:.3g} s, estimated on a "
                              "crop) would end past it")
    clock.limit(samples, runner.probe(clock.deadline if mode == "training" else None))
    batch = runner.fit_batch(clock.budget_s, len(cands), clock.deadline)
    reference_s = runner.check_seconds
    if mode == "training":  # the probe's steps changed the weights: fp32 again, same weights
        if clock.fits(reference_s):
            reference = runner.probabilities(Setting(), check)
        else:
            reference = torch.empty(0)  # nothing below is checked against it
            reference_s = math.inf
    check_s: dict[Setting, float] = {}
    errors = _check(runner, cands, check, reference, clock, reference_s, check_s)
    agreeing = [c for c in cands if errors.get(c, math.inf) <= tolerance]
    if not agreeing and errors:
        # only possible when the precision is explicit (fp32 agrees with itself): the user's
        # precision is kept, the layout is still measured
        log.warning("autotune: no candidate agrees with fp32 within %g (%s); keeping the "
                    "requested precision", tolerance,
                    ", ".join(f"{c.label} {e:.3g}" for c, e in errors.items()))
        agreeing = [c for c in cands if math.isfinite(errors.get(c, math.inf))]
    fp32 = runner.fp32_seconds(batch)
    # fp32 NCHW on this batch was timed by the probe (or while the batch grew)
    known = {Setting(): fp32} if fp32 is not None and measure is None and \
        Setting() in agreeing else {}
    ready = [c for c in agreeing if c not in known]
    # a candidate's calls are estimated at fp32's, times how much slower its check on the
    # crop was: bf16 without bf16 instructions (16 times fp32 on an AVX2 EPYC) overran a
    # 1.5 s budget to 3 s on fp32's estimate alone
    slower = {c: max(1.0, s / runner.check_seconds) for c, s in check_s.items()}
    if mode == "training":
        ready = _warm_up(runner, ready, batch, clock, errors, slower)
    n = int(batch["image"].shape[0])
    rounds_until = (None if samples is None else
                    lambda fastest: clock.started + job_budget(clock.total_s, samples,
                                                               fastest / n))
    times = time_candidates(runner, ready, batch, clock.deadline, measure, known, rounds_until,
                            first_s=runner.call_seconds, slower=slower)
    for c in ready:
        if c not in times:
            clock.skip(c, "timed")
    best = min(times, key=times.__getitem__) if times else cands[0]
    _log_reasons(clock, best if not times else None)
    return Choice(best, "measured", mode,
                  ms_per_sample={s.label: round(1000.0 * t / n, 4) for s, t in times.items()},
                  errors={s.label: float(f"{e:.4g}") for s, e in errors.items()},
                  rejected=tuple(s.label for s, e in errors.items() if e > tolerance),
                  skipped=tuple(s.label for s in clock.reasons), tolerance=tolerance,
                  measured_batch=n, measured_size=tuple(batch["image"].shape[-2:]),
                  seconds=clock.spent())


def _nothing_timed(cands: list[Setting], clock: Clock, mode: Mode, tolerance: float,
                   because: str) -> Choice:
    """The first candidate, unmeasured, ``because`` the budget would not pay for a call."""
    why = (f"not timed: the budget is {clock.budget_s:.3g} s, {clock.spent():.3g} s spent, and "
           f"{because}")
    for c in cands:
        clock.reasons[c] = why
    _log_reasons(clock, cands[0])
    reference = {Setting().label: 0.0} if Setting() in cands else {}  # fp32 NCHW's own
    return Choice(cands[0], "measured", mode, errors=reference, tolerance=tolerance,
                  skipped=tuple(c.label for c in cands), seconds=clock.spent())


def _log_reasons(clock: Clock, untimed: Setting | None) -> None:
    """``-v``: each candidate left out and why; what runs when nothing was timed."""
    for c, why in clock.reasons.items():
        log.log(DETAIL, "autotune: %s %s", c.label, why)
    if untimed is not None:
        log.log(DETAIL, "autotune: nothing was timed inside the budget; running %s",
                untimed.label)


def _check(runner: SettingRunner, cands: list[Setting], check: Batch,
           reference: torch.Tensor, clock: Clock, reference_s: float,
           seconds: dict[Setting, float] | None = None) -> dict[Setting, float]:
    """Each candidate's disagreement with fp32 (mean |p - p_fp32|; inf: it failed).

    fp32 NCHW is the reference itself (0, no call). The others are checked from the end of
    the candidates' list (reduced precision and channels-last first: speed is what they exist
    for), each only while the clock leaves time for a call as long as the quickest check so
    far (the first: as long as fp32's on the same crop, ``reference_s``). ``seconds``, when
    given, receives each check's seconds.
    """
    errors: dict[Setting, float] = {}
    quickest = reference_s
    for cand in sorted(cands, key=lambda c: (c != Setting(), -cands.index(c))):
        if cand == Setting():
            errors[cand] = 0.0
            continue
        if not clock.fits(quickest):
            clock.skip(cand, "checked")
            continue
        t0 = time.perf_counter()
        errors[cand] = runner.disagreement(cand, check, reference)
        took = time.perf_counter() - t0
        quickest = min(quickest, took)
        if seconds is not None:
            seconds[cand] = took
        if not math.isfinite(errors[cand]):
            clock.reasons[cand] = "rejected: it failed or gave non-finite values"
    return errors


def _warm_up(runner: SettingRunner, ready: list[Setting], batch: Batch, clock: Clock,
             errors: dict[Setting, float],
             slower: Mapping[Setting, float] | None = None) -> list[Setting]:
    """The candidates whose untimed first training step ran, while the budget pays for it.

    Each one warmed needs its timed step too: a warm-up starts only when the clock leaves
    time for it and for a timed step of every candidate warmed so far. A warm-up that fails
    (a non-finite loss) rejects its candidate (its error becomes inf). A step is estimated at
    fp32's times ``slower`` (the candidate's check on the crop against fp32's; default 1).
    """
    warmed: list[Setting] = []
    factor = slower or {}
    for cand in ready:
        steps = sum(factor.get(c, 1.0) for c in warmed) + 2 * factor.get(cand, 1.0)
        if not clock.fits(steps * runner.call_seconds):
            clock.skip(cand, "timed")
        elif runner.warm_up(cand, batch):
            warmed.append(cand)
        else:
            errors[cand] = math.inf
            clock.reasons[cand] = "rejected: its first training step failed"
    return warmed


def time_candidates(runner: SettingRunner, settings: list[Setting], batch: Batch,
                    deadline: float | None, measure: Measure | None,
                    known: Mapping[Setting, float] | None = None,
                    rounds_until: Callable[[float], float] | None = None,
                    first_s: float = 0.0,
                    slower: Mapping[Setting, float] | None = None) -> dict[Setting, float]:
    """Best seconds per call of the settings timed before ``deadline`` (None: no deadline).

    Candidates are timed in turns (one call each per round) so that a busy, shared machine
    slows them alike, and each keeps its best time. The clock is read before every call: none
    starts that would end past the deadline at the setting's best time (its first, at
    ``first_s``: fp32's estimate for the batch), and a setting never timed is left out of the
    result (the caller reports it). Further rounds, only for the candidates within
    :data:`RACE_MARGIN` of the fastest, go on while the time left pays for a whole round at
    their best times (at most :data:`MAX_REPS`).
    Every candidate has been run at least once before (its agreement check and warm-up), so
    no timed call builds kernels. ``known``: settings timed already (fp32 NCHW by the
    probe), not timed again in the first round, racing in the later ones. ``rounds_until``:
    the time at which no further round starts, given the fastest call so far (inference:
    the job's share at that speed). ``slower``: how many times fp32's ``first_s`` a setting's
    first call is expected to take (its check on the crop against fp32's; default 1).
    """
    if measure is not None:
        return {**(known or {}), **{s: measure(s, runner.call(s, batch)) for s in settings}}
    best: dict[Setting, float] = dict(known or {})
    timed_before = set(best)
    end = math.inf if deadline is None else deadline
    racing = [*best, *settings]
    for rep in range(MAX_REPS if racing else 0):
        for s in racing:
            if rep == 0 and s in timed_before:
                continue
            expected = best.get(s, first_s * (slower or {}).get(s, 1.0))
            if time.perf_counter() + expected > end:
                return best  # the budget is spent: no call starts past it
            run = runner.call(s, batch)
            t0 = time.perf_counter()
            run()
            best[s] = min(best.get(s, math.inf), time.perf_counter() - t0)
        lead = min(best[s] for s in racing)
        racing = [s for s in racing if best[s] <= RACE_MARGIN * lead]
        until = min(end, rounds_until(lead)) if rounds_until else end
        # a further round starts only when the time left pays for it at the best times
        if len(racing) < 2 or time.perf_counter() + sum(best[s] for s in racing) > until:
            break
    return best
