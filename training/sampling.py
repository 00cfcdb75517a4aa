"""Which patches a training epoch draws, and in what order.

:class:`KeyedSampler` yields ``(epoch, index)`` keys, so each sample's augmentation is drawn
from ``default_rng([seed, epoch, index])`` whatever the workers or a resume;
:func:`balanced_weights` turns each patch's class pixel counts into draw weights for
class-balanced sampling (``--balanced-sampling``).

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
