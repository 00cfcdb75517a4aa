"""The tile, overlap and batch a model can run, refused or settled before the first tile."""

from pathlib import Path

import pytest
import rasterio
import torch

from cli.evaluate import evaluate_main
from cli.predict import predict_main
from inference.predict.lattice import default_overlap
from tests.support.rasters import BANDS, smooth_stack, write_patch_dataset, write_stack
from training.forward_memory import BATCH_BUDGET_BYTES, batch_bytes, check_scaled_batch
from training.modelfile import ModelMeta, save_model_file
from training.models import create_model


def _model(path: Path, name: str, **kwargs) -> Path:
    torch.manual_seed(0)
    scale = kwargs.get("scale", 1)
    model = create_model(name, len(BANDS), 2, **kwargs)
    meta = ModelMeta(name, len(BANDS), 2, BANDS, (0.0,) * 6, (1.0,) * 6, output_scale=scale,
                     model_kwargs=kwargs)
    return save_model_file(path, model, meta)


@pytest.fixture(scope="module")
def unet(tmp_path_factory):
    return _model(tmp_path_factory.mktemp("m") / "unet.pt", "unet", widths=[4, 8, 8, 16, 16])


@pytest.fixture(scope="module")
def srseg(tmp_path_factory):
    return _model(tmp_path_factory.mktemp("m") / "srseg.pt", "srseg", scale=10,
                  widths=[8, 16, 32], stage_widths=[8, 8, 8, 8])


@pytest.fixture
def stack(tmp_path):
    return write_stack(tmp_path / "stack.tif", smooth_stack(40, 48))


def _run(model: Path, stack: Path, out: Path, *flags: str) -> int:
    return predict_main(["--model", str(model), "--input", str(stack), "--out", str(out),
                         "--quiet", "--precision", "fp32", *flags])


def test_a_tile_alone_takes_an_overlap_that_fits_it(unet, stack, tmp_path, capsys):
    """``--tile 64`` was refused for the 64 px default overlap the user never gave."""
    assert default_overlap(512) == default_overlap(128) == 64  # the defaults that worked
    assert default_overlap(64) == 32
    assert _run(unet, stack, tmp_path / "a" / "isa", "--tile", "64") == 0
    with rasterio.open(tmp_path / "a" / "isa_class.tif") as cog:
        assert (cog.tags()["tile"], cog.tags()["overlap"]) == ("64", "32")
    assert _run(unet, stack, tmp_path / "b" / "isa", "--tile", "64", "--overlap", "40") == 2
    err = capsys.readouterr().err
    assert "--overlap must be between 0 and half of --tile (32), got 40" in err
    assert not (tmp_path / "b").exists()


def test_a_tile_the_unet_cannot_take_is_refused_before_the_run(unet, stack, tmp_path, capsys):
    """``--tile 100`` was refused only by the model's forward on the first tile."""
    assert _run(unet, stack, tmp_path / "a" / "isa", "--tile", "100") == 2
    err = capsys.readouterr().err.strip()
    assert "--tile 100 is not a multiple of 16, which this unet model's input sides must be; " \
        "give --tile 96 or 112" in err
    assert "Traceback" not in err and len(err.splitlines()) == 1
    assert not (tmp_path / "a").exists()


def test_a_tile_a_joined_models_members_cannot_take_is_refused_before_the_run(tmp_path,
                                                                             stack, capsys):
    """A model of several trainings (``unet-s2``'s nine) answered multiple 1: --tile 100
    passed the check and failed in the first member's forward."""
    joined = _model(tmp_path / "members.pt", "unet", widths=[4, 8, 8, 16, 16], members=2)
    assert _run(joined, stack, tmp_path / "a" / "isa", "--tile", "100") == 2
    err = capsys.readouterr().err.strip()
    assert "--tile 100 is not a multiple of 16, which this unet model's input sides must be; " \
        "give --tile 96 or 112" in err
    assert "Traceback" not in err and len(err.splitlines()) == 1
    assert not (tmp_path / "a").exists()


def test_a_scaled_models_default_batch_is_refused_with_one_that_fits(srseg, stack, tmp_path,
                                                                      capsys):
    """srseg x10 at the defaults (512 px tiles, 8 a batch) was killed by the kernel at 22 GB."""
    assert _run(srseg, stack, tmp_path / "a" / "isa") == 2
    err = capsys.readouterr().err.strip()
    assert "--tile 512 --batch-size 8 is 8 x 5120² output pixels per forward pass at this " \
        "srseg model's x10 output, about 209.7 GB" in err
    assert err.endswith("give --tile 136 --batch-size 1")
    assert not (tmp_path / "a").exists()  # nothing written, no .partial folder
    assert _run(srseg, stack, tmp_path / "b" / "isa", "--tile", "64", "--batch-size", "8") == 2
    assert "give --batch-size 4" in capsys.readouterr().err
    assert batch_bytes(10, 136, 1) <= BATCH_BUDGET_BYTES < batch_bytes(10, 144, 1)
    assert _run(srseg, stack, tmp_path / "c" / "isa", "--tile", "32", "--batch-size", "4") == 0
    with rasterio.open(tmp_path / "c" / "isa_class.tif") as cog:
        assert (cog.height, cog.width) == (400, 480)


def test_evaluate_refuses_a_scaled_models_batch_by_the_same_rule(srseg, tmp_path, capsys):
    """isamap-evaluate's default 16 patches held 4.4 GB on 3 srseg patches."""
    data = write_patch_dataset(tmp_path / "ds", n=6, size=64, fine_scale=10)
    out = tmp_path / "ev"
    argv = ["--model", str(srseg), "--data", str(data), "--out", str(out), "--device", "cpu",
            "--precision", "fp32", "--no-progress"]
    assert evaluate_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("--batch-size 16 of 64 px patches is 16 x 640² output pixels per "
                        "forward pass at this srseg model's x10 output, about 6.6 GB (about "
                        "1000 bytes each), over the 2 GB one batch may hold; give "
                        "--batch-size 4")
    assert not out.exists()
    check_scaled_batch(1, 512, 64, model="unet")  # a model on its input's grid: not bounded
