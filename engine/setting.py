"""One way to run a model (:class:`Setting`) and what a training step needs (:class:`TrainStep`).

The values every part of the engine passes around: ``auto``'s candidates, the choice a run
records (:mod:`engine.choice_value`), what the runner enters (:mod:`engine.execution`).

May import: torch; nothing of the project.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

Mode = Literal["inference", "training"]
Dtype = Literal["fp32", "bf16", "fp16", "int8"]  # int8: a quantized model, no autocast
Batch = dict[str, Any]  # "image" (N, C, H, W) and, for training, the targets


@dataclass(frozen=True)
class Setting:
    """One way to run a model.

    Attributes:
        precision: autocast dtype (``fp32``: no autocast).
        channels_last: NHWC memory format for the model and its inputs.
        cudnn_benchmark: ``torch.backends.cudnn.benchmark`` in training on CUDA (None:
            off, and no part of the label). Inference never benchmarks, whatever a setting
            says (:func:`enter_cudnn`).
        compile: run the model compiled (inference: inductor with frozen weights,
            :func:`engine.compiled.compile_for_inference`; training:
            ``torch.compile``).
    """

    precision: Dtype = "fp32"
    channels_last: bool = False
    cudnn_benchmark: bool | None = None
    compile: bool = False

    @property
    def label(self) -> str:
        parts = [self.precision, "nhwc" if self.channels_last else "nchw"]
        if self.cudnn_benchmark:
            parts.append("cudnn-bench")
        if self.compile:
            parts.append("compiled")
        return "/".join(parts)

    @classmethod
    def from_label(cls, label: str) -> Setting | None:
        """The setting a :attr:`label` names (a map's ``runtime`` tag); None: not a label."""
        parts = label.split("/")
        if len(parts) < 2 or parts[0] not in ("fp32", "bf16", "fp16", "int8") \
                or parts[1] not in ("nchw", "nhwc"):
            return None
        return cls(parts[0], parts[1] == "nhwc",  # type: ignore[arg-type]
                   True if "cudnn-bench" in parts else None, "compiled" in parts)

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        """The autocast dtype, None for fp32 (no autocast)."""
        return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16,
                "int8": None}[self.precision]

    def autocast(self, device_type: str) -> contextlib.AbstractContextManager[None]:
        dtype = self.autocast_dtype
        return contextlib.nullcontext() if dtype is None else torch.autocast(device_type, dtype)


def enter_cudnn(setting: Setting, mode: Mode) -> None:
    """Put the process's cuDNN flags in the state ``setting`` runs in ``mode``.

    Inference, on every device: ``benchmark`` off and ``deterministic`` on, so cuDNN picks
    its convolution algorithms by its rules, not by timing them: a map's bytes depend on its
    inputs, model and recorded precision, never on a timing race (a process that predicted on
    a CPU and then a GPU finds them so too). Training: the setting's ``benchmark`` (None:
    off) and ``deterministic`` off, torch's defaults, both set whatever ran before in the
    process (a prediction left ``deterministic`` on, and training after it ran so); a trained
    model is an input of every map, not one of its runs.
    """
    if mode == "inference":
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    else:
        torch.backends.cudnn.benchmark = bool(setting.cudnn_benchmark)
        torch.backends.cudnn.deterministic = False



@dataclass(frozen=True)
class TrainStep:
    """What a training step needs beyond the model and its input.

    Attributes:
        loss: ``loss(output, batch) -> scalar``; ``batch`` holds ``"image"`` (the input, in
            the candidate's memory format) and the ``targets``, all cut like the input when
            the measurement uses fewer samples or a crop.
        optimizer: builds the run's optimizer over some parameters (a fresh one is built for
            the copy of the model that is timed, so the run's own state is untouched).
        targets: the batch's other tensors on the device (``"label"`` ...), whose first
            dimension is the batch and whose last two are the input's times an integer.
    """

    loss: Callable[[Any, Mapping[str, torch.Tensor]], torch.Tensor]
    optimizer: Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
    targets: Mapping[str, Any] = field(default_factory=dict)
