"""``isamap-train --encoder presto=PATH`` end to end; the model file alone then maps."""

from __future__ import annotations

import shutil

import pytest
import torch

from cli.predict import predict_main
from cli.train import train_main
from core.errors import ModelError
from training.modelfile import description_digest, load_model_file
from training.models.encoders.fused import MODULE, NAME
from training.models.encoders.registry import PRESTO

TINY = '{"widths": [4, 8, 8, 8, 8]}'


def _train(patch_root, out, encoder: str, *extra: str) -> int:
    return train_main(["--data", str(patch_root), "--model", "unet-s2", "--encoder", encoder,
                       "--out", str(out), "--epochs", "1", "--batch-size", "3",
                       "--model-kwargs", TINY, "--precision", "fp32", "--channels-last",
                       "off", "--device", "cpu", "--workers", "0", "--no-progress",
                       "--members", "1", *extra])


@pytest.fixture(scope="module")
def presto_run(patch_root, presto_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("presto") / "run"
    assert _train(patch_root, out, f"presto={presto_file}") == 0
    return out


def test_the_model_file_records_the_encoder_and_holds_its_weights(presto_run, presto_file):
    model, meta = load_model_file(presto_run / "model.pt")
    # unet-s2's recipe normalises each scene by its own statistics, with an encoder too
    assert meta.name == NAME and meta.module == MODULE and meta.norm == "scene"
    assert meta.model_kwargs["encoder"] == "presto"
    assert meta.model_kwargs["encoder_sha256"] == PRESTO.sha256
    assert meta.model_kwargs["frozen"] is True
    published = torch.load(presto_file, map_location="cpu", weights_only=True)
    for key, value in model.encoder.state_dict().items():  # frozen: as published
        assert torch.equal(value, published[f"encoder.{key}"]), key


def test_predict_needs_only_the_model_file(presto_run, patch_root, tmp_path):
    alone = tmp_path / "elsewhere" / "model.pt"
    alone.parent.mkdir()
    shutil.copyfile(presto_run / "model.pt", alone)
    stack = sorted((patch_root / "patches").rglob("r0_c8.tif"))[0]
    out = tmp_path / "map" / "isa"
    assert predict_main(["--model", str(alone), "--input", str(stack), "--out", str(out),
                         "--tile", "32", "--overlap", "0", "--device", "cpu",
                         "--precision", "fp32"]) == 0
    assert (tmp_path / "map" / "isa_prob.tif").exists()


def test_a_model_file_naming_another_encoder_file_is_refused(presto_run, tmp_path):
    payload = torch.load(presto_run / "model.pt", map_location="cpu", weights_only=True)
    payload["meta"]["model_kwargs"]["encoder_sha256"] = "0" * 64
    payload["description_sha256"] = description_digest(payload["meta"])  # written so
    edited = tmp_path / "model.pt"
    torch.save(payload, edited)
    with pytest.raises(ModelError, match="not the published"):
        load_model_file(edited)


@pytest.mark.parametrize("problem", ["missing", "bytes", "architecture"])
def test_a_wrong_encoder_file_is_one_line_and_exit_2(problem, patch_root, presto_file,
                                                     galileo_file, tmp_path, capsys):
    path = tmp_path / "default_model.pt"
    if problem == "bytes":
        path.write_bytes(presto_file.read_bytes()[:-1])
    elif problem == "architecture":
        path = galileo_file
    out = tmp_path / "run"
    assert _train(patch_root, out, f"presto={path}") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and PRESTO.sha256 in err
    assert not (out / "model.pt").exists()


def test_two_encoders_are_one_line_and_exit_2(patch_root, presto_file, galileo_file,
                                             tmp_path, capsys):
    """argparse would keep the last --encoder silently: a model fuses one."""
    out = tmp_path / "run"
    assert _train(patch_root, out, f"presto={presto_file}", "--encoder",
                  f"galileo-nano={galileo_file}") == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"isamap-train: error: --encoder given 2 times (presto={presto_file}, "
                   f"galileo-nano={galileo_file}): a model fuses one pretrained encoder; give "
                   "it once")
    assert not out.exists()


def test_galileo_nano_trains_and_maps_from_the_model_file(patch_root, galileo_file, tmp_path):
    out = tmp_path / "run"
    assert _train(patch_root, out, f"galileo-nano={galileo_file}") == 0
    meta = load_model_file(out / "model.pt")[1]
    assert meta.model_kwargs["encoder"] == "galileo-nano"
    stack = sorted((patch_root / "patches").rglob("r0_c8.tif"))[0]
    assert predict_main(["--model", str(out / "model.pt"), "--input", str(stack), "--out",
                         str(tmp_path / "map" / "isa"), "--tile", "32", "--overlap", "0",
                         "--device", "cpu", "--precision", "fp32"]) == 0


def test_evaluate_reads_the_encoder_model_file(presto_run, patch_root, tmp_path):
    from cli.evaluate import evaluate_main

    out = tmp_path / "test"
    assert evaluate_main(["--model", str(presto_run / "model.pt"), "--data", str(patch_root),
                          "--out", str(out), "--precision", "fp32", "--channels-last", "off",
                          "--no-progress"]) == 0
    assert (out / "metrics.json").exists()


@pytest.mark.slow
def test_unet_s2s_trainings_with_an_encoder_join_and_map_from_the_model_file(
        patch_root, presto_file, tmp_path):
    """Two trainings (``--members 2``, given here over the helper's one; a third showed
    nothing two do not) with Presto fused: one file of their mean that records the encoder,
    its views spread over the members, mapped from that file alone."""
    out = tmp_path / "run"
    assert _train(patch_root, out, f"presto={presto_file}", "--members", "2",
                  "--max-iterations", "1") == 0
    model, meta = load_model_file(out / "model.pt")
    assert meta.model_kwargs["members"] == 2 and meta.model_kwargs["encoder"] == "presto"
    assert meta.name == NAME and len(model.members) == 2
    # the recipe spreads the flips over the members: each fused member maps one view
    assert model.views and meta.model_kwargs["member_views"] is True
    assert not any(getattr(m, "flips", False) for m in model.members.modules())
    stack = sorted((patch_root / "patches").rglob("r0_c8.tif"))[0]
    assert predict_main(["--model", str(out / "model.pt"), "--input", str(stack), "--out",
                         str(tmp_path / "map" / "isa"), "--tile", "32", "--overlap", "0",
                         "--device", "cpu", "--precision", "fp32"]) == 0
    assert (tmp_path / "map" / "isa_prob.tif").exists()


def test_a_base_the_fused_model_cannot_take_is_one_line_and_a_retired_one_says_why(
        patch_root, presto_file):

    from core.errors import ConfigError
    from training.config import TrainConfig
    from training.run.encoder import encoder_config

    cfg = TrainConfig.of(data=str(patch_root), model="crofusenet", encoder=f"presto={presto_file}")
    with pytest.raises(ConfigError, match="--encoder fuses with the U-Net: give --model unet"):
        encoder_config(cfg)
    with pytest.raises(ConfigError, match=r"--model unet-s2-window is retired: .*still map"):
        encoder_config(cfg.with_(model="unet-s2-window"))  # an old run's


def test_a_wrong_encoder_file_of_a_run_of_members_is_one_line_before_any_member(
        patch_root, tmp_path, capsys):
    """A walk: unet-s2's recipe of nine members printed ``member 1 of 9 (seed 0): ...`` and
    only then the encoder file's refusal; docs/encoders.md says one line."""
    out = tmp_path / "run"
    code = train_main(["--data", str(patch_root), "--model", "unet-s2", "--encoder",
                       f"presto={tmp_path / 'wrongfile'}", "--out", str(out), "--epochs", "1",
                       "--model-kwargs", TINY, "--device", "cpu", "--workers", "0",
                       "--no-progress", "--members", "9"])
    assert code == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and "wrongfile" in err
    assert "member 1 of 9" not in captured.out + captured.err
    assert not (out / "member0").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("encoder", ["presto", "galileo-nano"])
def test_an_encoder_model_trains_and_maps_on_cuda_as_on_the_cpu(
        encoder, patch_root, presto_file, galileo_file, tmp_path):
    """On an H200, ``isamap-train --encoder presto=... --device cuda`` stopped at its first
    batch: Presto's input mask was made on the CPU beside inputs on the GPU."""
    import numpy as np
    import rasterio

    weights = presto_file if encoder == "presto" else galileo_file
    out = tmp_path / "run"
    assert train_main(["--data", str(patch_root), "--model", "unet-s2", "--encoder",
                       f"{encoder}={weights}", "--out", str(out), "--epochs", "1",
                       "--batch-size", "3", "--model-kwargs", TINY, "--precision", "fp32",
                       "--device", "cuda", "--workers", "0", "--no-progress",
                       "--members", "1"]) == 0
    stack = sorted((patch_root / "patches").rglob("r0_c8.tif"))[0]
    maps = {}
    for device in ("cuda", "cpu"):
        assert predict_main(["--model", str(out / "model.pt"), "--input", str(stack), "--out",
                             str(tmp_path / device / "isa"), "--tile", "32", "--overlap", "0",
                             "--device", device, "--precision", "fp32", "--quiet"]) == 0
        with rasterio.open(tmp_path / device / "isa_prob.tif") as cog:
            maps[device] = cog.read(1).astype(int)
    # the same model file maps alike on either device (fp32 on both)
    assert np.abs(maps["cuda"] - maps["cpu"]).max() <= 2
