"""Training configuration: one frozen dataclass, filled from a YAML file and/or CLI flags.

Defaults are the CroFuseNet paper's (section IV-A): Adam, lr 1e-4, poly schedule with power
0.9 per iteration, batch 32, 400 epochs, early stopping after 50 epochs without a gain in
validation MIoU. The land-cover HRNet's recipe (SGD 0.01 with momentum 0.9, random crops,
class-weighted CE) is set through ``optimizer``, ``momentum``, ``crop_size`` and the loss
options (``training.models.hrnet.HRNET_RECIPE.train_options``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from gee_export.core.errors import ConfigError
from training.devices import PRECISIONS, Precision

Optimizer = Literal["adam", "sgd"]
MAX_WORKERS = 64  # data-loader processes; more only adds start-up time and memory


@dataclass(frozen=True)
class TrainConfig:
    """Every knob of a training run (all recorded in the checkpoint and the model file).

    Attributes:
        data: patch dataset root (local folder or gs://bucket/prefix).
        out_dir: run folder (checkpoint, best model, metrics.jsonl, curves PNG).
        model / model_kwargs: registry name and extra constructor arguments.
        loss / loss_kwargs: loss name (default: the model's paper loss) and its arguments.
        bands: input bands (default: every band of the manifest, in its order).
        label: ``label`` or ``label_fine`` (fine-scale labels of super-resolution models).
        epochs, batch_size, lr, poly_power, weight_decay, patience: the optimisation.
        optimizer: ``adam`` (CroFuseNet, RU-Net++) or ``sgd`` (the land-cover HRNet).
        momentum: SGD momentum (ignored by Adam).
        crop_size: random square training crops of this many pixels (input grid); None
            trains on whole patches. Validation always sees whole patches.
        filter_noisy: run noisy-sample filtering first (``training.noisy``): drop training
            patches whose preliminary prediction agrees with their label on fewer than this
            share of pixels, then retrain; None trains on every patch.
        seed: seeds model init, data order and augmentation.
        num_workers: loader worker processes (default: cores - 1, at most 8).
        precision: ``auto`` = bf16 autocast on CPU, fp16 AMP (bf16 where supported) on CUDA.
        channels_last: NHWC memory format (default on).
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:1``...
        augment: the paper's augmentations on the training split.
        cache: keep decoded patches in memory.
        max_batches: cap on training batches per epoch (quick demos and benchmarks).
        max_iterations: total training-iteration budget; when set it replaces ``epochs``
            (the last epoch is cut short and the poly schedule ends at the budget).
        stop_after: leave after this many epochs in this invocation (time-sliced jobs);
            ``resume`` continues exactly where it stopped.
        resume: continue from ``out_dir/checkpoint.pt``.
        progress: show tqdm bars.
    """

    data: str = ""
    out_dir: str = "runs/train"
    model: str = "crofusenet"
    model_kwargs: Mapping = field(default_factory=dict)
    loss: str | None = None
    loss_kwargs: Mapping = field(default_factory=dict)
    bands: tuple[str, ...] | None = None
    label: str = "label"
    epochs: int = 400
    batch_size: int = 32
    lr: float = 1e-4
    poly_power: float = 0.9
    weight_decay: float = 0.0
    patience: int = 50
    optimizer: Optimizer = "adam"
    momentum: float = 0.9
    crop_size: int | None = None
    filter_noisy: float | None = None
    seed: int = 0
    num_workers: int | None = None
    precision: Precision = "auto"
    channels_last: bool = True
    device: str = "auto"
    augment: bool = True
    cache: bool = False
    max_batches: int | None = None
    max_iterations: int | None = None
    stop_after: int | None = None
    resume: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        checks = [(self.epochs >= 1, "epochs must be >= 1"),
                  (self.batch_size >= 1, "batch_size must be >= 1"),
                  (self.lr > 0, "lr must be positive"),
                  (self.patience >= 1, "patience must be >= 1"),
                  (self.optimizer in ("adam", "sgd"),
                   f"optimizer must be adam or sgd, got {self.optimizer!r}"),
                  (0.0 <= self.momentum < 1.0, "momentum must be in [0, 1)"),
                  (self.crop_size is None or self.crop_size >= 8, "crop_size must be >= 8"),
                  (self.filter_noisy is None or 0.0 < self.filter_noisy < 1.0,
                   "filter_noisy must be an agreement share in (0, 1), e.g. 0.2"),
                  (self.precision in PRECISIONS,
                   f"precision must be {', '.join(PRECISIONS)}, got {self.precision!r}"),
                  (self.stop_after is None or self.stop_after >= 1, "stop_after must be >= 1"),
                  (self.max_batches is None or self.max_batches >= 1, "max_batches must be >= 1"),
                  (self.max_iterations is None or self.max_iterations >= 1,
                   "max_iterations must be >= 1"),
                  (self.num_workers is None or 0 <= self.num_workers <= MAX_WORKERS,
                   f"num_workers (--workers) must be between 0 and {MAX_WORKERS} data-loader "
                   f"processes, got {self.num_workers}")]
        for ok, msg in checks:
            if not ok:
                raise ConfigError(msg)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["model_kwargs"] = dict(self.model_kwargs)
        d["loss_kwargs"] = dict(self.loss_kwargs)
        d["bands"] = list(self.bands) if self.bands is not None else None
        return d


def config_from_mapping(values: Mapping) -> TrainConfig:
    """Build a config from a dict (YAML content, CLI flags), rejecting unknown keys."""
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown training options {unknown}; known: {sorted(known)}")
    kw = dict(values)
    if isinstance(kw.get("bands"), str):
        kw["bands"] = [b.strip() for b in kw["bands"].split(",") if b.strip()]
    if kw.get("bands") is not None:
        kw["bands"] = tuple(kw["bands"])
    try:
        return TrainConfig(**kw)
    except TypeError as exc:
        raise ConfigError(f"bad training options: {exc}") from None


def load_config(path: str | Path, overrides: Mapping | None = None) -> TrainConfig:
    """A YAML config file, with ``overrides`` (e.g. CLI flags that were given) on top."""
    return config_from_mapping({**read_config_file(path), **(overrides or {})})


def read_config_file(path: str | Path) -> dict:
    """The options a YAML config file sets (only those: a resumed run checks each of them)."""
    try:
        values = yaml.safe_load(Path(path).read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"config file {path} must hold a mapping of option: value")
    return values
