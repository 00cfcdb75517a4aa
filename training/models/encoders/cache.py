"""Frozen encoder features kept per patch, so each patch is encoded once.

A frozen encoder gives the same features for the same input, and the training augmentations
(flips, quarter turns) only move pixels: the features of a turned patch are the turned
features. The cache keys a patch by the digest of its canonical view (the smallest digest of
its eight flips and turns, four for a non-square patch) and of what else the features depend
on (``salt``: the encoder, its file's SHA-256, the bands, location and month it is given),
stores that view's features (in half precision) and turns them back for the view asked.

Two tiers: memory, bounded in bytes (past the bound it stops storing; it never evicts, so a
training run's patches, seen every epoch, keep their place), and, where a folder is given, one
``.npy`` file per patch there, written atomically, which every later run with the same salt
reads instead of encoding again (the seeds and arms of an experiment share one encoding). The
folder comes from :data:`CACHE_ENV` when the model is built; the model file never records
it. The cache is shared by deep copies (the weight average of ``--ema`` holds the same frozen
encoder).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from core.digest import chunks_sha256
from core.errors import StorageError
from core.storage import atomic_write

View = tuple[int, bool]  # quarter turns, then a left-right flip
#: the environment variable naming a folder of frozen features kept across runs
CACHE_ENV = "ISAMAP_ENCODER_CACHE"


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


def _digest(x: torch.Tensor, salt: str) -> str:
    """The cache key of an input: the salt, its shape, dtype and bytes (:mod:`core.digest`)."""
    head = f"{salt}|{tuple(x.shape)} {x.dtype}".encode()
    return chunks_sha256([head, x.detach().contiguous().cpu().numpy().tobytes()], length=32)


def folder_from_env() -> Path | None:
    """The folder :data:`CACHE_ENV` names (created here when missing), or None.

    Raises:
        StorageError: it names a file, or a folder that cannot be made (exit status 1).
    """
    value = os.environ.get(CACHE_ENV, "").strip()
    if not value:
        return None
    try:
        Path(value).mkdir(parents=True, exist_ok=True)
        if not os.access(value, os.W_OK | os.X_OK):
            raise PermissionError(13, "permission denied")
    except OSError as exc:
        raise StorageError(f"{CACHE_ENV}={value} is not a folder isamap can write "
                           f"({exc.strerror or exc}); point it at a folder, or unset it to "
                           "compute the encoder's features without keeping them") from None
    return Path(value)


class FeatureCache:
    """Features of patches by content: up to ``limit_bytes`` in memory, all in ``folder``."""

    def __init__(self, limit_bytes: int = 0, folder: str | os.PathLike[str] | None = None,
                 salt: str = "") -> None:
        self.limit_bytes = int(limit_bytes)
        self.folder = Path(folder) if folder else None
        self.salt = salt
        self.used = 0
        self.hits = 0
        self.misses = 0
        self._store: dict[str, torch.Tensor] = {}

    def __deepcopy__(self, memo: dict) -> FeatureCache:
        return self  # copies of the model share one cache

    @property
    def active(self) -> bool:
        return self.limit_bytes > 0 or self.folder is not None

    def _file(self, key: str) -> Path:
        assert self.folder is not None
        return self.folder / key[:2] / f"{key}.npy"

    def _load(self, key: str) -> torch.Tensor | None:
        if key in self._store:
            return self._store[key]
        if self.folder is None:
            return None
        path = self._file(key)
        try:
            found = torch.from_numpy(np.load(path, allow_pickle=False))
        except (OSError, ValueError):  # absent, or being written by another run
            return None
        self._keep(key, found)
        return found

    def _keep(self, key: str, feats: torch.Tensor) -> None:
        if key not in self._store and self.used + feats.numel() * 2 <= self.limit_bytes:
            self._store[key] = feats.to(torch.float16)
            self.used += feats.numel() * 2

    def _save(self, key: str, feats: torch.Tensor) -> None:
        if self.folder is None:
            return
        path = self._file(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        half = feats.detach().to(torch.float16).cpu().numpy()
        atomic_write(path, lambda handle: np.save(handle, half, allow_pickle=False))

    def features(self, x: torch.Tensor,
                 compute: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """``compute(x)`` for a batch ``(N, C, H, W)``, from the cache where it can be."""
        if not self.active:
            return compute(x)
        views = _views(x.shape[-1] == x.shape[-2])
        keys, canon = [], []
        for sample in x:
            key, view = min((_digest(apply_view(sample, v), self.salt), v) for v in views)
            keys.append(key)
            canon.append(view)
        found = {k: f for k in set(keys) if (f := self._load(k)) is not None}
        missing = [i for i, key in enumerate(keys) if key not in found]
        self.hits += len(keys) - len(missing)
        self.misses += len(missing)
        if missing:
            batch = torch.stack([apply_view(x[i], canon[i]) for i in missing])
            for i, feats in zip(missing, compute(batch), strict=True):
                half = feats.to(torch.float16)
                found[keys[i]] = half
                self._keep(keys[i], half)
                self._save(keys[i], half)
        out = [undo_view(found[k].float(), v) for k, v in zip(keys, canon, strict=True)]
        return torch.stack(out).to(x.dtype)
