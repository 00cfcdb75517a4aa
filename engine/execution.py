"""How one configuration runs a model: the runner ``auto`` times, and torch's thread count.

Kept apart from :mod:`engine.measuring` (which decides what to time and for how long) because
running a candidate (a :class:`~engine.setting.Setting`) is its own concern: entering its cuDNN
flags, its memory format and autocast, a training step on a private copy of the model, the
batch cut to what fits the budget. The thread count has one owner here (:func:`set_threads`).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from core.commands import DETAIL
from engine.allocator import keep_freed_memory
from engine.compiled import compile_for_inference
from engine.outputs import main_output
from engine.setting import Batch, Dtype, Mode, Setting, TrainStep, enter_cudnn

log = logging.getLogger(__name__)

__all__ = ["CALLS_PER_CANDIDATE", "CHECK_SIDE", "GROW_STEPS", "STEP_FORWARDS", "Batch", "Dtype",
           "Mode", "Setting", "SettingRunner", "TrainStep", "calling_thread_only",
           "class_probabilities", "cut_batch", "process_threads_at", "set_threads"]

#: Calls each candidate needs: its agreement check (or warm-up step) and timed calls.
CALLS_PER_CANDIDATE = 3.0
#: Measurements taken at most to grow the timed batch towards the real one.
GROW_STEPS = 2
#: Side (pixels) of the crop of the first tile(s) that the agreement checks run on.
CHECK_SIDE = 128
#: A training step's time in forwards of the same batch (forward, backward, update): what a
#: step is estimated at from a forward before any step ran.
STEP_FORWARDS = 3.0


def set_threads(threads: int) -> None:
    """Set torch's CPU thread count; the only call of ``torch.set_num_threads`` in the library.

    One owner, so that a count changed for a while (:func:`calling_thread_only`,
    :func:`process_threads_at`) is always given back.
    """
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


@contextlib.contextmanager
def calling_thread_only() -> Iterator[None]:
    """Run torch's CPU work inside the block on the calling thread alone, then as before.

    For the memory-bound passes between forwards (normalising a batch, probabilities back): a
    second thread halves little of their time and its OpenMP waits cost the CPU the helpers
    need (``benchmarks/bench_helpers.py`` measures these passes).
    """
    saved = torch.get_num_threads()
    set_threads(1)
    try:
        yield
    finally:
        set_threads(saved)


@contextlib.contextmanager
def process_threads_at(threads: int | None) -> Iterator[None]:
    """Run the block on ``threads`` CPU threads (None: unchanged), then give the count back."""
    saved = torch.get_num_threads()
    if threads:
        set_threads(threads)
    try:
        yield
    finally:
        set_threads(saved)


class SettingRunner:
    """Runs one inference call or training step of a model under a given setting."""

    def __init__(self, model: nn.Module, example: Batch, device: torch.device,
                 mode: Mode, step: TrainStep | None) -> None:
        self.device, self.mode, self.step = device, mode, step
        self.example = example
        if device.type == "cpu":
            keep_freed_memory()  # candidates are timed as the run will go (autotune.apply)
        self.model: nn.Module | None
        self.optimizer: torch.optim.Optimizer | None
        if mode == "training":
            if step is None:
                raise ValueError("a training step needs its loss and optimizer (TrainStep)")
            self.model = copy.deepcopy(model).to(device).train()
            self.optimizer = step.optimizer(self.model.parameters())
        else:
            self.model = model.eval()
            self.optimizer = None
        self._compiled: dict[Setting, Callable[..., Any]] = {}
        #: seconds each compiled setting took to compile (its first call)
        self.compile_seconds: dict[Setting, float] = {}
        self._scaler: torch.amp.GradScaler | None = None
        #: seconds of one call at the batch :meth:`fit_batch` chose (its estimate)
        self.call_seconds = 0.0
        #: the latest timed fp32 NCHW call per batch size, and fp32's reference
        #: probabilities per input shape (inference: the check crop's; a grown batch's
        #: untimed warm-up call gives its own), so measuring pays for no call twice
        self._fp32_seconds: dict[int, float] = {}
        self._references: dict[tuple[int, ...], torch.Tensor] = {}  # by input shape
        self._probe: float | None = None
        #: seconds of a warm fp32 NCHW call on the check crop (:meth:`probe_estimate`)
        self.check_seconds = 0.0

    def close(self) -> None:
        self._compiled.clear()
        self.model = self.optimizer = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    @property
    def smallest(self) -> int:
        """The smallest batch measured: 1 sample, 2 to train (batch norm needs two)."""
        return min(int(self.example["image"].shape[0]), 2 if self.mode == "training" else 1)

    def probe(self, deadline: float | None = None) -> float:
        """Seconds per sample of fp32 NCHW at the smallest batch, at full tile size.

        Made once; what the measuring budget and the batch are estimated from. Training: an
        untimed step, then a timed one, unless the first ended past ``deadline``: then its
        time (an overestimate, it builds the kernels) stands for the step's. Inference: one
        timed call, the first at full size as every other candidate's first timed call is
        (the fp32 reference on the check crop, :meth:`check_batch`, runs before it and pays
        the process's first-call costs; :meth:`probe_estimate` says beforehand how long it
        takes).
        """
        if self._probe is None:
            h, w = self.example["image"].shape[-2:]
            self._probe = self._seconds(cut_batch(self.example, self.smallest, h, w),
                                        self.mode != "inference", deadline) / self.smallest
        return self._probe

    def check_batch(self) -> Batch:
        """What the agreement checks run on: a crop of the first tile (training: two).

        :data:`CHECK_SIDE` pixels a side (the whole tile when smaller), :attr:`smallest`
        samples. A check compares the candidate's probabilities with fp32's on the same
        pixels; a crop makes it a small share of a call, so the budget pays for timed calls
        instead. Candidates are never timed on a crop (fixed per-call costs rank them
        differently); fp32's time on it only estimates a full-size call
        (:meth:`probe_estimate`).
        """
        h, w = self.example["image"].shape[-2:]
        return cut_batch(self.example, self.smallest, min(h, CHECK_SIDE), min(w, CHECK_SIDE))

    def check_reference(self) -> tuple[Batch, torch.Tensor]:
        """The agreement checks' input (:meth:`check_batch`) and fp32 NCHW's probabilities.

        A model that cannot run on the crop (one made for a fixed input size) is checked on
        the whole first tile instead.
        """
        crop = self.check_batch()
        try:
            return crop, self.reference(crop)
        except Exception as exc:  # whatever the model raises for an input size it refuses
            h, w = self.example["image"].shape[-2:]
            log.log(DETAIL, "autotune: the model refuses a %s crop (%s); checking whole tiles",
                    "x".join(map(str, crop["image"].shape[-2:])), exc)
            whole = cut_batch(self.example, self.smallest, h, w)
            return whole, self.reference(whole)

    def probe_estimate(self, check: Batch) -> tuple[float, float]:
        """Seconds :meth:`probe` is expected to take, and fp32's seconds per sample.

        From one timed fp32 NCHW call on ``check`` (warm: the reference was its first),
        scaled by pixels to the full tile: an overestimate, since the per-call costs that do
        not grow with pixels are counted as if they did. A training step counts
        :data:`STEP_FORWARDS` forwards, and the training probe makes two steps.
        """
        t0 = time.perf_counter()
        self.probabilities(Setting(), check)
        self.check_seconds = max(time.perf_counter() - t0, 1e-6)
        h, w = self.example["image"].shape[-2:]
        ch, cw = check["image"].shape[-2:]
        per_sample = self.check_seconds * (h * w) / (ch * cw) / int(check["image"].shape[0])
        if self.mode == "training":
            per_sample *= STEP_FORWARDS
            return 2 * per_sample * self.smallest, per_sample
        return per_sample * self.smallest, per_sample

    def fit_batch(self, budget_s: float, n_candidates: int,
                  deadline: float | None = None) -> Batch:
        """The part of the example to measure on.

        The tile is never cropped: a crop's timings can rank the candidates differently from
        the real tile, because fixed per-call and per-parameter costs do not scale with
        pixels. Only the batch shrinks: one call of the smallest batch at full size is timed
        (:meth:`probe`), each candidate is given about :data:`CALLS_PER_CANDIDATE` calls of
        the budget, and the batch is grown by timing it while it fits. A step too slow for
        the budget is still measured, at the smallest batch: the budget is then exceeded
        rather than the answer guessed. ``deadline`` (training): no growing that would end
        past it, and a first probe step past it is the probe's only one (:meth:`probe`).
        """
        n, _, h, w = self.example["image"].shape
        smallest = self.smallest
        seconds = self.probe(deadline) * smallest
        allowed = budget_s / (CALLS_PER_CANDIDATE * max(n_candidates, 1))
        fit = max(smallest, int(allowed / (seconds / smallest)))
        # the cost per sample falls as the batch grows (fixed per-call work is shared; on a
        # GPU small calls are bound by kernel launches), so the linear estimate is low and
        # the batch is grown by measuring until it stops fitting: the ranking of candidates
        # can change with the batch. A size already timed is not timed again.
        for _ in range(GROW_STEPS if seconds < allowed else 0):
            late = deadline is not None and \
                time.perf_counter() + 2 * seconds / smallest * fit > deadline
            if fit >= n or fit <= smallest or late:
                break
            t = self._seconds(cut_batch(self.example, fit, h, w))
            seconds, smallest = t, fit  # the latest measurement estimates the next
            grown = min(n, int(fit * allowed / t))
            if grown < fit * 1.25:
                break
            fit = grown
        fit = min(n, max(fit, smallest))
        self.call_seconds = seconds / smallest * fit
        return cut_batch(self.example, fit, h, w)

    def fp32_seconds(self, batch: Batch) -> float | None:
        """Seconds of the timed fp32 NCHW call already made on ``batch``'s size, if any."""
        return self._fp32_seconds.get(int(batch["image"].shape[0]))

    def reference(self, batch: Batch) -> torch.Tensor:
        """fp32 NCHW class probabilities of ``batch`` (the probe's, when it ran this size)."""
        shape = tuple(batch["image"].shape)
        if shape not in self._references:
            self._references[shape] = self.probabilities(Setting(), batch)
        return self._references[shape]

    def _seconds(self, batch: Batch, warm: bool = True,
                 deadline: float | None = None) -> float:
        """Seconds of one fp32 NCHW call.

        With ``warm``, after an untimed one (which builds kernels); in inference that call
        gives the batch's reference probabilities. A training warm-up step that ends past
        ``deadline`` is the only one, and its time counts.
        """
        n = int(batch["image"].shape[0])
        run = self.call(Setting(), batch)
        t0 = time.perf_counter()
        if warm and self.mode == "inference":
            self._references[tuple(batch["image"].shape)] = self.probabilities(Setting(), batch)
        elif warm:
            run()
        if self.mode == "inference" or deadline is None or time.perf_counter() < deadline:
            t0 = time.perf_counter()
            run()
        self._fp32_seconds[n] = max(time.perf_counter() - t0, 1e-6)
        return self._fp32_seconds[n]

    def disagreement(self, setting: Setting, batch: Batch,
                     reference: torch.Tensor) -> float:
        """Mean |p - p_fp32| of ``setting`` (inf when it fails or gives non-finite values)."""
        try:
            probs = self.probabilities(setting, batch)
        except Exception as exc:  # an unsupported kernel or dtype: reject, do not fail
            log.log(DETAIL, "autotune: %s failed (%s); not a candidate", setting.label, exc)
            return math.inf
        if probs.shape != reference.shape or not bool(torch.isfinite(probs).all()):
            return math.inf
        return float((probs - reference).abs().mean())

    def warm_up(self, setting: Setting, batch: Batch) -> bool:
        """One untimed training step: the first one builds the backward kernels.

        Returns False (and logs why) when it fails, e.g. with a non-finite loss. Inference
        needs none: its agreement check was its first call.
        """
        if self.mode == "inference" and not setting.compile:
            return True
        try:
            self.call(setting, batch, check_finite=True)()
        except Exception as exc:
            log.log(DETAIL, "autotune: %s failed (%s); not a candidate", setting.label, exc)
            return False
        return True

    def call(self, setting: Setting, batch: Batch,
             check_finite: bool = False) -> Callable[[], None]:
        """A function running one call (synchronised on CUDA) of ``setting`` on ``batch``.

        ``check_finite``: a training step raises when its loss is not finite. Only the warm-up
        asks: it rejects a precision that overflows. The timed steps keep updating the copy's
        weights, which a high learning rate can drive to NaN without saying anything about
        the candidate's speed (the real run reports divergence in its own words).
        """
        def run() -> None:
            self._enter(setting)
            x = batch["image"].contiguous(memory_format=setting.memory_format)
            module = self._module(setting, x)
            if self.mode == "inference":
                with torch.inference_mode(), setting.autocast(self.device.type):
                    module(x)
            else:
                self._train_step(module, setting, {**batch, "image": x}, check_finite)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
        return run

    def probabilities(self, setting: Setting, batch: Batch) -> torch.Tensor:
        """Class probabilities of ``setting`` on ``batch``.

        In training mode this is a forward pass in train mode with fixed dropout masks and no
        weight update, so every candidate is compared on the same weights.
        """
        self._enter(setting)
        x = batch["image"].contiguous(memory_format=setting.memory_format)
        module = self._module(setting, x)
        torch.manual_seed(0)
        grad_free = torch.inference_mode() if self.mode == "inference" else torch.no_grad()
        with grad_free, setting.autocast(self.device.type):
            out = main_output(module(x))
        return class_probabilities(out.float())

    def _enter(self, setting: Setting) -> None:
        enter_cudnn(setting, self.mode)

    def _module(self, setting: Setting, x: torch.Tensor) -> Callable[..., Any]:
        """The module to call for ``setting``; a compiled one is compiled for ``x``'s shape."""
        assert self.model is not None, "the runner was closed"
        self.model.to(memory_format=setting.memory_format)  # type: ignore[call-overload]
        if not setting.compile:
            return self.model
        if setting not in self._compiled:
            compiled: Callable[..., Any]
            if self.mode == "inference":
                # raises CompileError, which the agreement check turns into a rejection
                compiled = compile_for_inference(self.model, x,
                                                 autocast=setting.autocast_dtype)
                self.compile_seconds[setting] = compiled.compile_seconds
            else:
                compiled = torch.compile(self.model)
            self._compiled[setting] = compiled
        return self._compiled[setting]

    def _train_step(self, module: Callable[..., Any], setting: Setting, batch: Batch,
                    check_finite: bool) -> None:
        assert self.step is not None and self.optimizer is not None  # training mode
        with setting.autocast(self.device.type):
            out = module(batch["image"])
            loss = self.step.loss(out, batch)
        self.optimizer.zero_grad(set_to_none=True)
        if setting.precision == "fp16":
            if self._scaler is None:
                self._scaler = torch.amp.GradScaler(self.device.type)
            # (the ignores: torch leaves Tensor.backward unannotated)
            self._scaler.scale(loss).backward()  # type: ignore[no-untyped-call]
            self._scaler.step(self.optimizer)
            self._scaler.update()
        else:
            loss.backward()  # type: ignore[no-untyped-call]
            self.optimizer.step()
        if check_finite and not bool(torch.isfinite(loss.detach())):
            raise FloatingPointError(f"the loss is {float(loss.detach())}")


def cut_batch(batch: Batch, n: int, h: int, w: int) -> Batch:
    """The first ``n`` samples of every tensor of ``batch``, cropped to ``h x w`` input pixels.

    A target at k times the input's resolution keeps its top-left ``k*h x k*w``.
    """
    full_h, full_w = batch["image"].shape[-2:]
    out: dict[str, Any] = {}
    for name, value in batch.items():
        if not torch.is_tensor(value) or value.ndim == 0:
            out[name] = value
            continue
        value = value[:n]
        if value.ndim >= 3 and value.shape[-2] % full_h == 0 and value.shape[-1] % full_w == 0:
            k_h, k_w = value.shape[-2] // full_h, value.shape[-1] // full_w
            value = value[..., :h * k_h, :w * k_w]
        out[name] = value.contiguous()
    return out


def class_probabilities(logits: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(logits) if logits.shape[1] == 1 else torch.softmax(logits, dim=1)
