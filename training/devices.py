"""Device and precision from user options, shared by training, evaluation and inference.

``--device`` and ``--precision`` mean the same thing in ``isamap-train``, ``isamap-evaluate``
and ``isamap-predict``, so they are resolved here once: the same names, the same refusals
(CUDA asked for on a machine without it, fp16 on a CPU), the same choice for ``auto``.

torch is imported inside the functions that need it: the command-line parsers import
:func:`add_device_arguments` from here, and ``--help`` (of ``isamap-publish`` above all, which
never needs torch) must stay fast and torch-free.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Literal, get_args

from gee_export.core.errors import ConfigError

if TYPE_CHECKING:
    import torch

Precision = Literal["auto", "fp32", "bf16", "fp16"]
PRECISIONS: tuple[str, ...] = get_args(Precision)


def add_device_arguments(parser: argparse.ArgumentParser, *, device: str | None = "auto",
                         precision: str | None = "auto") -> None:
    """Add ``--device`` and ``--precision`` with the same names, choices and help everywhere.

    Args:
        parser: the command's parser.
        device: default of --device (None: unset, so a config file's value can apply).
        precision: default of --precision (None: likewise).
    """
    parser.add_argument("--device", default=device, help="auto | cpu | cuda | cuda:N "
                        "(auto: CUDA when available)")
    parser.add_argument("--precision", choices=PRECISIONS, default=precision,
                        help="autocast dtype (auto: bf16 where supported, fp16 on older GPUs)")


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; a bare ``cuda`` gets index ``local_rank``.

    Args:
        name: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        local_rank: the process's GPU under ``torchrun`` (0 for a single process).
    """
    import torch

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r} asked for but CUDA is not available; "
                              "use --device cpu")
        if device.index is None:
            device = torch.device("cuda", local_rank)
    return device


def resolve_precision(precision: Precision, device: torch.device, *,
                      cpu_auto: Literal["native", "bf16"] = "native") -> torch.dtype:
    """The compute dtype of ``precision`` on ``device`` (float32 means no autocast).

    ``auto`` is bf16 on CUDA devices that support it, fp16 on older GPUs; on the CPU it is bf16
    where the CPU computes it natively (AVX512-BF16/AMX) and fp32 otherwise, unless
    ``cpu_auto="bf16"`` (training, whose recipe asks for bf16 autocast on the CPU regardless).
    """
    import torch

    if precision == "fp32":
        return torch.float32
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        if device.type != "cuda":
            raise ConfigError("fp16 autocast is for CUDA; use bf16 or fp32 on the CPU")
        return torch.float16
    if precision != "auto":
        raise ConfigError(f"precision must be auto, fp32, bf16 or fp16, got {precision!r}")
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if cpu_auto == "bf16":
        return torch.bfloat16
    native_bf16 = bool(getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)())
    return torch.bfloat16 if native_bf16 else torch.float32


def autocast_dtype(precision: Precision, device: torch.device) -> torch.dtype | None:
    """The training/evaluation autocast dtype: None for fp32, bf16 on the CPU for ``auto``."""
    import torch

    dtype = resolve_precision(precision, device, cpu_auto="bf16")
    return None if dtype == torch.float32 else dtype
