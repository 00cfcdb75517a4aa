"""A U-Net reading a series stack, mapped streamed and on Beam (DirectRunner, processes).

The model's bands are a two-month series (``B4_m1``: B4 a month before the map's month); the
fake pixel server answers them from a series stack whose earlier month is missing on a block
(cloudy that month). Both runners map every pixel the month's own bands hold, the block too,
and give the same map bit for bit.
"""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

from contract.bands import stack_series_bands
from contract.patches import StackPaths
from inference.cog.maps import NODATA
from inference.mapping.region import map_region
from inference.mapping.request import MapExtent, MapInputs, MapOutputs, MapRequest, map_window
from inference.predict.runtime import RuntimeOptions
from testing.fake_server import StackSessions, StackTransport
from tests.support.mapping import MONTH, inner_region, model_file, session_for, stack_paths
from tests.support.rasters import BANDS, smooth_stack, write_stack
from training.modelfile import load_model

SERIES = stack_series_bands(BANDS, 2)
OPTIONS = RuntimeOptions(precision="fp32", channels_last=False)


@pytest.mark.slow
def test_a_series_unet_maps_streamed_and_on_beam_alike(tmp_path, ee_offline, monkeypatch):
    pytest.importorskip("apache_beam", reason="the beam extra is not installed (make setup does)")
    dataflow_like = pytest.importorskip("tests.support.dataflow_like")
    dataflow_like.worker_path(monkeypatch)  # worker processes import the tests' modules
    data = np.concatenate([smooth_stack(140, 150, seed=1), smooth_stack(140, 150, seed=2)])
    data[len(BANDS):, 50:70, 60:90] = np.nan  # May cloudy on a block
    image = write_stack(tmp_path / f"stack_{MONTH}.tif", data, bands=SERIES)
    plain = stack_paths(image)
    stack = StackPaths(plain.grid, SERIES, MONTH, plain.image, plain.label)
    model = model_file(tmp_path / "series.pt", stack.grid, stack_bands=SERIES)
    region = inner_region(stack.grid, 12)

    def run(beam: bool):
        request = MapRequest(MapExtent(region, (MONTH,)), MapOutputs(str(tmp_path / f"out-{beam}")),
                             MapInputs(workers=2), map_window(tile=48, overlap=16, batch_size=3),
                             OPTIONS, progress=False,
                             runner=(dataflow_like.dataflow_like(max_workers=1,
                                                                 max_concurrent=4)
                                     if beam else None))
        result = map_region(request, load_model(model), session=session_for(
            StackTransport(stack, info=lambda text: 5)), echo=lambda _: None,
            worker_sessions=StackSessions(stack) if beam else None)
        prediction = result.dates[0].outputs.prediction
        with rasterio.open(prediction.class_path) as c, rasterio.open(prediction.prob_path) as p:
            return c.read(1), p.read(1)

    streamed, beam = run(False), run(True)
    for classes, prob in (streamed, beam):
        assert (classes != NODATA).all() and (prob != NODATA).all()
    np.testing.assert_array_equal(streamed[0], beam[0])
    np.testing.assert_array_equal(streamed[1], beam[1])
