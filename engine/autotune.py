"""``--precision auto``: measure, don't guess, how to run a model on this machine.

No static rule picks the fastest way to run a network (bf16 autocast is *slower* than fp32 on
a CPU that emulates it; channels_last helps some networks and hurts others; GPUs differ), so
``auto`` times the candidates on the run's own model, tile size and device:

- CPU: fp32 / bf16 autocast x NCHW / NHWC, on the process's threads;
- CUDA: fp32 / bf16 / fp16 autocast x NCHW / NHWC x ``cudnn.benchmark`` off / on.

Contracts (docs/performance.md explains each):

- **Agreement first.** A candidate whose class probabilities differ from fp32 NCHW's by more
  than :data:`TOLERANCE` (mean absolute difference), or that fails, is never chosen.
- **Inside its budget.** The batch shrinks to fit a budget (:data:`DEFAULT_BUDGET_S`); for a
  job of known length (inference: its tiles; training: its samples over every epoch) the
  budget is at most :data:`MEASURE_SHARE` of its model time (:func:`job_budget`). The clock
  is read before every call (agreement check, warm-up step, timed call): no call starts past
  the budget, nor one expected to end past it, so the measuring ends at its budget, overrun
  by at most one call's misestimate. The calls made before the budget is known (inference's
  fp32 reference on a crop, then the probe, fp32 NCHW at the smallest batch) are the
  exception; the probe is skipped, and nothing timed, when the reference alone spent it.
- **Dropped only by a measurement.** A candidate is out when its agreement check disagrees
  or fails (``rejected``) or when it is timed slower than the fastest (it loses). One the
  budget could not check or time is ``skipped`` and the ``-v`` log names it and why; the
  choice is the fastest of those timed (fp32 NCHW, the plain path, when none was).
- **Nothing kept from a starved process.** On a CPU a measurement during which the
  process got less than :data:`MIN_CPU_SHARE` of its threads' time (process CPU time over
  wall time x threads: other work held the cores) is discarded once the run has its choice:
  never cached, so no later run reuses what ranked the other work rather than the
  candidates (its choice always agrees with fp32, like any candidate).
- **Cached.** A :class:`Choice` is cached in ``$XDG_CACHE_HOME/isamap/autotune.json`` under
  the model's architecture and arguments, the input (for inference, tile) shape, device,
  torch version and thread count, and consulted before anything else.
  ``ISAMAP_AUTOTUNE_CACHE=off`` disables it, ``=/some/file.json`` moves it.
- **A short job is not measured.** An inference job of fewer samples than measuring would
  pay for (:data:`MEASURE_SHARE`) with nothing cached runs the first candidate, unmeasured;
  a short training run measures its probe (two small steps) and little else.
- **Explicit values are never overridden**: only dimensions left at ``auto`` are measured;
  ``--compile`` compiles whatever runs, it is not a candidate.

How one candidate runs (threads, memory format, autocast, the training step on a copy) is
:mod:`engine.execution`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import platform
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from core.commands import DETAIL
from core.digest import json_digest, text_sha256
from core.env_switch import is_off
from core.user_cache import user_cache_dir
from engine import devices, records
from engine.allocator import keep_freed_memory
from engine.choice_value import TOLERANCE, Choice
from engine.compiled import CompiledForInference
from engine.execution import (
    Batch,
    Dtype,
    Mode,
    Setting,
    SettingRunner,
    TrainStep,
    set_threads,
)

log = logging.getLogger(__name__)

#: Time spent measuring, per choice (seconds); the batch shrinks to fit it.
DEFAULT_BUDGET_S = 6.0
#: Timed repetitions per candidate at most (fast models stop here, long before the budget).
MAX_REPS = 8
#: After each round only candidates within this factor of the fastest keep being timed.
RACE_MARGIN = 1.3
CACHE_ENV = "ISAMAP_AUTOTUNE_CACHE"
CACHE_FORMAT = "isamap-autotune/4"  # /3 entries could hold a choice measured under load
#: At most this share of a job's model time goes to measuring (:func:`job_budget`);
#: an inference job of fewer samples than (candidates + 3) / MEASURE_SHARE with no cached
#: choice runs the first candidate unmeasured: the fewest calls measuring needs cost more.
MEASURE_SHARE = 0.1
#: A CPU measurement during which the process got less than this share of its threads' time
#: is discarded after this run (never cached): its timings may rank the other work, not the
#: candidates.
MIN_CPU_SHARE = 0.75
CACHE_ENTRIES = 256  # oldest entries are dropped beyond this


__all__ = ["Choice", "Dtype", "Mode", "Setting", "TrainStep", "apply", "cache_file",
           "cache_key", "candidates", "choose", "describe_device", "explicit", "job_budget",
           "time_settings"]

#: ``measure(setting, run) -> seconds per call``: replaces the timing loop (tests inject one;
#: fake timings spend no budget, so with one every candidate is checked and timed).
Measure = Callable[[Setting, Callable[[], None]], float]


# ----------------------------------------------------------------------------- public API
def choose(model: nn.Module, example: torch.Tensor, device: torch.device, *,
           mode: Mode = "inference", precision: devices.Precision = "auto",
           channels_last: devices.Layout | bool = "auto", compile: bool = False,
           step: TrainStep | None = None, budget_s: float = DEFAULT_BUDGET_S,
           tolerance: float = TOLERANCE, cache: bool | None = None,
           measure: Measure | None = None,
           cpu_time: Callable[[], float] = time.process_time,
           samples: int | None = None) -> Choice:
    """The fastest setting of ``model`` on ``example``'s shape whose output agrees with fp32.

    Args:
        model: the model (on ``device``); inference measures it in place (eval mode, no
            weights change) and leaves it in the chosen memory format only through
            :func:`apply`; training measures a deep copy.
        example: one real (normalised) input batch ``(N, C, H, W)``.
        device: where the model runs.
        mode: time inference (forward) or training steps (needs ``step``).
        precision: ``auto`` (measured) or an explicit dtype, never overridden.
        channels_last: ``auto`` (measured), ``on``/``off`` (or a bool), never overridden.
        compile: run the chosen setting compiled (:mod:`engine.compiled`); not measured.
        step: loss and optimizer of the training step (``mode="training"``).
        budget_s: measuring time budget in seconds, everything included (the batch is
            shrunk to fit it); in inference with ``samples`` at most :func:`job_budget`.
        tolerance: agreement bound, mean |p - p_fp32|.
        cache: use the user cache (None: unless ``ISAMAP_AUTOTUNE_CACHE=off``).
        measure: timing function replacing the real one (tests).
        cpu_time: the process's CPU seconds (tests inject a clock to script contention):
            with the wall time, the share of its threads' time the process got.
        samples: how many samples the job will run through the model, when known
            (inference: its tiles; training: its samples over every epoch): what bounds
            the measuring.
    """
    devices.check_precision(precision, device.type)
    layout = devices.layout_flag(channels_last)
    if mode == "training" and step is None:
        raise ValueError("training mode needs a TrainStep (loss and optimizer)")
    shape = tuple(int(s) for s in example.shape)
    where = describe_device(device)
    cands = candidates(device, precision, layout)
    if len(cands) == 1:
        return _compiled(Choice(cands[0], "explicit", mode, shape, where, tolerance=tolerance),
                         compile)
    key = cache_key(model, shape, device, mode, precision, layout, False, tolerance)
    path = cache_file() if cache is not False else None
    cached = _read_cache(path).get(key) if path else None
    if cached is not None:
        reused = replace(Choice.from_dict(cached), source="cache", shape=shape)
        log.log(DETAIL, "runtime %s from the autotune cache %s (measured %s)", reused.label,
                path, ", ".join(f"{k} {v:.3g} ms" for k, v in reused.ms_per_sample.items()))
        return _compiled(reused, compile)
    if samples is not None and mode == "inference" and samples * MEASURE_SHARE < len(cands) + 3:
        log.log(DETAIL, "autotune: %d samples are too few for measuring to pay; running %s "
                "unmeasured", samples, cands[0].label)
        return _compiled(Choice(cands[0], "short-job", mode, shape, where, tolerance=tolerance),
                         compile)
    threads, wall0, cpu0 = torch.get_num_threads(), time.perf_counter(), cpu_time()
    choice = _measure(model, example, device, mode, cands, samples, step, budget_s,
                      tolerance, measure)
    choice = replace(choice, device=where, key=key, shape=shape)
    share = _cpu_share(cpu_time() - cpu0, time.perf_counter() - wall0, threads)
    log.log(DETAIL, "autotune %s on %s, batch %s: %s; chose %s in %.1f s (budget %.1f s, %d of %d "
            "samples per timed call%s%s; %s)", mode, where, "x".join(map(str, shape)),
            ", ".join(f"{k} {v:.3g} ms/sample" for k, v in choice.ms_per_sample.items()),
            choice.label, choice.seconds, budget_s, choice.measured_batch, shape[0],
            f"; rejected {', '.join(choice.rejected)}" if choice.rejected else "",
            f"; skipped {', '.join(choice.skipped)}" if choice.skipped else "",
            "CPU share unknown" if share is None else f"{share:.0%} of {threads} threads' time")
    if device.type == "cpu" and measure is None and share is not None and share < MIN_CPU_SHARE:
        log.info("autotune: the process got %.0f %% of its threads' time while measuring (under "
                 "%.0f %%: other work held the cores); %s is this run's only, the measurement is "
                 "discarded, not cached", 100 * share, 100 * MIN_CPU_SHARE, choice.label)
        return _compiled(choice, compile)
    if path:
        _write_cache(path, key, choice)
    return _compiled(choice, compile)


def _cpu_share(cpu_s: float, wall_s: float, threads: int) -> float | None:
    """The share of its threads' time the process got (None: too short to say)."""
    if wall_s <= 0:
        return None
    return min(cpu_s / (wall_s * max(threads, 1)), 1.0)


def _compiled(choice: Choice, compile: bool) -> Choice:
    """``choice`` run compiled when the user asked for it (``--compile``), else as it is."""
    if not compile or choice.setting.compile:
        return choice
    return replace(choice, setting=replace(choice.setting, compile=True))


def explicit(precision: devices.Precision, channels_last: devices.Layout | bool,
             device: torch.device, mode: Mode = "inference") -> Choice | None:
    """The choice when nothing is left to measure, else None (``auto`` somewhere)."""
    layout = devices.layout_flag(channels_last)
    devices.check_precision(precision, device.type)
    if precision == "auto" or layout == "auto":
        return None
    return Choice(candidates(device, precision, layout)[0], "explicit", mode,
                  device=describe_device(device))


def apply(choice: Choice, model: nn.Module, device: torch.device) -> Callable[..., Any]:
    """Put ``model`` (and the process) in the chosen setting; returns the model to call."""
    s = choice.setting
    if device.type == "cpu":
        # every forward reuses the last one's freed activations instead of faulting them
        # in again (engine.allocator; benchmarks/bench_allocator.py measures the gain)
        keep_freed_memory()
    if s.cudnn_benchmark is not None and device.type == "cuda":
        torch.backends.cudnn.benchmark = s.cudnn_benchmark
    model = model.to(memory_format=s.memory_format)  # type: ignore[call-overload]
    if not s.compile:
        return model
    # inference compiles on its first call (for that shape), and runs eagerly with a
    # warning if compiling fails
    return CompiledForInference(model) if choice.mode == "inference" else torch.compile(model)


def time_settings(model: nn.Module, example: torch.Tensor, device: torch.device,
                  settings: Iterable[Setting], *, mode: Mode = "inference",
                  step: TrainStep | None = None, rounds: int = 3) -> dict[Setting, float]:
    """Seconds per call of each setting on the whole ``example``, measured as ``auto`` does.

    Every setting runs once untimed, then ``rounds`` times in turns (so a busy machine slows
    them alike), keeping its best time. This is what the benchmarks put next to ``auto``'s
    choice; the model and the process's threads and cuDNN flags are left as they were.
    """
    settings = list(settings)
    saved_threads, saved_bench = torch.get_num_threads(), torch.backends.cudnn.benchmark
    was_training = model.training
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        batch = {**(dict(step.targets) if step else {}), "image": example.to(device)}
        runner = SettingRunner(model, batch, device, mode, step)
        try:
            for s in settings:
                runner.call(s, batch)()
            best = dict.fromkeys(settings, math.inf)
            for _ in range(max(rounds, 1)):
                for s in settings:
                    run = runner.call(s, batch)
                    t0 = time.perf_counter()
                    run()
                    best[s] = min(best[s], time.perf_counter() - t0)
        finally:
            set_threads(saved_threads)
            torch.backends.cudnn.benchmark = saved_bench
            model.train(was_training)
            runner.close()
    return best


def candidates(device: torch.device, precision: devices.Precision,
               layout: devices.Layout) -> list[Setting]:
    """The settings ``auto`` chooses among; explicit values are fixed, never varied."""
    if device.type == "cuda":
        dtypes: list[Dtype] = (["fp32", "bf16", "fp16"] if torch.cuda.is_bf16_supported()
                               else ["fp32", "fp16"])
        benches: list[bool | None] = [False, True]
    else:
        dtypes = ["fp32", "bf16"]
        benches = [None]
    if precision != "auto":
        dtypes = [precision]
        benches = [True] if device.type == "cuda" and layout != "auto" else benches
    layouts = [False, True] if layout == "auto" else [layout == "on"]
    return [Setting(d, cl, b) for d in dtypes for cl in layouts for b in benches]


def describe_device(device: torch.device) -> str:
    """The device in words, part of the cache key (a different machine measures again)."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        major, minor = torch.cuda.get_device_capability(index)
        return f"{torch.cuda.get_device_name(index)} (sm_{major}{minor})"
    name = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    return (f"{name} ({torch.backends.cpu.get_cpu_capability()}, "
            f"{torch.get_num_threads()} threads)")


def cache_file() -> Path | None:
    """The cache's path, or None when ``ISAMAP_AUTOTUNE_CACHE`` is off (:func:`is_off`)."""
    env = os.environ.get(CACHE_ENV, "").strip()
    if is_off(env):
        return None
    if env:
        return Path(env).expanduser()
    return user_cache_dir() / "autotune.json"


def cache_key(model: nn.Module, shape: tuple[int, ...], device: torch.device, mode: Mode,
              precision: str, layout: str, compile: bool, tolerance: float) -> str:
    """A hash of everything the measurement depends on.

    The architecture and its arguments (the module tree's repr holds every layer's sizes),
    the parameter count, the input shape, the device (with its thread count), the torch
    version, what was left to measure and the tolerance. For inference the shape is the
    tile's, without the batch: the measured batch is cut to the budget whatever the job's,
    so a map of a few tiles (a short job, a row narrower than a batch) reuses the choice
    measured for a larger map of the same tiles.
    """
    arch = f"{type(model).__module__}.{type(model).__qualname__}\n{model!r}"
    params = sum(p.numel() for p in model.parameters())
    fields = {"format": CACHE_FORMAT, "mode": mode,
              "arch": text_sha256(arch), "params": params,
              "shape": list(shape[1:] if mode == "inference" else shape),
              "device": describe_device(device),
              "torch": torch.__version__, "precision": precision, "layout": layout,
              "compile": compile, "tolerance": tolerance}
    return json_digest(fields, 24)


# ----------------------------------------------------------------------------- measuring
@dataclass
class _Clock:
    """The measuring's deadline, read before every call, and why candidates were left out.

    ``deadline`` None: fake timings (tests), which spend no budget.
    """

    deadline: float | None
    budget_s: float
    reasons: dict[Setting, str] = field(default_factory=dict)

    def fits(self, seconds: float) -> bool:
        """Whether a call expected to take ``seconds`` ends inside the budget."""
        return self.deadline is None or time.perf_counter() + seconds <= self.deadline

    def skip(self, setting: Setting, what: str) -> None:
        self.reasons[setting] = f"not {what}: the budget ({self.budget_s:.3g} s) ran out"


def _measure(model: nn.Module, example: torch.Tensor, device: torch.device, mode: Mode,
             cands: list[Setting], samples: int | None, step: TrainStep | None,
             budget_s: float, tolerance: float, measure: Measure | None) -> Choice:
    started = time.perf_counter()
    saved_threads, saved_bench = torch.get_num_threads(), torch.backends.cudnn.benchmark
    was_training = model.training
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        batch = {**(dict(step.targets) if step else {}), "image": example.to(device)}
        runner = SettingRunner(model, batch, device, mode, step)
        try:
            return _measure_with(runner, mode, cands, samples, budget_s, tolerance, measure,
                                 started)
        finally:
            set_threads(saved_threads)
            torch.backends.cudnn.benchmark = saved_bench
            model.train(was_training)
            runner.close()


def _measure_with(runner: SettingRunner, mode: Mode, cands: list[Setting],
                  samples: int | None, budget_s: float, tolerance: float,
                  measure: Measure | None, started: float) -> Choice:
    """Check every candidate against fp32, then time those that agree, inside the budget."""
    t0 = time.perf_counter()
    if mode == "inference":  # agreement on a crop, its fp32 reference before the probe
        check, reference = runner.check_reference()
        if measure is None and time.perf_counter() > started + budget_s:
            log.log(DETAIL, "autotune: fp32's reference call alone spent the budget (%.3g s); "
                    "nothing is timed, running %s", budget_s, cands[0].label)
            return Choice(cands[0], "measured", mode, tolerance=tolerance,
                          skipped=tuple(c.label for c in cands),
                          seconds=round(time.perf_counter() - started, 3))
    reference_s = time.perf_counter() - t0
    # a training probe's first step that ends past the whole budget is its only one
    budget_s = job_budget(budget_s, samples, runner.probe(
        started + budget_s if mode == "training" else None))
    deadline = started + budget_s
    clock = _Clock(None if measure is not None else deadline, budget_s)
    batch = runner.fit_batch(budget_s, len(cands), deadline)
    if mode == "training":  # the reference forward on the timed batch, with the same weights
        t0 = time.perf_counter()
        check, reference = batch, runner.reference(batch)
        reference_s = time.perf_counter() - t0
    errors = _check(runner, cands, check, reference, clock, reference_s)
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
    if mode == "training":
        ready = _warm_up(runner, ready, batch, clock, errors)
    n = int(batch["image"].shape[0])
    rounds_until = (None if samples is None else
                    lambda fastest: started + job_budget(budget_s, samples, fastest / n))
    times = _time(runner, ready, batch, clock.deadline, measure, known, rounds_until)
    for c in ready:
        if c not in times:
            clock.skip(c, "timed")
    best = min(times, key=times.__getitem__) if times else cands[0]
    for c, why in clock.reasons.items():
        log.log(DETAIL, "autotune: %s %s", c.label, why)
    if not times:
        log.log(DETAIL, "autotune: nothing was timed inside the budget; running %s", best.label)
    return Choice(best, "measured", mode,
                  ms_per_sample={s.label: round(1000.0 * t / n, 4) for s, t in times.items()},
                  errors={s.label: float(f"{e:.4g}") for s, e in errors.items()},
                  rejected=tuple(s.label for s, e in errors.items() if e > tolerance),
                  skipped=tuple(s.label for s in clock.reasons), tolerance=tolerance,
                  measured_batch=n, measured_size=tuple(batch["image"].shape[-2:]),
                  seconds=round(time.perf_counter() - started, 3))


def _check(runner: SettingRunner, cands: list[Setting], check: Batch,
           reference: torch.Tensor, clock: _Clock, reference_s: float) -> dict[Setting, float]:
    """Each candidate's disagreement with fp32 (mean |p - p_fp32|; inf: it failed).

    fp32 NCHW is the reference itself (0, no call). The others are checked from the end of
    the candidates' list (reduced precision and channels-last first: speed is what they exist
    for), each only while the clock leaves time for a call as long as the quickest check so
    far (the first: as long as fp32's reference call, ``reference_s``); every check comes
    before any training step changes the copy's weights.
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
        quickest = min(quickest, time.perf_counter() - t0)
        if not math.isfinite(errors[cand]):
            clock.reasons[cand] = "rejected: it failed or gave non-finite values"
    return errors


def _warm_up(runner: SettingRunner, ready: list[Setting], batch: Batch, clock: _Clock,
             errors: dict[Setting, float]) -> list[Setting]:
    """The candidates whose untimed first training step ran, while the budget pays for it.

    Each one warmed needs its timed step too: a warm-up starts only when the clock leaves
    time for it and for a timed step of every candidate warmed so far. A warm-up that fails
    (a non-finite loss) rejects its candidate (its error becomes inf).
    """
    warmed: list[Setting] = []
    for cand in ready:
        if not clock.fits((len(warmed) + 2) * runner.call_seconds):
            clock.skip(cand, "timed")
        elif runner.warm_up(cand, batch):
            warmed.append(cand)
        else:
            errors[cand] = math.inf
            clock.reasons[cand] = "rejected: its first training step failed"
    return warmed


def job_budget(budget_s: float, samples: int | None, seconds_per_sample: float) -> float:
    """Seconds a job's measuring may take, probe, checks and timed calls included.

    At most ``budget_s`` and, when the job's sample count is known, :data:`MEASURE_SHARE`
    of its model time at ``seconds_per_sample`` (the probe's fp32 NCHW speed; for further
    timing rounds, the fastest seen): no candidate can save more than the job takes.
    """
    if samples is None:
        return budget_s
    return min(budget_s, MEASURE_SHARE * samples * seconds_per_sample)


def _time(runner: SettingRunner, settings: list[Setting], batch: Batch, deadline: float | None,
          measure: Measure | None, known: Mapping[Setting, float] | None = None,
          rounds_until: Callable[[float], float] | None = None) -> dict[Setting, float]:
    """Best seconds per call of the settings timed before ``deadline`` (None: no deadline).

    Candidates are timed in turns (one call each per round) so that a busy, shared machine
    slows them alike, and each keeps its best time. The clock is read before every call: no
    first call starts past the deadline, no later one that would end past it at the
    setting's best time, and a setting never timed is left out of the result (the caller
    reports it). Further rounds, only for the candidates within
    :data:`RACE_MARGIN` of the fastest, go on while the time left pays for a whole round at
    their best times (at most :data:`MAX_REPS`).
    Every candidate has been run at least once before (its agreement check and warm-up), so
    no timed call builds kernels. ``known``: settings timed already (fp32 NCHW by the
    probe), not timed again in the first round, racing in the later ones. ``rounds_until``:
    the time at which no further round starts, given the fastest call so far (inference:
    the job's share at that speed).
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
            if time.perf_counter() + best.get(s, 0.0) > end:
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


# ----------------------------------------------------------------------------- the cache
def _read_cache(path: Path) -> dict[str, Any]:
    return records.read_entries(path, CACHE_FORMAT, "autotune cache")


def _write_cache(path: Path, key: str, choice: Choice) -> None:
    records.write_entry(path, CACHE_FORMAT, "autotune cache", key, choice.to_dict(),
                        CACHE_ENTRIES)
