
import numpy as np
import pytest
from affine import Affine

from contract.dataset import write_index
from contract.geotiff import write_geotiff
from contract.grid import Grid
from core.errors import InputDataError
from core.storage import open_store
from experiments.srseg_data import (
    BandStats,
    CrossResolutionDataset,
    CrossResSample,
    block_mean,
    patch_samples,
)


def test_block_mean_is_the_average_of_each_block():
    a = np.arange(2 * 4 * 6, dtype=np.float32).reshape(2, 4, 6)
    out = block_mean(a, 2)
    assert out.shape == (2, 2, 3)
    assert out[1, 1, 2] == pytest.approx(a[1, 2:4, 4:6].mean())
    with pytest.raises(InputDataError, match="multiple of 4"):
        block_mean(a, 4)


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
    common = {"month": "2021-06", "col": 0, "bounds": [0.0, 0.0, 1.0, 1.0], "valid_fraction": 1.0,
              "isa_fraction": 0.5, "label": "x"}
    write_index(open_store(tmp_path), [
        {**common, "id": "r0_c0", "row": 0, "split": "train",
         "image": "patches/2021-06/r0_c0.tif", "label_fine": "patches/2021-06/r0_c0_label_x4.tif"},
        {**common, "id": "r1_c0", "row": 1, "split": "val", "image": "patches/2021-06/r1_c0.tif",
         "label_fine": "patches/2021-06/r1_c0_label_x4.tif"},
    ])
    (sample,) = patch_samples(tmp_path, 4, splits=("train",))
    np.testing.assert_array_equal(sample.label, label[0])
    np.testing.assert_allclose(sample.image, image)
    with pytest.raises(InputDataError, match="transform"):
        patch_samples(tmp_path, 4, splits=("val",))
    with pytest.raises(InputDataError, match="no fine label at x8"):
        patch_samples(tmp_path, 8, splits=("train",))


