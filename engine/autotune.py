"""``--precision auto``: measure, don't guess, how to run a model on this machine.

No static rule picks the fastest way to run a network (bf16 autocast is *slower* than fp32 on
a CPU that emulates it; channels_last helps some networks and hurts others; GPUs differ), so
``auto`` times the candidates on the run's own model, tile size and device:

- CPU: fp32 / bf16 autocast x NCHW / NHWC, on the process's threads;
- CUDA: fp32 / bf16 / fp16 autocast x NCHW / NHWC, and for training ``cudnn.benchmark``
  off / on (inference runs cuDNN deterministic: a map never depends on a timing race).

Contracts (docs/performance.md explains each):

- **Agreement first.** A candidate whose class probabilities differ from fp32 NCHW's by more
  than :data:`TOLERANCE` (mean absolute difference), or that fails, is never chosen.
- **Inside its budget.** The budget (:data:`DEFAULT_BUDGET_S`) counts from the moment
  ``auto`` is asked; for a job of known length (inference: its tiles; training: its samples
  over every epoch) it is at most :data:`MEASURE_SHARE` of its model time
  (:func:`~engine.measuring.job_budget`). The clock is read before every call and a call
  starts only when the calls before it say it ends inside the budget: the first, fp32 on a
  crop of one tile, estimates the full-size probe, which runs only when it fits (else nothing
  is timed). The measuring ends at its budget, overrun by at most one call's misestimate
  (:mod:`engine.measuring` gives the order).
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
- **A short job is not measured.** A job of fewer samples than measuring would pay for
  (:data:`MEASURE_SHARE` of them cannot cover :func:`~engine.measuring.fewest_samples`)
  with nothing cached runs the first candidate, unmeasured; a longer one measures on a crop
  first, and makes its probe only when the crop says it fits its share.
- **Explicit values are never overridden**: only dimensions left at ``auto`` are measured;
  ``--compile`` compiles whatever runs, it is not a candidate.

What is checked and timed, in what order and until when, is :mod:`engine.measuring`; how one
candidate runs (threads, memory format, autocast, the training step on a copy) is
:mod:`engine.execution`; where choices are remembered is :mod:`engine.autotune_cache`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from core.commands import DETAIL
from engine import devices
from engine.allocator import keep_freed_memory
from engine.autotune_cache import (
    CACHE_ENV,
    CACHE_FORMAT,
    cache_file,
    cache_key,
    describe_device,
    read_cache,
    write_cache,
)
from engine.choice_value import TOLERANCE, Choice
from engine.compiled import CompiledForInference
from engine.measuring import (
    MEASURE_SHARE,
    Clock,
    Measure,
    fewest_samples,
    measure_candidates,
)
from engine.setting import Dtype, Mode, Setting, TrainStep, enter_cudnn

log = logging.getLogger(__name__)

#: Time spent measuring, per choice (seconds), from the moment ``auto`` is asked.
DEFAULT_BUDGET_S = 6.0
#: A CPU measurement during which the process got less than this share of its threads' time
#: is discarded after this run (never cached): its timings may rank the other work, not the
#: candidates.
MIN_CPU_SHARE = 0.75


__all__ = ["CACHE_ENV", "CACHE_FORMAT", "MEASURE_SHARE", "Choice", "Dtype", "Measure", "Mode",
           "Setting", "TrainStep", "apply", "cache_file", "cache_key", "candidates", "choose",
           "describe_device", "explicit"]


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
            shrunk to fit it); in inference with ``samples`` at most
            :func:`~engine.measuring.job_budget`.
        tolerance: agreement bound, mean |p - p_fp32|.
        cache: use the user cache (None: unless ``ISAMAP_AUTOTUNE_CACHE=off``).
        measure: timing function replacing the real one (tests).
        cpu_time: the process's CPU seconds (tests inject a clock to script contention):
            with the wall time, the share of its threads' time the process got.
        samples: how many samples the job will run through the model, when known
            (inference: its tiles; training: its samples over every epoch): what bounds
            the measuring.
    """
    clock = Clock(time.perf_counter(), budget_s, fake=measure is not None)
    devices.check_precision(precision, device.type)
    layout = devices.layout_flag(channels_last)
    if mode == "training" and step is None:
        raise ValueError("training mode needs a TrainStep (loss and optimizer)")
    shape = tuple(int(s) for s in example.shape)
    where = describe_device(device)
    cands = candidates(device, precision, layout, mode)
    if len(cands) == 1:
        return _compiled(Choice(cands[0], "explicit", mode, shape, where, tolerance=tolerance),
                         compile)
    key = cache_key(model, shape, device, mode, precision, layout, False, tolerance)
    path = cache_file() if cache is not False else None
    cached = read_cache(path).get(key) if path else None
    if cached is not None:
        reused = replace(Choice.from_dict(cached), source="cache", shape=shape)
        log.log(DETAIL, "runtime %s from the autotune cache %s (measured %s)", reused.label,
                path, ", ".join(f"{k} {v:.3g} ms" for k, v in reused.ms_per_sample.items()))
        return _compiled(reused, compile)
    if samples is not None and samples * MEASURE_SHARE < fewest_samples(mode, len(cands)):
        log.log(DETAIL, "autotune: %d samples are too few for measuring to pay; running %s "
                "unmeasured", samples, cands[0].label)
        return _compiled(Choice(cands[0], "short-job", mode, shape, where, tolerance=tolerance),
                         compile)
    threads, wall0, cpu0 = torch.get_num_threads(), time.perf_counter(), cpu_time()
    choice = measure_candidates(model, example, device, mode, cands, samples, step, clock,
                                tolerance, measure)
    choice = replace(choice, device=where, key=key, shape=shape)
    wall = time.perf_counter() - wall0  # share: of its threads' time, what the process got
    share = min((cpu_time() - cpu0) / (wall * max(threads, 1)), 1.0) if wall > 0 else None
    log.log(DETAIL, "autotune %s on %s, batch %s: %s; chose %s in %.1f s (budget %s, %d of %d "
            "samples per timed call%s%s; %s)", mode, where, "x".join(map(str, shape)),
            ", ".join(f"{k} {v:.3g} ms/sample" for k, v in choice.ms_per_sample.items()),
            choice.label, choice.seconds, _budget_words(clock), choice.measured_batch, shape[0],
            f"; rejected {', '.join(choice.rejected)}" if choice.rejected else "",
            f"; skipped {', '.join(choice.skipped)}" if choice.skipped else "",
            "CPU share unknown" if share is None else f"{share:.0%} of {threads} threads' time")
    if device.type == "cpu" and measure is None and share is not None and share < MIN_CPU_SHARE:
        log.info("autotune: the process got %.0f %% of its threads' time while measuring (under "
                 "%.0f %%: other work held the cores); %s is this run's only, the measurement is "
                 "discarded, not cached", 100 * share, 100 * MIN_CPU_SHARE, choice.label)
        return _compiled(choice, compile)
    if path:
        write_cache(path, key, choice)
    return _compiled(choice, compile)


def _budget_words(clock: Clock) -> str:
    """The budget the measuring kept to: the one given, or the job's share of it."""
    if clock.budget_s < clock.total_s:
        return f"{clock.budget_s:.2g} s, the job's share of {clock.total_s:.2g} s"
    return f"{clock.total_s:.2g} s"


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
    return Choice(candidates(device, precision, layout, mode)[0], "explicit", mode,
                  device=describe_device(device))


def apply(choice: Choice, model: nn.Module, device: torch.device) -> Callable[..., Any]:
    """Put ``model`` (and the process) in the chosen setting; returns the model to call."""
    s = choice.setting
    if device.type == "cpu":
        # every forward reuses the last one's freed activations instead of faulting them
        # in again (engine.allocator; benchmarks/bench_allocator.py measures the gain)
        keep_freed_memory()
    enter_cudnn(s, choice.mode)
    model = model.to(memory_format=s.memory_format)  # type: ignore[call-overload]
    if not s.compile:
        return model
    # inference compiles on its first call (for that shape), and runs eagerly with a
    # warning if compiling fails
    return CompiledForInference(model) if choice.mode == "inference" else torch.compile(model)


def candidates(device: torch.device, precision: devices.Precision,
               layout: devices.Layout, mode: Mode = "inference") -> list[Setting]:
    """The settings ``auto`` chooses among; explicit values are fixed, never varied.

    ``cudnn.benchmark`` is a candidate of training on CUDA only: inference runs cuDNN
    deterministic (:func:`engine.setting.enter_cudnn`).
    """
    benches: list[bool | None] = [None]
    if device.type == "cuda":
        dtypes: list[Dtype] = (["fp32", "bf16", "fp16"] if torch.cuda.is_bf16_supported()
                               else ["fp32", "fp16"])
        if mode == "training":
            benches = [False, True]
    else:
        dtypes = ["fp32", "bf16"]
    if precision != "auto":
        dtypes = [precision]
        benches = [True] if len(benches) > 1 and layout != "auto" else benches
    layouts = [False, True] if layout == "auto" else [layout == "on"]
    return [Setting(d, cl, b) for d in dtypes for cl in layouts for b in benches]
