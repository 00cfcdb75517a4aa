"""A trained network fine-tuned on labelled points, and scored on points it never saw.

What ``isamap-fit --from MODEL.pt`` runs between reading the windows around the points
(:mod:`inference.fit.tune`) and saving the model file. Arrays in, arrays out:

* :func:`fine_tune`: the network in eval mode (its batch statistics, dropout and test-time
  flips exactly as every map runs it), its weights moved by Adam for ``steps`` steps of
  ``batch`` windows drawn with the seed; the loss is the cross-entropy at the labelled pixel
  of each window alone (a masked loss), of the logits divided by the model's recorded
  temperature, the probabilities its maps give;
* :func:`prior_shift`: the logit shift per class that gives the fine-tuned network the base
  network's mean class probabilities over the area (:func:`class_shares` of windows spread
  over it), which the model file records beside its temperature
  (:mod:`training.calibration.temperature`). Points drawn half built where a fiftieth is
  teach a prior of one half, and the map over-maps; the shift keeps the base's prior and the
  fine-tune's ranking (Saerens et al. 2002's prior adjustment);
* :func:`point_probabilities`: the map's probabilities at the points;
* :func:`held_out`: the claim a fit can make. The points' spatial blocks
  (:func:`training.points.blocks.block_ids`) are grouped :data:`SPAN` x :data:`SPAN` into
  contiguous areas, dealt whole to folds (:func:`training.points.blocks.block_folds`);
  each fold is scored by the network fine-tuned on the other folds' points less those in
  the blocks around its own (so no point in a block next to a scored one trains), and the
  base network is scored on the same points. Folds of scattered single blocks would lose
  most training points to those neighbours; contiguous areas lose a ring. Too few blocks,
  or a fold whose training points then lack a class, is no claim: the reason, not a number.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from training.calibration.temperature import scaled
from training.metrics import roc_auc
from training.points.blocks import block_folds, block_ids
from training.points.crossval import class_f1

DEFAULT_STEPS = 100
"""Adam steps of a fine-tune (``isamap-fit --steps``)."""
DEFAULT_LR = 1e-4
"""Adam's learning rate (``isamap-fit --lr``): the recipes' own, small enough to adapt."""
BATCH = 8
"""Windows per step."""
MIN_BLOCKS = 10
"""Blocks holding points below which no held-out score is claimed."""
SPAN = 3
"""Blocks a side of the contiguous areas dealt whole to the folds."""
SHIFT_ROUNDS = 100
"""Rounds of the prior adjustment's fixed point (:func:`prior_shift`)."""


def _logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = model(x)
    return out["out"] if isinstance(out, dict) else out


def _at_points(logits: torch.Tensor, row: np.ndarray, col: np.ndarray) -> torch.Tensor:
    """``(n, K)`` logits at each window's labelled pixel."""
    index = torch.arange(logits.shape[0])
    return logits[index, :, torch.as_tensor(row), torch.as_tensor(col)]


def fine_tune(model: nn.Module, windows: np.ndarray, labels: np.ndarray, row: np.ndarray,
              col: np.ndarray, *, temperature: float = 1.0, steps: int = DEFAULT_STEPS,
              lr: float = DEFAULT_LR, seed: int = 0, batch: int = BATCH) -> nn.Module:
    """A copy of ``model`` fine-tuned on its labelled pixels (module docstring).

    Args:
        model: the network (left as it is).
        windows: ``(n, C, H, W)`` normalised windows, NaN already 0.
        labels: ``(n,)`` class codes of the labelled pixel of each window.
        row: ``(n,)`` the row of that pixel in its window.
        col: ``(n,)`` its column.
        temperature: the model's recorded temperature.
        steps: Adam's steps.
        lr: Adam's learning rate.
        seed: the windows' draw (and torch's seed).
        batch: windows per step.
    """
    tuned = copy.deepcopy(model).eval()  # eval: the network as the maps run it
    for p in tuned.parameters():
        p.requires_grad_(True)
    params = [p for p in tuned.parameters() if p.is_floating_point()]
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    adam = torch.optim.Adam(params, lr=lr)
    target = torch.as_tensor(np.asarray(labels, np.int64))
    order = np.zeros(0, np.int64)
    for _ in range(steps):
        if order.size < batch:  # every window once before any twice
            order = np.concatenate([order, rng.permutation(len(labels))])
        pick, order = order[:batch], order[batch:]
        x = torch.from_numpy(windows[pick])
        logits = _at_points(_logits(tuned, x), row[pick], col[pick]) / temperature
        loss = nn.functional.cross_entropy(logits, target[pick])
        adam.zero_grad()
        loss.backward()
        adam.step()
    for p in tuned.parameters():
        p.requires_grad_(False)
    return tuned.eval()


def point_probabilities(model: nn.Module, windows: np.ndarray, row: np.ndarray,
                        col: np.ndarray, temperature: float = 1.0,
                        shift: tuple[float, ...] | None = None, batch: int = 32) -> np.ndarray:
    """``(n, K)`` float64 probabilities the model's map gives each window's labelled pixel."""
    out = []
    with torch.no_grad():
        for start in range(0, len(windows), batch):
            part = slice(start, start + batch)
            logits = _at_points(_logits(model, torch.from_numpy(windows[part])), row[part],
                                col[part])
            out.append(torch.softmax(scaled(logits.double(), temperature, shift), dim=1).numpy())
    return np.concatenate(out) if out else np.zeros((0, 0))


def valid_logits(model: nn.Module, windows: np.ndarray, valid: np.ndarray,
                 temperature: float = 1.0, batch: int = 16) -> np.ndarray:
    """``(P, K)`` float64 logits over the temperature at the ``valid`` ``(n, H, W)`` pixels."""
    out = []
    with torch.no_grad():
        for start in range(0, len(windows), batch):
            part = slice(start, start + batch)
            z = _logits(model, torch.from_numpy(windows[part])).double() / temperature
            out.append(z.permute(0, 2, 3, 1)[torch.from_numpy(valid[part])].numpy())
    return np.concatenate(out) if out else np.zeros((0, 0))


def class_shares(logits: np.ndarray) -> np.ndarray:
    """``(K,)`` the mean class probabilities of ``(P, K)`` logits (empty: none)."""
    if logits.size == 0:
        return np.zeros(0)
    return torch.softmax(torch.from_numpy(logits), dim=1).mean(dim=0).numpy()


def prior_shift(logits: np.ndarray, shares: np.ndarray) -> tuple[float, ...] | None:
    """``(K,)`` added to ``(P, K)`` logits, their mean class probabilities become ``shares``.

    The fixed point of ``shift += log(shares / mean probabilities)`` (the first class's
    shift held at 0); None where there are no pixels or shares.
    """
    if logits.size == 0 or shares.size == 0:
        return None
    target = np.maximum(np.asarray(shares, np.float64), 1e-9)
    shift = np.zeros(logits.shape[1])
    for _ in range(SHIFT_ROUNDS):
        shift += np.log(target / np.maximum(class_shares(logits + shift), 1e-12))
        shift -= shift[0]
    return tuple(round(float(v), 6) for v in shift)


def apart(x: np.ndarray, y: np.ndarray, group: np.ndarray, block_m: float,
          held: np.ndarray) -> np.ndarray:
    """Which points lie in a held-out block or in one of the 8 blocks around one.

    ``held``: ``(n,)`` the points held out. Blocks are squares of ``block_m`` metres on each
    input's grid (:func:`training.points.blocks.block_ids`); points of another input are
    never neighbours.
    """
    bx = np.floor(np.asarray(x, np.float64) / block_m).astype(np.int64)
    by = np.floor(np.asarray(y, np.float64) / block_m).astype(np.int64)
    g = np.asarray(group, np.int64)
    near = ((g[:, None] == g[None, held]) & (np.abs(bx[:, None] - bx[None, held]) <= 1)
            & (np.abs(by[:, None] - by[None, held]) <= 1))
    return near.any(axis=1)


@dataclass(frozen=True)
class HeldOut:
    """The held-out scores of a fine-tune beside the base network's, or why there are none.

    Attributes:
        folds: folds scored (0: no claim).
        tuned / base: per class F1 of the fine-tuned (out-of-fold) and the base network's
            most probable class at the same points.
        tuned_auc / base_auc: ROC AUC of the positive class.
        points: points scored.
        why: the reason no score is claimed (None: claimed).
    """

    folds: int = 0
    tuned: dict[str, float] | None = None
    base: dict[str, float] | None = None
    tuned_auc: float | None = None
    base_auc: float | None = None
    points: int = 0
    why: str | None = None

    def record(self) -> dict:
        """What ``fit.json`` and the model file keep (JSON)."""
        def rounded(values: dict[str, float] | None) -> dict | None:
            return None if values is None else {k: _round(v) for k, v in values.items()}

        return {"method": f"spatial block cross-validation: areas of {SPAN} x {SPAN} blocks "
                          "per fold, the blocks next to them left out of its training",
                "folds": self.folds,
                "points": self.points, "f1": rounded(self.tuned), "auc": _round(self.tuned_auc),
                "base_f1": rounded(self.base), "base_auc": _round(self.base_auc),
                "why_none": self.why}


def _round(value: float | None) -> float | None:
    return None if value is None or not np.isfinite(value) else round(float(value), 6)


def held_out(tune: Callable[[np.ndarray], np.ndarray], base: np.ndarray, labels: np.ndarray,
             x: np.ndarray, y: np.ndarray, group: np.ndarray, classes: Sequence[str], *,
             folds: int, block_m: float, seed: int = 0, min_per_class: int = 1) -> HeldOut:
    """The block cross-validation of a fine-tune (module docstring).

    Args:
        tune: given a training mask ``(n,)``, the probabilities ``(n, K)`` of the network
            fine-tuned on those points alone (the held-out rows are read).
        base: ``(n, K)`` the base network's probabilities at the points.
        labels: ``(n,)`` class codes.
        x: the points' projected x in metres.
        y: their projected y.
        group: the input each lies in.
        classes: the class names; the last is the positive one (AUC).
        folds: the folds asked for (at most the blocks).
        block_m: the blocks' side in metres.
        seed: the folds' tie-breaking.
        min_per_class: points of each class a fold's training set must hold.
    """
    labels = np.asarray(labels, np.int64)
    blocks = block_ids(x, y, group, block_m)
    count = int(blocks.max()) + 1
    if count < MIN_BLOCKS:
        return HeldOut(why=f"the points lie in {count} blocks of {block_m:g} m; a held-out "
                           f"score needs at least {MIN_BLOCKS}, each scored by a network "
                           "that no point of it or of the blocks around it trained: spread "
                           "the points wider, or give a smaller --block")
    areas = block_ids(x, y, group, block_m * SPAN)
    fold = block_folds(areas, min(folds, int(areas.max()) + 1), seed)
    oof = np.zeros_like(base)
    for f in range(int(fold.max()) + 1):
        test = fold == f
        train = ~apart(x, y, group, block_m, np.flatnonzero(test))
        short = [c for k, c in enumerate(classes) if (labels[train] == k).sum() < min_per_class]
        if short:
            return HeldOut(why=f"with fold {f + 1}'s blocks and their neighbours held out, "
                               f"the other points hold too few {' or '.join(short)} to "
                               "fine-tune on: label more points, or spread them wider")
        oof[test] = tune(train)[test]
    positive = len(classes) - 1
    truth = (labels == positive).astype(np.int64)
    return HeldOut(int(fold.max()) + 1, class_f1(oof.argmax(1), labels, classes),
                   class_f1(base.argmax(1), labels, classes),
                   roc_auc(oof[:, positive], truth), roc_auc(base[:, positive], truth),
                   int(labels.size))
