"""``isamap-map`` on Earth Engine with a model that reads the coarse product (``product``).

The fake server serves the local backend's stack of a scene whose label raster holds NLCD codes;
each date's image reads the band from the land-cover source the model's dataset recorded. The
map equals predicting the local stack file cut to the map's grid.
"""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

from contract.grid import Grid
from contract.label_schemes import LANDCOVER_CLASSES
from gee_export.ee.labels import parse_label_source
from gee_export.ee.recipe import EERecipe
from gee_export.ee.sentinel1 import S1Recipe
from gee_export.ee.sentinel2 import S2Recipe
from inference.mapping.region import map_region
from inference.mapping.request import MapExtent, MapInputs, MapOutputs, MapRequest, map_window
from inference.predict.job import PredictInput, PredictJob, PredictOutputs, PredictRun
from inference.predict.raster import PredictConfig
from inference.predict.runtime import RuntimeOptions
from inference.predict.workflow import predict
from testing.fake_server import StackTransport
from tests.inference.mapping.test_dates import window_of
from tests.support.mapping import MONTH, inner_region, session_for
from tests.support.nlcd import nlcd_scene
from training.modelfile import ModelMeta, load_model, save_model_file
from training.models import create_model

BANDS = ("B2", "B4", "product")
OPTIONS = RuntimeOptions(precision="fp32", channels_last=False)
SMALL = {"width": 4, "stem_width": 8, "stage1_width": 8, "modules": [1, 1, 1], "blocks": 1}


@pytest.mark.slow
def test_a_product_reading_model_maps_earth_engine_dates(ee_offline, tmp_path):
    from gee_export.local.stack import build_local_stack

    scene, _ = nlcd_scene(tmp_path / "scene", size=64)
    t = scene.grid.transform
    grid = Grid(scene.grid.crs, t.c, t.f, 64, 64, 10.0, patch_size=32, stride=32)
    stack = build_local_stack(tmp_path / "scene", grid, MONTH, BANDS,
                              label_scheme="landcover:nlcd", out_dir=tmp_path / "stack",
                              progress=False)
    kwargs = {**SMALL, "bands": list(BANDS), "product_scheme": "nlcd"}
    torch_model = create_model("hrnet", len(BANDS), 7, **kwargs)
    recipe = EERecipe(BANDS, S1Recipe(speckle="boxcar"), S2Recipe(cloud_mask="scl"),
                      label=parse_label_source("landcover:nlcd")).to_dict()
    meta = ModelMeta("hrnet", len(BANDS), 7, BANDS, (0.1, 0.1, 0.0), (0.05, 0.05, 1.0),
                     class_scheme="landcover", class_names=LANDCOVER_CLASSES,
                     model_kwargs=kwargs,
                     extra={"dataset": {"root": "/nowhere", "backend": "ee", "months": [MONTH],
                                        "bands": list(BANDS), "grid": grid.to_dict(),
                                        "recipe": recipe}})
    model = save_model_file(tmp_path / "hrnet.pt", torch_model, meta)
    transport = StackTransport(stack, info=lambda text: 5)
    request = MapRequest(MapExtent(inner_region(grid, margin_px=8), (MONTH,)),
                         MapOutputs(str(tmp_path / "out")), MapInputs(workers=2),
                         map_window(tile=32, overlap=8, batch_size=4), OPTIONS, progress=False)
    result = map_region(request, load_model(model), session=session_for(transport),
                        echo=lambda _: None)
    assert {bands for _, bands in transport.served} == {BANDS}  # no label: the product alone
    expected = predict(PredictJob(
        model, PredictInput(window_of(stack, result.grid)),
        PredictOutputs(str(tmp_path / "ref" / "lc")),
        PredictConfig(tile=32, overlap=8, batch_size=4, blend="core"), OPTIONS,
        run=PredictRun(progress=False)))
    (date,) = result.dates
    with rasterio.open(date.outputs.prediction.class_path) as got, \
            rasterio.open(expected.prediction.class_path) as ref:
        a, b = got.read(1), ref.read(1)
    assert np.array_equal(a, b) and (a != 255).all()
