"""What a model's speed is a fraction of: the machine's measured peak, and the model's FLOPs.

A throughput means little alone: the same patches per second can be excellent for a large
network on a few CPU cores and poor on a GPU. :func:`measure_peak` times this machine's dense
matrix product and 3x3 convolution (the operations the papers' networks are made of) in each
precision it computes natively, and :func:`count_flops` counts a model's floating-point
operations with ``torch.utils.flop_counter`` (a multiply-add is two), so that a benchmark can
report GFLOP/s and the fraction of the peak next to patches/s. Benchmark support: the library
never measures its peak.

A CPU's bf16 rate is measured only where it computes bf16 natively (AVX512-BF16/AMX, as
oneDNN reports it): elsewhere bf16 is emulated and has no peak of its own. On CUDA everything
runs with PyTorch's TF32 defaults, as the networks do: fp32 matrix products without TF32,
fp32 convolutions *with* it (cuDNN's default), so the "fp32" convolution peak is the TF32
tensor-core rate the networks' fp32 convolutions actually run at.

int8 (CPU, asked for explicitly: it needs the ``int8`` extra and a few seconds of compilation)
is measured as a quantized model runs: the GEMM is ``torch._int_mm`` (int8 x int8 -> int32),
the 3x3 convolution one 128 -> 128 convolution quantized and compiled by
:mod:`engine.quantize` (its input quantized and output dequantized included, as
every quantized layer of a model pays them). Its rates are int8 operations per second, in
the same units as the FLOP/s of the float precisions.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch.utils.flop_counter import FlopCounterMode

from engine import quantize
from engine.autotune_cache import describe_device
from engine.outputs import main_output

Dtype = Literal["fp32", "bf16", "fp16", "int8"]
_TORCH_DTYPE = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Peak:
    """Measured rates of this machine, GFLOP/s by precision.

    Attributes:
        device: the device in words.
        gemm: dense ``n x n`` matrix product rate per precision.
        conv: 3x3 convolution rate per precision (the faster of NCHW and NHWC).
        seconds: time spent measuring.
    """

    device: str
    gemm: dict[str, float] = field(default_factory=dict)
    conv: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    def of(self, precision: str) -> float:
        """The peak a run in ``precision`` is measured against.

        The best of GEMM and 3x3 convolution in that precision, or fp32's where the
        precision has no native rate (an emulated bf16 cannot beat the fp32 units).
        """
        rates = [r[precision] for r in (self.gemm, self.conv) if r.get(precision)]
        if not rates:
            return self.of("fp32") if precision != "fp32" else float("nan")
        return max(rates)

    def summary(self) -> str:
        parts = [f"{p} GEMM {self.gemm[p]:.0f}, conv3x3 {self.conv.get(p, float('nan')):.0f}"
                 for p in self.gemm]
        return f"{self.device}: " + "; ".join(parts) + " GFLOP/s"


def native_precisions(device: torch.device) -> list[Dtype]:
    """The precisions ``device`` computes natively (fp32 always)."""
    if device.type == "cuda":
        out: list[Dtype] = ["fp32", "fp16"]
        if torch.cuda.is_bf16_supported():
            out.insert(1, "bf16")
        return out
    native_bf16 = bool(getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)())
    return ["fp32", "bf16"] if native_bf16 else ["fp32"]


def measure_peak(device: torch.device, precisions: list[Dtype] | None = None,
                 seconds: float = 1.0) -> Peak:
    """Time GEMM and 3x3 convolution on ``device`` for about ``seconds`` each.

    Sizes are large enough to reach the plateau on the hardware class (CPU: 2048-wide GEMM,
    128->128 channels at 96x96; GPU: 8192-wide GEMM, 256->256 channels at 128x128, batch 32).
    """
    started = time.perf_counter()
    precisions = precisions or native_precisions(device)
    gpu = device.type == "cuda"
    gemm: dict[str, float] = {}
    conv: dict[str, float] = {}
    with torch.inference_mode():
        for p in precisions:
            if p == "int8":
                gemm[p], conv[p] = _int8_rates(device, seconds)
                continue
            dtype = _TORCH_DTYPE[p]
            n = 8192 if gpu else 2048
            a = torch.randn(n, n, device=device, dtype=dtype)
            b = torch.randn(n, n, device=device, dtype=dtype)
            gemm[p] = 2 * n**3 / _best_seconds(functools.partial(torch.matmul, a, b), device,
                                               seconds) / 1e9
            del a, b
            batch, ch, size = (32, 256, 128) if gpu else (4, 128, 96)
            weight = torch.randn(ch, ch, 3, 3, device=device, dtype=dtype)
            best = 0.0
            for fmt in (torch.contiguous_format, torch.channels_last):
                x = torch.randn(batch, ch, size, size, device=device, dtype=dtype)
                x = x.contiguous(memory_format=fmt)
                w = weight.contiguous(memory_format=fmt)
                flops = 2 * batch * ch * ch * 9 * size * size
                t = _best_seconds(functools.partial(torch.nn.functional.conv2d, x, w,
                                                    padding=1), device, seconds / 2)
                best = max(best, flops / t / 1e9)
            conv[p] = best
    return Peak(describe_device(device), gemm, conv, time.perf_counter() - started)


def _int8_rates(device: torch.device, seconds: float) -> tuple[float, float]:
    """int8 GEMM and 3x3 convolution rates (G int8 operations per second) on the CPU."""
    if device.type != "cpu":
        raise ValueError("the int8 peak is measured on the CPU only")
    n = 2048
    a = torch.randint(-128, 128, (n, n), dtype=torch.int8)
    b = torch.randint(-128, 128, (n, n), dtype=torch.int8)
    gemm = 2 * n**3 / _best_seconds(lambda: torch._int_mm(a, b), device, seconds) / 1e9
    batch, ch, size = 4, 128, 96
    with torch.inference_mode(False):
        conv = torch.nn.Conv2d(ch, ch, 3, padding=1, bias=False).eval()
        x = torch.randn(batch, ch, size, size)
        compiled, _ = quantize.compile_int8(quantize.quantize(conv, [x]), x)
        with torch.no_grad():  # as compiled
            t = _best_seconds(lambda: compiled(x), device, seconds / 2)
    return gemm, 2 * batch * ch * ch * 9 * size * size / t / 1e9


def _best_seconds(fn: Callable[[], Any], device: torch.device, budget: float) -> float:
    """Best time of ``fn`` after a warm-up, repeated until ``budget`` seconds are spent."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda *_: None)
    fn()
    sync()
    best, spent = float("inf"), 0.0
    reps = 0
    while spent < budget or reps < 2:
        t0 = time.perf_counter()
        fn()
        sync()
        dt = time.perf_counter() - t0
        best, spent, reps = min(best, dt), spent + dt, reps + 1
    return best


def count_flops(model: torch.nn.Module, x: torch.Tensor,
                loss: Callable[[Any], torch.Tensor] | None = None) -> int:
    """Floating-point operations of one pass of ``model`` on ``x`` (a multiply-add is two).

    A forward pass, or a forward and backward pass when ``loss(output) -> scalar`` is given.
    Counted by ``torch.utils.flop_counter`` (convolutions, matrix products, attention; the
    cheap element-wise operations are not counted, so fractions of the peak are slightly low).
    The weights and gradients are left as they were (batch-norm statistics are not).
    """
    was_training = model.training
    counter = FlopCounterMode(display=False)
    try:
        if loss is None:
            model.eval()
            with counter, torch.inference_mode():
                main_output(model(x))
        else:
            model.train()
            with counter:
                # torch leaves Tensor.backward unannotated
                loss(model(x)).backward()  # type: ignore[no-untyped-call]
            model.zero_grad(set_to_none=True)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())
