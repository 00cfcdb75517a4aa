"""Cross-resolution training data: a 10 m image with labels (and optionally imagery) k times finer.

The super-resolution segmentation model (``srseg``, JointSeg) learns to map a coarse
Sentinel-2-like patch onto a label grid ``k`` times finer with the same origin
(``Grid.scaled(k)``). Coarse pixel ``(r, c)`` is exactly fine pixels ``(r*k .. r*k+k-1, ...)``,
so every crop, flip and rotation here is done in coarse pixel units and applied to the fine
arrays with offsets multiplied by ``k``: nothing is ever resampled, so no label is blurred.

:class:`CrossResolutionDataset` takes samples from a patch dataset written by the exporter
(``index.jsonl`` entries with ``label_fine`` and optionally ``image_fine``, files
``<id>_label_x<k>.tif`` / ``<id>_image_x<k>.tif``), or from any other source that makes
:class:`CrossResSample` values (the experiments adapt the GeoBench NAIP tiles,
:mod:`experiments.naip`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from affine import Affine
from torch.utils.data import Dataset

from contract.bands import check_fine_scale
from contract.dataset import read_index
from core.errors import ConfigError, InputDataError

Split = Literal["train", "val", "test"]


@dataclass(frozen=True)
class CrossResSample:
    """One co-registered coarse image / fine label (/ fine image) triple.

    Attributes:
        id: patch id, unique in a dataset.
        image: float32 ``(C, h, w)`` coarse image (physical units, NaN = nodata).
        label: uint8 ``(h*scale, w*scale)`` fine label, 255 = nodata.
        scale: integer ratio of the coarse to the fine pixel size.
        image_fine: optional float32 ``(Cf, h*scale, w*scale)`` fine image (a super-resolution
            target); None when the source has none.
        split: which split the sample belongs to.
    """

    id: str
    image: np.ndarray
    label: np.ndarray
    scale: int
    image_fine: np.ndarray | None = None
    split: Split = "train"

    def __post_init__(self) -> None:
        check_fine_scale(self.scale, required=True)
        if self.image.ndim != 3:
            raise InputDataError(f"{self.id}: image must be (C, h, w), got {self.image.shape}")
        h, w = self.image.shape[1:]
        fine = (h * self.scale, w * self.scale)
        if self.label.shape != fine:
            raise InputDataError(
                f"{self.id}: fine label is {self.label.shape} but a {h}x{w} image at scale "
                f"{self.scale} needs {fine}; was the label written on grid.scaled({self.scale})?"
            )
        if self.image_fine is not None and self.image_fine.shape[1:] != fine:
            raise InputDataError(
                f"{self.id}: fine image is {self.image_fine.shape[1:]}, expected {fine}"
            )


# ------------------------------------------------------------------ pure array helpers
def block_mean(array: np.ndarray, factor: int) -> np.ndarray:
    """Average ``factor x factor`` blocks of the last two axes (which must divide exactly).

    This is how a coarse sensor integrates a fine scene (a box point-spread function): the
    coarse pixel is the mean radiance of the fine pixels it covers, and pixel edges coincide.
    """
    *lead, height, width = array.shape
    if height % factor or width % factor:
        raise InputDataError(
            f"a {height}x{width} array cannot be averaged in {factor}x{factor} blocks; crop it "
            f"to a multiple of {factor} first"
        )
    blocks = array.reshape(*lead, height // factor, factor, width // factor, factor)
    return blocks.mean(axis=(-3, -1), dtype=np.float64).astype(np.float32)


# ------------------------------------------------------------------ patch-dataset reader
def _open_path(root: str, relative: str) -> str:
    return str(Path(root) / relative)


def _read_raster(path: str) -> tuple[np.ndarray, Affine]:
    import rasterio

    try:
        with rasterio.open(path) as src:
            return src.read(), src.transform
    except rasterio.errors.RasterioIOError as exc:
        raise InputDataError(f"cannot read {path}: {exc}") from exc


def patch_samples(root: str | Path, scale: int, splits: Sequence[Split] = ("train",),
                  with_fine_image: bool = True) -> list[CrossResSample]:
    """Samples of a local patch dataset folder that carry fine labels at ``scale``.

    Every fine file's transform must be its coarse patch's transform with pixels ``scale``
    times smaller and the same origin; anything else means the label was not written on
    ``grid.scaled(scale)`` and is refused rather than silently misaligned.
    """
    check_fine_scale(scale, required=True)
    root = str(root)
    if root.startswith("gs://"):
        raise ConfigError(
            f"{root}: cross-resolution patches are read from a local folder; copy the dataset "
            "locally first (gcloud storage cp -r) or train through the patch-dataset loader"
        )
    suffix = f"_label_x{scale}.tif"
    samples = []
    for entry in read_index(root):  # the contract's reader: every record checked
        if entry["split"] not in splits:
            continue
        fine_label = entry.get("label_fine")
        if not fine_label or not fine_label.endswith(suffix):
            raise InputDataError(
                f"patch {entry['id']} has no fine label at x{scale} (label_fine="
                f"{fine_label!r}); export with a fine label scale of {scale}"
            )
        image, coarse_tf = _read_raster(_open_path(root, entry["image"]))
        label, fine_tf = _read_raster(_open_path(root, fine_label))
        expected = coarse_tf @ Affine.scale(1 / scale)
        if not fine_tf.almost_equals(expected, precision=1e-9):
            raise InputDataError(
                f"{fine_label}: transform {tuple(fine_tf)[:6]} is not the coarse patch's "
                f"transform at 1/{scale} ({tuple(expected)[:6]})"
            )
        image_fine = None
        if with_fine_image and entry.get("image_fine"):
            image_fine, _ = _read_raster(_open_path(root, entry["image_fine"]))
            image_fine = image_fine.astype(np.float32)
        samples.append(CrossResSample(
            id=f"{entry['month']}/{entry['id']}", image=image.astype(np.float32),
            label=label[0].astype(np.uint8), scale=scale, image_fine=image_fine,
            split=entry["split"],
        ))
    return samples


# ------------------------------------------------------------------ normalisation + dataset
@dataclass(frozen=True)
class BandStats:
    """Per-band mean and standard deviation (computed on the training split only)."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def of(cls, samples: Sequence[CrossResSample]) -> BandStats:
        if not samples:
            raise InputDataError("no samples to compute band statistics from")
        stacked = np.concatenate(
            [s.image.reshape(s.image.shape[0], -1) for s in samples], axis=1
        )
        mean = np.nanmean(stacked, axis=1)
        std = np.maximum(np.nanstd(stacked, axis=1), 1e-6)
        return cls(tuple(float(v) for v in mean), tuple(float(v) for v in std))

    def apply(self, array: np.ndarray) -> np.ndarray:
        mean = np.asarray(self.mean, dtype=np.float32)[:, None, None]
        std = np.asarray(self.std, dtype=np.float32)[:, None, None]
        return np.nan_to_num((array - mean) / std, nan=0.0).astype(np.float32)


class CrossResolutionDataset(Dataset):
    """Torch dataset of :class:`CrossResSample` with scale-exact crops, flips and rotations.

    Items are dicts: ``image`` float32 ``(C, h, w)`` normalised, ``label`` int64 fine labels
    (255 ignored by the losses), and ``image_fine`` float32 when every sample has one and its
    bands match the coarse ones (normalised with the same statistics so the reconstruction
    head predicts in the input's units).

    Args:
        samples: the samples (all at the same scale).
        stats: normalisation statistics; computed from ``samples`` when None.
        crop: optional coarse crop size; random crops when augmenting, top-left otherwise.
        augment: random flips and 90-degree rotations (exact on both grids).
        seed: base seed of the augmentation draws; each item's draw depends on
            ``(seed, epoch, index)`` only (epoch set by :meth:`set_epoch`), so runs are
            reproducible whatever the loader's worker count.
    """

    # The trainer's sampler then yields (epoch, index) keys, so augmentation draws follow the
    # epoch with any number of loader workers.
    epoch_keys = True

    def __init__(self, samples: Sequence[CrossResSample], stats: BandStats | None = None,
                 crop: int | None = None, augment: bool = False, seed: int = 0) -> None:
        if not samples:
            raise InputDataError("a cross-resolution dataset needs at least one sample")
        scales = {s.scale for s in samples}
        if len(scales) != 1:
            raise InputDataError(f"samples mix scale factors {sorted(scales)}; use one")
        self.samples = list(samples)
        self.scale = scales.pop()
        self.stats = stats or BandStats.of(self.samples)
        self.crop = crop
        self.augment = augment
        self.seed = seed
        self.epoch = 0
        self.with_fine_image = all(
            s.image_fine is not None and s.image_fine.shape[0] == s.image.shape[0]
            for s in self.samples
        )
        if crop is not None and any(min(s.image.shape[1:]) < crop for s in self.samples):
            raise ConfigError(f"crop {crop} is larger than some samples' coarse size")

    def set_epoch(self, epoch: int) -> None:
        """Change the augmentation draw (call once per epoch)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        # The trainer's sampler yields (epoch, index) keys so that augmentation does
        # not depend on worker state; plain integer keys use the epoch of set_epoch().
        epoch, index = key if isinstance(key, tuple) else (self.epoch, key)
        sample = self.samples[index]
        k = self.scale
        image = self.stats.apply(sample.image)
        label = sample.label
        fine = (self.stats.apply(sample.image_fine)
                if self.with_fine_image and sample.image_fine is not None else None)
        rng = np.random.default_rng((self.seed, int(epoch), int(index)))
        if self.crop is not None:
            h, w = image.shape[1:]
            r0 = int(rng.integers(0, h - self.crop + 1)) if self.augment else 0
            c0 = int(rng.integers(0, w - self.crop + 1)) if self.augment else 0
            image = image[:, r0:r0 + self.crop, c0:c0 + self.crop]
            label = label[r0 * k:(r0 + self.crop) * k, c0 * k:(c0 + self.crop) * k]
            if fine is not None:
                fine = fine[:, r0 * k:(r0 + self.crop) * k, c0 * k:(c0 + self.crop) * k]
        if self.augment:
            turns = int(rng.integers(0, 4))
            flip = bool(rng.integers(0, 2))
            image, label = _orient(image, turns, flip), _orient(label, turns, flip)
            fine = _orient(fine, turns, flip) if fine is not None else None
        item = {"image": torch.from_numpy(np.ascontiguousarray(image)),
                "label": torch.from_numpy(np.ascontiguousarray(label).astype(np.int64))}
        if fine is not None:
            item["image_fine"] = torch.from_numpy(np.ascontiguousarray(fine))
        return item

    def with_samples(self, samples: Sequence[CrossResSample], augment: bool = False,
                     crop: int | None = None) -> CrossResolutionDataset:
        """A dataset over other samples normalised with this one's (training) statistics."""
        return CrossResolutionDataset(samples, stats=self.stats, crop=crop, augment=augment,
                                      seed=self.seed)


def _orient(array: np.ndarray, turns: int, flip: bool) -> np.ndarray:
    out = np.rot90(array, turns, axes=(-2, -1))
    return out[..., ::-1] if flip else out


def split_samples(samples: Sequence[CrossResSample], split: Split) -> list[CrossResSample]:
    """The samples of one split."""
    return [s for s in samples if s.split == split]
