"""The patch dataset (docs/data-contract.md) as a torch ``Dataset``, local or ``gs://``.

Images are read with rasterio (GDAL ``/vsigs/`` for ``gs://``), bands by the manifest's names,
normalised per band with statistics of the TRAINING split (``compute_norm_stats``), NaN set
to 0 (the band mean after normalisation) and the label set to nodata (255) wherever any band
is missing. The paper's augmentations (vertical flip, random rotation by multiples of 90° so
labels at any scale stay exact, Gaussian blur of the image) run on the training split only,
after an optional random square crop (the land-cover HRNet trains on 513 px crops).
A super-resolution model's recipe asks for the fine image too (``targets``): it is read with
the input bands, normalised like the input and moved (never blurred) with the label.

Determinism: the loader's sampler yields ``(epoch, index)`` keys and each sample's random
augmentation is drawn from ``default_rng([seed, epoch, index])``, so a batch does not depend
on worker count, worker scheduling or where a run was resumed. The loader that draws them is
:mod:`training.loader`; the dataset's files are found by :mod:`training.patch_files`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Collection, Mapping, Sequence
from typing import Literal

import numpy as np
import rasterio
import torch
from torch.utils.data import Dataset

from contract import dataset as _dataset
from contract.bands import LABEL_NODATA, check_series_bands, is_code_band, own_month
from contract.splits import missing_split_advice
from core.errors import ConfigError, InputDataError
from core.storage.gdal_auth import check_read
from training.augmentation import Augment, Radiometric, random_crop
from training.norm_stats import NormStats, band_stats
from training.patch_files import (
    class_names_of,
    open_raster,
    patch_key,
    raster_path,
    read_manifest,
    scene_key,
)

Split = Literal["train", "val", "test"]


# ------------------------------------------------------------------ normalisation
def compute_norm_stats(dataset: PatchDataset, max_patches: int | None = None) -> NormStats:
    """Streaming per-band mean/std (float64 sums) over a dataset's raw images."""
    count = len(dataset) if max_patches is None else min(max_patches, len(dataset))
    return band_stats((dataset.read_raw(i)[0] for i in range(count)), dataset.bands)


def compute_scene_norms(root: str | os.PathLike,
                        bands: Sequence[str] | None = None) -> dict[str, NormStats]:
    """Each scene's band statistics (:func:`scene_key`) over its patches of every split.

    What a model trained with ``--norm scene`` normalises a patch by: the statistics of the
    imagery it was cut from, not of the training set, as a map normalises its input stack by
    the stack's own (no label is read, so the validation and test patches' imagery counts).
    """
    every = PatchDataset(root, None, bands)
    groups: dict[str, list[int]] = {}
    for i, record in enumerate(every.records):
        groups.setdefault(scene_key(record), []).append(i)
    return {key: band_stats((every.read_raw(i)[0] for i in members), every.bands,
                            where=f"the patches of {key}", earlier_from_base=True)
            for key, members in sorted(groups.items())}


def scene_norms_for(root: str | os.PathLike, bands: Sequence[str],
                    by: str) -> dict[str, NormStats] | None:
    """:func:`compute_scene_norms` for a model normalised ``by="scene"``, None for ``training``.

    What every reader of a model's dataset (training, evaluation, int8 calibration, noisy-patch
    scoring) passes as ``PatchDataset(scene_norms=...)``, so each feeds the network as it
    was trained.
    """
    return compute_scene_norms(root, bands) if by == "scene" else None


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
        targets: what the model learns from, label first (a model recipe's ``targets``, e.g.
            ``("label_fine", "image_fine")``); replaces ``label``. ``image_fine`` is loaded
            when every patch of the split has one holding the input bands
            (:attr:`fine_image`; :meth:`target_warning` says why not otherwise).
        crop: random ``crop x crop`` window of every item (input pixels; the targets are cut at
            their own scale); None, 0, or a crop not smaller than the patch keeps whole patches.
        exclude: patch ids ``"<month>/<id>"`` to leave out (noisy-sample filtering).
        radiometric: radiometric augmentation of the input image (reflectance, before
            normalisation; :class:`training.augmentation.Radiometric`), ``None`` for none. Its
            draws come from their own stream, so turning it on leaves the others unchanged.
        scene_norms: per-scene statistics (:func:`compute_scene_norms`): each patch is
            normalised by those of the scene it was cut from instead of ``norm``
            (``isamap-train --norm scene``).

    Items are dicts ``{"image": float32 (C, H, W), "label": int64 (H', W'), "id": str}``,
    plus ``"image_fine": float32 (C, H', W')`` when the fine image is loaded: the input bands
    on the fine grid, normalised with the input's statistics (so a reconstruction predicts in
    the input's units, as the lab's ``experiments.srseg_data.CrossResolutionDataset`` does),
    flipped and rotated with the label, never blurred.
    """

    epoch_keys = True  # items may be fetched as (epoch, index): see KeyedSampler

    def __init__(self, root: str | os.PathLike, split: Split | None = "train",
                 bands: Sequence[str] | None = None, norm: NormStats | None = None,
                 augment: Augment | None = None, label: str = "label", seed: int = 0,
                 cache: bool = False, targets: Sequence[str] | None = None,
                 crop: int | None = None, exclude: Collection[str] = (),
                 radiometric: Radiometric | None = None,
                 scene_norms: Mapping[str, NormStats] | None = None) -> None:
        self.targets = tuple(targets) if targets is not None else (label,)
        label = self.targets[0]
        self.root = str(root)
        self.manifest = read_manifest(self.root)
        manifest_bands = [str(b) for b in self.manifest["bands"]]
        self.bands = tuple(bands) if bands is not None else tuple(manifest_bands)
        missing = [b for b in self.bands if b not in manifest_bands]
        if missing:
            raise ConfigError(f"bands {missing} are not in the dataset (it has {manifest_bands})")
        check_series_bands(self.bands, "--bands",
                           add="add the month before ({}) to the dataset and --bands",
                           drop="give --bands without {}")
        self.band_indexes = [manifest_bands.index(b) + 1 for b in self.bands]
        records = _dataset.read_index(self.root)
        excluded = set(exclude)
        self.records = [r for r in records if (split is None or r["split"] == split)
                        and patch_key(r) not in excluded]
        if not self.records:
            raise InputDataError(f"no {split!r} patches in {self.root}/index.jsonl: "
                                 f"{missing_split_advice(self.manifest, records, split)}")
        if any(label not in r for r in self.records):
            raise InputDataError(f"some patches have no {label!r} file; export the dataset "
                                 "again with its fine label (isamap-export --fine-scale, the "
                                 "model's scale)")
        if norm is not None and tuple(norm.bands) != self.bands:
            raise ConfigError(f"normalisation is for bands {norm.bands}, the dataset reads "
                              f"{self.bands}")
        self.norm = norm
        self.scene_norms = dict(scene_norms) if scene_norms is not None else None
        if self.scene_norms is not None:
            unknown = sorted({scene_key(r) for r in self.records} - set(self.scene_norms))
            if unknown:
                raise ConfigError(f"no scene statistics for the patches of {unknown}")
        self.augment = augment
        self.radiometric = radiometric
        self.label_key = label
        self.codes = tuple(i for i, b in enumerate(self.bands) if is_code_band(b))
        #: the bands whose nodata makes a pixel's label nodata: the month's own (an earlier
        #: month of a series is fed as the band mean where it is nodata, as predicting does)
        self.own = list(own_month(self.bands))
        #: a series stack's earlier months' bands: the blur keeps their gaps (Augment)
        self.earlier = tuple(i for i in range(len(self.bands)) if i not in self.own)
        self.seed = seed
        self.crop = crop
        self.class_names = class_names_of(self.manifest)
        self.fine_band_indexes: list[int] | None = None
        self._no_fine_image = ""
        if "image_fine" in self.targets:
            self.fine_band_indexes, self._no_fine_image = self._fine_bands()
        self._cache: dict[int, tuple] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.records)

    @property
    def fine_image(self) -> bool:
        """Whether items carry ``image_fine`` (asked for by the targets and present)."""
        return self.fine_band_indexes is not None

    def decoded_bytes(self) -> int:
        """Memory the decoded patches take when cached (the first patch's size times the count)."""
        rec = self.records[0]
        with open_raster(raster_path(self.root, rec["image"])) as src:
            per_patch = len(self.band_indexes) * src.height * src.width * 4
        with open_raster(raster_path(self.root, rec[self.label_key])) as src:
            per_patch += src.height * src.width
        if self.fine_band_indexes is not None:
            with open_raster(raster_path(self.root, rec["image_fine"])) as src:
                per_patch += len(self.fine_band_indexes) * src.height * src.width * 4
        return per_patch * len(self.records)

    @property
    def patch_size(self) -> int:
        """The smaller edge of the first patch image, in pixels (read from the file)."""
        rec = self.records[0]
        with open_raster(raster_path(self.root, rec["image"])) as src:
            return min(src.height, src.width)

    def target_warning(self, model: str) -> str | None:
        """One line with what to do when a target the model asks for is not in the dataset."""
        if "image_fine" not in self.targets or self.fine_image:
            return None
        return (f"training {model!r} without its image_fine target ({self._no_fine_image}): its "
                "reconstruction head gets no signal and the loss drops its L1 term; give the "
                "patches <id>_image_x<k>.tif fine images of the input bands "
                "(PatchWriter.write(..., image_fine=...)) to train it as designed")

    def _fine_bands(self) -> tuple[list[int] | None, str]:
        """1-based band indexes of the input bands in the fine images, or None and why not."""
        missing = sum(1 for r in self.records if not r.get("image_fine"))
        if missing:
            return None, f"{missing} of {len(self.records)} patches have no fine image"
        path = raster_path(self.root, self.records[0]["image_fine"])
        try:
            with open_raster(path) as src:
                names, count = list(src.descriptions), src.count
        except rasterio.errors.RasterioIOError as exc:
            check_read(path, exc)
            raise InputDataError(f"cannot read {path}: {exc}") from None
        if all(b in names for b in self.bands):
            return [names.index(b) + 1 for b in self.bands], ""
        if not any(names) and count == len(self.manifest["bands"]):
            return list(self.band_indexes), ""  # unnamed bands in the manifest's order
        return None, (f"its fine images hold bands {names or count} and not the input bands "
                      f"{list(self.bands)}")

    def label_counts(self) -> np.ndarray:
        """Pixels of each label value (256 counts) over the split, read from the labels only."""
        counts = np.zeros(256, dtype=np.int64)
        for i in range(len(self)):
            counts += np.bincount(self._read_label(i).ravel().astype(np.uint8), minlength=256)
        return counts

    def patch_label_counts(self, classes: int) -> np.ndarray:
        """Pixels of each class ``0..classes-1`` per patch, ``(len, classes)``; no nodata.

        Reads the label rasters alone (a cached patch's label from the cache): balanced
        sampling, the default of a recipe, then costs one pass over the labels, not over the
        images too, before training starts.
        """
        out = np.zeros((len(self), classes), dtype=np.int64)
        for i in range(len(self)):
            label = self._read_label(i)
            out[i] = np.bincount(label.ravel().astype(np.uint8), minlength=256)[:classes]
        return out

    def _read_label(self, i: int) -> np.ndarray:
        if self._cache is not None and i in self._cache:
            return self._cache[i][1]
        return self._read_file(i, self.label_key, 1)

    def _read_file(self, i: int, key: str, indexes: int | Sequence[int]) -> np.ndarray:
        """Patch ``i``'s ``key`` raster, one band (an int: the label) as stored, or several.

        Several bands (the images) come as float32 with the nodata value as NaN. The one
        place a patch file that cannot be read becomes an :class:`InputDataError`.
        """
        rec = self.records[i]
        try:
            with open_raster(raster_path(self.root, rec[key])) as src:
                if isinstance(indexes, int):
                    return src.read(indexes)
                data, nod = src.read(list(indexes), out_dtype="float32"), src.nodata
        except rasterio.errors.RasterioIOError as exc:
            raise InputDataError(f"cannot read patch {rec['id']} of {self.root}: {exc}") from None
        if nod is not None and not math.isnan(nod):
            data[data == nod] = np.nan
        return data

    def read_raw(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Image (C, H, W) float32 with NaN nodata and label (H', W') uint8, as stored."""
        image, label, _ = self._read(i)
        return image, label

    def _read(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """``read_raw`` plus the fine image (C, H', W') float32, NaN nodata, when loaded."""
        if self._cache is not None and i in self._cache:
            return self._cache[i]
        image = self._read_file(i, "image", self.band_indexes)
        label = self._read_file(i, self.label_key, 1)
        fine = (self._read_file(i, "image_fine", self.fine_band_indexes)
                if self.fine_band_indexes is not None else None)
        if self._cache is not None:
            self._cache[i] = (image, label, fine)
        return image, label, fine

    def _normalise(self, image: np.ndarray, i: int) -> np.ndarray:
        norm = (self.scene_norms[scene_key(self.records[i])] if self.scene_norms is not None
                else self.norm)
        if norm is not None:
            mean = np.asarray(norm.mean, np.float32)[:, None, None]
            std = np.asarray(norm.std, np.float32)[:, None, None]
            image = (image - mean) / std
        return np.nan_to_num(image, nan=0.0, posinf=0.0, neginf=0.0)

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        epoch, i = key if isinstance(key, tuple) else (0, key)
        image, label, fine = self._read(int(i))
        label = label.astype(np.int64)
        invalid = ~np.isfinite(image[self.own]).all(axis=0)
        if invalid.any():
            label = _mask_label(label, invalid)
        if self.radiometric is not None:
            image = self.radiometric(image, self.bands, np.random.default_rng(
                [self.seed, int(epoch), int(i), 2]))
        image = self._normalise(image, int(i))
        targets = [label] if fine is None else [label, self._normalise(fine, int(i))]
        if self.crop and self.crop < min(image.shape[1:]):
            # its own stream, so adding a crop leaves the augmentation draws unchanged
            image, targets = random_crop(image, targets, self.crop,
                                         np.random.default_rng([self.seed, int(epoch), int(i), 1]))
        if self.augment is not None:
            rng = np.random.default_rng([self.seed, int(epoch), int(i)])
            image, targets = self.augment(image, targets, rng, self.codes, self.earlier)
        item = {"image": torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)),
                "label": torch.from_numpy(np.ascontiguousarray(targets[0])),
                "id": patch_key(self.records[int(i)])}
        if fine is not None:
            item["image_fine"] = torch.from_numpy(np.ascontiguousarray(targets[1],
                                                                      dtype=np.float32))
        return item


def _mask_label(label: np.ndarray, invalid: np.ndarray) -> np.ndarray:
    """Set label nodata where the image is missing, at the label's own scale."""
    k = label.shape[0] // invalid.shape[0]
    if k > 1:
        invalid = np.kron(invalid, np.ones((k, k), dtype=bool))
    if invalid.shape != label.shape:
        return label
    return np.where(invalid, LABEL_NODATA, label)
