"""The trainer: Adam or SGD, per-iteration poly LR, early stopping, exact resume, AMP, DDP.

Early stopping watches validation MIoU; checkpoints are written atomically every epoch;
autocast (bf16 on CPU, bf16/fp16 AMP on CUDA) and channels_last as ``--precision`` and
``--channels-last`` say, ``auto`` measured on the run's own training step
(:mod:`training.run.step_runtime`) and recorded in the checkpoint, the history and the model file;
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
the checkpoint (filter pruning zeroes filters there, ``training.pruning``). With ``cfg.loop.ema``
the moving average of the weights is validated, kept and saved (:mod:`training.run.averaging`).
:func:`training.run.patch_training.train` wires it to a patch dataset.

A loss that becomes NaN or infinite, or grows :data:`DIVERGENCE_FACTOR` times the run's first
batch loss while staying finite, stops the run at once (:class:`LossGuard`,
:class:`core.errors.TrainingDivergedError`): nothing of that epoch is saved, so
``checkpoint.pt`` and ``model.pt`` stay the last good ones. Every epoch logs one line (loss,
validation metrics, time), also without progress bars. The identical command resumes a run;
other options against its folder are refused (:mod:`training.run.folder`); a stopped run
resumes exactly (:mod:`training.run.checkpoint`).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from core.errors import TrainingDivergedError
from core.jsonsafe import json_safe
from core.progress import progress_bar
from engine import autotune
from engine.distributed import DistInfo, resolve_device, sum_over_ranks
from engine.execution import calling_thread_only
from engine.outputs import main_output
from engine.seeding import rng_state, set_rng_state
from training.calibration.pixels import ScenePixels, gather, scenes_of
from training.calibration.record import calibrate_model_file, fitted_record
from training.calibration.temperature import describe
from training.config import TrainConfig, apply_recipe, recipe_values
from training.loader import make_loader
from training.metrics import ConfusionMatrix
from training.model_meta import ModelMeta
from training.modelfile import CHECKPOINT_FORMAT, atomic_torch_save, save_model_file
from training.run.averaging import weight_average
from training.run.checkpoint import check_resumable, loss_reference, read_checkpoint, run_records
from training.run.folder import (
    BEST_MODEL,
    CHECKPOINT,
    CURVES,
    HISTORY,
    TrainResult,
    write_resolved_config,
)
from training.run.history import FirstEstimate, HistoryFile, epoch_line, resume_line
from training.run.inputs import sampling_weights
from training.run.optim import PolyLR, make_optimizer
from training.run.step_runtime import (
    choose_runtime,
    first_batch,
    has_unused_parameters,
    job_samples,
)
from training.sampling import KeyedSampler

log = logging.getLogger(__name__)

DIVERGENCE_FACTOR = 1e3
"""A finite loss this many times the run's first batch loss (taken as at least 1) means the
weights ran away without becoming NaN (a learning rate far too high): the run stops as for NaN.
Segmentation losses start near ln(classes) and fall; none of the recipes' losses grows 1000x in
a healthy run."""


@dataclass
class LossGuard:
    """The divergence bound of one run: its first finite batch loss is the reference.

    Attributes:
        reference: the run's first finite training batch loss (None: no batch yet); a
            checkpoint carries it, so a resumed run keeps the bound it began with.
    """

    reference: float | None = None

    def note(self, value: float) -> None:
        """Take ``value`` as the reference when it is the run's first finite loss."""
        if self.reference is None and math.isfinite(value):
            self.reference = value

    def bound(self) -> float:
        """The largest loss a healthy run reaches (see :data:`DIVERGENCE_FACTOR`)."""
        return DIVERGENCE_FACTOR * max(self.reference or 0.0, 1.0)

    def runaway(self, value: float) -> bool:
        """Whether a loss shows divergence: not finite, or beyond :meth:`bound`."""
        return not math.isfinite(value) or value > self.bound()

    def error(self, value: float, epoch: int, where: str, out: Path, saved_epoch: int,
              best_epoch: int, lr: float | None, precision: str) -> TrainingDivergedError:
        """The one-line error of a run that diverged in ``epoch`` (0-based), ``where`` in it.

        Args:
            value: the loss that showed it.
            epoch: the epoch it happened in, 0-based.
            where: where in the epoch (``training batch 3``, ``validation``).
            out: the run folder.
            saved_epoch: the epoch its checkpoint holds (0: none saved).
            best_epoch: the epoch of the model file's weights (<= 0: none saved).
            lr: the run's learning rate, named in the advice.
            precision: the run's precision, named in the advice.
        """
        checkpoint, best_model = out / CHECKPOINT, out / BEST_MODEL
        if saved_epoch:
            kept = (f"nothing of that epoch was saved: {checkpoint} still holds epoch "
                    f"{saved_epoch}, the last good one")
            if best_epoch > 0:
                kept += f", and {best_model} the best weights (epoch {best_epoch})"
        else:
            kept = "nothing was saved (no epoch had finished)"
        fix = "lower --lr" + (f" (now {lr:g})" if lr is not None else "")
        if precision != "fp32":
            fix += " or train with --precision fp32"
        became = (f"became {value}" if not math.isfinite(value) else
                  f"grew to {value:.3g}, more than {DIVERGENCE_FACTOR:g} times its first value "
                  f"{self.reference:.3g} (the weights ran away)")
        return TrainingDivergedError(
            f"training diverged: the loss {became} in epoch {epoch + 1} ({where}); {kept}."
            f" To train again, {fix}, into a new --out folder")


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
        curves: draw the learning curves (PNG); False for a run whose folder nobody looks
            at (an experiment's trainings in a temporary folder): its rows are written alike.
    """

    def __init__(self, cfg: TrainConfig, model: nn.Module, loss_fn: nn.Module, train_set,
                 val_set, meta: ModelMeta, info: DistInfo | None = None,
                 device: torch.device | None = None,
                 epoch_end: Callable[[nn.Module, int], None] | None = None,
                 curves: bool = True) -> None:
        cfg = apply_recipe(cfg)  # options left unset come from the model's recipe
        self.cfg = cfg
        self.recipe = recipe_values(cfg)  # those of them the loop reads, never None
        self.info = info or DistInfo()
        self.device = device or resolve_device(cfg.runtime.device, self.info)
        self.meta = meta
        self.out = Path(cfg.run.out_dir)
        self.class_names = list(meta.class_names)
        self.num_classes = meta.num_classes
        self.loss_fn = loss_fn.to(self.device)
        self.wants_batch = bool(getattr(loss_fn, "wants_batch", False))
        per_rank = max(self.recipe.batch_size // self.info.world_size, 1)
        # collated once: the runtime choice and DDP's unused-parameter check share it
        first = functools.cache(lambda: first_batch(train_set, per_rank, self.device))
        #: the weights: saved, restored, handed to ``epoch_end``; its optimizer is built
        #: before ``auto`` measures (its one-time set-up is the run's, not the measuring's)
        self.model: nn.Module = model.to(self.device)
        self.optimizer = make_optimizer(cfg.optim, self.model.parameters())
        #: how the steps run (precision, layout, threads): explicit, measured or resumed;
        #: measuring takes at most its share of the run's samples (a short run, none)
        self.runtime = choose_runtime(cfg, self.model, self.device, self.info, first,
                                      self._batch_loss, job_samples(
                                          cfg.loop, self.recipe.epochs, per_rank, len(train_set)))
        self.amp_dtype = self.runtime.setting.autocast_dtype
        self.memory_format = self.runtime.setting.memory_format
        net = autotune.apply(self.runtime, self.model, self.device)  # same parameters
        assert isinstance(net, nn.Module), "training compiles with torch.compile, a module"
        #: the moving average of the weights (``cfg.loop.ema``), validated and saved in their place
        self.average = weight_average(cfg.loop.ema or 0.0, self.model, epoch_end is not None)
        pin = self.device.type == "cuda"
        self.train_loader = make_loader(
            train_set, per_rank, True, cfg.loop.seed, cfg.data.num_workers, self.info.rank,
            self.info.world_size, pin, weights=sampling_weights(cfg.data, train_set,
                                                                self.num_classes))
        self.val_loader = None if val_set is None else make_loader(
            val_set, per_rank, False, cfg.loop.seed, cfg.data.num_workers, self.info.rank,
            self.info.world_size, pin)
        self.iters_per_epoch = len(self.train_loader)
        if cfg.loop.max_batches:
            self.iters_per_epoch = min(self.iters_per_epoch, cfg.loop.max_batches)
        # An iteration budget overrides epochs: whole epochs, the last one cut short, and
        # the poly schedule decays to zero exactly at the budget.
        self.max_iterations = cfg.loop.max_iterations or self.recipe.epochs * self.iters_per_epoch
        self.epochs = math.ceil(self.max_iterations / max(self.iters_per_epoch, 1))
        self.epoch_end = epoch_end
        self.schedule = PolyLR(self.max_iterations, self.recipe.poly_power)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self.schedule)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.net: nn.Module = net
        if self.info.world_size > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            unused = has_unused_parameters(self.model, self.info, first, self._batch_loss)
            self.net = nn.parallel.DistributedDataParallel(net, device_ids=ids,
                                                           find_unused_parameters=unused)
        self.start_epoch, self.best_miou, self.best_epoch, self.bad_epochs = 0, -1.0, -1, 0
        self.history: list[dict] = []
        self.finished = self.calibrated = False  # calibrated: the temperature is recorded
        self.estimate = FirstEstimate()  # logged once a process, early
        self.kept_pixels: ScenePixels | None = None  # the last validation's pixels, if kept
        #: the divergence bound, from the run's first training batch loss
        self.guard = LossGuard()
        #: metrics.jsonl and the learning curves, written after every epoch
        self.records = HistoryFile(self.out / HISTORY, self.out / CURVES if curves else None,
                                   meta.name, str(cfg.data.root), self.schedule.describe())

    def _batch_loss(self, out, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self._loss(out, batch, batch["image"], batch["label"])

    # -------------------------------------------------------------- state
    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def state_dict(self) -> dict:
        return {"format": CHECKPOINT_FORMAT, "epoch": self.start_epoch,
                "iters_per_epoch": self.iters_per_epoch,
                "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
                "best_miou": self.best_miou, "best_epoch": self.best_epoch,
                "bad_epochs": self.bad_epochs, "finished": self.finished,
                "history": self.history, **run_records(self.cfg, self.meta),
                "runtime": self.runtime.to_dict(), "loss_reference": self.guard.reference,
                "rng": rng_state(self.train_loader.generator), "calibrated": self.calibrated,
                **({} if self.average is None else {"average": self.average.state_dict()})}

    def load_checkpoint(self, path: Path, same_config: bool = False) -> None:
        """Continue from a checkpoint; ``same_config`` refuses one made with other options."""
        ck = read_checkpoint(path, self.device)
        check_resumable(ck, self.cfg, self.iters_per_epoch, same_config)
        self.model.load_state_dict(ck["model"])
        self.optimizer.load_state_dict(ck["optimizer"])
        self.scheduler.load_state_dict(ck["scheduler"])
        self.scaler.load_state_dict(ck["scaler"])
        self.start_epoch = int(ck["epoch"])
        self.best_miou, self.best_epoch = float(ck["best_miou"]), int(ck["best_epoch"])
        self.bad_epochs, self.finished = int(ck["bad_epochs"]), bool(ck["finished"])
        self.history, self.calibrated = list(ck["history"]), bool(ck.get("calibrated"))
        self.guard.reference = loss_reference(ck)
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
                           disable=not (self.cfg.run.progress and self.info.main))
        t0 = time.perf_counter()
        self.estimate.begin()
        for i, batch in enumerate(bar):
            if i >= iters:
                break
            estimate = self.estimate.tick(i, iters, self.epochs - epoch)
            if estimate and self.info.main:
                log.info("%s", estimate)
            x, y = self._batch(batch)
            with self._autocast():
                out = self.net(x)
                loss = self._loss(out, batch, x, y)
            value = float(loss.detach())
            self.guard.note(value)
            if self.guard.runaway(value):  # before the step: the weights stay the last good
                bar.close()
                raise self._diverged(value, epoch, f"training batch {i + 1}")
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            if self.average is not None:
                self.average.update(self.model)
            with calling_thread_only():  # bookkeeping between steps (training.loader.collate)
                cm.update(main_output(out).detach(), y)
            total += value * x.shape[0]
            seen += x.shape[0]
            bar.set_postfix(loss=f"{total / max(seen, 1):.4f}")
        bar.close()
        seconds = time.perf_counter() - t0
        total, seen = sum_over_ranks(total, seen, self.info, self.device)
        cm.all_reduce()
        m = cm.compute(self.class_names)
        return {"train_loss": total / max(seen, 1), "train_miou": m.miou, "train_oa": m.oa,
                "train_patches_per_s": seen / max(seconds, 1e-9)}

    @torch.no_grad()
    def validate(self, keep: bool = False) -> tuple[dict, dict]:
        """The validation row and metrics (``keep``: its labelled pixels in :attr:`kept_pixels`)."""
        assert self.val_loader is not None, "a run without a validation split validates nothing"
        net = self.net if self.average is None else self.average.module
        net.eval()
        cm = ConfusionMatrix(self.num_classes)
        total, seen = 0.0, 0
        self.kept_pixels = ScenePixels() if keep else None
        for batch in self.val_loader:
            x, y = self._batch(batch)
            with self._autocast():
                out = net(x)
                loss = self._loss(out, batch, x, y)
            logits = main_output(out).float()
            cm.update(logits, y)
            if self.kept_pixels is not None:
                self.kept_pixels.add_batch(logits, y, scenes_of(batch))
            total += float(loss) * x.shape[0]
            seen += x.shape[0]
        total, seen = sum_over_ranks(total, seen, self.info, self.device)
        cm.all_reduce()
        m = cm.compute(self.class_names)
        pos = min(1, self.num_classes - 1)
        row = {"val_loss": total / max(seen, 1), "val_miou": m.miou, "val_oa": m.oa,
               "val_kappa": m.kappa, "val_f1": m.f1[pos], "val_iou": m.iou[pos]}
        return row, m.to_dict()

    def fit(self) -> TrainResult:
        ck_path = self.out / CHECKPOINT
        if ck_path.exists():  # the identical command resumes; other options are refused
            self.load_checkpoint(ck_path, same_config=not self.cfg.run.resume)
            if self.info.main:
                log.info("%s", resume_line(self.out, self.start_epoch, self.finished,
                                           self.best_epoch))
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
                val_row, val_full = self.validate(keep=epoch + 1 >= self.epochs and self.info.main)
                if self.guard.runaway(val_row["val_loss"]):
                    raise self._diverged(val_row["val_loss"], epoch, "validation")
                miou = val_row["val_miou"]
                improved = not math.isnan(miou) and miou > self.best_miou
            row.update(val_row)
            row["lr"] = self.optimizer.param_groups[0]["lr"]
            row["seconds"] = time.perf_counter() - t0
            row["runtime"] = self.runtime.label
            if improved:
                self.best_miou, self.best_epoch, self.bad_epochs = miou, epoch + 1, 0
            else:
                self.bad_epochs += 1
            row["best"] = improved
            self.history.append(json_safe(row))  # strict JSON: NaN and inf as null
            self.start_epoch = epoch + 1
            ran += 1
            if self.info.main:
                spent = [h["seconds"] for h in self.history[-ran:] if h.get("seconds")]
                left = (sum(spent) / len(spent) * (self.epochs - self.start_epoch)
                        if spent else None)
                log.info("%s", epoch_line(row, self.epochs, left))
            if self.bad_epochs >= self.recipe.patience or self.start_epoch >= self.epochs:
                self.finished = True
            stopping = bool(self.cfg.run.stop_after and ran >= self.cfg.run.stop_after)
            if self.info.main:  # each file once, as the epoch leaves it (calibrated at the end)
                self._keep(val_full if improved else None)
                atomic_torch_save(self.state_dict(), ck_path)
                self.records.write(self.history, plot=self.finished or stopping)
            if stopping:
                break
        if self.finished and self.info.main and self.val_loader is not None and not self.calibrated:
            self._keep(None)  # a run finished before its checkpoint recorded the calibration
            atomic_torch_save(self.state_dict(), ck_path)
        if self.info.world_size > 1:
            dist.barrier()
        return TrainResult(self.out, self.out / BEST_MODEL, ck_path, self.out / HISTORY,
                           self.out / CURVES, self.best_epoch, self.best_miou,
                           self.start_epoch, self.finished)

    def _diverged(self, value: float, epoch: int, where: str) -> Exception:
        return self.guard.error(value, epoch, where, self.out, self.start_epoch,
                                self.best_epoch, self.cfg.optim.lr, self.cfg.runtime.precision)

    def _keep(self, val_metrics: dict | None) -> None:
        """Write the model file (``val_metrics``: the epoch improved) once, as it stands."""
        # a finished run's temperature is fitted before its file is written, and the checkpoint
        # written next says so: neither is written twice, and a rerun does not fit it again
        calibrate = self.finished and self.val_loader is not None and not self.calibrated
        kept = self.model if self.average is None else self.average.module
        path, record = self.out / BEST_MODEL, None
        if val_metrics is not None:
            base = self.meta.to_dict()
            record = fitted_record(self._pixels(kept), "val") if calibrate else None
            meta = ModelMeta.from_dict({
                **base, "metrics": {"epoch": self.best_epoch, "val": val_metrics},
                "calibration": record or {},  # fitted for these weights, at the end
                "extra": {**dict(base.get("extra") or {}), "runtime": self.runtime.to_dict()}})
            save_model_file(path, kept, meta)
        elif calibrate and path.exists():  # the weights an earlier epoch kept
            self.kept_pixels = None  # of other weights than the file's
            record = calibrate_model_file(path, self.model, self._pixels)
        if record is not None:
            log.info("calibration: %s", describe(record))
        self.calibrated = self.calibrated or calibrate

    @torch.no_grad()
    def _pixels(self, net: nn.Module) -> ScenePixels:
        """``net``'s labelled validation pixels: :attr:`kept_pixels`, else a pass as trained."""
        pixels, self.kept_pixels = self.kept_pixels, None  # held no longer than the fit
        loader = self.val_loader
        assert loader is not None, "calibration fits on the validation split"

        def outputs():
            for batch in loader:
                x, y = self._batch(batch)
                with self._autocast():
                    yield main_output(net(x)).float(), y, scenes_of(batch)

        return pixels if pixels is not None else gather(outputs())
