"""Frozen encoder features kept per patch, so training computes each patch's features once.

A frozen encoder gives the same features for the same input, and the training augmentations
(flips, quarter turns) only move pixels: the features of a turned patch are the turned
features. The cache keys a patch by the digest of its canonical view (the smallest digest of
its eight flips and turns, four for a non-square patch), stores that view's features (in
half precision) and turns them back for the view asked. It is bounded in bytes; past the
bound it stops storing (it never evicts, so a training run's patches, seen every epoch, keep
their place). It is shared by deep copies (the weight average of ``--ema`` holds the same
frozen encoder).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from core.digest import chunks_sha256

View = tuple[int, bool]  # quarter turns, then a left-right flip


def _views(square: bool) -> tuple[View, ...]:
    turns = (0, 1, 2, 3) if square else (0, 2)
    return tuple((k, f) for k in turns for f in (False, True))


def apply_view(x: torch.Tensor, view: View) -> torch.Tensor:
    """``x`` (``..., H, W``) turned ``k`` quarter turns, then flipped left-right if asked."""
    k, flip = view
    y = torch.rot90(x, k, dims=(-2, -1)) if k else x
    return y.flip(-1) if flip else y


def undo_view(x: torch.Tensor, view: View) -> torch.Tensor:
    """The inverse of :func:`apply_view`."""
    k, flip = view
    y = x.flip(-1) if flip else x
    return torch.rot90(y, -k, dims=(-2, -1)) if k else y


def _digest(x: torch.Tensor) -> str:
    """The cache key of an input: its shape, dtype and bytes (:mod:`core.digest`, the owner)."""
    head = f"{tuple(x.shape)} {x.dtype}".encode()
    return chunks_sha256([head, x.detach().contiguous().cpu().numpy().tobytes()], length=32)


class FeatureCache:
    """Features of patches by content, up to ``limit_bytes`` (0: keep nothing)."""

    def __init__(self, limit_bytes: int = 0) -> None:
        self.limit_bytes = int(limit_bytes)
        self.used = 0
        self.hits = 0
        self.misses = 0
        self._store: dict[str, torch.Tensor] = {}

    def __deepcopy__(self, memo: dict) -> FeatureCache:
        return self  # copies of the model share one cache

    def features(self, x: torch.Tensor,
                 compute: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """``compute(x)`` for a batch ``(N, C, H, W)``, from the cache where it can be."""
        if self.limit_bytes <= 0:
            return compute(x)
        views = _views(x.shape[-1] == x.shape[-2])
        keys, canon = [], []
        for sample in x:
            digests = [(_digest(apply_view(sample, v)), v) for v in views]
            key, view = min(digests)
            keys.append(key)
            canon.append(view)
        missing = [i for i, key in enumerate(keys) if key not in self._store]
        self.hits += len(keys) - len(missing)
        self.misses += len(missing)
        fresh = {}
        if missing:
            batch = torch.stack([apply_view(x[i], canon[i]) for i in missing])
            for i, feats in zip(missing, compute(batch), strict=True):
                fresh[keys[i]] = feats
                if self.used + feats.numel() * 2 <= self.limit_bytes:
                    self._store[keys[i]] = feats.to(torch.float16)
                    self.used += feats.numel() * 2
        out = [undo_view(fresh[k] if k in fresh else self._store[k].float(), v)
               for k, v in zip(keys, canon, strict=True)]
        return torch.stack(out).to(x.dtype)
