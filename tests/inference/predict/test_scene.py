"""Maps of a scene-normalised model (``isamap-train --norm scene``): the stack's statistics."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio

from cli.predict import predict_main
from core.errors import InputDataError, ModelError
from inference.predict.runtime import RuntimeOptions, TilePredictor
from inference.predict.scene import recorded, scene_statistics
from inference.predict.sources import MaskedFileSource
from tests.support.rasters import BANDS, smooth_stack, write_stack
from training.data import NormStats, band_stats
from training.modelfile import ModelMeta, save_model_file
from training.models import create_model

KWARGS = {"widths": [4, 8, 8, 16, 16]}
GAIN, OFFSET = 1.5, 0.2


def _meta(norm: str = "scene") -> ModelMeta:
    return ModelMeta("unet", len(BANDS), 2, BANDS, (0.0,) * 6, (1.0,) * 6, model_kwargs=KWARGS,
                     norm=norm)


@pytest.fixture
def stacks(tmp_path):
    data = smooth_stack(96, 112)
    data[:, :6, :6] = np.nan
    return (write_stack(tmp_path / "plain.tif", data),
            write_stack(tmp_path / "hazy.tif", data * np.float32(GAIN) + np.float32(OFFSET)))


def test_the_statistics_are_the_stacks_own(stacks):
    data = smooth_stack(96, 112)
    data[:, :6, :6] = np.nan
    stats = scene_statistics(str(stacks[0]), BANDS)
    # a small stack is read whole; the map is made with the digits it records
    assert stats == recorded(band_stats([data], BANDS))
    assert stats.mean[0] == float(f"{band_stats([data], BANDS).mean[0]:.6g}")
    with MaskedFileSource(str(stacks[0])) as source:  # an open source reads alike
        assert scene_statistics(source, BANDS) == stats
    with pytest.raises(InputDataError, match="lacks band"):
        scene_statistics(str(stacks[0]), ("B2", "B11"))


def test_a_scene_wide_gain_and_offset_leave_the_map_unchanged(stacks, tmp_path, capsys):
    torch_model = create_model("unet", len(BANDS), 2, **KWARGS)
    path = save_model_file(tmp_path / "scene.pt", torch_model, _meta())
    probs, tags = [], []
    for stack in stacks:
        out = tmp_path / stack.stem / "isa"
        assert predict_main(["--model", str(path), "--input", str(stack), "--out", str(out),
                             "--tile", "64", "--overlap", "16", "--precision", "fp32",
                             "--quiet"]) == 0
        with rasterio.open(f"{out}_prob.tif") as ds:
            probs.append(ds.read(1).astype(int))
            tags.append(json.loads(ds.tags()["normalisation"]))
    assert np.abs(probs[0] - probs[1]).max() <= 1  # the rounding of the scaled probability
    assert probs[0].std() > 0
    assert tags[0]["by"] == "scene" and tags[0]["bands"] == list(BANDS)
    assert np.allclose(tags[1]["mean"], GAIN * np.asarray(tags[0]["mean"]) + OFFSET, rtol=1e-4)
    # the same network by the training statistics maps the hazy stack otherwise
    plain = save_model_file(tmp_path / "plain.pt", torch_model, _meta("training"))
    other = []
    for stack in stacks:
        out = tmp_path / "training" / stack.stem / "isa"
        assert predict_main(["--model", str(plain), "--input", str(stack), "--out", str(out),
                             "--tile", "64", "--overlap", "16", "--precision", "fp32",
                             "--quiet"]) == 0
        with rasterio.open(f"{out}_prob.tif") as ds:
            other.append(ds.read(1).astype(int))
            assert "normalisation" not in ds.tags()
    assert np.abs(other[0] - other[1]).max() > 1


def test_a_scene_model_needs_the_scenes_statistics_to_predict():
    model = create_model("unet", len(BANDS), 2, **KWARGS)
    fp32 = RuntimeOptions(precision="fp32", channels_last="off")
    with pytest.raises(ModelError, match="normalises each map by its input stack's statistics"):
        TilePredictor.for_model(model, _meta(), options=fp32)
    with pytest.raises(ModelError, match="scene statistics are for bands"):
        TilePredictor.for_model(model, _meta(), NormStats(("B2",), (0.0,), (1.0,)),
                                options=fp32)
    scene = NormStats(tuple(BANDS), (0.5,) * 6, (2.0,) * 6)
    predictor = TilePredictor.for_model(model, _meta(), scene, options=fp32)
    tile = np.full((1, 6, 32, 32), 2.5, np.float32)  # (2.5 - 0.5) / 2 = 1 everywhere
    by_scene = predictor(tile)
    training = TilePredictor.for_model(model, _meta("training"), scene, options=fp32)
    assert np.allclose(by_scene, training(np.ones_like(tile)))  # the scene's, not the file's


def test_a_model_file_states_its_normalisation():
    assert ModelMeta.from_dict(_meta().to_dict()).norm == "scene"
    old = {k: v for k, v in _meta("training").to_dict().items() if k != "norm"}
    assert ModelMeta.from_dict(old).norm == "training"  # files of older versions
    with pytest.raises(ModelError, match="norm must be training or scene"):
        _meta("tile")


def test_tiles_fetched_one_by_one_give_no_sample_and_nothing_is_fetched_for_one():
    """A source read tile by tile cannot be sampled: its statistics come with it or not at all
    (isamap-map asks Earth Engine for them, inference.mapping.ee_statistics)."""
    from contract.grid import Grid
    from inference.mapping.fetched import FetchedSource

    fetched = []
    grid = Grid("EPSG:32650", 500000.0, 3400000.0, 112, 96)
    source = FetchedSource(lambda window: fetched.append(window), grid, BANDS, tile=64,
                           overlap=16, workers=1)
    try:
        with pytest.raises(InputDataError, match=r"pass them \(scene=") as refused:
            scene_statistics(source, BANDS)
    finally:
        source.close()
    assert "\n" not in str(refused.value) and fetched == []


def test_a_series_whose_earlier_month_is_all_cloud_maps_by_the_base_bands_statistics(tmp_path):
    """A series stack (``B2_m1``...) whose month before has no valid pixel (the export allows
    an all-cloud earlier month): a scene-normalised model maps it, each ``_mK`` band taking
    its base band's statistics of the scene; a month's own band with no pixel is refused."""
    from contract.bands import series_bands

    series = series_bands(BANDS, 2)
    data = np.concatenate([smooth_stack(96, 112), np.full((6, 96, 112), np.nan, np.float32)])
    stack = write_stack(tmp_path / "series.tif", data, bands=series)
    meta = ModelMeta("unet", 12, 2, series, (0.0,) * 12, (1.0,) * 12, model_kwargs=KWARGS,
                     norm="scene")
    path = save_model_file(tmp_path / "m.pt", create_model("unet", 12, 2, **KWARGS), meta)
    out = tmp_path / "out" / "isa"
    assert predict_main(["--model", str(path), "--input", str(stack), "--out", str(out),
                         "--tile", "64", "--overlap", "16", "--precision", "fp32",
                         "--quiet"]) == 0
    with rasterio.open(f"{out}_prob.tif") as ds:
        tag, probs = json.loads(ds.tags()["normalisation"]), ds.read(1)
    assert tag["mean"][6:] == tag["mean"][:6] and tag["std"][6:] == tag["std"][:6]
    assert (probs != ds.nodata).all()
    own = scene_statistics(str(write_stack(tmp_path / "one.tif", data[:6], bands=BANDS)), BANDS)
    assert tag["mean"][:6] == list(own.mean)
    data[2] = np.nan  # the month's own B4 with no pixel: refused, naming it
    with pytest.raises(InputDataError,
                       match=r"\['B4', 'B4_m1'\] have no valid pixel in the input"):
        band_stats([data], series, where="the input stack", earlier_from_base=True)
