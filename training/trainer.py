"""The trainer: Adam or SGD, per-iteration poly LR, early stopping, exact resume, AMP, DDP.

Early stopping watches validation MIoU; checkpoints are written atomically every epoch;
autocast (bf16 on CPU, bf16/fp16 AMP on CUDA) and channels_last as ``--precision`` and
``--channels-last`` say, ``auto`` measured on the run's own training step
(:mod:`engine.autotune`) and recorded in the checkpoint, the history and the model file;
DDP under ``torchrun``.

``Trainer`` is independent of the patch format: it takes any model, loss and datasets whose
items are ``{"image": (C, H, W), "label": (H*s, W*s)}`` (``s`` = the model's output scale), so
the super-resolution model trains with its own dataset and loss through the same loop. A loss
that needs more of the batch than the label (the reconstruction term of ``SRSegLoss`` needs
the fine image) declares ``wants_batch = True`` and is called ``loss(output, batch)``.
Without a validation split (``val_set=None``) the trainer runs a fixed budget
(``epochs`` or ``max_iterations``) with no early stopping and keeps the last weights, which
is what the fixed-budget model comparison (``experiments.srcompare``) needs. An
``epoch_end(model, epoch)`` callback runs after every training epoch, before validation and
the checkpoint (filter pruning zeroes filters there, ``training.pruning``). With ``cfg.ema``
the moving average of the weights is validated, kept and saved (:mod:`training.averaging`).
``train(cfg)`` wires it to a patch dataset: bands from the manifest, normalisation from the
training split, the paper's model and loss.

A loss that becomes NaN or infinite, or grows :data:`DIVERGENCE_FACTOR` times its first value
while staying finite, stops the run at once (:class:`TrainingDivergedError`): nothing of that
epoch is saved, so ``checkpoint.pt`` and ``model.pt`` stay the last good ones.
Every epoch logs one line (loss, validation metrics, time), also without progress bars. The
identical command resumes a run; other options against its folder are refused
(:mod:`training.run_folder`).

Exact resume: the checkpoint holds model, optimizer, schedule, AMP scaler, early-stopping
state, history and every RNG (python, numpy, torch, the loader's generator); data order and
augmentations are functions of (seed, epoch, index). A run stopped after any epoch and
resumed ends with weights bit-identical to an uninterrupted run (CPU, same seed).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import default_collate

from core.commands import DETAIL
from core.errors import ConfigError, ModelError, TrainingDivergedError
from core.progress import progress_bar
from core.storage import atomic_write
from engine import autotune
from engine.distributed import (
    DistInfo,
    init_distributed,
    resolve_device,
    unused_parameters,
)
from engine.execution import calling_thread_only
from engine.outputs import main_output
from engine.seeding import rng_state, seed_everything, set_rng_state
from training.averaging import weight_average
from training.band_ranges import band_ranges
from training.calibration import describe
from training.config import TrainConfig, apply_recipe, recipe_values
from training.data import PatchDataset, choose_data_path, make_loader
from training.encoder_run import MODULE as ENCODER_MODULE
from training.encoder_run import NAME as ENCODER_MODEL
from training.encoder_run import encoder_config, encoder_kwargs, encoder_model
from training.fit_calibration import calibrate_model_file, scenes_of
from training.history import epoch_line, first_run_estimate, json_row
from training.losses import build_loss
from training.metrics import ConfusionMatrix
from training.modelfile import CHECKPOINT_FORMAT, ModelMeta, atomic_torch_save, save_model_file
from training.models import create_model
from training.optim import PolyLR, make_optimizer
from training.run_folder import config_differences, write_resolved_config
from training.run_inputs import (
    augmentation_record,
    check_context,
    check_crop,
    check_labels,
    dataset_record,
    model_kwargs_for_norm,
    model_kwargs_for_product,
    model_kwargs_for_scale,
    norm_for,
    patch_splits,
    sampling_weights,
)
from training.sampling import KeyedSampler

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
BEST_MODEL = "model.pt"
HISTORY = "metrics.jsonl"
CURVES = "learning_curves.png"
CKPT_FORMAT = CHECKPOINT_FORMAT  # owned by training.modelfile, which recognises it
DIVERGENCE_FACTOR = 1e3
ESTIMATE_AFTER = 3
"""Batches after the first that a run's time estimate is measured on (logged once, early)."""
"""A finite loss this many times the run's first batch loss (taken as at least 1) means the
weights ran away without becoming NaN (a learning rate far too high): the run stops as for NaN.
Segmentation losses start near ln(classes) and fall; none of the recipes' losses grows 1000x in
a healthy run."""
#: Seconds between two drawings of the learning curves within a run (and always at its end).
PLOT_EVERY_S = 60.0


@dataclass(frozen=True)
class TrainResult:
    out_dir: Path
    model_path: Path
    checkpoint_path: Path
    history_path: Path
    curves_path: Path
    best_epoch: int
    best_miou: float
    epochs_run: int
    finished: bool


class Trainer:
    """Train ``model`` on ``train_set``, select on ``val_set`` MIoU, write the run folder.

    Args:
        cfg: the run configuration (optimisation, precision, out_dir, resume...).
        model: any ``nn.Module`` returning logits or a dict with ``"out"``.
        loss_fn: ``loss(output, label) -> scalar``, or ``loss(output, batch)`` (the whole
            batch dict on the device) when it has ``wants_batch = True``.
        train_set / val_set: datasets of ``{"image", "label"}`` dicts; keys may be ints or
            ``(epoch, index)`` tuples (``PatchDataset`` uses the epoch for augmentation).
            ``val_set=None``: no validation, no early stopping; the model file holds the
            weights after the last epoch.
        meta: the model file's description (metrics are filled in at each best epoch).
        info / device: distributed context and device (resolved from ``cfg`` when omitted).
        epoch_end: called as ``epoch_end(model, epoch)`` after each training epoch, before
            validation, saving and the checkpoint (so what it changes is what is kept).
    """

    def __init__(self, cfg: TrainConfig, model: nn.Module, loss_fn: nn.Module, train_set,
                 val_set, meta: ModelMeta, info: DistInfo | None = None,
                 device: torch.device | None = None,
                 epoch_end: Callable[[nn.Module, int], None] | None = None) -> None:
        cfg = apply_recipe(cfg)  # options left unset come from the model's recipe
        self.cfg = cfg
        self.recipe = recipe_values(cfg)  # those of them the loop reads, never None
        self.info = info or DistInfo()
        self.device = device or resolve_device(cfg.device, self.info)
        self.meta = meta
        self.out = Path(cfg.out_dir)
        self.class_names = list(meta.class_names)
        self.num_classes = meta.num_classes
        self.loss_fn = loss_fn.to(self.device)
        self.wants_batch = bool(getattr(loss_fn, "wants_batch", False))
        per_rank = max(self.recipe.batch_size // self.info.world_size, 1)
        # collated once: the runtime choice and DDP's unused-parameter check share it
        first = functools.cache(lambda: self._first_batch(train_set, per_rank))
        #: the weights: saved, restored, handed to ``epoch_end``; its optimizer is built
        #: before ``auto`` measures (its one-time set-up is the run's, not the measuring's)
        self.model: nn.Module = model.to(self.device)
        self.optimizer = make_optimizer(cfg, self.model.parameters())
        #: how the steps run (precision, layout, threads): explicit, measured or resumed;
        #: measuring takes at most its share of the run's samples (a short run, none)
        self.runtime = self._choose_runtime(self.model, first,
                                            job_samples(cfg, self.recipe.epochs, per_rank,
                                                        len(train_set)))
        self.amp_dtype = self.runtime.setting.autocast_dtype
        self.memory_format = self.runtime.setting.memory_format
        net = autotune.apply(self.runtime, self.model, self.device)  # same parameters
        assert isinstance(net, nn.Module), "training compiles with torch.compile, a module"
        #: the moving average of the weights (``cfg.ema``), validated and saved in their place
        self.average = weight_average(cfg.ema or 0.0, self.model, epoch_end is not None)
        pin = self.device.type == "cuda"
        self.train_loader = make_loader(train_set, per_rank, True, cfg.seed, cfg.num_workers,
                                        self.info.rank, self.info.world_size, pin,
                                        weights=sampling_weights(cfg, train_set,
                                                                 self.num_classes))
        self.val_loader = None if val_set is None else make_loader(
            val_set, per_rank, False, cfg.seed, cfg.num_workers, self.info.rank,
            self.info.world_size, pin)
        self.iters_per_epoch = len(self.train_loader)
        if cfg.max_batches:
            self.iters_per_epoch = min(self.iters_per_epoch, cfg.max_batches)
        # An iteration budget overrides epochs: whole epochs, the last one cut short, and
        # the poly schedule decays to zero exactly at the budget.
        self.max_iterations = cfg.max_iterations or self.recipe.epochs * self.iters_per_epoch
        self.epochs = math.ceil(self.max_iterations / max(self.iters_per_epoch, 1))
        self.epoch_end = epoch_end
        self.schedule = PolyLR(self.max_iterations, self.recipe.poly_power)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self.schedule)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.net: nn.Module = net
        if self.info.world_size > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = nn.parallel.DistributedDataParallel(
                net, device_ids=ids,
                find_unused_parameters=self._has_unused_parameters(first))
        self.start_epoch = 0
        self.best_miou = -1.0
        self.best_epoch = -1
        self.bad_epochs = 0
        self.history: list[dict] = []
        self.finished = False
        self._estimated = False  # the first-run time estimate is logged once a process
        #: the run's first training batch loss, the reference of the divergence bound
        self.loss_reference: float | None = None
        self._plotted = time.monotonic()  # when the learning curves were last drawn

    # -------------------------------------------------------------- runtime
    def _choose_runtime(self, model: nn.Module, first: Callable[[], dict[str, torch.Tensor]],
                        samples: int) -> autotune.Choice:
        """How the training steps run.

        Explicit settings as given; ``auto`` from the checkpoint of a resumed run (so it
        continues exactly as it began), else measured by rank 0 on a real batch (items
        ``0..batch-1`` of the training set, the first epoch's augmentation) and shared.
        """
        cfg = self.cfg
        explicit = autotune.explicit(cfg.precision, cfg.channels_last, self.device, "training")
        if explicit is not None:
            return explicit
        ck_path = self.out / CHECKPOINT
        if cfg.resume and ck_path.exists():
            with contextlib.suppress(Exception):  # unreadable: load_checkpoint says why
                ck = torch.load(ck_path, map_location="cpu", weights_only=True, mmap=True)
                if isinstance(ck, dict) and isinstance(ck.get("runtime"), dict):
                    return replace(autotune.Choice.from_dict(ck["runtime"]),
                                   source="checkpoint")
        shared: list = [None]
        if self.info.main:
            batch = first()
            step = autotune.TrainStep(
                loss=self._batch_loss,
                optimizer=lambda params: make_optimizer(cfg, params),
                targets={k: v for k, v in batch.items() if k != "image"})
            shared[0] = autotune.choose(
                model, batch["image"], self.device, mode="training", step=step,
                precision=cfg.precision, channels_last=cfg.channels_last,
                cache=None if cfg.autotune_cache else False, samples=samples).to_dict()
        if self.info.world_size > 1:
            dist.broadcast_object_list(shared, src=0)
        return autotune.Choice.from_dict(shared[0])

    def _first_batch(self, train_set, per_rank: int) -> dict[str, torch.Tensor]:
        """Items ``0..batch-1`` (first epoch's augmentation) on the device, for set-up probes."""
        items = [train_set[i] for i in range(min(per_rank, len(train_set)))]
        return {k: v.to(self.device) for k, v in default_collate(items).items()
                if torch.is_tensor(v)}

    def _batch_loss(self, out, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self._loss(out, batch, batch["image"], batch["label"])

    def _has_unused_parameters(self, first: Callable[[], dict[str, torch.Tensor]]) -> bool:
        """Whether DDP must look for parameters a step leaves unused.

        Rank 0 checks one step on a copy of the model and tells the others: every rank must
        wrap the model alike.
        """
        shared: list = [None]
        if self.info.main:
            unused = unused_parameters(self.model, first(), self._batch_loss)
            if unused:
                log.info("%d parameters get no gradient (%s%s): DDP looks for them every step",
                         len(unused), ", ".join(unused[:3]), ", ..." if len(unused) > 3 else "")
            shared[0] = bool(unused)
        dist.broadcast_object_list(shared, src=0)
        return bool(shared[0])

    # -------------------------------------------------------------- state
    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def state_dict(self) -> dict:
        return {"format": CKPT_FORMAT, "epoch": self.start_epoch, "config": self.cfg.to_dict(),
                "iters_per_epoch": self.iters_per_epoch,
                "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
                "best_miou": self.best_miou, "best_epoch": self.best_epoch,
                "bad_epochs": self.bad_epochs, "finished": self.finished,
                "history": self.history, "meta": self.meta.to_dict(),
                "runtime": self.runtime.to_dict(), "loss_reference": self.loss_reference,
                "rng": rng_state(self.train_loader.generator),
                **({} if self.average is None else {"average": self.average.state_dict()})}

    def load_checkpoint(self, path: Path, same_config: bool = False) -> None:
        """Continue from a checkpoint; ``same_config`` refuses one made with other options."""
        try:
            ck = torch.load(path, map_location=self.device, weights_only=True)
        except Exception as exc:
            raise ModelError(f"checkpoint {path} is unreadable ({exc}); start a new run in "
                             "another --out folder") from None
        if not isinstance(ck, dict) or ck.get("format") != CKPT_FORMAT:
            raise ModelError(f"{path} is not an isamap training checkpoint")
        differ = config_differences(ck.get("config") or {}, self.cfg) if same_config else []
        if differ:
            raise ConfigError(
                f"{self.out} already holds a run made with other options ({'; '.join(differ)});"
                " run its own command again to resume it, pass --resume to continue it with "
                "its options, or choose another --out folder")
        if ck["iters_per_epoch"] != self.iters_per_epoch:
            raise ConfigError(f"the checkpoint ran {ck['iters_per_epoch']} iterations per epoch, "
                              f"this configuration gives {self.iters_per_epoch}; resume with the "
                              "same data, batch size and world size")
        self.model.load_state_dict(ck["model"])
        self.optimizer.load_state_dict(ck["optimizer"])
        self.scheduler.load_state_dict(ck["scheduler"])
        self.scaler.load_state_dict(ck["scaler"])
        self.start_epoch = int(ck["epoch"])
        self.best_miou, self.best_epoch = float(ck["best_miou"]), int(ck["best_epoch"])
        self.bad_epochs, self.finished = int(ck["bad_epochs"]), bool(ck["finished"])
        self.history = list(ck["history"])
        reference = ck.get("loss_reference")
        self.loss_reference = float(reference) if reference is not None else (
            float(self.history[0]["train_loss"]) if self.history else None)
        set_rng_state(ck["rng"], self.train_loader.generator)
        if self.average is not None:
            self.average.load_state_dict(ck.get("average"), str(path))

    # -------------------------------------------------------------- loop
    def _batch(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        x = batch["image"].to(self.device, non_blocking=True)
        x = x.contiguous(memory_format=self.memory_format)
        return x, batch["label"].to(self.device, non_blocking=True)

    def _loss(self, out, batch: Mapping[str, Any], x: torch.Tensor,
              y: torch.Tensor) -> torch.Tensor:
        """``loss(out, y)``, or ``loss(out, batch)`` with every tensor on the device."""
        if not self.wants_batch:
            return self.loss_fn(out, y)
        full = {k: v.to(self.device, non_blocking=True) if torch.is_tensor(v) else v
                for k, v in batch.items()}
        return self.loss_fn(out, {**full, "image": x, "label": y})

    def train_epoch(self, epoch: int) -> dict:
        self.net.train()
        sampler = self.train_loader.sampler
        assert isinstance(sampler, KeyedSampler), "make_loader's sampler keys the epochs"
        sampler.set_epoch(epoch)
        cm = ConfusionMatrix(self.num_classes)
        total, seen = 0.0, 0
        iters = min(self.iters_per_epoch, self.max_iterations - epoch * self.iters_per_epoch)
        # the rate is the mean since the epoch began (an average, not tqdm's moving one, which
        # a single slow batch on a busy machine turns into minutes per batch)
        bar = progress_bar(self.train_loader, total=iters, leave=False, unit="batch",
                           smoothing=0, desc=f"epoch {epoch + 1}/{self.epochs}",
                           disable=not (self.cfg.progress and self.info.main))
        t0 = time.perf_counter()
        first_s = 0.0
        for i, batch in enumerate(bar):
            if i >= iters:
                break
            if i == 1:
                first_s = time.perf_counter() - t0
            elif i == ESTIMATE_AFTER + 1 and not self._estimated and self.info.main:
                self._estimated = True
                per_batch = (time.perf_counter() - t0 - first_s) / ESTIMATE_AFTER
                log.info("%s", first_run_estimate(first_s, per_batch, iters,
                                                  self.epochs - epoch))
            x, y = self._batch(batch)
            with self._autocast():
                out = self.net(x)
                loss = self._loss(out, batch, x, y)
            value = float(loss.detach())
            if self.loss_reference is None and math.isfinite(value):
                self.loss_reference = value
            if self._runaway(value):  # before the step: the weights stay the last good
                bar.close()
                raise self._diverged(value, epoch, f"training batch {i + 1}")
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            if self.average is not None:
                self.average.update(self.model)
            with calling_thread_only():  # bookkeeping between steps (training.data.collate)
                cm.update(main_output(out).detach(), y)
            total += value * x.shape[0]
            seen += x.shape[0]
            bar.set_postfix(loss=f"{total / max(seen, 1):.4f}")
        bar.close()
        seconds = time.perf_counter() - t0
        total, seen = self._sum_over_ranks(total, seen)
        cm.all_reduce()
        m = cm.compute(self.class_names)
        return {"train_loss": total / max(seen, 1), "train_miou": m.miou, "train_oa": m.oa,
                "train_patches_per_s": seen / max(seconds, 1e-9)}

    def _sum_over_ranks(self, total: float, seen: int) -> tuple[float, int]:
        if self.info.world_size == 1:
            return total, seen
        t = torch.tensor([total, float(seen)], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return float(t[0]), int(t[1])

    @torch.no_grad()
    def validate(self) -> tuple[dict, dict]:
        assert self.val_loader is not None, "a run without a validation split validates nothing"
        net = self.net if self.average is None else self.average.module
        net.eval()
        cm = ConfusionMatrix(self.num_classes)
        total, seen = 0.0, 0
        for batch in self.val_loader:
            x, y = self._batch(batch)
            with self._autocast():
                out = net(x)
                loss = self._loss(out, batch, x, y)
            cm.update(main_output(out).float(), y)
            total += float(loss) * x.shape[0]
            seen += x.shape[0]
        total, seen = self._sum_over_ranks(total, seen)
        cm.all_reduce()
        m = cm.compute(self.class_names)
        pos = min(1, self.num_classes - 1)
        row = {"val_loss": total / max(seen, 1), "val_miou": m.miou, "val_oa": m.oa,
               "val_kappa": m.kappa, "val_f1": m.f1[pos], "val_iou": m.iou[pos]}
        return row, m.to_dict()

    def fit(self) -> TrainResult:
        ck_path = self.out / CHECKPOINT
        if ck_path.exists():  # the identical command resumes; other options are refused
            self.load_checkpoint(ck_path, same_config=not self.cfg.resume)
            if not self.finished and self.info.main:
                log.info("resuming the run in %s after epoch %d", self.out, self.start_epoch)
        if self.info.main:
            self.out.mkdir(parents=True, exist_ok=True)
            write_resolved_config(self.cfg)  # readable beside the model; --config reads it
        ran = 0
        while not self.finished and self.start_epoch < self.epochs:
            epoch = self.start_epoch
            t0 = time.perf_counter()
            row = {"epoch": epoch + 1, **self.train_epoch(epoch)}
            if self.epoch_end is not None:
                self.epoch_end(self.model, epoch)
            val_row: dict[str, float] = {}
            val_full: dict[str, Any] = {}
            if self.val_loader is None:
                miou, improved = math.nan, True  # fixed budget: the latest weights are kept
            else:
                val_row, val_full = self.validate()
                if self._runaway(val_row["val_loss"]):
                    raise self._diverged(val_row["val_loss"], epoch, "validation")
                miou = val_row["val_miou"]
                improved = not math.isnan(miou) and miou > self.best_miou
            row.update(val_row)
            row["lr"] = self.optimizer.param_groups[0]["lr"]
            row["seconds"] = time.perf_counter() - t0
            row["runtime"] = self.runtime.label
            if improved:
                self.best_miou, self.best_epoch, self.bad_epochs = miou, epoch + 1, 0
                if self.info.main:
                    self._save_best(val_full)
            else:
                self.bad_epochs += 1
            row["best"] = improved
            self.history.append(json_row(row))
            self.start_epoch = epoch + 1
            ran += 1
            if self.info.main:
                spent = [h["seconds"] for h in self.history[-ran:] if h.get("seconds")]
                left = (sum(spent) / len(spent) * (self.epochs - self.start_epoch)
                        if spent else None)
                log.info("%s", epoch_line(row, self.epochs, left))
            if self.bad_epochs >= self.recipe.patience or self.start_epoch >= self.epochs:
                self.finished = True
            stopping = bool(self.cfg.stop_after and ran >= self.cfg.stop_after)
            if self.info.main:
                atomic_torch_save(self.state_dict(), ck_path)
                self._write_history(plot=self.finished or stopping)
            if stopping:
                break
        if self.finished and self.info.main and self.val_loader is not None:
            self._calibrate()
        if self.info.world_size > 1:
            dist.barrier()
        return TrainResult(self.out, self.out / BEST_MODEL, ck_path, self.out / HISTORY,
                           self.out / CURVES, self.best_epoch, self.best_miou,
                           self.start_epoch, self.finished)

    def _loss_bound(self) -> float:
        """The largest loss a healthy run reaches (see :data:`DIVERGENCE_FACTOR`)."""
        return DIVERGENCE_FACTOR * max(self.loss_reference or 0.0, 1.0)

    def _runaway(self, value: float) -> bool:
        """Whether a loss shows divergence: not finite, or beyond :meth:`_loss_bound`."""
        return not math.isfinite(value) or value > self._loss_bound()

    def _diverged(self, value: float, epoch: int, where: str) -> TrainingDivergedError:
        if self.start_epoch:
            kept = (f"nothing of that epoch was saved: {self.out / CHECKPOINT} still holds epoch "
                    f"{self.start_epoch}, the last good one")
            if self.best_epoch > 0:
                kept += f", and {self.out / BEST_MODEL} the best weights (epoch {self.best_epoch})"
        else:
            kept = "nothing was saved (no epoch had finished)"
        fix = f"lower --lr (now {self.cfg.lr:g})"
        if self.cfg.precision != "fp32":
            fix += " or train with --precision fp32"
        became = (f"became {value}" if not math.isfinite(value) else
                  f"grew to {value:.3g}, more than {DIVERGENCE_FACTOR:g} times its first value "
                  f"{self.loss_reference:.3g} (the weights ran away)")
        return TrainingDivergedError(
            f"training diverged: the loss {became} in epoch {epoch + 1} ({where}); {kept}."
            f" To train again, {fix}, into a new --out folder")

    def _save_best(self, val_metrics: dict) -> None:
        base = self.meta.to_dict()
        meta = ModelMeta.from_dict({
            **base, "metrics": {"epoch": self.best_epoch, "val": val_metrics},
            "calibration": {},  # new weights: fitted again when the run ends (_calibrate)
            "extra": {**dict(base.get("extra") or {}), "runtime": self.runtime.to_dict()}})
        kept = self.model if self.average is None else self.average.module
        save_model_file(self.out / BEST_MODEL, kept, meta)

    def _calibrate(self) -> None:
        """Fit the kept model's temperature on the validation split, once per run."""
        loader = self.val_loader
        assert loader is not None, "calibration fits on the validation split"

        def outputs(net: nn.Module):
            for batch in loader:
                x, y = self._batch(batch)
                with self._autocast():
                    yield main_output(net(x)).float(), y, scenes_of(batch)

        if (self.out / BEST_MODEL).exists():
            record = calibrate_model_file(self.out / BEST_MODEL, self.model, outputs)
            if record is not None:
                log.info("calibration: %s", describe(record))

    def _write_history(self, plot: bool) -> None:
        """Write the history file, and draw the learning curves.

        They are drawn when ``plot`` (the run's last epoch here) or when :data:`PLOT_EVERY_S`
        seconds have passed since the last drawing: a short run draws them once, at its end.
        """
        text = "".join(json.dumps(r) + "\n" for r in self.history)
        atomic_write(self.out / HISTORY, lambda fh: fh.write(text.encode()))
        now = time.monotonic()
        if not plot and now - self._plotted < PLOT_EVERY_S:
            return
        self._plotted = now
        # matplotlib (heavy) is imported by the first plot only
        from training.plots import dataset_label, plot_learning_curves

        plot_learning_curves(self.history, self.out / CURVES,
                             f"Learning curves: {self.meta.name} on "
                             f"{dataset_label(self.cfg.data)}",
                             schedule=self.schedule.describe())


def job_samples(cfg: TrainConfig, epochs: int, per_rank: int, train_size: int) -> int:
    """The samples one rank's steps take over the run: what bounds ``auto``'s measuring."""
    per_epoch = min(train_size, cfg.max_batches * per_rank) if cfg.max_batches else train_size
    if cfg.max_iterations:
        return cfg.max_iterations * per_rank
    return max(epochs, 1) * max(per_epoch, 1)


# ------------------------------------------------------------------ patch-dataset wiring
def train(cfg: TrainConfig, exclude: Collection[str] | None = None,
          epoch_end: Callable[[nn.Module, int], None] | None = None) -> TrainResult:
    """Train ``cfg.model`` on the patch dataset ``cfg.data`` (see ``Trainer``).

    Options left unset come from the model's recipe (``apply_recipe``): its loss, its label
    (``label_fine`` for super-resolution models), its optimisation and its training crops; a
    fine image is loaded when the recipe's targets ask for it and the dataset has one.

    Args:
        cfg: the run configuration; with ``filter_noisy`` set, run it through the two-stage
            :func:`training.noisy.train_filtered`, which calls this with ``exclude``.
        exclude: training patch ids (``"<month>/<id>"``) left out of the training split
            (given, even empty, it also means the filtering has been done).
        epoch_end: ``Trainer``'s, called after each training epoch.
    """
    if cfg.filter_noisy is not None and exclude is None:
        raise ConfigError("filter_noisy is a two-stage run: call training.noisy.train_filtered "
                          "(isamap-train --filter-noisy does)")
    cfg = apply_recipe(encoder_config(cfg))  # an encoder's file is checked before any pixel
    recipe = recipe_values(cfg)
    if not cfg.data:
        raise ConfigError("no dataset given: set data (a patch dataset root) in the config "
                          "or pass --data")
    dev_kind = "cuda" if cfg.device.startswith("cuda") or (
        cfg.device == "auto" and torch.cuda.is_available()) else "cpu"
    info = init_distributed(dev_kind)
    device = resolve_device(cfg.device, info)
    exclude = tuple(exclude or ())
    raw = PatchDataset(cfg.data, "train", bands=cfg.bands, label=recipe.label, exclude=exclude)
    product = model_kwargs_for_product(cfg.model, raw.bands, raw.manifest)  # before any pixel
    path = choose_data_path(raw.decoded_bytes(), device.type, cfg.cache, cfg.num_workers)
    log.log(DETAIL, "data: %s", path.reason)  # how, not what: -v
    cfg = replace(cfg, cache=path.cache, num_workers=path.workers)
    norm = norm_for(cfg, raw, Path(cfg.out_dir) / CHECKPOINT)
    train_set, val_set = patch_splits(cfg, raw.bands, norm, exclude)
    learnt = check_labels(train_set, val_set)
    check_crop(cfg, raw.patch_size)
    names = raw.class_names
    seed_everything(cfg.seed)
    scale = int((raw.manifest.get("label") or {}).get("fine_scale") or 1) \
        if recipe.label == "label_fine" else 1
    kwargs = model_kwargs_for_scale(cfg.model, recipe.label, scale, {
        "bands": list(raw.bands), **product, **dict(cfg.model_kwargs)})
    kwargs = model_kwargs_for_norm(kwargs, norm, cfg.norm or "training")
    if cfg.encoder:
        kwargs = encoder_kwargs(cfg, raw.bands, norm.mean, norm.std, raw.manifest)
        model = encoder_model(cfg, kwargs, len(names))
    else:
        model = create_model(cfg.model, len(raw.bands), len(names), **kwargs)
    if int(getattr(model, "output_scale", 1)) != scale:
        raise ModelError(f"model {cfg.model!r} predicts at {getattr(model, 'output_scale', 1)}x "
                         f"its input but the {recipe.label!r} labels are at {scale}x")
    check_context(cfg, raw.patch_size, model)
    problem = train_set.target_warning(cfg.model)
    if problem:
        log.warning(problem)
    loss = build_loss(recipe.loss, class_names=names, **dict(cfg.loss_kwargs))
    resolution = (raw.manifest.get("grid") or {}).get("resolution")
    meta = ModelMeta(name=ENCODER_MODEL if cfg.encoder else cfg.model,
                     module=ENCODER_MODULE if cfg.encoder else "",
                     in_channels=len(raw.bands), num_classes=len(names),
                     bands=raw.bands, norm_mean=norm.mean, norm_std=norm.std,
                     class_scheme=str((raw.manifest.get("label") or {}).get("scheme", "isa")),
                     class_names=names, output_scale=scale, model_kwargs=kwargs,
                     pixel_size=float(resolution) if resolution else None,
                     window=getattr(model, "prediction_window", None),
                     norm=cfg.norm or "training", learnt_classes=learnt,
                     band_ranges=band_ranges(lambda i: raw.read_raw(i)[0], len(raw), raw.bands),
                     extra={"config": cfg.to_dict(), "augmentation": augmentation_record(cfg),
                            "dataset": {
                         **dataset_record(cfg.data, raw.manifest),
                         "excluded_patches": sorted(exclude)}})
    trainer = Trainer(cfg, model, loss, train_set, val_set, meta, info, device, epoch_end)
    return trainer.fit()
