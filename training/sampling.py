"""Which patches a training epoch draws, and in what order.

:class:`KeyedSampler` yields ``(epoch, index)`` keys, so each sample's augmentation is drawn
from ``default_rng([seed, epoch, index])`` whatever the workers or a resume;
:func:`balanced_weights` turns each patch's class pixel counts into draw weights for
class-balanced sampling (``--balanced-sampling``), :func:`scene_weights` each patch's scene
into weights that draw every scene as often (``--balanced-scenes``).

May import: numpy, torch, ``core``.
"""

from __future__ import annotations

import numpy as np
from torch.utils.data import Dataset, DistributedSampler

from core.errors import ConfigError, InputDataError


class KeyedSampler(DistributedSampler):
    """``DistributedSampler`` yielding ``(epoch, index)`` keys for per-sample reproducibility.

    Only datasets that declare ``epoch_keys = True`` (``PatchDataset``) get tuple keys; any
    other map-style dataset gets plain integer indices. With ``weights`` (one per item) each
    epoch draws as many items as the dataset has, with replacement, in proportion to them,
    from a generator seeded with ``(seed, epoch)``; every rank takes its share of one draw.
    """

    def __init__(self, dataset: Dataset, *args, weights: np.ndarray | None = None,
                 **kw) -> None:
        super().__init__(dataset, *args, **kw)
        self.keyed = bool(getattr(dataset, "epoch_keys", False))
        self.weights = None
        if weights is not None:
            w = np.asarray(weights, dtype=np.float64)
            count = len(dataset)  # type: ignore[arg-type]  # a map-style dataset has a length
            if w.shape != (count,) or not np.isfinite(w).all() or (w < 0).any() \
                    or w.sum() <= 0:
                raise ConfigError(f"sampling weights must be {count} finite values >= 0 "
                                  "with a positive sum")
            self.weights = w / w.sum()

    def __iter__(self):
        if self.weights is None:
            it = super().__iter__()
        else:
            rng = np.random.default_rng([self.seed, self.epoch])
            drawn = rng.choice(len(self.weights), size=self.total_size, p=self.weights)
            it = iter(drawn[self.rank:self.total_size:self.num_replicas].tolist())
        return ((self.epoch, i) for i in it) if self.keyed else it


def balanced_weights(counts: np.ndarray) -> np.ndarray:
    """Sampling weight of each patch from its class pixel counts ``(patches, classes)``.

    A patch's weight is the mean, over its labelled pixels, of the inverse of each pixel's
    class share in the whole split: patches rich in a rare class (built area among fields)
    are drawn more often, so each class contributes about as many pixels per epoch. A patch
    without a labelled pixel gets weight 0 (it teaches nothing).
    """
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum(axis=0)
    if total.sum() <= 0:
        raise InputDataError("no labelled pixel to balance the sampling on")
    inverse = np.where(total > 0, total.sum() / np.maximum(total, 1), 0.0)
    return counts @ inverse / np.maximum(counts.sum(axis=1), 1)


def scene_weights(scenes: list[str], weights: np.ndarray | None = None) -> np.ndarray:
    """``weights`` (default: all 1) scaled so every scene's patches weigh 1 in all.

    Each scene (each region's export, each month) is then drawn as often as every other,
    whatever its size, so a large region's class shares do not set the model's prior alone;
    within a scene the patches keep their relative weights (class-balanced ones, say).
    """
    if not scenes:
        raise InputDataError("no training patch to balance the scenes of")
    w = np.ones(len(scenes)) if weights is None else np.asarray(weights, dtype=np.float64)
    _, inverse = np.unique(np.asarray(scenes, dtype=str), return_inverse=True)
    totals = np.bincount(inverse, weights=w)
    return np.where(totals[inverse] > 0, w / np.maximum(totals[inverse], 1e-300), 0.0)
