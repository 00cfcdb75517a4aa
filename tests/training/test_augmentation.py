"""Radiometric augmentation and class-balanced sampling: deterministic per seed, as documented."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import ConfigError
from tests.support.rasters import write_patch_dataset
from training.augmentation import Radiometric, haze_weights
from training.config import TrainConfig, apply_recipe
from training.data import Augment, PatchDataset, compute_norm_stats
from training.run.inputs import augmentation_record
from training.sampling import KeyedSampler, balanced_weights

BANDS = ("B2", "B3", "B4", "B8", "B11", "VV")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return write_patch_dataset(tmp_path_factory.mktemp("aug") / "ds", n=8, size=16, bands=BANDS)


RADIO = Radiometric()


def _items(root, seed, radiometric=RADIO, keys=((0, 0), (0, 1), (1, 0))):
    norm = compute_norm_stats(PatchDataset(root, "train"))
    ds = PatchDataset(root, "train", norm=norm, augment=Augment(), seed=seed,
                      radiometric=radiometric)
    return [ds[k] for k in keys]


def test_radiometric_augmentation_is_a_function_of_seed_epoch_and_patch(root):
    first, again, other = _items(root, 3), _items(root, 3), _items(root, 4)
    for a, b in zip(first, again, strict=True):
        assert np.array_equal(a["image"].numpy(), b["image"].numpy())
    assert not np.allclose(first[0]["image"].numpy(), other[0]["image"].numpy())
    assert not np.allclose(first[0]["image"].numpy(), first[2]["image"].numpy())  # epoch
    # its own stream: the flips and rotations (and so the labels) are those without it
    for a, b in zip(first, _items(root, 3, radiometric=None), strict=True):
        assert np.array_equal(a["label"].numpy(), b["label"].numpy())
        assert not np.allclose(a["image"].numpy(), b["image"].numpy())


def test_radiometric_shifts_touch_optical_bands_only_and_haze_falls_with_wavelength(root):
    image = PatchDataset(root, "train").read_raw(0)[0]
    image[:, 0, 0] = np.nan
    hazy = Radiometric(gamma=1.0, gain=1.0, band_gain=0.0, offset=0.0, haze=0.1, p_haze=1.0)
    out = hazy(image, BANDS, np.random.default_rng(0))
    added = np.nanmean(out - image, axis=(1, 2))
    assert np.all(np.diff(added[:5]) < 0) and added[0] > 0  # B2 ... B11: longer waves
    assert added[-1] == 0 and np.isnan(out[:, 0, 0]).all()  # VV untouched, nodata kept
    assert np.allclose(added[:5] / added[0], haze_weights(BANDS, 1.5)[:5], rtol=1e-4)


def test_balanced_sampling_draws_rare_class_patches_more_and_repeats_per_seed_and_epoch():
    counts = np.array([[100, 0], [90, 10], [50, 50], [0, 0]])
    w = balanced_weights(counts)
    assert w[2] > w[1] > w[0] and w[3] == 0
    data = list(range(4))
    draws = []
    for seed, epoch in ((0, 0), (0, 0), (0, 1), (1, 0)):
        sampler = KeyedSampler(data, num_replicas=1, rank=0, seed=seed, weights=w)
        sampler.set_epoch(epoch)
        draws.append(list(sampler))
    assert draws[0] == draws[1] and draws[0] != draws[2] and draws[0] != draws[3]
    many = KeyedSampler(list(range(4000)), num_replicas=1, rank=0, weights=np.tile(w, 1000))
    picked = np.bincount(np.asarray(list(many)) % 4, minlength=4)
    assert picked[3] == 0 and picked[2] > picked[1] > picked[0]
    with pytest.raises(ConfigError, match="sampling weights"):
        KeyedSampler(data, num_replicas=1, rank=0, weights=np.zeros(4))


def test_the_options_are_off_by_default_and_the_model_file_records_their_parameters():
    cfg = apply_recipe(TrainConfig.of(model="unet"))
    assert cfg.data.radiometric is False and cfg.data.balanced_sampling is False
    record = augmentation_record(TrainConfig.of(model="unet", radiometric=True))
    assert record["radiometric"]["haze"] == Radiometric().haze
    assert record["geometric"]["rotate"] is True and record["balanced_sampling"] is False


def test_the_blur_keeps_a_missing_earlier_month_missing_for_presto():
    """A cloudy month before (its S2 nodata, 0 once normalised) beside clear pixels: the
    blur leaves the gap at exactly 0, so Presto still masks it there as a map's input does
    (:func:`training.models.encoders.series.mark_missing`), and blurs the rest."""
    import torch

    from contract.bands import series_bands
    from training.models.encoders.series import mark_missing

    own = ("B2", "B3", "B4", "B8", "VV", "VH")
    bands = series_bands(own, 2)
    image = np.random.default_rng(0).normal(size=(len(bands), 12, 12)).astype(np.float32)
    image[6:10, 3:7, 3:7] = 0.0  # the month before: S2 missing over a 4 x 4 block
    image[0, 9, 9] = 0.0  # the month's own B2 nodata at one pixel: the mean, as in a map
    earlier = tuple(range(6, 12))
    out, _ = Augment(vflip=0.0, rotate=False, blur=1.0, blur_sigma=(1.0, 1.0))(
        image, [], np.random.default_rng(1), earlier=earlier)
    assert (out[6:10, 3:7, 3:7] == 0).all()  # the earlier month's gap kept
    assert out[0, 9, 9] != 0  # the own month blurred as it always was
    gap = np.zeros(image.shape, bool)
    gap[6:10, 3:7, 3:7] = True
    assert np.abs(out - image)[~gap].min() > 0  # every other value is blurred
    plain, _ = Augment(vflip=0.0, rotate=False, blur=1.0, blur_sigma=(1.0, 1.0))(
        image, [], np.random.default_rng(1))
    assert np.array_equal(plain[:6], out[:6])  # without earlier months: the plain blur
    x = torch.from_numpy(out[None])
    columns = [*range(6, 12), *range(6)]  # oldest month first
    marked = mark_missing(x[:, columns], x[:, columns], own)
    assert torch.isnan(marked[0, :4, 3:7, 3:7]).all()  # the gap's S2 stays missing
    assert not torch.isnan(marked[0, 4:]).any()  # its VV, VH and the own month are read
    assert int(torch.isnan(marked).sum()) == 4 * 16
