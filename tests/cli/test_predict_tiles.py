"""The tile, overlap and batch a model can run, refused or settled before the first tile."""

import re
from pathlib import Path

import pytest
import rasterio
import torch

from cli.evaluate import evaluate_main
from cli.predict import predict_main
from core.errors import ConfigError
from inference.predict.lattice import default_overlap
from tests.support.rasters import BANDS, smooth_stack, write_patch_dataset, write_stack
from training.forward_memory import (
    MemoryBudget,
    available_memory,
    batch_bytes,
    check_scaled_batch,
    host_budget,
    memory_budget,
)
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
    data = smooth_stack(40, 48)
    radar = [BANDS.index("VV"), BANDS.index("VH")]
    data[radar] = 5 * data[radar] - 12  # sigma0 in dB, as isamap-predict checks it
    return write_stack(tmp_path / "stack.tif", data)


def _run(model: Path, stack: Path, out: Path, *flags: str) -> int:
    return predict_main(["--model", str(model), "--input", str(stack), "--out", str(out),
                         "--quiet", "--precision", "fp32", "--device", "cpu", *flags])


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


@pytest.mark.parametrize("members", [1, 2])
def test_a_tile_the_unet_cannot_take_is_refused_before_the_run(members, unet, stack, tmp_path,
                                                               capsys):
    """``--tile 100`` was refused only by the model's forward on the first tile; a model of
    several trainings (``unet-s2``'s nine) answered multiple 1 and failed in the first
    member's forward."""
    model = unet if members == 1 else _model(tmp_path / "members.pt", "unet",
                                             widths=[4, 8, 8, 16, 16], members=members)
    assert _run(model, stack, tmp_path / "a" / "isa", "--tile", "100") == 2
    err = capsys.readouterr().err.strip()
    assert "--tile 100 is not a multiple of 16, which this unet model's input sides must be; " \
        "give --tile 96 or 112" in err
    assert "Traceback" not in err and len(err.splitlines()) == 1
    assert not (tmp_path / "a").exists()


@pytest.mark.slow
def test_a_scaled_models_default_batch_is_refused_with_one_that_fits(srseg, stack, tmp_path,
                                                                      capsys):
    """srseg x10 at the defaults (512 px tiles, 8 a batch) was killed by the kernel at 22 GB."""
    assert _run(srseg, stack, tmp_path / "a" / "isa") == 2
    err = capsys.readouterr().err.strip()
    assert "--tile 512 --batch-size 8 is 8 x 5120² output pixels per forward pass at this " \
        "srseg model's x10 output, about 209.7 GB" in err
    # a small host is told a smaller tile too; a 128 GB one fits --batch-size 2 at 512 px
    assert re.search(r"GB one batch may hold \((the 2 GB floor; )?50% of this machine's [\d.]+ "
                     r"GB of available memory( is less)?\); give (--tile \d+ )?--batch-size "
                     r"\d+$",
                     err), err
    assert not (tmp_path / "a").exists()  # nothing written, no .partial folder
    assert _run(srseg, stack, tmp_path / "c" / "isa", "--tile", "32", "--batch-size", "4") == 0
    with rasterio.open(tmp_path / "c" / "isa_class.tif") as cog:
        assert (cog.height, cog.width) == (400, 480)


def _refusal(scale: int, side: int, batch: int, budget: float, **flags) -> str | None:
    try:
        check_scaled_batch(scale, side, batch, model="srseg",
                           budget=MemoryBudget(int(budget), "as given"), **flags)
    except ConfigError as err:
        return str(err)
    return None


def test_the_batch_rule_reads_the_budget_it_is_given():
    """A fixed 2 GB refused an x2 srseg at predict's defaults (about 8.4 GB) on any machine."""
    assert batch_bytes(2, 512, 8) == 8 * 1024 ** 2 * 1000  # about 8.4 GB
    assert _refusal(2, 512, 8, 128e9 * 0.5) is None  # half of a 128 GB host holds it
    refused = _refusal(2, 512, 8, 2e9)
    assert refused.endswith("over the 2.0 GB one batch may hold (as given); give --batch-size 1")
    assert _refusal(10, 512, 8, 2e9).endswith("give --tile 136 --batch-size 1")
    assert batch_bytes(10, 136, 1) <= 2e9 < batch_bytes(10, 144, 1)
    assert _refusal(10, 64, 8, 2e9).endswith("give --batch-size 4")
    assert _refusal(10, 64, 8, 4e9) is None
    assert _refusal(10, 512, 8, 128e9) is not None  # the demo's 209.7 GB, even there
    assert _refusal(1, 512, 64, 1) is None  # a model on its input's grid: not bounded
    assert _refusal(10, 512, 1, 2e9, side_flag=None).endswith(
        "even --batch-size 1 does not fit: 512 px patches are too large for this model on "
        "this machine's budget")


def test_the_default_budget_is_half_the_hosts_available_memory_at_least_2_gb():
    free = available_memory()
    assert free is not None and free > 0  # Linux: /proc/meminfo, else sysconf
    for host in (host_budget(), memory_budget(None), memory_budget("cpu")):
        assert host.bytes >= 2_000_000_000  # the bound every run had before: still held
        assert "50% of this machine's" in host.source and "GB of available memory" in host.source


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_gpus_budget_is_half_its_free_memory():
    free, _ = torch.cuda.mem_get_info()
    budget = memory_budget("cuda")
    assert 0 < budget.bytes <= free and budget.source.startswith("50% of GPU cuda's ")


def test_evaluate_refuses_a_scaled_models_batch_by_the_same_rule(srseg, tmp_path, capsys):
    """isamap-evaluate's default 16 patches held 4.4 GB on 3 srseg patches."""
    data = write_patch_dataset(tmp_path / "ds", n=6, size=64, fine_scale=10)
    out = tmp_path / "ev"
    argv = ["--model", str(srseg), "--data", str(data), "--out", str(out), "--device", "cpu",
            "--precision", "fp32", "--no-progress", "--batch-size", "4096"]  # 1.7 TB: anywhere
    assert evaluate_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "--batch-size 4096 of 64 px patches is 4096 x 640² output pixels per forward pass " \
        "at this srseg model's x10 output, about 1677.7 GB (about 1000 bytes each), over " in err
    assert re.search(r"\((the 2 GB floor; )?50% of this machine's [\d.]+ GB of available "
                     r"memory( is less)?\); give --batch-size \d+$", err), err
    assert not out.exists()
