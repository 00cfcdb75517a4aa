import numpy as np
import pytest
import rasterio
import torch

from gee_export.core.errors import ConfigError, ModelError
from inference.cog import OutputInfo
from inference.predict import PredictConfig, predict_raster
from inference.runtime import RuntimeOptions, TilePredictor, resolve_precision
from tests.support.models import conv1x1
from tests.support.rasters import BANDS, smooth_stack, write_stack

FP32 = RuntimeOptions(precision="fp32")


def test_compact_two_class_output_is_the_softmax_of_class_one():
    tiles = smooth_stack(32, 32)[None]
    tiles[0, 0, :4, :4] = np.nan
    p = TilePredictor(conv1x1(), np.full(6, 0.1), np.full(6, 2.0), options=FP32)
    full, compact = p(tiles), p(tiles, compact=True)
    assert full.shape == (1, 2, 32, 32) and compact.shape == (1, 1, 32, 32)
    np.testing.assert_allclose(compact[:, 0], full[:, 1], atol=1e-6)
    np.testing.assert_allclose(full.sum(axis=1), 1.0, atol=1e-6)
    x = (torch.from_numpy(np.nan_to_num(tiles, nan=0.1)) - 0.1) / 2.0
    expected = torch.softmax(conv1x1()(x), dim=1).detach().numpy()
    np.testing.assert_allclose(full, expected, atol=1e-5)


def test_multi_class_models_use_argmax_and_the_chosen_isa_class(tmp_path):
    src = write_stack(tmp_path / "s.tif", smooth_stack(100, 90))
    p = TilePredictor(conv1x1(classes=3), np.zeros(6), np.ones(6), options=FP32)
    info = OutputInfo("lc", BANDS, classes=("water", "vegetation", "built"))
    tiled = predict_raster(str(src), str(tmp_path / "t"), p, info,
                           PredictConfig(tile=48, overlap=16, isa_class=2), progress=False)
    whole = predict_raster(str(src), str(tmp_path / "w"), p, info,
                           PredictConfig(tile=128, overlap=0, isa_class=2), progress=False)
    with rasterio.open(tiled.class_path) as a, rasterio.open(whole.class_path) as b:
        classes = a.read(1)
        assert set(np.unique(classes)) <= {0, 1, 2} and len(np.unique(classes)) > 1
        np.testing.assert_array_equal(classes, b.read(1))  # per-pixel model: tiling is exact
    probs = p(smooth_stack(100, 90)[None])[0]
    with rasterio.open(whole.prob_path) as ds:
        np.testing.assert_allclose(ds.read(1) / 250, probs[2], atol=0.003)
    with pytest.raises(ConfigError, match="ISA class 3"):
        predict_raster(str(src), str(tmp_path / "x"), p, info,
                       PredictConfig(tile=48, overlap=16, isa_class=3), progress=False)


@pytest.mark.parametrize("native_bf16", [True, False])
def test_precision_choice_and_bad_normalisation(monkeypatch, native_bf16):
    # documented: "auto" is bf16 on CPUs with native bf16 (oneDNN's probe), fp32 elsewhere
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: native_bf16)
    expected = torch.bfloat16 if native_bf16 else torch.float32
    assert resolve_precision("fp32", torch.device("cpu")) == torch.float32
    assert resolve_precision("auto", torch.device("cpu")) == expected
    model, used = conv1x1(), []
    model.register_forward_hook(lambda module, args, out: used.append(out.dtype))
    auto = TilePredictor(model, np.zeros(6), np.ones(6), options=RuntimeOptions())
    probs = auto(smooth_stack(16, 16)[None])  # the predictor's default options are "auto"
    assert auto.dtype == expected and set(used) == {expected}
    assert probs.dtype == np.float32  # probabilities are computed in fp32 either way
    with pytest.raises(ConfigError, match="CUDA"):
        resolve_precision("fp16", torch.device("cpu"))
    with pytest.raises(ModelError, match="std"):
        TilePredictor(conv1x1(), np.zeros(6), np.zeros(6))
