"""A scene-normalised model mapped from tiles fetched from Earth Engine, through the fake server.

``isamap-map --backend ee --method pixels`` asks Earth Engine once per date, before the date's
first tile, for the statistics the model normalises the map by (one ``reduceRegion``, computed
by the fake server from the stack), and maps what ``isamap-predict`` maps from the same stack
file, which samples it locally:

- a region up to ``SAMPLE_SIDE`` pixels a side: both sample every pixel, so the statistics
  agree to float rounding and the maps are equal (a probability may round to the next of its
  250 steps);
- a larger region (``SAMPLE_SIDE`` lowered here to make one): both sample every ``step``-th
  pixel, but Earth Engine aligns its sample's pixels on the CRS's origin and a local
  decimated read on the stack's corner, so they read other pixels of the same scene: means
  within 0.02 (bands deviate by about 0.45; 0.008 here) and deviations within 2 % of each
  other (1 % here), and maps as close as such a change of the statistics leaves an untrained
  network's: probabilities within 10 of their 250 steps at 99 % of the pixels, classes of
  98 % of the pixels the same (between 98.6 % and 99.9 % over six networks' seeds).
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import rasterio
import torch

from contract.grid import Grid
from core.errors import InputDataError
from inference.mapping.ee_statistics import reduction_stats
from inference.mapping.region import map_region
from inference.mapping.request import MapExtent, MapInputs, MapOutputs, MapRequest
from inference.predict.job import PredictInput, PredictJob, PredictOutputs, PredictRun
from inference.predict.raster import PredictConfig
from inference.predict.workflow import predict
from testing.fake_server import StackTransport
from tests.inference.mapping.test_dates import OPTIONS, OVERLAP, TILE, WINDOW, read, window_of
from tests.support.mapping import (
    MONTH,
    inner_region,
    model_file,
    session_for,
    write_month_stack,
)
from tests.support.rasters import BANDS, smooth_stack
from training.data import band_stats
from training.modelfile import load_model

LATER = "2019-07"


class _Ordered(StackTransport):
    """The fake server, keeping the order of its answers: statistics (``S``) and tiles (``T``)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.order: list[str] = []

    def compute_pixels(self, request):
        self.order.append("T")
        return super().compute_pixels(request)

    def get_info(self, obj):
        before = len(self.reductions)
        answer = super().get_info(obj)
        if len(self.reductions) > before:
            self.order.append("S")
        return answer


#: the module-scoped fixtures below are built once: their tests run on one worker
pytestmark = pytest.mark.xdist_group("inference.mapping.test_ee_statistics")


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ee_scene")
    data = smooth_stack(150, 170, seed=5)
    data[1, 60:80, 40:75] = np.nan  # a hole: masked in the statistics, nodata in the maps
    stack = write_month_stack(folder, data)
    with torch.random.fork_rng():  # one network, whatever ran before
        torch.manual_seed(0)
        return stack, model_file(folder / "scene.pt", stack.grid, norm="scene")


def _request(stack, out, dates=(MONTH,)) -> MapRequest:
    return MapRequest(MapExtent(inner_region(stack.grid), dates), MapOutputs(str(out)),
                      MapInputs(workers=4), WINDOW, OPTIONS, progress=False)


def _local(stack, model, grid: Grid, folder):
    """``isamap-predict`` of the map's grid as a window of the stack file (the local sample)."""
    return predict(PredictJob(
        model, PredictInput(window_of(stack, grid)),
        PredictOutputs(str(folder / "local" / "isa")),
        PredictConfig(tile=TILE, overlap=OVERLAP, batch_size=4, blend="core"), OPTIONS,
        run=PredictRun(progress=False))).prediction


def _normalisation(path) -> dict:
    with rasterio.open(path) as ds:
        return json.loads(ds.tags()["normalisation"])


def test_the_reduction_is_read_with_a_local_samples_conventions():
    rng = np.random.default_rng(0)
    sample = rng.normal(0.2, 0.05, (3, 40, 40))
    sample[0, :10] = np.nan
    sample[2] = 0.7  # a constant band: centred, unscaled
    bands = ("B2", "B3", "B4")
    reduction = {f"{b}_{k}": float(f(v[np.isfinite(v)]))
                 for b, v in zip(bands, sample, strict=True)
                 for k, f in (("mean", np.mean), ("stdDev", np.std))}  # population, as EE's
    got, local = reduction_stats(reduction, bands, MONTH, 10.0), band_stats([sample], bands)
    assert got.bands == local.bands and got.std[2] == local.std[2] == 1.0
    assert got.mean == pytest.approx(local.mean, rel=1e-9)
    assert got.std == pytest.approx(local.std, rel=1e-9)
    with pytest.raises(InputDataError, match=r"\['B3'\] have no valid pixel in the 2019-06 "
                                             r"image.*choose other --months"):
        reduction_stats({**reduction, "B3_mean": None, "B3_stdDev": None}, bands, MONTH, 10.0)
    # a series' month before with no scene pixel (Earth Engine answers null): B2's statistics
    series = (*bands, "B2_m1")
    got = reduction_stats({**reduction, "B2_m1_mean": None, "B2_m1_stdDev": None}, series,
                          MONTH, 10.0)
    assert (got.mean[3], got.std[3]) == (got.mean[0], got.std[0])


@pytest.mark.slow
def test_a_fetched_map_equals_the_stack_files_and_asks_once_per_date(scene, ee_offline,
                                                                     tmp_path):
    stack, model = scene
    transport = _Ordered(stack, info=lambda text: 5)
    result = map_region(_request(stack, tmp_path / "ee", (MONTH, LATER)), load_model(model),
                        session=session_for(transport), echo=lambda _: None)
    # once per date, before the date's first tile, at the grid's own pixels
    order = transport.order
    assert [k for i, k in enumerate(order) if i == 0 or order[i - 1] != k] == ["S", "T"] * 2
    grid = result.grid
    assert {r["scale"] for r in transport.reductions} == {grid.resolution}
    assert {r["pixels"] for r in transport.reductions} == {grid.width * grid.height}
    local = _local(stack, model, grid, tmp_path)
    fetched = result.dates[0].outputs.prediction
    assert np.array_equal(read(fetched.class_path), read(local.class_path))
    a, b = read(fetched.prob_path).astype(int), read(local.prob_path).astype(int)
    assert np.abs(a - b).max() <= 1 and a.std() > 0  # to the rounding of a probability
    tags, expected = _normalisation(fetched.prob_path), _normalisation(local.prob_path)
    assert tags["by"] == "scene" and tags["bands"] == list(BANDS)
    assert tags["mean"] == pytest.approx(expected["mean"], rel=1e-5, abs=1e-6)
    assert tags["std"] == pytest.approx(expected["std"], rel=1e-5)
    record = json.loads((tmp_path / "ee" / "map.json").read_text())
    assert set(record["dates"]) == {MONTH, LATER}


def test_a_decimated_sample_gives_the_same_map_within_its_tolerance(scene, ee_offline,
                                                                     tmp_path, monkeypatch):
    import inference.mapping.ee_statistics as ee_statistics
    import inference.predict.scene as local_scene

    stack, model = scene
    for module in (ee_statistics, local_scene):  # a region larger than the sample's side
        monkeypatch.setattr(module, "SAMPLE_SIDE", 50)
    transport = StackTransport(stack, info=lambda text: 5)
    result = map_region(_request(stack, tmp_path / "ee"), load_model(model),
                        session=session_for(transport),
                        echo=lambda _: None)
    grid = result.grid
    (reduction,) = transport.reductions
    step = -(-max(grid.width, grid.height) // 50)
    assert step > 1 and reduction["scale"] == grid.resolution * step
    local = _local(stack, model, grid, tmp_path)
    fetched = result.dates[0].outputs.prediction
    tags, expected = _normalisation(fetched.prob_path), _normalisation(local.prob_path)
    assert tags["mean"] != expected["mean"], "the two samples read the same pixels"
    std = np.asarray(expected["std"])
    assert np.abs(np.subtract(tags["mean"], expected["mean"])).max() <= 0.02
    assert np.abs(np.asarray(tags["std"]) / std - 1).max() <= 0.02
    a, b = read(fetched.prob_path).astype(int), read(local.prob_path).astype(int)
    assert np.percentile(np.abs(a - b), 99) <= 10
    assert (read(fetched.class_path) == read(local.class_path)).mean() >= 0.98


def test_a_date_with_a_band_without_valid_pixels_is_refused_before_any_tile(ee_offline,
                                                                           tmp_path):
    data = smooth_stack(120, 130, seed=1)
    data[BANDS.index("VH")] = np.nan
    stack = write_month_stack(tmp_path, data)
    model = model_file(tmp_path / "scene.pt", stack.grid, norm="scene")
    transport = StackTransport(stack, info=lambda text: 5)
    with pytest.raises(InputDataError) as refused:
        map_region(_request(stack, tmp_path / "ee"), load_model(model),
                   session=session_for(transport),
                   echo=lambda _: None)
    message = str(refused.value)
    assert refused.value.exit_code == 2 and "\n" not in message
    assert "['VH'] have no valid pixel in the 2019-06 image" in message
    assert "choose other --months" in message
    assert len(transport.reductions) == 1 and transport.served == []  # no tile fetched
    assert not list((tmp_path / "ee").rglob("*.tif"))


def test_a_dry_run_plans_one_statistics_request_per_date_and_sends_none(scene, ee_offline,
                                                                        tmp_path):
    stack, model = scene
    transport = StackTransport(stack, info=lambda text: 5)
    lines: list[str] = []
    plan = map_region(replace(_request(stack, tmp_path / "ee", (MONTH, LATER)),
                              dry_run=True), load_model(model),
                      session=session_for(transport), echo=lines.append).plan
    assert plan is not None and plan.statistics_per_date == 1
    assert plan.statistics_scale == plan.grid.resolution
    assert plan.compute is not None and plan.compute.requests == 2 * (plan.requests_per_date + 1)
    assert "scene     1 reduceRegion per date" in "\n".join(lines)
    assert transport.calls == 0 and not transport.reductions  # nothing sent
