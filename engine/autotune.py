"""``--precision auto``: measure, don't guess, how to run a model on this machine.

No static rule picks the fastest way to run a network (bf16 autocast is *slower* than fp32 on
a CPU that emulates it; channels_last helps some networks and hurts others; GPUs differ), so
``auto`` times the candidates on the run's own model, tile size and device:

- CPU: fp32 / bf16 autocast x NCHW / NHWC, on the process's threads;
- CUDA: fp32 / bf16 / fp16 autocast x NCHW / NHWC x ``cudnn.benchmark`` off / on;
- inference: the winner compiled (:mod:`engine.compiled`) when asked for or when the job is
  long enough to pay for compiling (:func:`compile_may_pay`); kept only when faster.

Contracts (docs/performance.md explains each):

- **Agreement first.** A candidate whose class probabilities differ from fp32 NCHW's by more
  than :data:`TOLERANCE` (mean absolute difference), or that fails, is never chosen.
- **Bounded measuring.** The batch shrinks to fit a budget (:data:`DEFAULT_BUDGET_S`); for an
  inference job of known length the budget is at most :data:`MEASURE_SHARE` of its model time
  (:func:`job_budget`) and bounds the whole measuring (probe, agreement checks, timed calls).
  Candidates the budget cannot check or time are ``skipped``; the rest are timed round-robin,
  so a busy machine slows them alike, each keeping its best time. Inference checks agreement
  on a crop of the first tile (:meth:`~engine.execution.SettingRunner.check_batch`) and
  times whole tiles, the probe's call being fp32 NCHW's timing. Training times whole steps
  on a *copy* of the model with a fresh optimizer and the RNG state restored.
- **Nothing timed under load in training.** On a CPU, training looks first at the share of
  its threads' time the process gets (:func:`engine.execution.cpu_share`); under
  :data:`~engine.choice_value.CONTENDED_SHARE` (other work holds the cores) no step is timed:
  steps timed then would rank the load, not the candidates, and one step can take longer
  than the whole budget. The run takes :mod:`engine.prior`'s device rule, checked against
  fp32 on a crop, and caches nothing (source ``loaded``).
- **Cached, never stale under load.** A :class:`Choice` is cached in
  ``$XDG_CACHE_HOME/isamap/autotune.json`` under the model's architecture and arguments, the
  input (for inference, tile) shape, device, torch version and thread count, and consulted
  before anything else (a job too short to measure still reuses it).
  ``ISAMAP_AUTOTUNE_CACHE=off`` disables it, ``=/some/file.json`` moves it. A choice measured
  while other work held the cores (:data:`engine.choice_value.CONTENDED_SHARE`) is reused only
  while the machine is still busy (:func:`machine_busy`).
- **Explicit values are never overridden**: only dimensions left at ``auto`` are measured.

How one candidate runs (threads, memory format, autocast, the training step on a copy) is
:mod:`engine.execution`.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import os
import platform
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from core.commands import DETAIL
from core.digest import json_digest, text_sha256
from core.env_switch import is_off
from core.user_cache import user_cache_dir
from engine import devices, prior, records
from engine.allocator import keep_freed_memory
from engine.budget import check_order, within_budget
from engine.choice_value import CONTENDED_SHARE, TOLERANCE, Choice
from engine.compiled import CompiledForInference
from engine.execution import (
    Batch,
    Dtype,
    Mode,
    Setting,
    SettingRunner,
    TrainStep,
    cpu_share,
    set_threads,
)

log = logging.getLogger(__name__)

#: whether a compiled candidate is tried: always (``--compile``), never, or when it can pay
CompilePolicy = bool | Literal["auto"]

#: Time spent measuring, per choice (seconds); the batch shrinks to fit it. A smallest batch
#: that does not fit is still measured at the real tile size (a crop ranks them wrongly).
DEFAULT_BUDGET_S = 6.0
#: Timed repetitions per candidate at most (fast models stop here, long before the budget).
MAX_REPS = 8
#: After each round only candidates within this factor of the fastest keep being timed.
RACE_MARGIN = 1.3
#: A candidate whose first call (agreement check, or warm-up step when training) took this
#: many times the quickest one's is not timed: it is reported as skipped.
FIRST_CALL_MARGIN = 3.0
CACHE_ENV = "ISAMAP_AUTOTUNE_CACHE"
CACHE_FORMAT = "isamap-autotune/3"  # /2 entries could hold a choice measured under load
#: At most this share of an inference job's model time goes to measuring (:func:`job_budget`);
#: a job of fewer samples than (candidates + 3) / MEASURE_SHARE with no cached choice runs
#: :func:`engine.prior.short_job`'s pick unmeasured: the fewest calls measuring needs cost more.
MEASURE_SHARE = 0.1
#: Seconds of :func:`engine.execution.cpu_share`'s look before training steps are timed on a
#: CPU: many of the scheduler's time slices, a small share of the budget.
CONTENTION_LOOK_S = 0.1
#: A 1-minute load average per core from which the machine counts as busy: a contended
#: choice is reused from the cache only then (a quiet machine measures its own).
BUSY_LOAD = 1.0
CACHE_ENTRIES = 256  # oldest entries are dropped beyond this
#: Whether a compiled candidate is worth compiling, before anything about it is measured: the
#: job's model time at the eager winner times this gain must cover this compile time. Both
#: are deliberately cautious assumptions (a small gain, a compile time of an empty inductor
#: cache), so only long jobs try compiling; ``benchmarks/bench_models.py --compile``
#: measures both on a machine, and a cached choice is judged on its own measured figures.
ASSUMED_COMPILE_GAIN = 0.05
ASSUMED_COMPILE_S = 60.0


__all__ = ["Choice", "Dtype", "Mode", "Setting", "TrainStep", "apply", "cache_file",
           "cache_key", "candidates", "choose", "describe_device", "explicit", "job_budget",
           "time_settings"]

#: ``measure(setting, run) -> seconds per call``: replaces the timing loop (tests inject one).
Measure = Callable[[Setting, Callable[[], None]], float]


# ----------------------------------------------------------------------------- public API
def choose(model: nn.Module, example: torch.Tensor, device: torch.device, *,
           mode: Mode = "inference", precision: devices.Precision = "auto",
           channels_last: devices.Layout | bool = "auto", compile: bool = False,
           step: TrainStep | None = None, budget_s: float = DEFAULT_BUDGET_S,
           tolerance: float = TOLERANCE, cache: bool | None = None,
           measure: Measure | None = None,
           cpu_time: Callable[[], float] = time.process_time,
           busy: Callable[[], bool] | None = None,
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
        compile: also try the winner compiled (:mod:`engine.compiled`), kept when
            faster. Without it, inference with ``samples`` given tries it when the job is long
            enough to pay for compiling (:func:`compile_may_pay`).
        step: loss and optimizer of the training step (``mode="training"``).
        budget_s: measuring time budget in seconds, everything included (the batch is
            shrunk to fit it); in inference with ``samples`` at most :func:`job_budget`.
        tolerance: agreement bound, mean |p - p_fp32|.
        cache: use the user cache (None: unless ``ISAMAP_AUTOTUNE_CACHE=off``).
        measure: timing function replacing the real one (tests).
        cpu_time: the process's CPU seconds (tests inject a clock to script contention):
            with the wall time, the share of its threads' time the process gets.
        busy: whether the machine is busy now (default :func:`machine_busy`; tests inject it).
        samples: how many samples (tiles) the job will run through the model, when known
            (inference): what bounds the measuring and decides whether compiling can pay
            for itself.
    """
    devices.check_precision(precision, device.type)
    layout = devices.layout_flag(channels_last)
    if mode == "training" and step is None:
        raise ValueError("training mode needs a TrainStep (loss and optimizer)")
    shape = tuple(int(s) for s in example.shape)
    where = describe_device(device)
    cands = candidates(device, precision, layout)
    policy: CompilePolicy = (True if compile else
                             "auto" if samples is not None and mode == "inference" else False)
    if len(cands) == 1 and policy is False:
        return Choice(cands[0], "explicit", mode, shape, where, tolerance=tolerance)
    busy = busy or machine_busy
    key = cache_key(model, shape, device, mode, precision, layout, policy, tolerance)
    path = cache_file() if cache is not False else None
    cached = _read_cache(path).get(key) if path else None
    if cached is not None:
        reused: Choice | None = replace(Choice.from_dict(cached), source="cache", shape=shape)
        if policy == "auto" and reused is not None:
            reused = _for_job(reused, samples)
        if reused is not None and reused.contended and not busy():
            log.log(DETAIL, "autotune: the cached %s was measured while other work held the "
                    "cores; the machine is quiet now, so it is not reused", reused.label)
            reused = None
        if reused is not None:
            log.log(DETAIL, "runtime %s from the autotune cache %s (measured %s)", reused.label,
                    path, ", ".join(f"{k} {v:.3g} ms" for k, v in reused.ms_per_sample.items()))
            return reused
    if samples is not None and mode == "inference" and not compile and \
            samples * MEASURE_SHARE < len(cands) + 3:
        # measuring would cost more than MEASURE_SHARE of the model time (engine.prior logs)
        short = prior.short_job(model, example, device, cands, checked=precision == "auto",
                                tolerance=tolerance, mode=mode)
        return replace(short, device=where)
    threads, wall0, cpu0 = torch.get_num_threads(), time.perf_counter(), cpu_time()
    if mode == "training" and device.type == "cpu" and measure is None:
        now = cpu_share(CONTENTION_LOOK_S, cpu_time)
        if now < CONTENDED_SHARE:  # steps timed now would rank the load (nothing cached)
            log.info("autotune: other work holds the cores (this process gets %.0f %% of its "
                     "threads' time): no training step is timed", 100 * now)
            rule = prior.short_job(copy.deepcopy(model), example, device, cands, mode=mode,
                                   checked=precision == "auto", tolerance=tolerance,
                                   loaded=True)
            return replace(rule, device=where, cpu_share=round(now, 3),
                           seconds=round(time.perf_counter() - wall0, 3))
    choice = _measure(model, example, device, mode, cands, policy, samples, step, budget_s,
                      tolerance, measure)
    share = None
    if device.type == "cpu":
        wall = max(time.perf_counter() - wall0, 1e-9)
        share = round(min((cpu_time() - cpu0) / (wall * threads), 1.0), 3)
    choice = replace(choice, device=where, key=key, shape=shape, cpu_share=share)
    log.log(DETAIL, "autotune %s on %s, batch %s: %s; chose %s in %.1f s (budget %.1f s, %d of %d "
            "samples per timed call%s; %s)", mode, where, "x".join(map(str, shape)),
            ", ".join(f"{k} {v:.3g} ms/sample" for k, v in choice.ms_per_sample.items()),
            choice.label, choice.seconds, budget_s, choice.measured_batch, shape[0],
            f"; rejected {', '.join(choice.rejected)}" if choice.rejected else "",
            "CPU share unknown" if share is None else f"{share:.0%} of {threads} threads' time")
    if choice.contended:
        log.log(DETAIL, "autotune: other work held the cores while measuring (the process got "
                "%.0f %% of its threads' time): this choice is reused only while the machine "
                "stays busy", 100 * (share or 0.0))
    if path:
        _write_cache(path, key, choice)
    return choice


def machine_busy() -> bool:
    """Whether other work keeps the machine busy now.

    A 1-minute load average per core of at least :data:`BUSY_LOAD`; unknown counts as not
    busy, so a contended choice is measured again.
    """
    try:
        return os.getloadavg()[0] / (os.cpu_count() or 1) >= BUSY_LOAD
    except OSError:
        return False


def compile_may_pay(ms_per_sample: float, samples: int, *,
                    gain: float = ASSUMED_COMPILE_GAIN,
                    compile_s: float = ASSUMED_COMPILE_S) -> bool:
    """Whether compiling can pay for itself on a job of ``samples`` at ``ms_per_sample``.

    The time the job saves, its model time times the fraction compiling saves, must cover the
    time compiling takes. Before a compiled candidate is measured both are assumed
    (:data:`ASSUMED_COMPILE_GAIN`, :data:`ASSUMED_COMPILE_S`); a cached choice is judged on
    its own measured gain and compile time.
    """
    return samples * ms_per_sample / 1000.0 * gain >= compile_s


def _for_job(choice: Choice, samples: int | None) -> Choice | None:
    """A cached choice (measured with the compiled candidate left to ``auto``) for this job.

    A compiled choice whose measured gain does not pay back its measured compile time over
    this job runs eagerly instead (its eager setting was timed beside it); a choice measured
    without trying to compile, for a job long enough that compiling may pay, is None (it is
    measured again).
    """
    samples = samples or 0
    eager = replace(choice.setting, compile=False)
    compiled = replace(eager, compile=True)
    ms = choice.ms_per_sample
    if choice.setting.compile:
        gain = 1.0 - ms.get(compiled.label, 0.0) / max(ms.get(eager.label, 0.0), 1e-9)
        if compile_may_pay(ms.get(eager.label, 0.0), samples, gain=gain,
                           compile_s=choice.compile_seconds):
            return choice
        log.log(DETAIL, "autotune: %d samples are too few for compiling to pay (%.0f %% faster, "
                "%.1f s to compile); running %s", samples, 100 * gain,
                choice.compile_seconds, eager.label)
        return replace(choice, setting=eager)
    tried = compiled.label in ms or compiled.label in choice.errors
    if not tried and compile_may_pay(ms.get(eager.label, 0.0), samples):
        return None
    return choice


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
    # inference compiles on its first call (for that shape; the graph auto measured is
    # reused), and runs eagerly with a warning if compiling fails
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
              precision: str, layout: str, compile: CompilePolicy, tolerance: float) -> str:
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
def _measure(model: nn.Module, example: torch.Tensor, device: torch.device, mode: Mode,
             cands: list[Setting], compile: CompilePolicy, samples: int | None,
             step: TrainStep | None, budget_s: float, tolerance: float,
             measure: Measure | None) -> Choice:
    started = time.perf_counter()
    rng_devices = [device] if device.type == "cuda" else []
    saved_threads, saved_bench = torch.get_num_threads(), torch.backends.cudnn.benchmark
    was_training = model.training
    errors: dict[Setting, float] = {}
    skipped: list[Setting] = []
    with torch.random.fork_rng(devices=rng_devices):
        batch = {**(dict(step.targets) if step else {}), "image": example.to(device)}
        runner = SettingRunner(model, batch, device, mode, step)
        try:
            check = None
            if mode == "inference":  # agreement on a crop, checked before the probe
                t0 = time.perf_counter()
                check, reference = runner.check_reference()
                reference_s = time.perf_counter() - t0
                budget_s = job_budget(budget_s, samples, runner.probe())
            deadline = started + budget_s
            batch = runner.fit_batch(budget_s, len(cands) + int(bool(compile)),
                                     deadline if mode == "training" else None)
            if check is None:
                check, t0 = batch, time.perf_counter()
                reference = runner.reference(batch)
                reference_s = time.perf_counter() - t0
            # fp32 NCHW is the reference itself, and the probe timed it on this batch
            fp32 = runner.fp32_seconds(batch)
            timed = ({Setting(): fp32} if fp32 is not None and measure is None
                     and mode == "inference" and Setting() in cands else {})
            # every agreement check before any training step changes the copy's weights
            first_call: dict[Setting, float] = {}
            unchecked: list[Setting] = []
            for cand in check_order(cands):
                if cand in timed or (mode == "training" and cand == Setting()):
                    # the reference forward is fp32 NCHW's own check: not run twice
                    errors[cand], first_call[cand] = 0.0, reference_s
                elif (measure is None and mode == "training" and first_call  # crops: paid
                      and time.perf_counter() + min(first_call.values()) > deadline):
                    unchecked.append(cand)  # the budget cannot pay for its check
                else:
                    t0 = time.perf_counter()
                    errors[cand] = runner.disagreement(cand, check, reference)
                    first_call[cand] = time.perf_counter() - t0
            if unchecked:
                log.info("autotune: the budget (%.3g s) leaves no time to check %s", budget_s,
                         ", ".join(c.label for c in unchecked))
                skipped += unchecked
            agreeing = [c for c in errors if errors[c] <= tolerance]
            if not agreeing:
                # only possible when the precision is explicit (fp32 agrees with itself): the
                # user's precision is kept, the layout is still measured
                log.warning("autotune: no candidate agrees with fp32 within %g (%s); keeping "
                            "the requested precision", tolerance,
                            ", ".join(f"{c.label} {e:.3g}" for c, e in errors.items()))
                agreeing = [c for c in cands if math.isfinite(errors.get(c, math.inf))] or \
                    cands[:1]
            agreeing = [c for c in agreeing if c not in timed]
            unpaid: list[Setting] = []
            if measure is None:
                agreeing, unpaid = within_budget(agreeing, first_call, runner.call_seconds,
                                                  mode, deadline, device)
            ready: list[Setting] = []
            for cand in agreeing:
                t0 = time.perf_counter()
                if mode == "training" and measure is None and \
                        t0 + 2 * runner.call_seconds > deadline:
                    unpaid.append(cand)  # a first step outlasted its estimate
                elif runner.warm_up(cand, batch):
                    ready.append(cand)
                    if mode == "training":
                        first_call[cand] = time.perf_counter() - t0
            if ready and measure is None:
                # a candidate whose first call was several times the fastest one's is not
                # timed again (bf16 emulated by oneDNN is several times slower than fp32)
                quickest = min(first_call[c] for c in [*ready, *timed])
                slow = [c for c in ready if first_call[c] > FIRST_CALL_MARGIN * quickest]
                skipped += slow
                ready = [c for c in ready if c not in slow]
            n = int(batch["image"].shape[0])
            ruled: Setting | None = None
            if ready or (timed and not unpaid):
                # no further round once the job's share at the fastest speed seen is spent
                rounds_until = (None if samples is None or mode != "inference" else
                                lambda fastest: started + job_budget(budget_s, samples,
                                                                     fastest / n))
                times = _time(runner, ready, batch, deadline, measure, timed, rounds_until)
                skipped += unpaid
            elif mode == "inference":
                # no time to time another candidate: the device rule picks (a short job's)
                times = dict(timed)
                ruled = prior.preferred(device, [*timed, *unpaid] or agreeing or cands[:1])
                skipped += [c for c in unpaid if c != ruled]
                log.info("autotune: no time for a timed call; ran %s (engine.prior)", ruled.label)
            else:  # the budget was spent before any step: the agreement checks rank them
                times = {c: first_call[c] for c in unpaid or agreeing or cands[:1]}
                log.info("autotune: the budget was spent before any timed call; ranked by the "
                         "agreement checks: %s",
                         ", ".join(f"{c.label} {t:.3g} s" for c, t in times.items()))
            best = ruled or min(times, key=times.__getitem__)
            ms = 1000.0 * times.get(best, 0.0) / n  # a ruled pick: no time to compile it
            if (compile == "auto" and not compile_may_pay(ms, samples or 0)) or ruled:
                log.log(DETAIL, "autotune: %d samples at %.3g ms: compiling cannot pay (or no "
                        "time to try it); not compiled", samples or 0, ms)
            elif compile:
                compiled = replace(best, compile=True)
                errors[compiled] = runner.disagreement(compiled, batch, runner.reference(batch))
                if errors[compiled] <= tolerance and runner.warm_up(compiled, batch):
                    again = time.perf_counter() + budget_s / 2
                    times.update(_time(runner, [best, compiled], batch, again, measure))
                    best = min((best, compiled), key=lambda c: times.get(c, math.inf))
        finally:
            compile_seconds = dict(runner.compile_seconds)
            set_threads(saved_threads)
            torch.backends.cudnn.benchmark = saved_bench
            model.train(was_training)
            runner.close()
    return Choice(best, "measured", mode,
                  ms_per_sample={s.label: round(1000.0 * t / n, 4) for s, t in times.items()},
                  errors={s.label: float(f"{e:.4g}") for s, e in errors.items()},
                  rejected=tuple(s.label for s, e in errors.items() if e > tolerance),
                  skipped=tuple(s.label for s in skipped), tolerance=tolerance,
                  measured_batch=n, measured_size=tuple(batch["image"].shape[-2:]),
                  seconds=round(time.perf_counter() - started, 3),
                  compile_seconds=round(sum(compile_seconds.values()), 3))


def job_budget(budget_s: float, samples: int | None, seconds_per_sample: float) -> float:
    """Seconds an inference job's measuring may take, probe, checks and timed calls included.

    At most ``budget_s`` and, when the job's sample count is known, :data:`MEASURE_SHARE`
    of its model time at ``seconds_per_sample`` (the probe's fp32 NCHW speed; for further
    timing rounds, the fastest seen): no candidate can save more than the job takes.
    """
    if samples is None:
        return budget_s
    return min(budget_s, MEASURE_SHARE * samples * seconds_per_sample)


def _time(runner: SettingRunner, settings: list[Setting], batch: Batch, deadline: float,
          measure: Measure | None, known: Mapping[Setting, float] | None = None,
          rounds_until: Callable[[float], float] | None = None) -> dict[Setting, float]:
    """Best seconds per call of every setting.

    Candidates are timed in turns (one call each per round) so that a busy, shared machine
    slows them alike, and each keeps its best time. Every candidate is timed in the first
    round whatever the time (one never timed would lose by default, which is how a
    slow step made fp32 win). Further rounds, only for the candidates within
    :data:`RACE_MARGIN` of the fastest, go on while the time left pays for a whole round at
    their best times (at most :data:`MAX_REPS`): the budget is what bounds the measuring on a
    slow or loaded machine.
    Every candidate has been run at least once before (its agreement check and warm-up), so
    no timed call builds kernels. ``known``: settings timed already (fp32 NCHW by the
    probe), not timed again in the first round, racing in the later ones. ``rounds_until``:
    the time at which no further round starts, given the fastest call so far (inference:
    the job's share at that speed).
    """
    if measure is not None:
        return {s: measure(s, runner.call(s, batch)) for s in settings}
    best: dict[Setting, float] = dict(known or {})
    racing = [*best, *settings]
    for rep in range(MAX_REPS):
        for s in racing:
            if rep == 0 and s in best:
                continue
            run = runner.call(s, batch)
            t0 = time.perf_counter()
            run()
            best[s] = min(best.get(s, math.inf), time.perf_counter() - t0)
        lead = min(best[s] for s in racing)
        racing = [s for s in racing if best[s] <= RACE_MARGIN * lead]
        until = min(deadline, rounds_until(lead)) if rounds_until else deadline
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
