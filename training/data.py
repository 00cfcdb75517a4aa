"""The patch dataset (docs/data-contract.md) as a torch ``Dataset``, local or ``gs://``.

Images are read with rasterio (GDAL ``/vsigs/`` for ``gs://``), bands by the manifest's names,
normalised per band with statistics of the TRAINING split (``compute_norm_stats``), NaN set
to 0 (the band mean after normalisation) and the label set to nodata (255) wherever any band
is missing. The paper's augmentations (vertical flip, random rotation by multiples of 90° so
labels at any scale stay exact, Gaussian blur of the image) run on the training split only,
after an optional random square crop (the land-cover HRNet trains on 513 px crops).

Determinism: the loader's sampler yields ``(epoch, index)`` keys and each sample's random
augmentation is drawn from ``default_rng([seed, epoch, index])``, so a batch does not depend
on worker count, worker scheduling or where a run was resumed.
"""

from __future__ import annotations

import math
import os
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import rasterio
import torch
from scipy.ndimage import gaussian_filter
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from gee_export.contract import dataset as _dataset
from gee_export.contract.bands import LABEL_NODATA
from gee_export.core.errors import ConfigError, InputDataError
from gee_export.core.storage import open_store

Split = Literal["train", "val", "test"]


# ------------------------------------------------------------------ index and manifest
# Reading goes through the one storage seam (gee_export.core.storage / gee_export.contract.index),
# so local
# folders and gs:// datasets behave alike and retries live in one place.
def read_manifest(root: str | os.PathLike) -> dict:
    """The dataset manifest, refused when it lists no bands (nothing to train on)."""
    manifest = _dataset.read_manifest(root, missing_ok=True)
    if not manifest:
        raise InputDataError(f"no manifest.json in {root}; is it a patch dataset root "
                             "(manifest.json + index.jsonl written by isamap-export)?")
    if not manifest.get("bands"):
        raise InputDataError(f"{root}/manifest.json lists no bands")
    return manifest


def read_index(root: str | os.PathLike) -> list[dict]:
    return _dataset.read_index(root)


def _raster_path(root: str, rel: str) -> str:
    """What rasterio opens: a local path, or GDAL's ``/vsigs/`` path of a gs:// object."""
    return open_store(root).gdal_path(rel)


def class_names_of(manifest: dict) -> tuple[str, ...]:
    """Class names from ``manifest["label"]["classes"]`` (list or {value: name}), else ISA."""
    classes = (manifest.get("label") or {}).get("classes")
    if isinstance(classes, dict):
        values = sorted(int(v) for v in classes)
        if values != list(range(len(values))):
            raise InputDataError(f"label classes {values} are not 0..K-1; the models need "
                                 "contiguous class values (remap the labels)")
        return tuple(str(classes[k]) for k in sorted(classes, key=lambda v: int(v)))
    if isinstance(classes, list) and classes:
        return tuple(str(c["name"]) if isinstance(c, dict) else str(c) for c in classes)
    return ("pervious", "impervious")


# ------------------------------------------------------------------ normalisation
@dataclass(frozen=True)
class NormStats:
    """Per-band mean and standard deviation (training split, NaN ignored)."""

    bands: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def to_dict(self) -> dict:
        return {"bands": list(self.bands), "mean": list(self.mean), "std": list(self.std)}


def compute_norm_stats(dataset: PatchDataset, max_patches: int | None = None) -> NormStats:
    """Streaming per-band mean/std (float64 sums) over a dataset's raw images."""
    c = len(dataset.bands)
    s = np.zeros(c)
    s2 = np.zeros(c)
    n = np.zeros(c)
    count = len(dataset) if max_patches is None else min(max_patches, len(dataset))
    for i in range(count):
        img = dataset.read_raw(i)[0].reshape(c, -1).astype(np.float64)
        ok = np.isfinite(img)
        s += np.where(ok, img, 0).sum(1)
        s2 += np.where(ok, img * img, 0).sum(1)
        n += ok.sum(1)
    if (n == 0).any():
        empty = [b for b, k in zip(dataset.bands, n, strict=True) if k == 0]
        raise InputDataError(f"bands {empty} have no valid pixel in the training split")
    mean = s / n
    std = np.sqrt(np.maximum(s2 / n - mean * mean, 0))
    std = np.where(std > 1e-6, std, 1.0)  # constant band: leave it centred, unscaled
    return NormStats(tuple(dataset.bands), tuple(map(float, mean)), tuple(map(float, std)))


# ------------------------------------------------------------------ augmentation
@dataclass(frozen=True)
class Augment:
    """The paper's training augmentations, each drawn per sample.

    Attributes:
        vflip: probability of a vertical flip.
        rotate: rotate by a random multiple of 90° (labels stay exact at every scale).
        blur: probability of a Gaussian blur of the image.
        blur_sigma: range of the blur's sigma in pixels.
    """

    vflip: float = 0.5
    rotate: bool = True
    blur: float = 0.3
    blur_sigma: tuple[float, float] = (0.1, 1.0)

    def __call__(self, image: np.ndarray, labels: list[np.ndarray],
                 rng: np.random.Generator) -> tuple[np.ndarray, list[np.ndarray]]:
        if rng.random() < self.vflip:
            image = image[:, ::-1]
            labels = [lab[::-1] for lab in labels]
        if self.rotate:
            k = int(rng.integers(4))
            image = np.rot90(image, k, axes=(1, 2))
            labels = [np.rot90(lab, k) for lab in labels]
        if rng.random() < self.blur:
            sigma = float(rng.uniform(*self.blur_sigma))
            image = gaussian_filter(image, sigma=(0, sigma, sigma), mode="reflect")
        return np.ascontiguousarray(image), [np.ascontiguousarray(lab) for lab in labels]


# ------------------------------------------------------------------ dataset
class PatchDataset(Dataset):
    """Patches of one split of a patch dataset.

    Args:
        root: dataset root (local folder or ``gs://bucket/prefix``).
        split: ``train``, ``val``, ``test`` or ``None`` for every patch.
        bands: band names to read, in model order (default: the manifest's list).
        norm: normalisation statistics (``None``: raw values, used to compute them).
        augment: augmentation for training, ``None`` for evaluation.
        label: ``"label"`` or ``"label_fine"`` (labels at the fine scale, super-resolution).
        seed: base seed of the per-sample augmentation draws.
        cache: keep decoded patches in memory (small datasets; one cache per worker).
        crop: random ``crop x crop`` window of every item (input pixels; the label is cut at
            its own scale); None, or a crop not smaller than the patch, keeps whole patches.
        exclude: patch ids ``"<month>/<id>"`` to leave out (noisy-sample filtering).

    Items are dicts ``{"image": float32 (C, H, W), "label": int64 (H', W'), "id": str}``.
    """

    epoch_keys = True  # items may be fetched as (epoch, index): see KeyedSampler

    def __init__(self, root: str | os.PathLike, split: Split | None = "train",
                 bands: Sequence[str] | None = None, norm: NormStats | None = None,
                 augment: Augment | None = None, label: str = "label", seed: int = 0,
                 cache: bool = False, crop: int | None = None,
                 exclude: Collection[str] = ()) -> None:
        self.root = str(root)
        self.manifest = read_manifest(self.root)
        manifest_bands = [str(b) for b in self.manifest["bands"]]
        self.bands = tuple(bands) if bands is not None else tuple(manifest_bands)
        missing = [b for b in self.bands if b not in manifest_bands]
        if missing:
            raise ConfigError(f"bands {missing} are not in the dataset (it has {manifest_bands})")
        self.band_indexes = [manifest_bands.index(b) + 1 for b in self.bands]
        records = read_index(self.root)
        excluded = set(exclude)
        self.records = [r for r in records if (split is None or r["split"] == split)
                        and patch_key(r) not in excluded]
        if not self.records:
            raise InputDataError(f"no {split!r} patches in {self.root}/index.jsonl")
        if any(label not in r for r in self.records):
            raise InputDataError(f"some patches have no {label!r} file; train on the 10 m "
                                 "label (--label label) or export with --fine-scale")
        if norm is not None and tuple(norm.bands) != self.bands:
            raise ConfigError(f"normalisation is for bands {norm.bands}, the dataset reads "
                              f"{self.bands}")
        self.norm = norm
        self.augment = augment
        self.label_key = label
        self.seed = seed
        self.crop = crop
        self.class_names = class_names_of(self.manifest)
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.records)

    def read_raw(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Image (C, H, W) float32 with NaN nodata and label (H', W') uint8, as stored."""
        if self._cache is not None and i in self._cache:
            return self._cache[i]
        rec = self.records[i]
        try:
            with rasterio.open(_raster_path(self.root, rec["image"])) as src:
                image = src.read(self.band_indexes, out_dtype="float32")
                nod = src.nodata
            with rasterio.open(_raster_path(self.root, rec[self.label_key])) as src:
                label = src.read(1)
        except rasterio.errors.RasterioIOError as exc:
            raise InputDataError(f"cannot read patch {rec['id']} of {self.root}: {exc}") from None
        if nod is not None and not math.isnan(nod):
            image[image == nod] = np.nan
        if self._cache is not None:
            self._cache[i] = (image, label)
        return image, label

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        epoch, i = key if isinstance(key, tuple) else (0, key)
        image, label = self.read_raw(int(i))
        image = image.copy()
        label = label.astype(np.int64)
        invalid = ~np.isfinite(image).all(axis=0)
        if invalid.any():
            label = _mask_label(label, invalid)
        if self.norm is not None:
            mean = np.asarray(self.norm.mean, np.float32)[:, None, None]
            std = np.asarray(self.norm.std, np.float32)[:, None, None]
            image = (image - mean) / std
        image = np.nan_to_num(image, nan=0.0, posinf=0.0, neginf=0.0)
        if self.crop is not None and self.crop < min(image.shape[1:]):
            # its own stream, so adding a crop leaves the augmentation draws unchanged
            image, label = random_crop(image, label, self.crop,
                                       np.random.default_rng([self.seed, int(epoch), int(i), 1]))
        if self.augment is not None:
            rng = np.random.default_rng([self.seed, int(epoch), int(i)])
            image, (label,) = self.augment(image, [label], rng)
        return {"image": torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)),
                "label": torch.from_numpy(np.ascontiguousarray(label)),
                "id": patch_key(self.records[int(i)])}


def patch_key(record: dict) -> str:
    """The id of a patch across months: ``"<month>/<id>"`` (what items and filters use)."""
    return f"{record.get('month', '')}/{record['id']}"


def random_crop(image: np.ndarray, label: np.ndarray, size: int,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A random ``size x size`` window of ``image`` (C, H, W) and the same area of ``label``.

    The label may be ``k`` times finer than the image (fine labels); its window is the
    image window's, scaled by ``k``, so both keep covering the same ground.
    """
    h, w = image.shape[1:]
    k = label.shape[0] // h
    r0 = int(rng.integers(0, h - size + 1)) if h > size else 0
    c0 = int(rng.integers(0, w - size + 1)) if w > size else 0
    image = image[:, r0:r0 + size, c0:c0 + size]
    label = label[r0 * k:(r0 + size) * k, c0 * k:(c0 + size) * k]
    return image, label


def _mask_label(label: np.ndarray, invalid: np.ndarray) -> np.ndarray:
    """Set label nodata where the image is missing, at the label's own scale."""
    k = label.shape[0] // invalid.shape[0]
    if k > 1:
        invalid = np.kron(invalid, np.ones((k, k), dtype=bool))
    if invalid.shape != label.shape:
        return label
    return np.where(invalid, LABEL_NODATA, label)


# ------------------------------------------------------------------ loader
class KeyedSampler(DistributedSampler):
    """``DistributedSampler`` yielding ``(epoch, index)`` keys for per-sample reproducibility.

    Only datasets that declare ``epoch_keys = True`` (``PatchDataset``) get tuple keys; any
    other map-style dataset gets plain integer indices.
    """

    def __init__(self, dataset: Dataset, *args, **kw) -> None:
        super().__init__(dataset, *args, **kw)
        self.keyed = bool(getattr(dataset, "epoch_keys", False))

    def __iter__(self):
        it = super().__iter__()
        return ((self.epoch, i) for i in it) if self.keyed else it


def default_workers() -> int:
    return max(min((os.cpu_count() or 2) - 1, 8), 0)


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool, seed: int = 0,
                num_workers: int | None = None, rank: int = 0, world_size: int = 1,
                pin_memory: bool = False, drop_last: bool = False) -> DataLoader:
    """A loader that keeps the model busy: workers, prefetching, persistent workers, pinning.

    Call ``loader.sampler.set_epoch(epoch)`` before each epoch (new order, new augmentations).
    """
    workers = default_workers() if num_workers is None else int(num_workers)
    sampler = KeyedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=shuffle,
                           seed=seed, drop_last=drop_last)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                      pin_memory=pin_memory, drop_last=drop_last,
                      persistent_workers=workers > 0,
                      prefetch_factor=4 if workers > 0 else None,
                      generator=torch.Generator().manual_seed(seed))
