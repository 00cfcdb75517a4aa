"""Device, precision and memory layout from user options, shared by every command.

``--device``, ``--precision`` and ``--channels-last`` mean the same thing in ``isamap-train``,
``isamap-evaluate`` and ``isamap-predict``, so they are resolved here once: the same names,
the same refusals (CUDA asked for on a machine without it, fp16 on a CPU). ``auto`` means the
same everywhere too: *measured* on the run's own model, batch shape and device by
:mod:`engine.autotune` (which calls back into this module for explicit choices).

torch is imported inside the functions that need it: the command-line parsers import
:func:`add_device_arguments` from here, and ``--help`` (of ``isamap-publish`` above all, which
never needs torch) must stay fast and torch-free.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Literal, get_args

from core.errors import ConfigError

if TYPE_CHECKING:
    import torch

Precision = Literal["auto", "fp32", "bf16", "fp16"]
PRECISIONS: tuple[str, ...] = get_args(Precision)
#: inference may also run a quantized model (:mod:`engine.quantize`)
InferencePrecision = Literal["auto", "fp32", "bf16", "fp16", "int8"]
INFERENCE_PRECISIONS: tuple[str, ...] = get_args(InferencePrecision)
Layout = Literal["auto", "on", "off"]
LAYOUTS: tuple[str, ...] = get_args(Layout)


def add_device_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup, *,
                         device: str | None = "auto", precision: str | None = "auto",
                         channels_last: str | None = "auto", inference: bool = False,
                         unset_from: str = "the --config file's") -> None:
    """Add ``--device``, ``--precision``, ``--channels-last`` and ``--no-autotune-cache``.

    Args:
        parser: the command's parser.
        inference: the command only runs a trained model, so ``--precision int8`` is offered.
        device: default of --device (None: unset, so a config file's value can apply).
        precision: default of --precision (None: likewise).
        channels_last: default of --channels-last (None: likewise).
        unset_from: where an unset flag's value comes from, as the help says it.
    """
    unset = f" (default: {unset_from}, else auto)"
    parser.add_argument("--device", default=device, help="auto | cpu | cuda | cuda:N "
                        "(auto: CUDA when available)" + (unset if device is None else ""))
    int8_help = ("; int8 (CPU with VNNI/AMX, the int8 extra): a quantized model, used only "
                 "when its map agrees with fp32" if inference else "")
    parser.add_argument("--precision", choices=INFERENCE_PRECISIONS if inference else PRECISIONS,
                        default=precision,
                        help="autocast dtype; auto: time fp32/bf16 (and fp16 on CUDA) on this "
                             "model, batch shape and device, keep the fastest whose output "
                             "agrees with fp32 (cached; see docs/performance.md)" + int8_help
                             + (unset if precision is None else ""))
    parser.add_argument("--channels-last", choices=LAYOUTS, default=channels_last,
                        help="NHWC memory format; auto: measured with --precision auto"
                             + (unset if channels_last is None else ""))
    parser.add_argument("--no-autotune-cache", dest="autotune_cache", action="store_const",
                        const=False, default=None,
                        help="measure 'auto' again instead of reusing the cached choice "
                             "(also: ISAMAP_AUTOTUNE_CACHE=off)")


def layout_flag(value: str | bool | None) -> Layout:
    """``--channels-last``/config value -> ``auto``/``on``/``off`` (YAML booleans accepted)."""
    if value is None:
        return "auto"
    if isinstance(value, bool):
        return "on" if value else "off"
    text = str(value).lower()
    aliases = {"true": "on", "false": "off", "yes": "on", "no": "off", "nhwc": "on",
               "nchw": "off"}
    text = aliases.get(text, text)
    if text not in LAYOUTS:
        raise ConfigError(f"channels_last must be auto, on or off, got {value!r}")
    return text  # type: ignore[return-value]


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; a bare ``cuda`` gets index ``local_rank``.

    Args:
        name: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        local_rank: the process's GPU under ``torchrun`` (0 for a single process).

    Raises:
        ConfigError: a name torch does not parse, a device type other than CPU and CUDA
            (``mps``, ``xla``, ``meta``: nothing here runs on them), or CUDA where there is none.
    """
    import torch

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):  # mps, xla, meta: not run here
        raise ConfigError(f"--device {name!r} is not a device isamap runs on; use auto, cpu, "
                          "cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r} asked for but CUDA is not available; "
                              "use --device cpu")
        if device.index is None:
            device = torch.device("cuda", local_rank)
        refusal = gpu_index_refusal(name, device.index or 0, torch.cuda.device_count(),
                                    local_rank)
        if refusal:
            raise ConfigError(refusal)
    return device


def gpu_index_refusal(name: str, index: int, count: int, local_rank: int = 0) -> str | None:
    """Why GPU ``index`` cannot be used on a machine of ``count`` GPUs (None: it can).

    Under ``torchrun`` a bare ``cuda`` (or ``auto``) gives process ``local_rank`` GPU
    ``local_rank``: more processes than GPUs stopped with CUDA's "invalid device ordinal".
    """
    if index < count:
        return None
    if local_rank and name in ("auto", "cuda"):
        return (f"torchrun process {local_rank} would train on GPU {local_rank}, but this "
                f"machine has {count} GPU(s): start at most {count} process(es) a machine "
                "(torchrun --nproc_per_node), or give --device cpu")
    return (f"--device {name} names GPU {index}, but this machine has {count} GPU(s) "
            f"(cuda:0 to cuda:{count - 1}); give one of those, or --device cpu")


def check_precision(precision: str, device_type: str) -> None:
    """Refuse a precision that is unknown or that ``device_type`` cannot run."""
    if precision not in INFERENCE_PRECISIONS:
        raise ConfigError(f"precision must be auto, fp32, bf16 or fp16 (int8 for inference "
                          f"on a CPU), got {precision!r}")
    if precision == "fp16" and device_type != "cuda":
        raise ConfigError("fp16 autocast is for CUDA; use bf16 or fp32 on the CPU")
    if precision == "int8" and device_type != "cpu":
        raise ConfigError("--precision int8 is for CPU inference; on a GPU use --precision "
                          "bf16, fp16 or fp32")


def resolve_precision(precision: InferencePrecision, device: torch.device) -> torch.dtype:
    """The compute dtype of an explicit ``precision`` (float32 means no autocast).

    ``auto`` is not a static choice: it is measured by :func:`engine.autotune.choose`, so
    asking for its dtype here is a programming error.
    """
    import torch

    check_precision(precision, device.type)
    if precision == "auto":
        raise ValueError("precision 'auto' is measured: resolve it with "
                         "engine.autotune.choose")
    if precision == "int8":
        raise ValueError("int8 is a quantized model, not a compute dtype: build it with "
                         "engine.quantize.build_int8")
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def autocast_dtype(precision: Precision, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of an explicit ``precision``: None for fp32 (no autocast)."""
    import torch

    dtype = resolve_precision(precision, device)
    return None if dtype == torch.float32 else dtype
