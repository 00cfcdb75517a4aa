"""The NAIP adapter of the experiments: block means, impervious classes, patch datasets."""

import json
import sys

import numpy as np
import pytest

from contract.grid import Grid
from core.errors import ConfigError
from experiments.naip import binary_isa_label, naip_samples, read_naip_tile
from experiments.srseg_data import (
    block_mean,
    patch_samples,
    split_samples,
)


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


def test_naip_patches_written_by_the_exporter_read_back_identically(naip_dir, tmp_path):
    from contract.patch_writer import PatchWriter

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
    from experiments.naip_patches import coarse_label, write_naip_patch_dataset
    from training.data import PatchDataset

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


def test_without_h5py_the_experiment_says_which_extra_to_install(tmp_path, monkeypatch, capsys):
    from experiments.naip_patches import main

    naip = tmp_path / "naip"
    naip.mkdir()
    (naip / "id_000184.hdf5").write_bytes(b"\x89HDF\r\n\x1a\n")
    monkeypatch.setitem(sys.modules, "h5py", None)  # what `import h5py` meets when not installed
    code = main(["--naip", str(naip), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 1, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "pip install 'isamap[experiments]'" in lines[0], err
    assert "Traceback" not in err
    assert not (tmp_path / "out" / "manifest.json").exists()
