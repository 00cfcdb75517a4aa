"""int8 is calibrated and checked on the model file's own dataset, or as much of the input."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import rasterio
import torch

from engine.quantize import CALIBRATION_PATCHES, CHECK_PATCHES, cpu_has_int8
from inference.predict.calibration import input_patches, model_file_patches
from tests.support.rasters import BANDS, smooth_stack, write_patch_dataset, write_stack
from training.modelfile import ModelMeta, save_model_file

needs_int8 = pytest.mark.skipif(not cpu_has_int8(),
                                reason="this CPU has no VNNI/AMX int8 instructions")


def _meta(root) -> ModelMeta:
    return ModelMeta("unet", len(BANDS), 2, BANDS, (0.0,) * 6, (1.0,) * 6,
                     extra={"dataset": {"root": str(root)}, "config": {"label": "label"}})


def test_training_split_calibrates_and_validation_split_checks_with_labels(tmp_path):
    root = write_patch_dataset(tmp_path / "ds", n=12, size=32)  # 8 train, 2 val, 2 test
    patches = model_file_patches(_meta(root))
    assert patches is not None
    calibration = torch.cat(patches.calibration)
    check, labels = torch.cat(patches.check), torch.cat(patches.labels)
    assert calibration.shape == (8, len(BANDS), 32, 32) and check.shape[0] == 2
    assert labels.shape == (2, 32, 32) and labels.dtype == torch.int64
    assert torch.isfinite(calibration).all()  # normalised, NaN as 0 like the map's tiles
    assert "training split" in patches.calibration_source
    assert "validation split" in patches.check_source and "labelled" in patches.check_source


def test_unreachable_or_unrecorded_dataset_falls_back_to_the_input(tmp_path):
    assert model_file_patches(_meta(tmp_path / "gone")) is None
    assert model_file_patches(ModelMeta("unet", 6, 2, BANDS, (0.0,) * 6, (1.0,) * 6)) is None


def test_without_its_dataset_int8_reads_as_many_windows_spread_over_the_input(tmp_path):
    """The labelled check's count of windows of the training patches' size, from all over
    the input; windows mostly nodata (the top half here) give way to others."""
    data = np.zeros((len(BANDS), 300, 400), np.float32)
    data[:, :150] = np.nan
    data[0] = np.arange(400, dtype=np.float32)[None, :]  # band 0: the column, to see where
    data[0, :150] = np.nan
    stack = write_stack(tmp_path / "stack.tif", data)
    with rasterio.open(stack) as src:
        patches = input_patches(src, range(1, len(BANDS) + 1),
                                lambda tiles: torch.from_numpy(np.nan_to_num(np.stack(tiles))),
                                side=32)
    calibration, check = torch.cat(patches.calibration), torch.cat(patches.check)
    assert calibration.shape == (CALIBRATION_PATCHES, len(BANDS), 32, 32)
    assert check.shape == (CHECK_PATCHES, len(BANDS), 32, 32) and patches.labels is None
    columns = torch.cat([calibration, check])[:, 0, 0, 0]
    assert columns.min() < 40 and columns.max() > 330  # from the left edge to the right one
    assert not (torch.cat([calibration, check])[:, 1] != 0).any()  # no nodata window kept
    assert "spread over the input" in patches.check_source
    assert "fp32 map's classes stand for them" in patches.check_source


def _two_halves(seed: int = 0) -> np.ndarray:
    """A scene whose band 0 decides the class: far from the boundary in the top half, a few
    thousandths from it in the bottom half, where an int8 copy ties every pixel."""
    data = smooth_stack(128, 192, seed=seed)
    band0 = data[0]
    data[0, :64] = np.sign(band0[:64]) * (1.0 + np.abs(band0[:64]))
    data[0, 64:] = np.sign(band0[64:]) * 0.004
    return data


@needs_int8
def test_an_int8_model_that_disagrees_is_refused_with_and_without_its_dataset(tmp_path,
                                                                               capsys):
    """The check windows of a model file moved without its dataset come from all over the
    input, not its first tiles alone (which accept it), and are held to the labelled bounds
    with the fp32 map's classes for labels: refused both ways."""
    pytest.importorskip("torchao")
    from cli.predict import predict_main
    from engine.quantize import Int8Patches, build_int8
    from tests.support.models import BandConv

    scene = _two_halves()
    stack = write_stack(tmp_path / "stack.tif", scene)
    # the patches it was trained on: windows of the same kind of scene, both halves
    other = _two_halves(seed=1)
    cuts = [(r, c) for r in (0, 64) for c in range(0, 192, 32)][:12]
    images = [other[:, r:r + 32, c:c + 32] for r, c in cuts]
    root = write_patch_dataset(tmp_path / "project" / "data" / "ds", n=12, size=32,
                               images=images, labels=[(i[0] > 0) for i in images],
                               splits=["train"] * 4 + ["val", "test"] * 2 + ["train"] * 4)
    model = save_model_file(
        tmp_path / "project" / "models" / "conv.pt", BandConv(len(BANDS)),
        ModelMeta("test-band-conv", len(BANDS), 2, BANDS, (0.0,) * 6, (1.0,) * 6,
                  module="tests.support.models",
                  extra={"dataset": {"root": str(root), "grid": {"patch_size": 32}}}))
    # the first tiles of the map alone (what int8 was checked on without the dataset) pass
    first = torch.from_numpy(np.stack([scene[:, :64, x:x + 64] for x in (0, 48, 96, 128)]))
    assert build_int8(BandConv(len(BANDS)).eval(), Int8Patches.from_tiles(first),
                      isa_class=1).agreement.accepted
    alone = tmp_path / "elsewhere" / "conv.pt"
    alone.parent.mkdir()
    shutil.copy(model, alone)
    said = {}
    for name, path in (("with", model), ("without", alone)):
        code = predict_main(["--model", str(path), "--input", str(stack), "--tile", "64",
                             "--overlap", "16", "--batch-size", "4", "--precision", "int8",
                             "--out", str(tmp_path / name / "isa"), "--quiet"])
        said[name] = capsys.readouterr().err.strip()
        assert code == 2 and said[name].splitlines()[-1].startswith("isamap-predict: error")
        assert "the int8 map disagrees with fp32" in said[name]
        assert not (tmp_path / name / "isa_class.tif").exists()
    assert f"validation split of {root} (labelled)" in said["with"]
    assert "impervious F1 against the labels" in said["with"]
    assert f"{CHECK_PATCHES} windows of 32 px spread over the input" in said["without"]
    assert "against the fp32 map's classes (no labels)" in said["without"]
    # moved alone, the model file says where it looked for its dataset, and what it does
    warning, _ = said["without"].splitlines()
    # ("../data/ds" recorded beside models/conv.pt, looked for beside elsewhere/conv.pt)
    assert f"training patches are not at {tmp_path / 'data' / 'ds'} " in warning
    assert len(said["with"].splitlines()) == 1  # its dataset found: nothing to warn about
