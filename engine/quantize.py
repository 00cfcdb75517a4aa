"""int8 inference on the CPU: PyTorch 2 export quantization with the x86 quantizer.

The model is exported (``torch.export``, batch and tile size left dynamic so one graph serves
the training patches it is calibrated on and the map's tiles), observed on calibration
patches, converted to int8 weights and activations (the quantizer's default: per-channel
symmetric weights, per-tensor affine activations), and compiled with inductor and frozen
weights, which is what turns the quantize / dequantize pairs into oneDNN int8 convolutions
(uncompiled, the converted graph runs those pairs in fp32 and is slower than fp32).

An int8 map is used only when it agrees with the fp32 map (:mod:`engine.int8_agreement`), by
the same bounds whether the check patches have labels or not (then the fp32 map's classes
stand for them); the caller picks the patches it is checked on and records the figures with
the choice.

May import: ``core``, torch; ``torchao`` (the ``int8`` extra) inside functions.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from core.commands import DETAIL
from core.digest import chunks_sha256, json_digest, text_sha256
from core.errors import ConfigError, IsamapError
from engine.compiled import (
    compile_for_inference,
    inductor_cache_dir,
    quiet_export,
    quiet_loggers,
)
from engine.devices import check_precision
from engine.int8_agreement import (
    MAX_F1_CHANGE,
    MIN_CLASS_AGREEMENT,
    MIN_ISA_F1_VS_FP32,
    Agreement,
    agreement,
    logits,
)
from engine.outputs import main_output

log = logging.getLogger(__name__)

__all__ = ["CALIBRATION_PATCHES", "CHECK_PATCHES", "MAX_F1_CHANGE", "MIN_CLASS_AGREEMENT",
           "MIN_ISA_F1_VS_FP32", "Agreement", "FixedBatch", "Int8Model", "Int8Patches",
           "Int8RefusedError", "Int8UnavailableError", "agreement", "build_int8", "check_int8",
           "check_quantizable", "compile_int8", "cpu_has_int8", "logits", "quantize", "record_key"]

#: Patches observed to set the activation ranges (a few dozen: the ranges settle quickly).
CALIBRATION_PATCHES = 32
#: Patches the int8 output is checked on.
CHECK_PATCHES = 64
RECORDS_FORMAT = "isamap-int8/1"
INSTALL_HINT = "pip install 'isamap[int8]'"


class Int8UnavailableError(IsamapError, ImportError):
    """torchao (the ``int8`` extra) is missing (exit 1: the environment, not the command)."""

    exit_code = 1


class Int8RefusedError(ConfigError):
    """The int8 map disagrees with the fp32 map beyond the tolerance (exit 2)."""


@dataclass(frozen=True)
class Int8Patches:
    """Normalised patches an int8 model is calibrated and checked on, and where they came from.

    Attributes:
        calibration: input batches ``(N, C, H, W)`` the activation ranges are observed on.
        check: other input batches the int8 map is compared with the fp32 map on.
        labels: class labels of the ``check`` batches (``(N, H', W')``), when known.
        calibration_source / check_source: where they came from, in words (recorded).
        label_nodata: the label value of pixels whose class is unknown (the data contract's,
            which the caller reading the labels knows).
    """

    calibration: tuple[torch.Tensor, ...]
    check: tuple[torch.Tensor, ...]
    labels: tuple[torch.Tensor, ...] | None = None
    calibration_source: str = ""
    check_source: str = ""
    label_nodata: int | None = None

    @classmethod
    def from_tiles(cls, tiles: torch.Tensor) -> Int8Patches:
        """Half of a batch of normalised tiles to calibrate on, the other half to check on.

        The last resort of a caller with neither the model's training patches nor an input
        to draw windows from (:func:`inference.predict.calibration.input_patches`): the
        batch's own tiles.
        """
        n = int(tiles.shape[0])
        if n < 2:
            raise ConfigError("--precision int8 without the model's training patches "
                              "calibrates on the first batch of tiles, which needs at least "
                              "2 tiles; use --batch-size 2 or more")
        half = (n + 1) // 2
        return cls((tiles[:half].clone(),), (tiles[half:].clone(),), None,
                   f"the first {half} tiles of the input", f"the next {n - half} tiles of "
                   "the input (no labels)")


class FixedBatch(nn.Module):
    """Calls a model compiled for batches of ``size`` with any batch, padded or split.

    The map's last batch is usually smaller; compiled again for it, it would cost as much as
    the first compilation.
    """

    def __init__(self, module: nn.Module, size: int) -> None:
        super().__init__()
        self.module, self.size = module, size

    @torch.inference_mode()  # as compiled: another grad mode would compile again
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._forward(x)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        n = int(x.shape[0])
        outs = []
        for start in range(0, n, self.size):
            part = x[start:start + self.size]
            k = int(part.shape[0])
            if k < self.size:
                pad = part.new_zeros((self.size - k, *part.shape[1:]))
                part = torch.cat([part, pad]).contiguous(memory_format=_format(x))
            outs.append(main_output(self.module(part))[:k])
        return outs[0] if len(outs) == 1 else torch.cat(outs)


def _format(x: torch.Tensor) -> torch.memory_format:
    return (torch.channels_last if x.is_contiguous(memory_format=torch.channels_last)
            and not x.is_contiguous() else torch.contiguous_format)


@dataclass(frozen=True)
class Int8Model:
    """A quantized model and how it was made (recorded with the run's choice).

    Attributes:
        module: the model to call (compiled, unless compilation was not asked for).
        agreement: its figures against fp32 on the check patches.
        calibration: where the calibration patches came from, in words.
        check: where the check patches came from, in words.
        calibration_patches / check_patches: how many.
        quantize_seconds: export, calibration and conversion.
        compile_seconds: inductor compilation and the first call (0 when not compiled).
        reused: built earlier in this process from the same weights, patches and batch
            shape (a map's later dates), not quantized again: both times are 0.
    """

    module: nn.Module
    agreement: Agreement
    calibration: str
    check: str
    calibration_patches: int
    check_patches: int
    quantize_seconds: float
    compile_seconds: float
    reused: bool = False

    def record(self) -> dict[str, Any]:
        """JSON-like figures for the run's outputs (choice, tags, metrics)."""
        a = self.agreement
        return {"class_agreement": round(a.class_agreement, 6),
                "isa_f1_vs_fp32": round(a.isa_f1_vs_fp32, 6),
                "isa_f1_labels": None if a.isa_f1_labels is None else
                [round(v, 6) for v in a.isa_f1_labels],
                "pixels": a.pixels, "calibration": self.calibration, "check": self.check,
                "check_reference": a.reference,
                "calibration_patches": self.calibration_patches,
                "check_patches": self.check_patches,
                "min_class_agreement": MIN_CLASS_AGREEMENT,
                "min_isa_f1_vs_fp32": MIN_ISA_F1_VS_FP32, "max_f1_change": MAX_F1_CHANGE,
                "quantize_seconds": round(self.quantize_seconds, 3),
                "compile_seconds": round(self.compile_seconds, 3), "reused": self.reused}


def cpu_has_int8() -> bool:
    """Whether this CPU has int8 dot-product instructions (AVX512-VNNI or AMX tiles)."""
    checks = ("_is_vnni_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


def check_int8(device: torch.device) -> None:
    """Refuse int8 where it cannot run fast: CUDA, a CPU without int8 units, no torchao."""
    check_precision("int8", device.type)
    if not cpu_has_int8():
        raise ConfigError("--precision int8 needs a CPU with int8 dot-product instructions "
                          "(AVX512-VNNI or AMX), which this one lacks; use --precision bf16 "
                          "or fp32")
    _torchao()


#: A module's class attribute: why int8 cannot export it, in words (:func:`check_quantizable`).
CANNOT_EXPORT = "int8_cannot_export"


def check_quantizable(model: nn.Module) -> None:
    """Refuse int8 of a model holding a module that says it cannot be exported (one line).

    :func:`quantize` exports one graph for every batch and tile size; a module whose forward
    branches on its input's values or sizes (the pretrained encoders) says so instead.
    """
    for module in model.modules():
        reason = getattr(module, CANNOT_EXPORT, None)
        if reason:
            raise ConfigError(f"--precision int8 cannot quantize this model: {reason}, so "
                              "torch.export cannot trace one graph for every batch and tile "
                              "size; use --precision bf16 or fp32")


def _quiet() -> contextlib.AbstractContextManager[None]:
    """Keep torchao's log warnings out of sight.

    It warns about every GPU kernel it cannot load on a CPU build and every class it
    registers the deprecated way, on import and when compiling.
    """
    return quiet_loggers("torchao", "torch.utils._pytree")


def _torchao() -> tuple[Any, Any, Any]:
    """(prepare_pt2e, convert_pt2e, x86 quantizer module), or a clear error how to install."""
    try:
        with _quiet(), warnings.catch_warnings():
            # its import registers code with torch.jit's deprecated script_method, one
            # DeprecationWarning each: nothing a user of the map can act on
            warnings.simplefilter("ignore", DeprecationWarning)
            from torchao.quantization.pt2e import quantize_pt2e
            from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer
    except ImportError:
        raise Int8UnavailableError(
            "--precision int8 needs torchao, which is not installed; run "
            f"`{INSTALL_HINT}` (or `make setup`) and try again") from None
    return quantize_pt2e.prepare_pt2e, quantize_pt2e.convert_pt2e, x86_inductor_quantizer


def quantize(model: nn.Module, calibration: Sequence[torch.Tensor]) -> nn.Module:
    """The int8 graph of ``model`` (eval mode), calibrated on normalised input batches.

    Batch, height and width stay dynamic in the exported graph, so it runs on any batch of
    any tile size the model accepts. The result is not compiled: it computes what the
    compiled one does, slowly (:func:`compile_int8`).
    """
    if not calibration:
        raise ValueError("int8 calibration needs at least one batch")
    check_quantizable(model)
    prepare_pt2e, convert_pt2e, x86 = _torchao()
    from torch.export import Dim

    model = model.eval()
    example = calibration[0]
    dims = {0: Dim.AUTO, 2: Dim.AUTO, 3: Dim.AUTO}
    with torch.no_grad(), _quiet():
        try:  # a failure is the one line below, not the warnings and graph torch prints
            with quiet_export():
                graph = torch.export.export(model, (example,), dynamic_shapes=(dims,)).module()
        except Exception as exc:  # any tracing failure means the same to a user
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise ConfigError(f"{type(model).__name__} cannot be exported for int8 "
                              f"quantization ({reason}); use --precision bf16 or fp32") from exc
        quantizer = x86.X86InductorQuantizer().set_global(
            x86.get_default_x86_inductor_quantization_config())
        prepared = prepare_pt2e(graph, quantizer)
        for x in calibration:
            prepared(x)
        converted: nn.Module = convert_pt2e(prepared)
        return converted


def compile_int8(quantized: nn.Module, example: torch.Tensor) -> tuple[nn.Module, float]:
    """``quantized`` compiled for ``example``'s shape, and the seconds it took.

    Through :func:`engine.compiled.compile_for_inference` (inductor, frozen weights:
    what turns the quantize/dequantize pairs into oneDNN int8 convolutions); the map calls it
    through :class:`FixedBatch`, so every call has the compiled shape.

    Raises:
        CompileError: the quantized graph could not be compiled.
    """
    with _quiet(), warnings.catch_warnings():
        # inductor's int8 convolution lowering copies a tensor the way it itself warns about
        warnings.filterwarnings("ignore", "To copy construct from a tensor", UserWarning)
        compiled = compile_for_inference(quantized, example)
    log.log(DETAIL, "int8: compiled in %.1f s (inductor cache %s)", compiled.compile_seconds,
            inductor_cache_dir())
    return compiled, compiled.compile_seconds


def build_int8(model: nn.Module, patches: Int8Patches, isa_class: int, *,
               example: torch.Tensor | None = None) -> Int8Model:
    """Quantize ``model``, check it against fp32, compile it for ``example``'s shape.

    Args:
        model: the fp32 model (eval mode; left unchanged).
        patches: what it is calibrated and checked on.
        isa_class: index of the impervious class.
        example: a batch of the shape the map runs at; None: not compiled (tests, and
            benchmarks of the graph itself).

    Raises:
        Int8RefusedError: the int8 map disagrees with fp32 beyond the tolerance (the
            message holds the figures and what to use instead).
    """
    key = _built_key(model, patches, isa_class, example)
    if key in _BUILT:  # a later date of the same map: the same weights, patches and shape
        graph, built = _BUILT[key]
        _BUILT.move_to_end(key)
        if example is not None:
            _check_compiled(graph, built.module, example, isa_class)
        log.info("int8: the model quantized and checked earlier in this process is used again")
        return replace(built, quantize_seconds=0.0, compile_seconds=0.0, reused=True)
    calibration, check, labels = patches.calibration, patches.check, patches.labels
    calibration_source = patches.calibration_source or "the given patches"
    check_source = patches.check_source or "the given patches"
    start = time.perf_counter()
    quantized = quantize(model, calibration)
    quantize_seconds = time.perf_counter() - start
    figures = agreement(logits(model, check), logits(quantized, check), isa_class, labels,
                        patches.label_nodata)
    log.info("int8: %s (calibrated on %d batches of %s, checked on %s)", figures.describe(),
             len(calibration), calibration_source, check_source)
    if not figures.accepted:
        raise Int8RefusedError(f"the int8 map disagrees with fp32 on {check_source}: "
                               f"{figures.describe()}; use --precision bf16 or fp32")
    module, compile_seconds = quantized, 0.0
    if example is not None:
        module, compile_seconds = compile_int8(quantized, example)
        _check_compiled(quantized, module, example, isa_class)
    n = sum(int(x.shape[0]) for x in calibration)
    m = sum(int(x.shape[0]) for x in check)
    built = Int8Model(module, figures, calibration_source, check_source, n, m,
                      quantize_seconds, compile_seconds)
    _BUILT[key] = (quantized, built)
    while len(_BUILT) > BUILT_KEPT:
        _BUILT.popitem(last=False)
    return built


#: int8 models accepted in this process, by what they depend on (:func:`_built_key`), with
#: their graphs: a map's later dates use the first date's instead of quantizing, checking and
#: compiling again. The oldest is dropped past :data:`BUILT_KEPT`.
_BUILT: collections.OrderedDict[str, tuple[nn.Module, Int8Model]] = collections.OrderedDict()
BUILT_KEPT = 2


def _built_key(model: nn.Module, patches: Int8Patches, isa_class: int,
               example: torch.Tensor | None) -> str:
    """What an accepted int8 model depends on: weights, patches, classes, batch shape."""
    tensors = (*patches.calibration, *patches.check, *(patches.labels or ()))
    shape = () if example is None else tuple(example.shape)
    return json_digest({
        "model": record_key(model, shape, "cpu"),
        "patches": chunks_sha256(t.detach().contiguous().cpu().numpy().tobytes()
                                 for t in tensors),
        "isa_class": isa_class, "label_nodata": patches.label_nodata,
        "sources": [patches.calibration_source, patches.check_source]}, 24)


def _check_compiled(graph: nn.Module, compiled: nn.Module, example: torch.Tensor,
                    isa_class: int) -> None:
    """The compiled model must map ``example`` (a map's first tiles) as its graph does."""
    figures = agreement(logits(graph, [example]), logits(compiled, [example]), isa_class)
    log.info("int8: the compiled model against its graph on the first tiles: %s",
             figures.describe())
    if figures.class_agreement < MIN_CLASS_AGREEMENT:
        raise Int8RefusedError(f"the compiled int8 model disagrees with its own graph: "
                               f"{figures.describe()}; use --precision bf16 or fp32")


# ----------------------------------------------------------------------------- the record's key
def record_key(model: nn.Module, shape: Sequence[int], device: str) -> str:
    """What an int8 record depends on: the weights themselves, the batch shape, the device.

    The weights, not the layer sizes: agreement with fp32 is a property of trained weights;
    and the module tree's repr, which holds what the same weights are run with (a U-Net
    that averages its mirror images, ``flips``, is another int8 model of the same weights).
    """
    weights = chunks_sha256(t.detach().contiguous().cpu().numpy().tobytes()
                            for t in model.state_dict().values() if torch.is_tensor(t))
    return json_digest({"format": RECORDS_FORMAT, "weights": weights, "shape": list(shape),
                        "device": device, "torch": torch.__version__,
                        "module": text_sha256(repr(model))}, 24)
