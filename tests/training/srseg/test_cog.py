"""The fine-scale COG written by the sliding-window predictor for an srseg model file."""

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine

from contract.geotiff import write_geotiff
from experiments.naip import NAIP_BANDS, naip_samples
from experiments.srseg_data import BandStats
from inference.predict.job import PredictInput, PredictJob, PredictOutputs, PredictRun
from inference.predict.raster import PredictConfig
from inference.predict.runtime import RuntimeOptions
from inference.predict.workflow import predict
from training.modelfile import ModelMeta, save_model_file
from training.models import create_model

COARSE = Affine(10.0, 0.0, 365430.0, 0.0, -10.0, 4312870.0)


@pytest.mark.parametrize("scale", [8, 10])
def test_fine_cog_transform_is_exactly_coarse_over_scale(shared_data, tmp_path, scale):
    torch.set_num_threads(1)
    samples = naip_samples(shared_data / "geobench_chesapeake_naip", scale)
    # two 10 m-like quadrants side by side: a small coarse stack on a UTM grid
    mosaic = np.concatenate([samples[0].image, samples[1].image], axis=2)
    stack = tmp_path / "stack.tif"
    write_geotiff(stack, mosaic.astype("float32"), COARSE, "EPSG:32618", float("nan"),
                  descriptions=NAIP_BANDS)
    stats = BandStats.of(samples)
    kwargs = {"scale": scale, "widths": [8, 16, 32], "stage_widths": [8, 8, 8, 8]}
    torch.manual_seed(0)
    model = create_model("srseg", 4, 2, **kwargs)
    meta = ModelMeta(name="srseg", in_channels=4, num_classes=2, bands=NAIP_BANDS,
                     norm_mean=stats.mean, norm_std=stats.std, output_scale=scale,
                     model_kwargs=kwargs)
    save_model_file(tmp_path / "srseg.pt", model, meta)
    # what isamap-predict runs: the output scale comes from the model file
    outputs = predict(PredictJob(
        tmp_path / "srseg.pt", PredictInput(str(stack)), PredictOutputs(str(tmp_path / "isa")),
        PredictConfig(tile=8, overlap=2, batch_size=4, strip_rows=32),
        RuntimeOptions(precision="fp32", channels_last="on"), run=PredictRun(progress=False)))
    result = outputs.prediction
    h, w = mosaic.shape[1:]
    for path in (result.class_path, result.prob_path):
        with rasterio.open(path) as cog, rasterio.open(stack) as src:
            assert (cog.height, cog.width) == (h * scale, w * scale)
            assert cog.transform == src.transform @ Affine.scale(1 / scale)  # exact, no rounding
            assert cog.transform.a == 10.0 / scale and cog.transform.c == COARSE.c
            assert cog.transform.f == COARSE.f and cog.crs == src.crs
            assert cog.tags()["output_scale"] == str(scale)
            data = cog.read(1)
            assert (data != 255).all()  # every fine pixel predicted, no gap between tiles
    with rasterio.open(result.class_path) as cog:
        assert set(np.unique(cog.read(1)).tolist()) <= {0, 1}
    assert result.area_km2 == pytest.approx(h * w * 100 / 1e6)
    assert outputs.class_png.exists()  # the quick-look of the 1 m map
