"""The patch dataset: bands by name, train-split normalisation, nodata, augmentation, gs://."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from contract.dataset import read_index, read_manifest
from contract.grid import Grid
from contract.patch_writer import PatchWriter
from core.errors import ConfigError, InputDataError
from tests.support.rasters import BANDS, write_patch_dataset
from training.data import Augment, PatchDataset, compute_norm_stats
from training.loader import make_loader


def _raw_train_images(root: Path) -> np.ndarray:
    imgs = []
    for rec in read_index(root):
        if rec["split"] == "train":
            with rasterio.open(root / rec["image"]) as src:
                imgs.append(src.read())
    return np.stack(imgs)


def test_bands_come_from_the_manifest_and_can_be_reordered(patch_root):
    ds = PatchDataset(patch_root, "train")
    assert ds.bands == tuple(BANDS) and len(ds) == 6
    sub = PatchDataset(patch_root, "train", bands=["VH", "B2"])
    full = ds[0]["image"].numpy()
    assert np.array_equal(sub[0]["image"].numpy(), full[[5, 0]])
    with pytest.raises(ConfigError, match="not in the dataset"):
        PatchDataset(patch_root, "train", bands=["B11"])


def test_norm_stats_are_the_train_split_moments(patch_root):
    stats = compute_norm_stats(PatchDataset(patch_root, "train"))
    raw = _raw_train_images(patch_root).astype(np.float64)
    assert np.allclose(stats.mean, raw.mean(axis=(0, 2, 3)), rtol=1e-6)
    assert np.allclose(stats.std, raw.std(axis=(0, 2, 3)), rtol=1e-5)
    ds = PatchDataset(patch_root, "train", norm=stats)
    x = np.stack([ds[i]["image"].numpy() for i in range(len(ds))])
    assert np.allclose(x.mean(axis=(0, 2, 3)), 0, atol=1e-4)
    assert np.allclose(x.std(axis=(0, 2, 3)), 1, atol=1e-3)


def test_nodata_pixels_become_zero_input_and_ignored_label(tmp_path):
    root = write_patch_dataset(tmp_path / "ds", n=6, size=16, nan_patch=True)
    ds = PatchDataset(root, None)
    item = ds[0]
    assert (item["label"][:4, :4] == 255).all() and (item["label"][8:, 8:] != 255).all()
    assert (item["image"][:, :4, :4] == 0).all()
    assert np.isfinite(item["image"].numpy()).all()


def test_augmentation_is_per_sample_deterministic_and_consistent(patch_root):
    aug = Augment(vflip=0.5, rotate=True, blur=0.0)
    ds = PatchDataset(patch_root, "train", augment=aug, seed=7)
    a, b = ds[(3, 1)], ds[(3, 1)]
    assert np.array_equal(a["image"], b["image"]) and np.array_equal(a["label"], b["label"])
    plain = PatchDataset(patch_root, "train")[1]
    variants = {ds[(e, 1)]["label"].numpy().tobytes() for e in range(12)}
    assert len(variants) > 2  # the epoch changes the draw
    for e in range(4):  # image and label move together: bright optical <=> impervious
        item = ds[(e, 1)]
        assert ((item["image"][0] > 0.1).numpy() == item["label"].numpy().astype(bool)).mean() > 0.9
    assert sorted(plain["label"].numpy().ravel()) == sorted(ds[(5, 1)]["label"].numpy().ravel())


def test_blur_changes_the_image_only():
    rng = np.random.default_rng(0)
    img = rng.normal(size=(2, 16, 16)).astype(np.float32)
    lab = (rng.random((16, 16)) > 0.5).astype(np.int64)
    out, (lab2,) = Augment(vflip=0.0, rotate=False, blur=1.0)(img, [lab], rng)
    assert out.std() < img.std() and np.array_equal(lab, lab2)


def test_fine_labels_and_loader(tmp_path):
    root = write_patch_dataset(tmp_path / "ds", n=6, size=16, fine_scale=4)
    ds = PatchDataset(root, "train", label="label_fine", augment=Augment())
    item = ds[(1, 0)]
    assert item["image"].shape == (6, 16, 16) and item["label"].shape == (64, 64)
    loader = make_loader(ds, batch_size=2, shuffle=True, seed=0, num_workers=0)
    loader.sampler.set_epoch(1)
    batches = list(loader)
    assert len(batches) == 1 and batches[0]["label"].shape == (2, 64, 64)


def test_bad_roots_give_clear_errors(tmp_path, patch_root):
    with pytest.raises(InputDataError, match=r"manifest\.json"):
        PatchDataset(tmp_path, "train")
    with pytest.raises(InputDataError, match=r"no 'val' patches .* too small for a train/val/"
                       r"test split; .* make the dataset again"):
        PatchDataset(write_patch_dataset(tmp_path / "t", n=4, size=8,
                                         splits=["train"] * 4), "val")
    left_out = [f"{r['month']}/{r['id']}" for r in read_index(patch_root) if r["split"] == "val"]
    with pytest.raises(InputDataError, match=r"no 'val' patches .*: all 2 of its val patches "
                       r"are left out \(train 6, val 2, test 2\)"):
        PatchDataset(patch_root, "val", exclude=left_out)


def test_reads_a_dataset_from_cloud_storage(gcs_emulator, gcs_bucket, patch_root):
    bucket = gcs_emulator.client().bucket(gcs_bucket)
    for path in patch_root.rglob("*"):
        if path.is_file():
            bucket.blob(f"ds/{path.relative_to(patch_root)}").upload_from_filename(str(path))
    remote = PatchDataset(f"gs://{gcs_bucket}/ds", "val")
    local = PatchDataset(patch_root, "val")
    assert len(remote) == len(local) == 2
    assert np.array_equal(remote[0]["image"], local[0]["image"])
    assert np.array_equal(remote[1]["label"], local[1]["label"])


def test_fixture_dataset_is_what_the_exporters_write(patch_root):
    """The training fixtures come from the real writer: records in image tags, real grid."""
    manifest = read_manifest(patch_root)
    grid = Grid.from_dict(manifest["grid"])
    assert manifest["bands"] == list(BANDS) and manifest["counts"]["per_split"] == {
        "train": 6, "val": 2, "test": 2}
    writer = PatchWriter(patch_root, grid, manifest["bands"], manifest["months"][0])
    from_tags = writer.finished_records()
    index = read_index(patch_root)
    assert sorted(from_tags) == sorted(r["id"] for r in index)
    assert all(from_tags[r["id"]] == r for r in index)
    with rasterio.open(patch_root / index[0]["image"]) as src:
        assert src.transform == grid.patch_transform(index[0]["row"], index[0]["col"])


def test_random_crops_cut_image_and_label_alike(tmp_path):
    """The land-cover recipe's crops: per (seed, epoch, patch), same window on both grids."""
    root = write_patch_dataset(tmp_path / "ds", n=6, fine_scale=2)
    whole = PatchDataset(root, "train", label="label_fine")
    crops = PatchDataset(root, "train", label="label_fine", crop=12, seed=3)
    a, b = crops[(0, 1)], crops[(0, 1)]
    assert a["image"].shape == (len(BANDS), 12, 12) and a["label"].shape == (24, 24)
    assert np.array_equal(a["image"], b["image"])  # reproducible
    full = whole[1]
    img, lab = full["image"].numpy(), full["label"].numpy()
    hits = [(r, c) for r in range(21) for c in range(21)
            if np.array_equal(img[:, r:r + 12, c:c + 12], a["image"].numpy())]
    assert len(hits) == 1
    r, c = hits[0]
    assert np.array_equal(lab[2 * r:2 * r + 24, 2 * c:2 * c + 24], a["label"].numpy())
    assert any(not np.array_equal(crops[(e, 1)]["image"], a["image"]) for e in range(1, 4))
    assert PatchDataset(root, "train", crop=64)[0]["image"].shape[-1] == 32  # no bigger crop
    left = PatchDataset(root, "train", exclude=[whole[0]["id"]])
    assert len(left) == len(whole) - 1 and whole[0]["id"] not in {left[i]["id"] for i in
                                                                  range(len(left))}


def test_fine_image_is_loaded_when_present_and_asked_for(tmp_path):
    root = write_patch_dataset(tmp_path / "ds", n=6, size=8, fine_scale=4, image_fine=True)
    norm = compute_norm_stats(PatchDataset(root, "train"))
    targets = ("label_fine", "image_fine")
    plain = PatchDataset(root, "train", norm=norm, targets=targets)
    assert plain.fine_image and plain.target_warning("srseg") is None and plain.patch_size == 8
    item = plain[0]
    assert item["image_fine"].shape == (len(BANDS), 32, 32) and item["label"].shape == (32, 32)
    # The fine image is the input bands normalised with the input's statistics: its 4x4 block
    # means are the (normalised) coarse image up to the writer's noise.
    blocks = item["image_fine"].numpy().reshape(len(BANDS), 8, 4, 8, 4).mean(axis=(2, 4))
    np.testing.assert_allclose(blocks, item["image"].numpy(), atol=0.5)
    # Flips and rotations move the fine image with the label and the input; never blurred.
    aug = PatchDataset(root, "train", norm=norm, augment=Augment(blur=1.0), targets=targets)
    moved = [aug[(epoch, 0)] for epoch in range(6)]
    base_fine, base_label = item["image_fine"].numpy(), item["label"].numpy()
    for it in moved:
        moves = [(flip, k) for flip in (False, True) for k in range(4)
                 if np.array_equal(it["image_fine"].numpy(), np.rot90(
                     base_fine[:, ::-1] if flip else base_fine, k, axes=(-2, -1)))]
        assert moves, "fine image resampled or blurred instead of flipped/rotated"
        flip, k = moves[0]
        assert np.array_equal(it["label"].numpy(),
                              np.rot90(base_label[::-1] if flip else base_label, k))
    assert len({it["image_fine"].numpy().tobytes() for it in moved}) > 1
    # Not asked for, or not there: no image_fine, and a warning saying what to do.
    assert "image_fine" not in PatchDataset(root, "train", label="label_fine")[0]
    bare = write_patch_dataset(tmp_path / "bare", n=6, size=8, fine_scale=4)
    ds = PatchDataset(bare, "train", targets=targets)
    assert not ds.fine_image and "image_fine" not in ds[0]
    assert "2 of 2 patches have no fine image" in ds.target_warning("srseg")
    assert "image_x<k>.tif" in ds.target_warning("srseg")


def test_the_data_path_follows_the_datasets_size_and_keeps_given_values():
    from training.loader import CACHE_MAX_BYTES, choose_data_path, default_workers

    small = choose_data_path(10 << 20, "cpu")
    assert (small.cache, small.workers) == (True, 0) and "fits in memory" in small.reason
    large = choose_data_path(CACHE_MAX_BYTES + 1, "cpu")
    assert (large.cache, large.workers) == (False, default_workers())
    gpu = choose_data_path(10 << 20, "cuda")  # workers augment while the device computes
    assert gpu.workers == default_workers() and gpu.cache
    # each worker caches its own copy: too many copies do not fit
    assert not choose_data_path(CACHE_MAX_BYTES // 2, "cuda", workers=3).cache
    given = choose_data_path(10 << 20, "cpu", cache=False, workers=2)
    assert (given.cache, given.workers) == (False, 2)


def test_decoded_bytes_count_every_patch_at_its_decoded_size(patch_root):
    from training.data import PatchDataset

    ds = PatchDataset(patch_root, "train")
    image, label = ds.read_raw(0)
    assert ds.decoded_bytes() == len(ds) * (image.nbytes + label.nbytes)


def test_batches_are_stacked_on_the_calling_thread_alone(monkeypatch):
    """The loader's collate is default_collate on one thread; the count is given back."""
    import torch
    from torch.utils.data import default_collate

    from training import loader as loading

    threads_seen: list[int] = []

    def spy(items):
        threads_seen.append(torch.get_num_threads())
        return default_collate(items)

    monkeypatch.setattr(loading, "default_collate", spy)
    items = [{"image": torch.full((2, 4, 4), float(i)), "id": f"p{i}"} for i in range(3)]
    threads = torch.get_num_threads()
    loader = make_loader(items, batch_size=3, shuffle=False, num_workers=0)
    batch = next(iter(loader))
    assert threads_seen == [1] and torch.get_num_threads() == threads
    assert torch.equal(batch["image"], default_collate(items)["image"])
    assert batch["id"] == ["p0", "p1", "p2"]


def test_label_counts_read_the_labels_alone_and_agree_with_the_cache(tmp_path):
    """Balanced sampling's counts: every class per patch, from the label rasters only (a
    dataset whose images are gone still counts), and the same from a filled cache."""
    root = write_patch_dataset(tmp_path / "ds")
    records = [r for r in read_index(root) if r["split"] == "train"]
    expected = []
    for rec in records:
        with rasterio.open(root / rec["label"]) as src:
            expected.append(np.bincount(src.read(1).ravel(), minlength=256)[:2])
    cached = PatchDataset(root, "train", cache=True)
    for i in range(len(cached)):
        cached[i]  # fills the cache
    counts = cached.patch_label_counts(2)
    assert counts.shape == (len(records), 2) and counts.sum() > 0
    assert np.array_equal(counts, np.stack(expected))
    for rec in records:
        (root / rec["image"]).unlink()
    assert np.array_equal(PatchDataset(root, "train").patch_label_counts(2), counts)
    (root / records[0]["label"]).unlink()
    with pytest.raises(InputDataError, match="cannot read patch"):
        PatchDataset(root, "train").patch_label_counts(2)
