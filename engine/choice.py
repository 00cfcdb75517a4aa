"""How an inference model runs, decided in one place: precision, layout, compiling and int8.

:func:`decide` returns the whole choice for a first batch of (normalised) tiles: the
:class:`~engine.autotune.Choice` recorded in the outputs and the module to call in it. Under
``--precision auto`` that is :func:`engine.autotune.choose` among fp32/bf16 (fp16 on CUDA) x
layout; ``auto`` never quantizes. ``--precision int8`` quantizes, checks against fp32 and
compiles (refused when its map disagrees). ``--compile`` compiles whatever runs. Explicit
precision and layout need no batch (:func:`fixed`). The caller only applies the result.

Whether int8 can run here at all is checked once per process (:func:`int8_unavailable`);
whether the model can be quantized, before any work (:func:`check_model`).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from core.errors import ConfigError
from engine import autotune, devices, quantize
from engine.devices import InferencePrecision, Layout
from engine.setting import Dtype, Setting

log = logging.getLogger(__name__)

#: Where int8 is calibrated and checked: given patches, a function reading them when int8 is
#: built (None from it, or None here: the first batch of tiles, half and half).
PatchSource = quantize.Int8Patches | Callable[[], quantize.Int8Patches | None] | None


@dataclass(frozen=True)
class Request:
    """What the user asked for (``--precision``, ``--channels-last``, ``--compile``...).

    Attributes:
        precision: ``auto``, an explicit dtype (never overridden) or ``int8``.
        channels_last: ``auto``, ``on``/``off`` or a bool.
        compile: run the chosen setting compiled.
        cache: reuse and store measured choices in the user cache (None: unless
            ``ISAMAP_AUTOTUNE_CACHE=off``).
        budget_s: seconds measuring ``auto`` may take.
    """

    precision: InferencePrecision = "auto"
    channels_last: Layout | bool = "auto"
    compile: bool = False
    cache: bool | None = None
    budget_s: float = autotune.DEFAULT_BUDGET_S


@dataclass(frozen=True)
class Decided:
    """The choice and the module that runs it.

    Attributes:
        choice: how the model runs, and why (recorded in the outputs).
        model: what to call (the module in the chosen layout, compiled, or the int8 graph).
        int8: how the int8 model was made (None for other precisions).
        seconds: time spent measuring and building.
    """

    choice: autotune.Choice
    model: Callable[..., Any]
    int8: quantize.Int8Model | None = None
    seconds: float = 0.0


@functools.cache
def int8_unavailable(device_type: str) -> str | None:
    """Why int8 cannot run fast on this device type (None: it can); checked once per process.

    CUDA, a CPU without int8 dot-product instructions (AVX512-VNNI or AMX), or no torchao.
    """
    try:
        quantize.check_int8(torch.device(device_type))
    except (ConfigError, quantize.Int8UnavailableError) as exc:
        return str(exc)
    return None


def check_int8(device: torch.device) -> None:
    """Refuse ``--precision int8`` before any work where it cannot run (one line)."""
    if int8_unavailable(device.type) is not None:
        quantize.check_int8(device)  # raises the same error with its own type


def check_model(module: nn.Module, precision: str) -> None:
    """Refuse, in one line, a precision ``module`` itself can never run at.

    ``int8`` of a model holding a module that cannot be exported (the pretrained encoders,
    :func:`engine.quantize.check_quantizable`): on any machine, so before any work.
    """
    if precision == "int8":
        quantize.check_quantizable(module)


def fixed(module: nn.Module, device: torch.device, request: Request) -> Decided | None:
    """The choice when precision and layout are both given (no batch needed), else None."""
    if request.precision == "int8":
        check_model(module, request.precision)
        check_int8(device)
        return None
    explicit = autotune.explicit(request.precision, request.channels_last, device)
    if explicit is None:
        return None
    choice = replace(explicit, setting=replace(explicit.setting, compile=request.compile))
    return Decided(choice, autotune.apply(choice, module, device))


def conflict(request: Request, setting: Setting, *, compiled: bool = True) -> str | None:
    """The option of ``request`` that asks for another runtime than ``setting`` (None: none).

    ``auto`` asks for none: it takes what an earlier run of the same work chose. ``compiled``:
    whether ``--compile`` counts too (it changes the float rounding; a map's tag says
    ``compiled`` only where compiling succeeded, so a finished map is not compared on it).
    A setting with ``cudnn.benchmark`` (an earlier isamap's inference on CUDA) is another
    runtime than any request: inference runs cuDNN deterministic (:func:`unbenchmarked`).
    """
    if setting.cudnn_benchmark:
        return "cuDNN deterministic (inference never runs cudnn.benchmark)"
    if request.precision not in ("auto", setting.precision):
        return f"--precision {request.precision}"
    layout = devices.layout_flag(request.channels_last)
    if layout != "auto" and (layout == "on") != setting.channels_last:
        return f"--channels-last {layout}"
    if compiled and bool(request.compile) != setting.compile:
        return "--compile" if request.compile else "no --compile"
    return None


def unbenchmarked(choice: autotune.Choice) -> autotune.Choice:
    """The runtime this isamap would run for a recorded one: without ``cudnn.benchmark``.

    An earlier isamap recorded inference on CUDA as e.g. ``fp32/nchw/cudnn-bench``; this one
    never benchmarks inference, so what it holds for a series is that runtime without it (the
    dates recorded with it differ from it and are mapped again, :func:`conflict`).
    """
    if not choice.setting.cudnn_benchmark:
        return choice
    return replace(choice, setting=replace(choice.setting, cudnn_benchmark=None))


def resumed(module: nn.Module, device: torch.device, request: Request,
            recorded: autotune.Choice) -> Decided:
    """The choice of a run that continues work another run recorded, without measuring.

    What ``request`` leaves at ``auto`` is taken from the recorded setting (source
    ``checkpoint``, still ``auto`` in the outputs' tags; an explicit record stays explicit);
    what it gives explicitly is used as given. A record an earlier isamap made with
    ``cudnn.benchmark`` is resumed without it: inference runs cuDNN deterministic (its
    strips and maps are computed again, :func:`conflict`).
    """
    choice = recorded if recorded.source == "explicit" else replace(recorded,
                                                                    source="checkpoint")
    s, layout = choice.setting, devices.layout_flag(request.channels_last)
    precision: Dtype = (s.precision if request.precision in ("auto", "int8")
                        else request.precision)  # type: ignore[assignment]
    choice = replace(choice, setting=replace(
        s, precision=precision, compile=request.compile, cudnn_benchmark=None,
        channels_last=s.channels_last if layout == "auto" else layout == "on"))
    return Decided(choice, autotune.apply(choice, module, device))


def decide(module: nn.Module, x: torch.Tensor, device: torch.device, request: Request, *,
           samples: int | None = None, patches: PatchSource = None,
           isa_class: int | None = None) -> Decided:
    """The whole choice for batches shaped like ``x``, applied to the process.

    Args:
        module: the eval-mode model (batch norms folded), on ``device``.
        x: a first batch of normalised tiles, contiguous.
        device: where it runs.
        request: what the user asked for.
        samples: tiles the job will run when known (what bounds the measuring).
        patches: what int8 is calibrated and checked on.
        isa_class: the impervious class (int8's check; None: the last class).

    Raises:
        Int8RefusedError: ``--precision int8`` and the int8 map disagrees with fp32.
    """
    start = time.perf_counter()
    if request.precision == "int8":
        return _int8(module, x, device, patches, isa_class, start)
    choice = autotune.choose(module, x, device, mode="inference", precision=request.precision,
                             channels_last=request.channels_last, compile=request.compile,
                             cache=request.cache, budget_s=request.budget_s, samples=samples)
    return Decided(choice, autotune.apply(choice, module, device),
                   seconds=time.perf_counter() - start)


def _int8(module: nn.Module, x: torch.Tensor, device: torch.device, patches: PatchSource,
          isa_class: int | None, start: float) -> Decided:
    """Quantize, check and compile for batches shaped like ``x``."""
    check_int8(device)
    with torch.inference_mode(False):  # export traces ordinary tensors
        example = x.clone()
        given = patches() if callable(patches) else patches
        given = given or quantize.Int8Patches.from_tiles(example)
        if isa_class is None:  # the last class (a one-logit model's positive class is 1)
            isa_class = max(int(quantize.logits(module, [example[:1]])[0].shape[1]) - 1, 1)
        built = quantize.build_int8(module, given, isa_class, example=example)
    model = quantize.FixedBatch(built.module, int(x.shape[0]))
    choice = autotune.Choice(Setting("int8"), "explicit", "inference",
                             tuple(int(s) for s in x.shape), autotune.describe_device(device),
                             int8=built.record())
    return Decided(choice, model, built, time.perf_counter() - start)
