import json

import numpy as np
import pytest
from affine import Affine

from gee_export.contract.geotiff import write_geotiff
from gee_export.contract.grid import Grid
from gee_export.core.errors import ConfigError, InputDataError
from training.srseg.data import (
    BandStats,
    CrossResolutionDataset,
    CrossResSample,
    binary_isa_label,
    block_mean,
    naip_samples,
    patch_samples,
    read_naip_tile,
    split_samples,
)


@pytest.fixture(scope="module")
def naip_dir(shared_data):
    return shared_data / "geobench_chesapeake_naip"


def test_block_mean_is_the_average_of_each_block():
    a = np.arange(2 * 4 * 6, dtype=np.float32).reshape(2, 4, 6)
    out = block_mean(a, 2)
    assert out.shape == (2, 2, 3)
    assert out[1, 1, 2] == pytest.approx(a[1, 2:4, 4:6].mean())
    with pytest.raises(InputDataError, match="multiple of 4"):
        block_mean(a, 4)


def test_binary_isa_label_maps_classes_5_and_6():
    classes = np.array([[0, 1, 2], [4, 5, 6]])
    assert binary_isa_label(classes).tolist() == [[255, 0, 0], [0, 1, 1]]


def test_naip_adapter_uses_block_means_and_impervious_classes(naip_dir):
    samples = naip_samples(naip_dir, scale=8)
    assert len(samples) == 20  # five tiles x four quadrants
    assert {s.split for s in samples} == {"train", "test"}
    assert len(split_samples(samples, "test")) == 5
    bands, classes = read_naip_tile(naip_dir / "id_000184.hdf5")
    se = next(s for s in samples if s.id == "id_000184_q3")  # south-east quadrant
    assert se.image.shape == (4, 16, 16) and se.label.shape == (128, 128)
    fine = bands[:, 128:, 128:]
    # coarse pixel (r, c) is the mean of the 8 x 8 block of 1 m pixels it covers
    np.testing.assert_allclose(se.image[:, 3, 5], fine[:, 24:32, 40:48].mean(axis=(1, 2)),
                               rtol=1e-6)
    np.testing.assert_allclose(se.image, fine.reshape(4, 16, 8, 16, 8).mean(axis=(2, 4)),
                               rtol=1e-5)
    np.testing.assert_array_equal(se.label, np.isin(classes[128:, 128:], [5, 6]))
    np.testing.assert_array_equal(se.image_fine, fine)
    whole = np.isin(classes, [5, 6]).mean()
    tile = [s for s in samples if s.id.startswith("id_000184")]
    assert np.mean([s.label.mean() for s in tile]) == pytest.approx(whole)
    assert 0.25 < whole < 0.35  # the README's "30 % impervious" tile


def test_naip_adapter_crops_to_a_multiple_of_ten(naip_dir):
    samples = naip_samples(naip_dir, scale=10)
    assert samples[0].image.shape == (4, 12, 12) and samples[0].label.shape == (120, 120)
    with pytest.raises(ConfigError, match="not supported"):
        naip_samples(naip_dir, scale=3)


def test_sample_rejects_misaligned_fine_label():
    with pytest.raises(InputDataError, match=r"grid\.scaled"):
        CrossResSample("x", np.zeros((2, 4, 4), np.float32), np.zeros((30, 30), np.uint8), 8)


def test_augmentation_keeps_coarse_and_fine_aligned():
    rng = np.random.default_rng(0)
    image = rng.random((1, 6, 6)).astype(np.float32)
    # label = coarse pixel index repeated over its 4 x 4 fine block: alignment is checkable
    ids = np.arange(36).reshape(6, 6)
    label = np.kron(ids, np.ones((4, 4), dtype=int)).astype(np.uint8)
    sample = CrossResSample("a", image, label, 4, image_fine=np.kron(image, np.ones((1, 4, 4))))
    ds = CrossResolutionDataset([sample], crop=4, augment=True, seed=3)
    stats = ds.stats
    seen = set()
    for epoch in range(6):
        ds.set_epoch(epoch)
        item = ds[0]
        img, lab, fine = item["image"].numpy(), item["label"].numpy(), item["image_fine"].numpy()
        assert img.shape == (1, 4, 4) and lab.shape == (16, 16) and fine.shape == (1, 16, 16)
        raw = img[0] * stats.std[0] + stats.mean[0]
        for r in range(4):
            for c in range(4):
                block = lab[r * 4:(r + 1) * 4, c * 4:(c + 1) * 4]
                assert (block == block[0, 0]).all()
                assert raw[r, c] == pytest.approx(image[0].ravel()[block[0, 0]], abs=1e-5)
                np.testing.assert_allclose(fine[0, r * 4, c * 4], img[0, r, c], atol=1e-5)
        seen.add(lab.tobytes())
    assert len(seen) > 1  # the draw changes with the epoch


def test_band_stats_normalise_with_training_statistics():
    s = CrossResSample("a", np.full((2, 2, 2), 3.0, np.float32), np.zeros((4, 4), np.uint8), 2)
    stats = BandStats.of([s])
    assert stats.mean == (3.0, 3.0)
    assert np.all(stats.apply(s.image) == 0)


def _write(path, array, transform, dtype, nodata):
    write_geotiff(path, array.astype(dtype), transform, "EPSG:32650", nodata)


def test_patch_samples_reads_fine_labels_on_the_scaled_grid(tmp_path):
    grid = Grid("EPSG:32650", 500000.0, 3400000.0, 8, 8, patch_size=8, stride=8)
    fine_grid = grid.scaled(4)
    (tmp_path / "patches" / "2021-06").mkdir(parents=True)
    image = np.random.default_rng(1).random((3, 8, 8)).astype(np.float32)
    label = (np.random.default_rng(2).random((1, 32, 32)) > 0.5).astype(np.uint8)
    _write(tmp_path / "patches/2021-06/r0_c0.tif", image, grid.transform, "float32", None)
    _write(tmp_path / "patches/2021-06/r0_c0_label_x4.tif", label, fine_grid.transform,
           "uint8", 255)
    # a second patch whose fine label is shifted by one fine pixel: must be refused
    _write(tmp_path / "patches/2021-06/r1_c0.tif", image, grid.transform, "float32", None)
    _write(tmp_path / "patches/2021-06/r1_c0_label_x4.tif", label,
           fine_grid.transform @ Affine.translation(1, 0), "uint8", 255)
    entries = [
        {"id": "r0_c0", "month": "2021-06", "split": "train", "image": "patches/2021-06/r0_c0.tif",
         "label": "x", "label_fine": "patches/2021-06/r0_c0_label_x4.tif"},
        {"id": "r1_c0", "month": "2021-06", "split": "val", "image": "patches/2021-06/r1_c0.tif",
         "label": "x", "label_fine": "patches/2021-06/r1_c0_label_x4.tif"},
    ]
    (tmp_path / "index.jsonl").write_text("\n".join(json.dumps(e) for e in entries))
    (sample,) = patch_samples(tmp_path, 4, splits=("train",))
    np.testing.assert_array_equal(sample.label, label[0])
    np.testing.assert_allclose(sample.image, image)
    with pytest.raises(InputDataError, match="transform"):
        patch_samples(tmp_path, 4, splits=("val",))
    with pytest.raises(InputDataError, match="no fine label at x8"):
        patch_samples(tmp_path, 8, splits=("train",))


def test_naip_patches_written_by_the_exporter_read_back_identically(naip_dir, tmp_path):
    from gee_export.contract.patch_writer import PatchWriter

    scale = 8
    quadrants = [s for s in naip_samples(naip_dir, scale) if s.id.startswith("id_000184")]
    grid = Grid("EPSG:32618", 365430.0, 4312870.0, 32, 32, patch_size=16, stride=16)
    splits = {(q // 2, q % 2): ("test" if q == 3 else "train") for q in range(4)}
    writer = PatchWriter(str(tmp_path), grid, ("Red", "Green", "Blue", "NearInfrared"),
                         "2021-06", splits=splits, fine_scale=scale)
    records = []
    for q, sample in enumerate(quadrants):
        coarse_label = (block_mean(sample.label.astype(np.float32), scale) >= 0.5)
        records.append(writer.write(q // 2, q % 2, sample.image, coarse_label.astype(np.uint8),
                                    label_fine=sample.label, image_fine=sample.image_fine))
    (tmp_path / "index.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    read = patch_samples(tmp_path, scale, splits=("train", "test"))
    assert [s.split for s in read] == ["train", "train", "train", "test"]
    for got, want in zip(read, quadrants, strict=True):
        np.testing.assert_array_equal(got.image, want.image)
        np.testing.assert_array_equal(got.label, want.label)
        np.testing.assert_array_equal(got.image_fine, want.image_fine)


def test_naip_tiles_as_a_patch_dataset_feed_isamap_train_targets(naip_dir, tmp_path):
    from training.data import PatchDataset
    from training.srseg.naip_patches import coarse_label, write_naip_patch_dataset

    assert coarse_label(np.array([[1, 1, 255, 255], [0, 255, 255, 255]], np.uint8), 2).tolist() \
        == [[1, 255]]
    root = write_naip_patch_dataset(naip_dir, tmp_path / "naip", scale=8)
    samples = naip_samples(naip_dir, 8, test_quadrant=3, val_quadrant=2)
    by_split = {split: [s for s in samples if s.split == split] for split in ("train", "val",
                                                                            "test")}
    assert [len(v) for v in by_split.values()] == [10, 5, 5]
    ds = PatchDataset(root, "test", targets=("label_fine", "image_fine"))
    assert ds.fine_image and len(ds) == 5 and ds.patch_size == 16
    for i, want in enumerate(by_split["test"]):
        item = ds[i]
        np.testing.assert_array_equal(item["label"].numpy(), want.label)
        np.testing.assert_allclose(item["image_fine"].numpy(), want.image_fine)  # no norm
        np.testing.assert_allclose(item["image"].numpy(), want.image)
    assert patch_samples(root, 8, ("val",))[0].image_fine is not None
    with pytest.raises(ConfigError, match="already holds"):
        write_naip_patch_dataset(naip_dir, root)
