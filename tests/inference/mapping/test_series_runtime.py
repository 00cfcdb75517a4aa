"""A series is mapped at one runtime; an explicit other runtime maps its dates again.

Real month stacks served by the fake pixel server, a real model file, ``map_region`` as
``isamap-map`` runs it. ``auto``'s choice is steered through the autotune cache (the real
mechanism a machine-wide measurement is remembered by).
"""

import dataclasses
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from core.errors import ConfigError, EarthEngineError
from engine import autotune, quantize
from engine import choice as engine_choice
from engine.choice_value import TOLERANCE, Choice
from engine.setting import Setting
from inference.mapping.region import map_region
from inference.mapping.request import MapExtent, MapInputs, MapOutputs, MapRequest, map_window
from inference.predict.runtime import RuntimeOptions, TilePredictor
from testing.fake_server import HttpError
from tests.support.mapping import (
    SeriesTransport,
    inner_region,
    model_file,
    session_for,
    write_month_stack,
)
from training.modelfile import load_model

DATES = ("2019-06", "2021-06")


#: the module-scoped fixtures below are built once: their tests run on one worker
pytestmark = pytest.mark.xdist_group("inference.mapping.test_series_runtime")


@pytest.fixture(scope="module")
def built() -> dict:
    return {}


@pytest.fixture(scope="module")
def _place(tmp_path_factory):
    """The two months' stacks and the model file: written once a module, only read."""
    folder = tmp_path_factory.mktemp("series_runtime")
    stacks = {}
    for i, month in enumerate(DATES):
        data = np.zeros((6, 120, 130), np.float32)
        data[0, 20:60 + 20 * i, 30:90] = 1.0
        stacks[month] = write_month_stack(folder / month, data, month)
    grid = stacks[DATES[0]].grid
    model = model_file(folder / "unet.pt", grid)
    return stacks, model, inner_region(grid, margin_px=5)


@pytest.fixture
def place(_place, ee_offline):
    return _place


def mapped_once(built, place, tmp_path_factory, name, dates=DATES, **options):
    """The series of ``request(place, out, dates, **options)``, mapped once a module into a
    folder of its own; a test that maps into it again works on a copy (:func:`copied`)."""
    if name not in built:
        stacks, _, _ = place
        out = tmp_path_factory.mktemp(name) / "out"
        result = map_region(request(place, out, dates, **options), load_model(place[1]),
                            echo=lambda _: None,
                            session=session_for(SeriesTransport(stacks, info=lambda t: 5)))
        built[name] = (out, result)
    return built[name]


def copied(source, out):
    """A copy of the series in ``source`` at ``out``, as if mapped there."""
    shutil.copytree(source, out)
    return out


def request(place, out, dates=DATES, workers=2, strip_rows=512, **options):
    return MapRequest(MapExtent(place[2], dates), MapOutputs(str(out)), MapInputs(workers=workers),
                      map_window(tile=64, overlap=16, batch_size=4, strip_rows=strip_rows),
                      RuntimeOptions(**options), progress=False)


def remember(setting, model, monkeypatch, path):
    """Make ``auto`` pick ``setting`` for the model's 64 px tiles (the autotune cache)."""
    monkeypatch.setenv(autotune.CACHE_ENV, str(path))
    loaded = load_model(model)
    module = TilePredictor.for_model(loaded.module, loaded.meta)._module
    key = autotune.cache_key(module, (4, 6, 64, 64), torch.device("cpu"), "inference", "auto",
                             "auto", False, TOLERANCE)
    autotune.write_cache(path, key, Choice(setting, "measured"))


def runtimes(out):
    found = {}
    for month in DATES:
        path = out / month / f"isa_{month}_class.tif"
        if path.exists():
            with rasterio.open(path) as ds:
                found[month] = (ds.tags()["runtime"], ds.tags()["runtime_source"])
    return found


class SwitchingTransport(SeriesTransport):
    """Serves the series, and makes ``auto``'s measurement pick ``then`` from the 2nd date on."""

    def __init__(self, stacks, switch, **kw):
        super().__init__(stacks, **kw)
        self.switch = switch

    def compute_pixels(self, request):
        if self._month(request["expression"]) is self.months[DATES[1]] and self.switch:
            self.switch.pop()()
        return super().compute_pixels(request)


@pytest.mark.slow
def test_an_auto_series_is_mapped_at_one_runtime_even_when_measuring_would_differ(
        place, tmp_path, monkeypatch):
    stacks, model, _ = place
    remember(Setting("bf16", True), model, monkeypatch, tmp_path / "a.json")
    switch = [lambda: remember(Setting("fp32", False), model, monkeypatch, tmp_path / "b.json")]
    out = tmp_path / "out"
    map_region(request(place, out), load_model(place[1]), echo=lambda _: None,
               session=session_for(SwitchingTransport(stacks, switch, info=lambda t: 5)))
    assert not switch  # the second date's auto would have chosen fp32/nchw
    assert runtimes(out) == dict.fromkeys(DATES, ("bf16/nhwc", "auto"))
    record = json.loads((out / "map.json").read_text())
    assert record["runtime"] == {"runtime": "bf16/nhwc", "runtime_source": "auto"}


@pytest.mark.slow
def test_an_extended_series_takes_the_runtime_its_dates_record(place, tmp_path, monkeypatch):
    stacks, model, _ = place
    session = session_for(SeriesTransport(stacks, info=lambda t: 5))
    remember(Setting("bf16", True), model, monkeypatch, tmp_path / "a.json")
    out = tmp_path / "out"
    map_region(request(place, out, DATES[:1]), load_model(place[1]),
               session=session, echo=lambda _: None)
    remember(Setting("fp32", False), model, monkeypatch, tmp_path / "b.json")
    map_region(request(place, out), load_model(place[1]), session=session, echo=lambda _: None)
    assert runtimes(out) == dict.fromkeys(DATES, ("bf16/nhwc", "auto"))
    # a date of the series at another runtime (as an earlier isamap left it) is mapped again
    again = out / DATES[1] / f"isa_{DATES[1]}_class.tif"
    with rasterio.open(again, "r+", IGNORE_COG_LAYOUT_BREAK="YES") as ds:
        ds.update_tags(runtime="bf16/nchw")
    (out / "map.json").unlink()
    map_region(request(place, out), load_model(place[1]), session=session, echo=lambda _: None)
    assert runtimes(out) == dict.fromkeys(DATES, ("bf16/nhwc", "auto"))


@pytest.mark.slow
def test_an_explicit_other_precision_maps_a_date_again_and_its_change_map(
        place, built, tmp_path_factory, tmp_path, caplog):
    """The series first mapped at bf16 is a copy of the module's (``mapped_once``)."""
    stacks, _, _ = place
    session = session_for(SeriesTransport(stacks, info=lambda t: 5))
    source, first = mapped_once(built, place, tmp_path_factory, "bf16", precision="bf16",
                                channels_last="off")
    out = copied(source, tmp_path / "out")
    bf16 = request(place, out, precision="bf16", channels_last="off")
    change = out / Path(first.series.changes[0].cog).relative_to(source)
    with rasterio.open(change) as ds:
        assert ds.tags()["from_run"].endswith(" at bf16/nchw")
    with caplog.at_level(logging.INFO):
        again = map_region(dataclasses.replace(bf16, runtime=RuntimeOptions(
            precision="fp32", channels_last="off")), load_model(place[1]),
            session=session, echo=lambda _: None)
    assert "this run asks --precision fp32: mapping it again" in caplog.text
    assert "already mapped" not in caplog.text
    assert not any(d.outputs.prediction.skipped for d in again.dates)
    assert runtimes(out) == dict.fromkeys(DATES, ("fp32/nchw", "explicit"))
    with rasterio.open(change) as ds:
        assert ds.tags()["from_run"].endswith(" at fp32/nchw")
    caplog.clear()
    with caplog.at_level(logging.INFO):  # auto accepts the runtime the dates record
        map_region(dataclasses.replace(bf16, runtime=RuntimeOptions()), load_model(place[1]),
                   session=session, echo=lambda _: None)
    assert caplog.text.count("already mapped") == len(DATES)


class Dies(SeriesTransport):
    """The service stops answering after two requests (a strip is on disk by then)."""

    def compute_pixels(self, request):
        if self.calls >= 2:
            raise HttpError(400, "simulated outage")
        return super().compute_pixels(request)


def killed(place, out, dates=DATES, **options):
    """A run of ``options`` killed while mapping its first date (its strips left behind)."""
    stacks, _, _ = place
    with pytest.raises(EarthEngineError, match="not fetched yet"):
        map_region(request(place, out, dates, workers=1, strip_rows=32, **options),
                   load_model(place[1]), session=session_for(Dies(stacks, info=lambda t: 5)),
                   echo=lambda _: None)
    assert list((out / dates[0]).glob(f".isa_{dates[0]}.partial/strip_*.tif"))


def pixels(out):
    found = {}
    for month in DATES:
        for kind in ("class", "prob"):
            with rasterio.open(out / month / f"isa_{month}_{kind}.tif") as ds:
                found[month, kind] = ds.read(1)
    return found


@pytest.mark.slow
def test_a_dates_interrupted_strips_outrank_the_runtime_map_json_recorded(
        place, built, tmp_path_factory, tmp_path, monkeypatch):
    """A (auto) recorded fp32/nchw in map.json; B (--precision bf16) was killed remapping a date.

    map.json, written only at a run's end, was stale: C with the defaults held fp32 and was
    refused 'this run asks --precision fp32' though its user gave auto.
    """
    stacks, model, _ = place
    session = session_for(SeriesTransport(stacks, info=lambda t: 5))
    remember(Setting("fp32", False), model, monkeypatch, tmp_path / "a.json")
    out = tmp_path / "out"
    map_region(request(place, out), load_model(place[1]), session=session, echo=lambda _: None)
    assert json.loads((out / "map.json").read_text())["runtime"]["runtime"] == "fp32/nchw"
    killed(place, out, precision="bf16", channels_last="off")
    map_region(request(place, out, workers=1, strip_rows=32), load_model(place[1]), session=session,
               echo=lambda _: None)
    assert {r for r, _ in runtimes(out).values()} == {"bf16/nchw"}
    # the series B asked for, uninterrupted (the module's)
    bf16, _ = mapped_once(built, place, tmp_path_factory, "bf16", precision="bf16",
                          channels_last="off")
    mine, theirs = pixels(out), pixels(bf16)
    for key, value in mine.items():
        np.testing.assert_array_equal(value, theirs[key])


@pytest.mark.slow
def test_strips_at_another_runtime_than_the_series_holds_are_refused_saying_so(
        place, tmp_path):
    """Two killed runs left strips at two runtimes; auto holds the first date's."""
    out = tmp_path / "out"
    killed(place, out, DATES[1:], precision="fp32", channels_last="off")
    killed(place, out, DATES[:1], precision="bf16", channels_last="off")
    stacks, _, _ = place
    work = out / DATES[1] / f".isa_{DATES[1]}.partial"
    with pytest.raises(ConfigError) as refused:
        map_region(request(place, out, workers=1, strip_rows=32), load_model(place[1]),
                   session=session_for(SeriesTransport(stacks, info=lambda t: 5)),
                   echo=lambda _: None)
    message = str(refused.value)
    assert f"{work} holds strips computed at fp32/nchw, but the series it belongs to is " \
        "mapped at bf16/nchw" in message
    assert f"delete {work} to discard them" in message and "asks" not in message
    shutil.rmtree(work)  # as it says: the date is mapped again at the series' runtime
    map_region(request(place, out, workers=1, strip_rows=32), load_model(place[1]),
               session=session_for(SeriesTransport(stacks, info=lambda t: 5)),
               echo=lambda _: None)
    assert {r for r, _ in runtimes(out).values()} == {"bf16/nchw"}


@pytest.mark.slow
@pytest.mark.parametrize("label", ["fp16/nhwc", "int8/nchw"])
def test_a_held_runtime_this_device_cannot_run_is_refused_before_any_work(
        place, built, tmp_path_factory, tmp_path, monkeypatch, label):
    """A series mapped on a GPU at fp16, or at int8 on a CPU with int8 units, rerun here.

    auto held it without the checks an explicit option gets: fp16 was forced onto the CPU, and
    int8 failed at the first batch. This CPU is made one without int8 units. The series'
    first date is a copy of the module's map of it (``mapped_once``), relabelled.
    """
    stacks, _, _ = place
    session = session_for(SeriesTransport(stacks, info=lambda t: 5))
    out = copied(mapped_once(built, place, tmp_path_factory, "first-date", DATES[:1])[0],
                 tmp_path / "out")
    with rasterio.open(out / DATES[0] / f"isa_{DATES[0]}_class.tif", "r+",
                       IGNORE_COG_LAYOUT_BREAK="YES") as ds:  # as the other machine left it
        ds.update_tags(runtime=label)
    monkeypatch.setattr(quantize, "cpu_has_int8", lambda: False)
    engine_choice.int8_unavailable.cache_clear()
    try:
        with pytest.raises(ConfigError) as refused:
            map_region(request(place, out), load_model(place[1]),
                       session=session, echo=lambda _: None)
    finally:
        engine_choice.int8_unavailable.cache_clear()
    message = str(refused.value)
    assert f"the series in {out} was mapped at {label} (its dates record it), which this " \
        "cpu cannot run" in message and "\n" not in message
    assert not (out / DATES[1]).exists()  # nothing of the other date
    fp32 = RuntimeOptions(precision="fp32", channels_last="off")  # as the message says
    map_region(dataclasses.replace(request(place, out), runtime=fp32), load_model(place[1]),
               session=session, echo=lambda _: None)
    assert runtimes(out) == dict.fromkeys(DATES, ("fp32/nchw", "explicit"))


@pytest.mark.slow
def test_dates_an_earlier_isamap_mapped_with_cudnn_benchmark_are_mapped_again(
        place, tmp_path, caplog):
    """An earlier isamap recorded ``fp32/nchw/cudnn-bench`` on CUDA; this one never benchmarks.

    A series upgraded and extended held that label: its old dates matched it (never mapped
    again) while a new date recorded ``fp32/nchw``, so the change map compared two runtimes
    and map.json kept the old label (exit 0). Every date is now mapped at one runtime.
    """
    stacks, _, _ = place
    session = session_for(SeriesTransport(stacks, info=lambda t: 5))
    out = tmp_path / "out"
    first = map_region(request(place, out, precision="fp32", channels_last="off"),
                       load_model(place[1]), session=session, echo=lambda _: None)
    for month in DATES:  # as the earlier isamap left them on a GPU
        with rasterio.open(out / month / f"isa_{month}_class.tif", "r+",
                           IGNORE_COG_LAYOUT_BREAK="YES") as ds:
            ds.update_tags(runtime="fp32/nchw/cudnn-bench", runtime_source="measured")
    record = json.loads((out / "map.json").read_text())
    record["runtime"] = {"runtime": "fp32/nchw/cudnn-bench", "runtime_source": "measured"}
    (out / "map.json").write_text(json.dumps(record))
    for kind in ("class", "prob"):
        (out / DATES[1] / f"isa_{DATES[1]}_{kind}.tif").unlink()
    with caplog.at_level(logging.INFO):
        again = map_region(request(place, out), load_model(place[1]),
                           session=session, echo=lambda _: None)
    assert "already mapped" not in caplog.text
    assert "computed at runtime fp32/nchw/cudnn-bench" in caplog.text
    assert {r for r, _ in runtimes(out).values()} == {"fp32/nchw"}
    with rasterio.open(first.series.changes[0].cog) as ds:
        tags = ds.tags()
    assert tags["from_run"].endswith(" at fp32/nchw") and tags["to_run"].endswith(" at fp32/nchw")
    assert json.loads((out / "map.json").read_text())["runtime"]["runtime"] == "fp32/nchw"
    assert not any(d.outputs.prediction.skipped for d in again.dates)


@pytest.mark.slow
def test_strips_an_earlier_isamap_computed_with_cudnn_benchmark_are_discarded(
        place, tmp_path, caplog):
    """Resumed without the benchmark, they would have mixed two runtimes in one map."""
    out = tmp_path / "out"
    killed(place, out, DATES[:1], precision="fp32", channels_last="off")
    work = out / DATES[0] / f".isa_{DATES[0]}.partial"
    record = json.loads((work / "runtime.json").read_text())
    record["setting"]["cudnn_benchmark"] = True  # as the earlier isamap recorded on a GPU
    (work / "runtime.json").write_text(json.dumps(record))
    stacks, _, _ = place
    with caplog.at_level(logging.INFO):
        map_region(request(place, out, DATES[:1], workers=1, strip_rows=32), load_model(place[1]),
                   session=session_for(SeriesTransport(stacks, info=lambda t: 5)),
                   echo=lambda _: None)
    assert "computed with cudnn.benchmark" in caplog.text
    assert "resuming at the runtime" not in caplog.text
    assert {r for r, _ in runtimes(out).values()} == {"fp32/nchw"}
