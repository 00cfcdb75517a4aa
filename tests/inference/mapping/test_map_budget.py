"""``isamap-map --max-eecu-hours`` and the project's compute caps, through the fake pixel server."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

from core.commands import run_command
from core.errors import ComputeBudgetError, ConfigError, QuotaError
from inference.mapping.region import map_region
from inference.mapping.request import MapExtent, MapInputs, MapOutputs, MapRequest, map_window
from testing.fake_quota import EecuAccount
from testing.fake_server import StackTransport
from tests.support.mapping import MONTH, inner_region, model_file, session_for, write_month_stack
from tests.support.rasters import smooth_stack
from training.modelfile import load_model

#: the module-scoped fixtures below are built once: their tests run on one worker
pytestmark = pytest.mark.xdist_group("inference.mapping.test_map_budget")


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stack")
    stack = write_month_stack(folder, smooth_stack(160, 190, seed=5))
    return stack, model_file(folder / "unet.pt", stack.grid)


def request_for(stack, out, max_eecu_hours=None, **run) -> MapRequest:
    """The module's map of ``stack`` into ``out`` (one worker); ``run``: dry_run, runner."""
    from inference.predict.runtime import RuntimeOptions

    return MapRequest(MapExtent(inner_region(stack.grid), (MONTH,)), MapOutputs(str(out)),
                      MapInputs(workers=1, max_eecu_hours=max_eecu_hours),
                      map_window(tile=64, overlap=16, batch_size=4, strip_rows=32),
                      RuntimeOptions(precision="fp32", channels_last=False), progress=False,
                      **run)


def read(path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read(1)


@pytest.mark.slow
def test_the_bound_stops_the_map_resumably_and_a_higher_one_finishes_it(scene, ee_offline,
                                                                        tmp_path, capsys):
    stack, model = scene
    whole = map_region(request_for(stack, tmp_path / "whole"), load_model(model),
                       session=session_for(StackTransport(stack, info=lambda t: 5)),
                       echo=lambda _: None)
    plan = map_region(request_for(stack, tmp_path / "plan", max_eecu_hours=1.0,
                                  dry_run=True), load_model(model), echo=print).plan
    assert "--max-eecu-hours 1: the whole job fits" in capsys.readouterr().out
    per_request = plan.compute.eecu_s_per_request
    bound = 3 * per_request / 3600.0  # three requests' worth
    out = tmp_path / "out"
    first = StackTransport(stack, info=lambda t: 5)
    with pytest.raises(ComputeBudgetError, match="higher --max-eecu-hours") as info:
        map_region(request_for(stack, out, max_eecu_hours=bound), load_model(model),
                   session=session_for(first), echo=lambda _: None)
    assert len(first.served) == 3 and "\n" not in str(info.value)
    again = StackTransport(stack, info=lambda t: 5)  # what the first run spent counts
    assert run_command("isamap-map", lambda: map_region(
        request_for(stack, out, max_eecu_hours=bound), load_model(model),
        session=session_for(again), echo=lambda _: None)) == 1
    assert again.served == []
    rest = StackTransport(stack, info=lambda t: 5)
    done = map_region(request_for(stack, out, max_eecu_hours=1.0), load_model(model),
                      session=session_for(rest), echo=lambda _: None)
    assert done.dates[0].outputs.prediction.resumed_strips >= 1
    assert len(rest.served) < whole.dates[0].outputs.prediction.tiles
    for kind in ("class", "prob"):
        assert np.array_equal(read(out / MONTH / f"isa_{MONTH}_{kind}.tif"),
                              read(tmp_path / "whole" / MONTH / f"isa_{MONTH}_{kind}.tif"))


def test_a_spent_daily_cap_stops_the_map_with_the_tiles_left_and_how_to_resume(
        scene, ee_offline, tmp_path):
    stack, model = scene
    account = EecuAccount(daily_quota_s=0.2)
    transport = StackTransport(stack, info=lambda t: 5, account=account)
    with pytest.raises(QuotaError) as info:
        map_region(request_for(stack, tmp_path / "o"), load_model(model),
                   session=session_for(transport), echo=lambda _: None)
    text = str(info.value)
    assert "daily Earth Engine quota is spent" in text and "not fetched yet" in text
    assert account.refused == 1 and "\n" not in text


@pytest.mark.parametrize(("kw", "message"), [
    ({"backend": "local", "scenes": "."}, "local scenes use none"),
    ({"max_eecu_hours": 0.0}, "must be a positive number up to"),
])
def test_a_bound_that_cannot_work_is_refused(kw, message):
    with pytest.raises(ConfigError, match=message):
        MapInputs(**{"max_eecu_hours": 1.0, **kw})


def test_a_bound_with_a_pipeline_runner_is_refused_before_any_work(scene, tmp_path):
    from core.pipeline_options import RunnerConfig

    stack, model = scene
    with pytest.raises(ConfigError, match="a --runner pipeline's workers send their own"):
        map_region(request_for(stack, tmp_path / "o", max_eecu_hours=1.0,
                               runner=RunnerConfig("direct", dry_run=True), dry_run=True),
                   load_model(model), echo=lambda _: None)


def test_the_map_prices_its_requests_from_their_profiles_and_keeps_the_measurement(
        scene, ee_offline, tmp_path):
    """isamap-map's requests were priced at the plan's estimate only: now a sample of their
    profiles prices them, and a resumed map starts from what was measured."""
    import json

    stack, model = scene
    account = EecuAccount(per_mpx_s=12.0)
    transport = StackTransport(stack, info=lambda t: 5, account=account)
    out = tmp_path / "out"
    map_region(request_for(stack, out, max_eecu_hours=1.0), load_model(model),
               session=session_for(transport), echo=lambda _: None)
    record = json.loads((out / "eecu.json").read_text())
    costs = transport.profiles.costs
    assert costs and record["profiled"]["requests"] == len(costs)
    assert record["profiled"]["eecu_s"] == pytest.approx(sum(c for c, _ in costs.values()),
                                                         abs=1e-3 * len(costs))
    assert record["counted"].startswith(f"measured from {len(costs)} profiled request(s)")
    assert record["eecu_s"] == pytest.approx(account.spent_today_s, rel=0.15)
