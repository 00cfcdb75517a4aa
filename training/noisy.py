"""Noisy-sample filtering of imperfect labels (the land-cover paper, section 2.3).

A label product such as a 10 m land-cover map is wrong in places, and some patches are wrong
nearly everywhere (a misregistered tile, a stale year). The paper trains a preliminary model
on everything, predicts every training patch, scores each patch by the **agreement** of the
prediction with its label (pixels classified the same / labelled pixels) and drops the
patches below 20 %: on imperfect labels a patch the model cannot reproduce at all is more
likely a bad label than a hard example. The model is then trained again on what is left.

``train_filtered(cfg)`` runs both stages in one run folder:

- ``<out>/preliminary/``: the preliminary run (same configuration, all training patches);
- ``<out>/noisy_patches.json``: threshold, preliminary model, every training patch's
  agreement, and the dropped patches each with the reason it was dropped;
- ``<out>/``: the final run on the kept patches (its model file lists the excluded ids in
  ``extra.dataset.excluded_patches``).

Only the training split is filtered; validation and test patches are never dropped, so the
scores a filtered and an unfiltered run report are comparable. A patch without any labelled
pixel has no agreement (``None``) and is kept: it adds nothing to the loss either way.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from contract.bands import LABEL_NODATA
from core.errors import InputDataError
from core.progress import progress_bar
from core.storage import atomic_write
from engine import devices
from engine.outputs import main_output
from training.config import TrainConfig, apply_recipe
from training.data import NormStats, PatchDataset, scene_norms_for
from training.loader import make_loader
from training.modelfile import load_model_file
from training.run.folder import BEST_MODEL, TrainResult
from training.run.patch_training import train

log = logging.getLogger(__name__)

SIDECAR = "noisy_patches.json"
PRELIMINARY = "preliminary"
DEFAULT_THRESHOLD = 0.2


@dataclass(frozen=True)
class PatchScore:
    """How well a model reproduces one patch's label.

    Attributes:
        id: ``"<month>/<id>"`` of the patch.
        agreement: share of labelled pixels predicted as labelled; None without any.
        labelled: number of labelled (non-nodata) pixels.
    """

    id: str
    agreement: float | None
    labelled: int


@dataclass(frozen=True)
class FilterResult:
    """Both stages of a filtered run."""

    preliminary: TrainResult
    final: TrainResult
    sidecar: Path
    dropped: tuple[PatchScore, ...]
    kept: tuple[str, ...]


@torch.no_grad()
def score_patches(model: nn.Module, dataset: PatchDataset, device: str | torch.device = "cpu",
                  batch_size: int = 8, progress: bool = False) -> list[PatchScore]:
    """The agreement of ``model``'s prediction with the label of every patch of ``dataset``.

    ``dataset`` must yield whole, normalised, un-augmented patches (its items' labels already
    carry nodata where the image is missing, so those pixels are not counted).
    """
    device = torch.device(device)
    model = model.eval().to(device)
    loader = make_loader(dataset, batch_size, shuffle=False, num_workers=0)
    scores = []
    for batch in progress_bar(loader, desc="scoring patches", unit="batch", disable=not progress):
        pred = main_output(model(batch["image"].to(device))).argmax(dim=1).cpu().numpy()
        for pid, p, label in zip(batch["id"], pred, batch["label"].numpy(), strict=True):
            scores.append(PatchScore(pid, *agreement(p, label)))
    return scores


def agreement(pred: np.ndarray, label: np.ndarray, nodata: int = LABEL_NODATA
              ) -> tuple[float | None, int]:
    """``(share of labelled pixels predicted as labelled, labelled pixels)``; None without any.

    The paper's similarity: "the number of same classified pixels divided by the total number
    of pixels in the image", counted over the pixels that carry a label.
    """
    valid = np.asarray(label) != nodata
    n = int(valid.sum())
    if not n:
        return None, 0
    return float((np.asarray(pred)[valid] == np.asarray(label)[valid]).sum()) / n, n


def select_patches(scores: Sequence[PatchScore], threshold: float = DEFAULT_THRESHOLD
                   ) -> tuple[tuple[str, ...], tuple[PatchScore, ...]]:
    """``(kept ids, dropped scores)``: dropped are exactly the patches with agreement < threshold.

    A patch at the threshold is kept (the paper removes those "below 20 %").
    """
    if not 0.0 < threshold < 1.0:
        raise InputDataError(f"the agreement threshold must be in (0, 1), got {threshold}")
    dropped = tuple(s for s in scores if s.agreement is not None and s.agreement < threshold)
    gone = {s.id for s in dropped}
    return tuple(s.id for s in scores if s.id not in gone), dropped


def _reason(score: PatchScore, threshold: float) -> str:
    share = score.agreement or 0.0  # only scored patches (agreement not None) are dropped
    return (f"the preliminary model agrees with the label on {100 * share:.1f} % of "
            f"its {score.labelled} labelled pixels, below the {100 * threshold:g} % threshold")


def write_sidecar(path: Path, threshold: float, model_path: Path, scores: Sequence[PatchScore],
                  dropped: Sequence[PatchScore]) -> None:
    """Record the filter's decision (atomically) in the run folder."""
    doc = {"threshold": threshold, "preliminary_model": str(model_path),
           "split": "train", "scored": len(scores), "kept": len(scores) - len(dropped),
           "dropped": [{"id": s.id, "agreement": s.agreement, "labelled_pixels": s.labelled,
                        "reason": _reason(s, threshold)} for s in dropped],
           "agreement": {s.id: s.agreement for s in scores}}
    text = json.dumps(doc, indent=1, allow_nan=False)
    atomic_write(path, lambda fh: fh.write(text.encode()))


def train_filtered(cfg: TrainConfig, model_chosen: bool = False) -> FilterResult:
    """Preliminary training, scoring, dropping, retraining (see the module docstring).

    ``model_chosen``: :func:`training.run.patch_training.train`'s, for both trainings.
    """
    cfg = apply_recipe(cfg)  # the preliminary run, scoring and retraining share one recipe
    label, batch_size = cfg.data.label, cfg.loop.batch_size
    if label is None or batch_size is None:
        raise RuntimeError("apply_recipe left the label or the batch size unset")
    threshold = DEFAULT_THRESHOLD if cfg.data.filter_noisy is None else float(cfg.data.filter_noisy)
    out = Path(cfg.run.out_dir)
    sidecar = out / SIDECAR
    prelim_cfg = cfg.with_(out_dir=str(out / PRELIMINARY), filter_noisy=None)
    # said once the preliminary run's checks passed (a refused run prints its refusal alone)
    preliminary = train(prelim_cfg, announce="noisy-sample filtering: preliminary model in "
                        f"{prelim_cfg.run.out_dir}", model_chosen=model_chosen)
    model_path = Path(prelim_cfg.run.out_dir) / BEST_MODEL
    doc = json.loads(sidecar.read_text()) if sidecar.exists() else {}
    if doc.get("threshold") == threshold:  # a resumed run: the decision is already taken
        scores = [PatchScore(k, v, 0) for k, v in doc["agreement"].items()]
        kept, _ = select_patches(scores, threshold)
        dropped = tuple(PatchScore(d["id"], d["agreement"], d["labelled_pixels"])
                        for d in doc["dropped"])
    else:
        model, meta = load_model_file(model_path, flag="model file")
        norm = NormStats(tuple(meta.bands), tuple(meta.norm_mean), tuple(meta.norm_std))
        data = PatchDataset(cfg.data.root, "train", meta.bands, norm, None, label, cfg.loop.seed,
                            scene_norms=scene_norms_for(cfg.data.root, meta.bands, meta.norm))
        device = devices.resolve_device(cfg.runtime.device)
        scores = score_patches(model, data, device, batch_size, cfg.run.progress)
        kept, dropped = select_patches(scores, threshold)
        out.mkdir(parents=True, exist_ok=True)
        write_sidecar(sidecar, threshold, model_path, scores, dropped)
    if not kept:
        raise InputDataError(f"every training patch agrees with its label on fewer than "
                             f"{100 * threshold:g} % of pixels; lower --filter-noisy or check "
                             "the labels")
    mean = [s.agreement for s in dropped if s.agreement is not None and math.isfinite(
        s.agreement)]
    log.info("dropped %d of %d training patches (mean agreement of the dropped %.1f %%); "
             "retraining in %s", len(dropped), len(kept) + len(dropped),
             100 * float(np.mean(mean)) if mean else math.nan, out)
    final = train(cfg, exclude=tuple(s.id for s in dropped), model_chosen=model_chosen)
    return FilterResult(preliminary, final, sidecar, dropped, kept)
