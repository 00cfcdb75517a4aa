"""isamap-map over a region: fake Earth Engine pixel server vs the local stack file, resume,
faults, dates without data, the recipe checks and the grid."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import rasterio

from contract.grid import Grid
from contract.regions import Region
from core.errors import ConfigError, EarthEngineError, GridError, InputDataError
from core.months import parse_months
from inference.mapping.fetched import fetch_layout
from inference.mapping.region import map_region, region_grid
from inference.mapping.request import (
    MapExtent,
    MapInputs,
    MapOutputs,
    MapRequest,
    map_window,
    parse_dates,
)
from inference.predict.job import PredictInput, PredictJob, PredictOutputs, PredictRun
from inference.predict.raster import PredictConfig
from inference.predict.runtime import RuntimeOptions
from inference.predict.sources import WindowSource
from inference.predict.workflow import predict
from testing.fake_server import HttpError, StackTransport
from tests.support.mapping import (
    MONTH,
    inner_region,
    model_file,
    session_for,
    stack_paths,
    write_month_stack,
)
from tests.support.rasters import BANDS, smooth_stack
from training.modelfile import load_model

TILE, OVERLAP = 64, 16
OPTIONS = RuntimeOptions(precision="fp32", channels_last=False)
WINDOW = map_window(tile=TILE, overlap=OVERLAP, batch_size=4)


#: the module-scoped fixtures below are built once: their tests run on one worker
pytestmark = pytest.mark.xdist_group("inference.mapping.test_dates")


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stack")
    data = smooth_stack(200, 230, seed=3)
    data[1, 90:110, 60:95] = np.nan  # a hole: nodata in the map, as in the local prediction
    stack = write_month_stack(folder, data)
    return stack, model_file(folder / "unet.pt", stack.grid)


@pytest.fixture(scope="module")
def built() -> dict:
    return {}


@pytest.fixture
def whole(built, scene, ee_offline, tmp_path_factory):
    """The scene's map, uninterrupted, with the defaults of :func:`request_for`: mapped once a
    module and only read (copied where a test maps into it). ``reads``/``hashes``: the model
    file's reads and hashes during that run; ``served``: its pixel requests."""
    if "whole" not in built:
        from training import modelfile

        stack, model = scene
        out = tmp_path_factory.mktemp("whole") / "out"
        transport = StackTransport(stack, info=lambda text: 5)
        reads, hashes = [], []
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(modelfile, "_read", lambda *a, _f=modelfile._read: (
                reads.append(a[0]), _f(*a))[1])
            patch.setattr(modelfile, "model_file_id", lambda p, _f=modelfile.model_file_id: (
                hashes.append(p), _f(p))[1])
            result = map_region(request_for(stack, out), load_model(model),
                                session=session_for(transport), echo=lambda _: None)
        built["whole"] = {"out": out, "result": result, "reads": reads, "hashes": hashes,
                          "served": list(transport.served)}
    return built["whole"]


def request_for(stack, out, dates=(MONTH,), region=None, **parts) -> MapRequest:
    """The module's map of ``stack`` into ``out``; ``parts`` replace the request's own."""
    return MapRequest(MapExtent(region or inner_region(stack.grid), dates), **{
        "outputs": MapOutputs(str(out)), "inputs": MapInputs(workers=4), "window": WINDOW,
        "runtime": OPTIONS, "progress": False, **parts})


def window_of(stack, grid: Grid) -> WindowSource:
    """The map's grid as a window of the local stack file, read past its edges from the stack:
    what the map of the region is on the lattice (its tiles see the stack's pixels around it)."""
    src = rasterio.open(stack.image)
    col = round((grid.x0 - src.transform.c) / grid.resolution)
    row = round((src.transform.f - grid.y0) / grid.resolution)
    return WindowSource(src, row, col, grid.height, grid.width)


def read(path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read(1)


def test_fake_server_map_equals_predicting_the_local_stack_file(scene, whole, tmp_path):
    stack, model = scene
    result, out = whole["result"], whole["out"]
    # the model file read and hashed once a run
    assert len(whole["reads"]) == 1 and len(whole["hashes"]) == 1
    grid = result.grid
    assert grid.crs == stack.grid.crs and (grid.x0 - stack.grid.x0) % 10 == 0
    (date,) = result.dates
    expected = predict(PredictJob(
        model, PredictInput(window_of(stack, grid)), PredictOutputs(str(tmp_path / "ref" / "isa")),
        PredictConfig(tile=TILE, overlap=OVERLAP, batch_size=4, blend="core"), OPTIONS,
        run=PredictRun(progress=False)))
    got = date.outputs.prediction
    for mine, ref in ((got.class_path, expected.prediction.class_path),
                      (got.prob_path, expected.prediction.prob_path)):
        a, b = read(mine), read(ref)
        assert np.array_equal(a, b)
        assert (a == 255).any() and (a != 255).mean() > 0.9  # the hole is nodata, not guessed
    with rasterio.open(got.class_path) as ds:
        assert ds.tags()["month"] == MONTH and ds.transform == grid.transform
    layout = fetch_layout(grid, TILE, OVERLAP, "core")
    assert result.dates[0].outputs.prediction.tiles == sum(len(row) for row in layout)
    # neighbouring tiles of a row share a request (here a whole row fits in one), after the
    # first rows' smaller requests (1, 2 then 4 tiles each) that let the model start early
    # (4 workers: rows are fetched ahead, so the start matters; never more requests in a
    # ramp row than workers: 5 tiles in 3 requests)
    assert len(layout) == 5 and all(len(row) == 5 for row in layout)
    assert len(whole["served"]) == 3 + 3 + 2 + 1 + 1
    # STAC beside every COG, and the run record
    assert json.loads((out / MONTH / f"isa_{MONTH}_class.stac.json").read_text())[
        "properties"]["isamap:model"] == "unet"
    record = json.loads((out / "map.json").read_text())
    assert record["dates"][MONTH]["class_cog"] == f"{MONTH}/isa_{MONTH}_class.tif"
    assert record["lattice"] == {"tile": TILE, "overlap": OVERLAP, "blend": "core",
                                 "lattice": "grid", "anchor": [0.0, 0.0],
                                 "origin": [grid.x0, grid.y0]}


@pytest.mark.parametrize("record", ["map.json", "cog tags"])
def test_a_date_on_another_tile_lattice_than_its_series_is_refused(scene, whole, tmp_path,
                                                                    record):
    """Another --tile cuts tiles elsewhere: with a context-dependent model that is false change
    between dates, so a series keeps its lattice (from map.json, or from a date's COG tags when
    a killed run left no map.json) and refuses another before any request.

    The series is a copy of the module's map of the same request (``whole``)."""
    import shutil

    stack, model = scene
    out = tmp_path / "out"
    shutil.copytree(whole["out"], out)
    if record == "cog tags":
        (out / "map.json").unlink()
    transport = StackTransport(stack, info=lambda text: 5)
    with pytest.raises(ConfigError, match=r"tile lattice --tile 64 --overlap 16.*--tile 32"):
        map_region(request_for(stack, out, ("2019-07",), window=map_window(tile=32, overlap=8)),
                   load_model(model), session=session_for(transport), echo=lambda _: None)
    assert transport.served == []


def test_killed_run_resumes_and_equals_an_uninterrupted_run(scene, whole, tmp_path):
    stack, model = scene
    total = whole["result"].dates[0].outputs.prediction.tiles

    class Dies(StackTransport):  # the service stops answering after three tile rows
        def compute_pixels(self, request):
            if len(self.served) >= 3:  # one request per tile row (one worker: no ramp)
                raise HttpError(400, "simulated outage")
            return super().compute_pixels(request)

    request = request_for(stack, tmp_path / "out", inputs=MapInputs(workers=1),
                          window=replace(WINDOW, strip_rows=32))
    with pytest.raises(EarthEngineError, match=r"tile\(s\) not fetched yet \(r\d") as info:
        map_region(request, load_model(model), session=session_for(Dies(stack, info=lambda t: 5)),
                   echo=lambda _: None)
    assert "run the same command again" in str(info.value)
    assert not (tmp_path / "out" / MONTH / f"isa_{MONTH}_class.tif").exists()
    healthy = StackTransport(stack, info=lambda t: 5)
    resumed = map_region(request, load_model(model), session=session_for(healthy),
                         echo=lambda _: None)
    prediction = resumed.dates[0].outputs.prediction
    assert prediction.resumed_strips >= 1 and len(healthy.served) < total  # only the rest
    for kind in ("class", "prob"):
        assert np.array_equal(read(tmp_path / "out" / MONTH / f"isa_{MONTH}_{kind}.tif"),
                              read(whole["out"] / MONTH / f"isa_{MONTH}_{kind}.tif"))
    again = StackTransport(stack, info=lambda t: 5)
    map_region(request, load_model(model), session=session_for(again), echo=lambda _: None)
    assert again.served == []  # a finished date is not fetched again


def test_quota_errors_are_retried_then_reported_with_the_tiles_left(scene, ee_offline,
                                                                     tmp_path):
    stack, model = scene
    flaky = StackTransport(stack, info=lambda t: 5, fail_every=3,
                           fault=HttpError(429, "Too Many Requests"))
    result = map_region(request_for(stack, tmp_path / "a", inputs=MapInputs(workers=2)),
                        load_model(model), session=session_for(flaky), echo=lambda _: None)
    assert result.dates[0].outputs is not None  # every third call refused, all retried
    class Refusing(StackTransport):  # every pixel request refused, the counts answered
        def compute_pixels(self, request):
            raise HttpError(429, "Too Many Requests")

    always = Refusing(stack, info=lambda t: 5)
    with pytest.raises(EarthEngineError, match=r"Lower --workers.*not fetched yet"):
        map_region(request_for(stack, tmp_path / "b"), load_model(model),
                   session=session_for(always), echo=lambda _: None)


def test_a_date_without_sentinel1_is_reported_and_skipped(scene, ee_offline, tmp_path):
    stack, model = scene

    def info(text: str) -> int:  # no Sentinel-1 scene in 2021-06
        return 0 if "2021-06-01" in text and "COPERNICUS/S1" in text else 5

    transport = StackTransport(stack, info=info)
    with pytest.raises(ConfigError, match="no date could be mapped"):
        map_region(request_for(stack, tmp_path / "o", ("2021-06",)), load_model(model),
                   session=session_for(transport), echo=lambda _: None)
    assert transport.served == []  # skipped before any pixel request


def test_recipe_mismatch_is_refused_unless_allowed(scene, tmp_path):
    stack, _ = scene
    local_model = model_file(tmp_path / "local.pt", stack.grid, backend="local")
    request = request_for(stack, tmp_path / "o")
    with pytest.raises(ConfigError, match="--allow-recipe-mismatch"):
        map_region(request, load_model(local_model), echo=lambda _: None)
    bad_zones = tmp_path / "zones.geojson"
    bad_zones.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": {"type": "Point",
                                                           "coordinates": [117, 30.7]}}]}))
    with pytest.raises(InputDataError, match="not a \\(Multi\\)Polygon"):  # before any work
        map_region(request_for(stack, tmp_path / "o",
                               outputs=MapOutputs(str(tmp_path / "o"), zones=str(bad_zones)),
                               inputs=MapInputs(allow_recipe_mismatch=True)),
                   load_model(local_model), echo=lambda _: None)


def test_unauthenticated_earth_engine_is_one_clear_error(scene, tmp_path):
    stack, model = scene
    from core.errors import AuthenticationError

    with pytest.raises(AuthenticationError, match="earthengine authenticate"):
        map_region(request_for(stack, tmp_path / "o"), load_model(model), echo=lambda _: None)


def test_region_in_another_utm_zone_is_mapped_in_its_own_zone_and_said(scene):
    stack, _ = scene
    far = Region("far", (121.1, 30.6, 121.2, 30.7))  # zone 51, the model's grid is in zone 50
    grid, note = region_grid(far, 10.0, stack.grid)
    assert grid.crs == "EPSG:32651" and "not the model's training CRS" in note
    near, none = region_grid(inner_region(stack.grid), 10.0, stack.grid)
    assert none is None and (near.x0 - stack.grid.x0) % 10 == 0
    with pytest.raises(ConfigError, match=r"84.*--crs EPSG:32661"):
        region_grid(Region("pole", (10.0, 84.5, 11.0, 85.0)), 10.0)


def test_an_area_over_several_utm_zones_is_mapped_in_the_crs_asked_for(scene, caplog):
    stack, _ = scene
    belt = Region("belt", (100.0, 29.0, 122.0, 31.0))  # five zones, as the export's yreb
    with caplog.at_level("WARNING"):
        grid, note = region_grid(belt, 10.0, stack.grid)
    assert grid.crs == "EPSG:32649" and "spans 5 UTM zones" in caplog.text
    assert "--crs EPSG:6933" in caplog.text
    equal_area, note = region_grid(belt, 10.0, stack.grid, "EPSG:6933")
    assert equal_area.crs == "EPSG:6933" and equal_area.resolution == 10.0
    assert "EPSG:6933, not the model's training CRS" in note
    west, east = equal_area.x0, equal_area.x0 + equal_area.width * 10.0
    assert west == pytest.approx(9_648_628, abs=20) and east == pytest.approx(11_771_326, abs=20)
    with pytest.raises(GridError, match="not a projected CRS in metres"):
        region_grid(belt, 10.0, None, "EPSG:4326")


def test_dates_from_months_or_years():
    assert parse_dates("2019-06,2017-06", None, lambda: "06") == ("2017-06", "2019-06")
    # the export's month-list parser: the same lists accepted, a repeated month kept once
    assert parse_dates("2019-06, 2017-06,2019-06", None, lambda: "06") == (
        "2017-06", "2019-06") == tuple(sorted(parse_months("2019-06,2017-06,2019-06")))
    assert parse_dates(None, "2017:2023:2", lambda: "07") == (
        "2017-07", "2019-07", "2021-07", "2023-07")
    for months, years in ((None, None), ("2019-06", "2017:2019"), ("June", None), (",", None),
                          (None, "2023:2017")):
        with pytest.raises(ConfigError):
            parse_dates(months, years, lambda: "06")


def _tasks_run(scene, gcs_emulator, out: str, tmp_path, **request_kwargs):
    """A transport serving the scene's stack as batch-task exports, and a tasks request."""
    stack, _ = scene
    transport = StackTransport(stack, info=lambda t: 5, gcs_client=gcs_emulator.client(),
                               task_bands=BANDS)
    return transport, request_for(stack, out, inputs=MapInputs(workers=4, method="tasks"),
                                  outputs=MapOutputs(out, local_dir=str(tmp_path / "local")),
                                  **request_kwargs)


@pytest.mark.slow
def test_tasks_method_exports_tiles_to_storage_and_predicts_over_their_vrt(
        scene, whole, tmp_path, gcs_emulator, gcs_bucket):
    out = f"gs://{gcs_bucket}/maps"
    transport, request = _tasks_run(scene, gcs_emulator, out, tmp_path)
    result = map_region(request, load_model(scene[1]), session=session_for(transport),
                        echo=lambda _: None)
    assert transport.served == [] and len(transport.tasks) == 1  # no pixel request at all
    (task,) = transport.tasks.values()
    assert task["description"] == "isamap_stack_2019-06_tile_000000_000000"  # sanitised
    names = {b.name for b in gcs_emulator.client().list_blobs(gcs_bucket)}
    assert {"maps/stacks/stack_2019-06.vrt", "maps/stacks/stack_2019-06/tile_000000_000000.tif",
            f"maps/{MONTH}/isa_{MONTH}_class.tif", f"maps/{MONTH}/isa_{MONTH}_class.stac.json",
            "maps/collection.json"} <= names
    pixels = whole["result"]  # the same request by pixel requests
    from core.storage import files

    for kind in ("class", "prob"):
        assert np.array_equal(
            read(files.gdal_path(f"{out}/{MONTH}/isa_{MONTH}_{kind}.tif")),
            read(whole["out"] / MONTH / f"isa_{MONTH}_{kind}.tif"))
    assert result.grid == pixels.grid


@pytest.mark.slow
def test_a_hard_killed_run_resumes_to_the_uninterrupted_map(scene, whole, tmp_path):
    """SIGKILL in the middle of the fetches (no clean-up runs), then the same command again."""
    import signal
    import subprocess
    import sys

    from tests.support import REPO_ROOT
    from tests.support.killed_map import request_from

    stack, model = scene
    spec = {"stack": stack.image, "model": str(model), "out": str(tmp_path / "out"),
            "bbox": list(inner_region(stack.grid).bbox), "tile": TILE, "overlap": OVERLAP,
            "strip_rows": 32, "kill_after": 4}  # one worker: one request per tile row
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    done = subprocess.run([sys.executable, "-m", "tests.support.killed_map",
                           str(tmp_path / "spec.json")], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    assert not (tmp_path / "out" / MONTH / f"isa_{MONTH}_class.tif").exists()
    healthy = StackTransport(stack, info=lambda t: 5)
    resumed = map_region(request_from(spec), load_model(model), session=session_for(healthy),
                         echo=lambda _: None)
    # strips written before the kill are kept (how many depends on when the writer thread got
    # to them; the in-process test above checks that fewer tiles are fetched again)
    assert resumed.dates[0].outputs.prediction.resumed_strips >= 1
    assert len(healthy.served) <= len(fetch_layout(resumed.grid, TILE, OVERLAP))
    # the uninterrupted map: the module's (four workers, whole-date strips: the same pixels)
    for kind in ("class", "prob"):
        assert np.array_equal(read(tmp_path / "out" / MONTH / f"isa_{MONTH}_{kind}.tif"),
                              read(whole["out"] / MONTH / f"isa_{MONTH}_{kind}.tif"))
    assert whole["result"].grid == resumed.grid


@pytest.mark.slow
def test_clahe_postprocess_maps_as_predicting_the_local_stack_with_it(scene, whole, tmp_path):
    """``--postprocess clahe`` reaches the predictor of every date and is recorded (forced:
    the scene's model is binary, which CLAHE is not made for).

    The map without it is the module's (``whole``), which the first test shows equal to
    predicting the local stack file without it."""
    from inference.predict.postprocess import ClaheParams

    stack, model = scene
    clahe = ClaheParams(block=32, clip_limit=40.0, threshold=100)
    window = replace(WINDOW, postprocess="clahe", clahe=clahe, force_postprocess=True)
    result = map_region(request_for(stack, tmp_path / "out", window=window), load_model(model),
                        session=session_for(StackTransport(stack, info=lambda t: 5)),
                        echo=lambda _: None)
    (date,) = result.dates
    config = PredictConfig(tile=TILE, overlap=OVERLAP, batch_size=4, blend="core")
    window = window_of(stack, result.grid)
    post = predict(PredictJob(model, PredictInput(window),
                              PredictOutputs(str(tmp_path / "post" / "isa")),
                              PredictConfig(**{**config.__dict__, "postprocess": "clahe",
                                               "clahe": clahe, "force_postprocess": True}),
                              OPTIONS, run=PredictRun(progress=False)))
    plain = whole["result"].dates[0].outputs.prediction
    assert whole["result"].grid == result.grid
    got = date.outputs.prediction
    assert np.array_equal(read(got.class_path), read(post.prediction.class_path))
    assert not np.array_equal(read(got.class_path), read(plain.class_path))
    assert np.array_equal(read(got.prob_path), read(plain.prob_path))
    record = json.loads((tmp_path / "out" / "map.json").read_text())
    assert record["postprocess"] == "clahe" and record["clahe"]["block"] == 32


def test_a_second_run_into_the_same_output_is_refused_and_changes_nothing(scene, ee_offline,
                                                                          tmp_path):
    """The map root is locked for the run: another live process holding it means refusal."""
    import subprocess
    import sys

    from core.errors import OutputLockedError
    from tests.support import REPO_ROOT

    stack, model = scene
    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom core.lock import hold_output\n"
         "with hold_output(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(120)\n",
         str(out)], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        transport = StackTransport(stack, info=lambda text: 5)
        with pytest.raises(OutputLockedError, match=f"pid {holder.pid}"):
            map_region(request_for(stack, out), load_model(model),
                       session=session_for(transport), echo=lambda _: None)
        assert transport.served == []  # refused before the first pixel request
        assert sorted(p.name for p in out.iterdir()) == [".isamap.lock"]
    finally:
        holder.kill()
        holder.wait()


def test_a_local_map_removes_what_a_killed_stack_build_left_and_records_its_scenes(tmp_path):
    """A killed build leaves half-written stack files (temporaries) under the map's .stacks,
    a killed change map its work folder in change/ (an earlier isamap's were named
    .isamap-change-*, .isamap-consistent-*, and stayed); the next run deletes them, as the
    export does, and each date names the scenes it read."""
    from core.storage import TEMP_MARK, temporary_name
    from gee_export.local.synthetic import generate_scene

    scene = generate_scene(tmp_path / "scene", width=96, height=96, progress=False)
    model = model_file(tmp_path / "local.pt", scene.grid, backend="local")
    out = tmp_path / "out"
    left = temporary_name(out / ".stacks" / MONTH / f"stack_{MONTH}_image.tif")
    left.parent.mkdir(parents=True)
    left.write_bytes(b"half a stack")
    unfinished = out / "change" / f"{TEMP_MARK}change-x1y2" / "change.tif"  # a change map's
    unfinished.parent.mkdir(parents=True)
    unfinished.write_bytes(b"half a change map")
    earlier = [out / "change" / ".isamap-change-a1b2" / "change.tif",  # an earlier isamap's
               out / "consistent" / ".isamap-consistent-c3d4" / "0.tif"]  # names: no TEMP_MARK
    for path in earlier:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half a map")
    request = MapRequest(MapExtent(inner_region(scene.grid, margin_px=0), (MONTH,),
                                   grid=scene.grid), MapOutputs(str(out)),
                         MapInputs(backend="local", scenes=str(tmp_path / "scene"),
                                   allow_recipe_mismatch=True),
                         map_window(tile=TILE, overlap=OVERLAP), OPTIONS, progress=False)
    map_region(request, load_model(model), echo=lambda _: None)
    assert not left.exists() and not unfinished.parent.exists()
    assert not any(path.parent.exists() for path in earlier)
    assert not [p for p in (out / ".stacks").rglob("*") if "isamap-tmp" in p.name]
    inputs = json.loads((out / "map.json").read_text())["dates"][MONTH]["inputs"]
    assert inputs["backend"] == "local" and {s["sensor"] for s in inputs["scenes"]} == {"S1",
                                                                                        "S2"}
    assert all(s["date"].startswith(MONTH) for s in inputs["scenes"])
    assert str(tmp_path) not in json.dumps(inputs)


def test_a_local_map_of_part_of_an_area_is_that_part_of_the_areas_map(tmp_path):
    """One pixel, one answer on local scenes: the stack of a map reaches as far past its
    area as the lattice's tiles do, so the tiles at its edges see the ground there, and a
    small area mapped alone gets every class and probability its pixels get inside a larger
    map (a model on its recorded statistics). Its stack on the map's grid (what the change
    rules read) is a VRT of that wider stack."""
    from gee_export.local.synthetic import generate_scene

    scene = generate_scene(tmp_path / "scene", width=128, height=128, progress=False)
    model = load_model(model_file(tmp_path / "m.pt", scene.grid, backend="local"))
    g = scene.grid

    def mapped(row: int, col: int, height: int, width: int) -> tuple[np.ndarray, ...]:
        grid = replace(g, x0=g.x0 + col * g.resolution, y0=g.y0 - row * g.resolution,
                       width=width, height=height)
        out = tmp_path / f"map{row}_{col}"
        result = map_region(MapRequest(
            MapExtent(inner_region(grid, margin_px=0), (MONTH,), grid=grid), MapOutputs(str(out)),
            MapInputs(backend="local", scenes=str(tmp_path / "scene"),
                      allow_recipe_mismatch=True), WINDOW, OPTIONS, progress=False),
            model, echo=lambda _: None)
        written = result.dates[0].outputs.prediction
        with rasterio.open(out / ".stacks" / MONTH / f"stack_{MONTH}_image.vrt") as vrt:
            assert (vrt.height, vrt.width, vrt.transform) == (height, width, grid.transform)
        return read(written.class_path), read(written.prob_path)

    whole = mapped(4, 4, 120, 120)
    part = mapped(37, 45, 50, 60)  # off the lattice's tiles, far from the scene's edges
    for inside, alone in zip(whole, part, strict=True):
        np.testing.assert_array_equal(inside[33:83, 41:101], alone)


@pytest.mark.slow
def test_tasks_series_decides_change_by_the_spectral_rule_on_the_exported_stacks(
        scene, ee_offline, tmp_path, gcs_emulator, gcs_bucket):
    """The run keeps each date's exported stack (its VRT): the default rule reads them."""
    from core.storage import files
    from inference.predict.change.arrays import MIN_RELATIVE_SPREAD, SPECTRAL_RULE

    out = f"gs://{gcs_bucket}/series"
    transport, request = _tasks_run(scene, gcs_emulator, out, tmp_path,
                                    dates=(MONTH, "2021-06"))
    assert request.rule() == "spectral"
    result = map_region(request, load_model(scene[1]), session=session_for(transport),
                        echo=lambda _: None)
    assert [d.stack for d in result.dates] == [f"{out}/stacks/stack_{m}.vrt"
                                               for m in (MONTH, "2021-06")]
    (change,) = result.series.changes
    with files.open_raster(change.cog) as ds:
        tags, codes = ds.tags(), ds.read(1)
    assert tags["change_rule"] == SPECTRAL_RULE
    assert tags["from_stack"] == f"{out}/stacks/stack_{MONTH}.vrt"
    # the same stack served for both dates: no pixel changed, nodata where a band is missing
    assert not np.isin(codes, (2, 3)).any() and (codes == 255).any()
    # identical dates: no spread but the floor, 1 % of each band's level
    assert change.fit["pixels"] > 0 and change.fit["centre"] == [0.0] * len(BANDS)
    with files.open_raster(f"{out}/stacks/stack_{MONTH}.vrt") as ds:
        level = np.nanmedian(np.abs(np.where(ds.read(masked=True).mask, np.nan,
                                             ds.read())).reshape(len(BANDS), -1), axis=1)
    assert change.fit["spread"] == pytest.approx(list(MIN_RELATIVE_SPREAD * level), rel=0.3)


def test_the_scenes_extent_on_a_lattice_off_the_resolution_keeps_every_centre_on_the_scenes():
    """A training lattice at x0 = 5 (not a multiple of 10 m), the scenes' box east at ...6 m.

    The region was snapped to multiples of 10 m first (east 238646 -> 238650) and then to the
    lattice (-> 238655): its last pixel centre, 238650, lay past the scenes. Snapped once onto
    the lattice, every pixel centre lies within the box's projection.
    """
    from pyproj import Transformer

    crs = "EPSG:32650"
    lattice = Grid(crs, 5.0, 3400005.0, 100000, 100000, 10.0, 32, 32)
    to_crs = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    to_lonlat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    for east in range(238640, 238660):  # a box whose projection ends 5.5 to 9.5 m past 10 m
        box = to_lonlat.transform_bounds(238002.0, 3385003.0, float(east), 3385640.0)
        bounds = to_crs.transform_bounds(*box, densify_pts=21)
        if 5.5 < bounds[2] % 10 < 9.5:
            break
    else:
        raise AssertionError("no box ends where two snaps differ")
    grid, note = region_grid(Region("scenes", box, covered=True), 10.0, lattice, crs)
    assert note is None and (grid.x0 - 5.0) % 10 == 0 and (grid.y0 - 5.0) % 10 == 0
    west, south, east_edge, north = grid.bounds
    half = grid.resolution / 2
    assert bounds[0] <= west + half and east_edge - half <= bounds[2]  # every pixel centre
    assert bounds[1] <= south + half and north - half <= bounds[3]  # lies in the box
    assert east_edge + half > bounds[2]  # and none that does is left out


def test_a_bbox_on_a_lattice_off_the_resolution_is_snapped_once(ee_offline, tmp_path):
    """A --bbox (not the scenes' extent) on a training lattice at x0 = 500005: it was snapped
    to multiples of 10 m first and then outward onto the lattice: one row (north) and one
    column (east) more than snapping it onto the lattice once. The map COG is the single
    snap."""
    from affine import Affine
    from pyproj import Transformer

    from contract.geotiff import write_geotiff

    data = smooth_stack(120, 120, seed=5)
    image = write_geotiff(tmp_path / "in" / f"stack_{MONTH}.tif", data.astype("float32"),
                          Affine(10.0, 0, 500005.0, 0, -10.0, 3400005.0), "EPSG:32650",
                          float("nan"), descriptions=BANDS)
    stack = stack_paths(image)
    model = model_file(tmp_path / "in" / "unet.pt", stack.grid)
    to_lonlat = Transformer.from_crs(stack.grid.crs, "EPSG:4326", always_xy=True)
    # edges 2-3 m past a multiple of 10 m: 7-8 m inside the lattice's pixels
    box = tuple(round(v, 7) for v in to_lonlat.transform_bounds(
        500302.0, 3399302.0, 500902.0, 3399702.0))
    once = Grid.from_lonlat_bounds(box, stack.grid.crs, 10.0, 64, 32,
                                   origin=(stack.grid.x0, stack.grid.y0))
    assert once.x0 % 10 == 5 and once.y0 % 10 == 5
    result = map_region(request_for(stack, tmp_path / "out", region=Region("box", box)),
                        load_model(model),
                        session=session_for(StackTransport(stack, info=lambda text: 5)),
                        echo=lambda _: None)
    (date,) = result.dates
    with rasterio.open(date.outputs.prediction.class_path) as ds:
        assert ds.transform == once.transform
        assert (ds.width, ds.height) == (once.width, once.height)
