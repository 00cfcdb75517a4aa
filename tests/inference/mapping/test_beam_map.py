"""isamap-map's Beam pipeline on the DirectRunner vs the streaming isamap-map, same region.

Both cut the series' lattice and keep each tile's core, so they give the same map: with a
per-pixel model (``test-threshold``) and with CroFuseNet, whose output depends on the whole tile
(classes and probabilities exactly: the pipeline predicts the streaming predictor's batches).
The ImageCollection manifests of the two runs
(publication dry run) are the same but for where the COGs are. A 503 injected at one tile's
request is retried inside the run; a re-run starts no pipeline; a Dataflow GPU job is built and
validated offline. As Dataflow runs it (pickled DoFns and the model loaded in worker processes,
a failed bundle retried with its outputs discarded), a bundle that fails once gives the same map.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil

import numpy as np
import pytest
import rasterio

from contract.publishing import PublishOptions
from core.errors import ConfigError
from core.pipeline_options import (
    PipelineFailedError,
    RunnerConfig,
    pipeline_counters,
)
from core.storage.base import TEMP_MARK
from gee_export.ee.beam_export import EarthEngineProject
from inference.cog.maps import OutputInfo
from inference.mapping.beam_map import map_fingerprint, predict_date, runtime_tags
from inference.mapping.region import map_region, region_grid
from inference.mapping.request import (
    MapExtent,
    MapInputs,
    MapOutputs,
    MapPublication,
    MapRequest,
    map_window,
    model_dataset,
)
from inference.mapping.tiles import plan_tiles
from inference.predict.lattice import Lattice
from inference.predict.runtime import RuntimeOptions
from testing.fake_server import StackSessions, StackTransport, request_origin
from tests.support.mapping import MONTH, inner_region, model_file, session_for, write_month_stack
from tests.support.rasters import smooth_stack
from training.modelfile import load_model

pytest.importorskip("apache_beam", reason="the beam extra is not installed (make setup does)")
dataflow_like = pytest.importorskip("tests.support.dataflow_like")


def _int8_ready() -> bool:
    from importlib.util import find_spec

    from engine.quantize import cpu_has_int8

    return find_spec("torchao") is not None and cpu_has_int8()


NEEDS_INT8 = pytest.mark.skipif(not _int8_ready(), reason="no int8 on this CPU or no torchao")
TILE, OVERLAP = 64, 16
LATTICE = Lattice(TILE, OVERLAP, "core")
OPTIONS = RuntimeOptions(precision="fp32", channels_last=False)
DIRECT = RunnerConfig("direct", max_workers=2, max_concurrent=4)
PUBLISH = {"publication": MapPublication("projects/isamap-test/assets/maps",
                                         PublishOptions(project="isamap-test"), dry_run=True)}


#: the module-scoped fixtures below are built once: their tests run on one worker
pytestmark = pytest.mark.xdist_group("inference.mapping.test_beam_map")


@pytest.fixture(scope="module")
def built() -> dict:
    return {}


@pytest.fixture
def scene(built, tmp_path_factory):
    if "scene" not in built:
        folder = tmp_path_factory.mktemp("beam_map")
        data = smooth_stack(150, 170, seed=7)
        data[1, 60:80, 40:75] = np.nan  # a hole: nodata in both maps
        stack = write_month_stack(folder, data)
        model = model_file(folder / "threshold.pt", stack.grid, name="test-threshold",
                           module="tests.support.models", band=0,
                           threshold=float(np.nanmedian(data[0])))
        built["scene"] = (folder, stack, model)
    return built["scene"]


def request_for(stack, out, **fields) -> MapRequest:
    """The module's map of ``stack`` into ``out``; ``fields`` replace the request's own."""
    return MapRequest(MapExtent(inner_region(stack.grid), (MONTH,)), **{
        "outputs": MapOutputs(str(out)), "inputs": MapInputs(workers=4),
        "window": map_window(tile=TILE, overlap=OVERLAP, batch_size=4), "runtime": OPTIONS,
        "progress": False, **fields})


def launcher(stack) -> StackTransport:
    return StackTransport(stack, info=lambda text: 5)  # answers the composite-window counts


def read(path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read(1)


def cogs(result):
    prediction = result.dates[0].outputs.prediction
    return prediction.class_path, prediction.prob_path


@pytest.fixture
def runs(built, scene, ee_offline, caplog):
    """isamap-map streamed, and as a pipeline with a 503 at one tile's request."""
    if "runs" not in built:
        caplog.set_level(logging.INFO, logger="inference.mapping.beam_map")
        folder, stack, model = scene
        streamed = map_region(request_for(stack, folder / "streamed", **PUBLISH), load_model(model),
                              session=session_for(launcher(stack)), echo=lambda _: None)
        grid = streamed.grid
        victim = plan_tiles(grid, LATTICE)[3]
        west, _, _, north = grid.window_bounds(victim.window)
        workers = StackSessions(stack, fail_at={request_origin(west, north): [503]})
        piped = map_region(request_for(stack, folder / "piped", runner=DIRECT, **PUBLISH),
                           load_model(model),
                           session=session_for(launcher(stack)), worker_sessions=workers,
                           echo=lambda _: None)
        built["runs"] = (streamed, piped)
        built["retried"] = [int(m) for m in re.findall(r"(\d+) requests retried", caplog.text)]
    return built["runs"]


def test_pipeline_map_equals_the_streamed_map(runs, scene, built):
    folder, _, _ = scene
    streamed, piped = runs
    assert built["retried"] == [1], "the 503 was retried inside the run (and counted)"
    (class_a, prob_a), (class_b, prob_b) = cogs(streamed), cogs(piped)
    assert class_b == str(folder / "piped" / MONTH / f"isa_{MONTH}_class.tif")
    a, b = read(class_a), read(class_b)
    assert np.array_equal(a, b) and (a == 255).any() and (a == 1).any() and (a == 0).any()
    assert np.array_equal(read(prob_a), read(prob_b))
    with rasterio.open(class_a) as x, rasterio.open(class_b) as y:
        assert x.transform == y.transform and x.crs == y.crs
        assert y.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"  # (too small for overviews)
        # how the tiles ran: what every worker was asked for (the streamed map measured it)
        assert x.tags()["runtime"] == y.tags()["runtime"] == "fp32/nchw"
        assert y.tags()["runtime_source"] == "explicit, every worker"
    assert piped.dates[0].outputs.prediction.tiles == len(plan_tiles(
        piped.grid, LATTICE)), "every tile predicted once"


@pytest.mark.slow
def test_pipeline_map_as_dataflow_runs_it_retries_a_failed_bundle(runs, scene, tmp_path,
                                                                  monkeypatch):
    """Worker processes load the model in setup(); one bundle fails once and is retried.

    One tile per unit and one request thread per worker, so a worker's bundle holds several
    elements and a request follows a tile the bundle wrote (where the failure is injected);
    the per-pixel model's map does not depend on the batches. One worker process is enough
    for all of it (the failure is in a worker process, not this one: asserted below).
    """

    dataflow_like.worker_path(monkeypatch)
    _, stack, model = scene
    streamed, _ = runs
    grid = streamed.grid
    out = tmp_path / "dataflow"
    marker = tmp_path / "failed-once"
    written = {}
    for tile in plan_tiles(grid, LATTICE):
        west, _, _, north = grid.window_bounds(tile.window)
        written[request_origin(west, north)] = str(out / MONTH / "tiles" / "*" / f"{tile.name}.tif")
    workers = dataflow_like.FailOnce(StackSessions(stack), written, str(marker))
    piped = map_region(request_for(stack, out, window=map_window(tile=TILE, overlap=OVERLAP,
                                                                 batch_size=1),
                                   runner=dataflow_like.dataflow_like(max_workers=1,
                                                                      max_concurrent=1)),
                       load_model(model),
                       session=session_for(launcher(stack)), worker_sessions=workers,
                       echo=lambda _: None)
    retried = dataflow_like.RetryingDirectRunner.retried
    assert marker.exists() and len(retried) == 1 and "injected worker failure" in retried[0]
    assert f"in process {os.getpid()} " not in retried[0], "it failed in a worker process"
    predicted = pipeline_counters(dataflow_like.RetryingDirectRunner.last_result,
                                  "isamap.map")["predicted"]
    assert predicted < len(plan_tiles(grid, LATTICE)), "the retry kept the failed attempt's tiles"
    for a, b in zip(cogs(streamed), cogs(piped), strict=True):
        assert np.array_equal(read(a), read(b)), f"{b} differs from the streamed map"
    tiles = sorted((out / MONTH / "tiles").rglob("tile_*.tif"))
    assert [t.stem for t in tiles] == sorted(t.name for t in plan_tiles(grid, LATTICE))
    assert not [p for p in out.rglob("*") if TEMP_MARK in p.name], "a temporary was left"


@pytest.mark.slow
def test_crofusenet_pipeline_map_equals_the_streamed_map(scene, ee_offline, tmp_path):
    """CroFuseNet pools over the whole tile (squeeze-excitation in its fusion blocks), so a
    pixel's class depends on where tiles are cut: the pipeline and the streaming predictor agree
    exactly because they cut the same lattice, and another lattice gives another map."""
    from dataclasses import replace

    from tests.support.rasters import BANDS

    _, stack, _ = scene
    model = model_file(tmp_path / "crofusenet.pt", stack.grid, name="crofusenet",
                       widths=[4, 8, 8, 16, 16], bands=list(BANDS))
    request = request_for(stack, tmp_path / "streamed")
    streamed = map_region(request, load_model(model),
                          session=session_for(launcher(stack)), echo=lambda _: None)
    piped = map_region(replace(request, outputs=MapOutputs(str(tmp_path / "piped")),
                               runner=DIRECT), load_model(model),
                       session=session_for(launcher(stack)),
                       worker_sessions=StackSessions(stack), echo=lambda _: None)
    (class_a, prob_a), (class_b, prob_b) = cogs(streamed), cogs(piped)
    a = read(class_a)
    assert (a == 0).any() and (a == 1).any()
    assert np.array_equal(a, read(class_b)), "classes differ between the runners"
    # the pipeline predicts the streaming predictor's very batches: equal to the last bit
    assert np.array_equal(read(prob_a), read(prob_b))
    other = map_region(replace(request, outputs=MapOutputs(str(tmp_path / "other")),
                               window=map_window(tile=32, overlap=8, batch_size=4)),
                       load_model(model),
                       session=session_for(launcher(stack)), echo=lambda _: None)
    assert not np.array_equal(read(cogs(other)[1]), read(prob_a)), \
        "the model does not depend on the tiling: this test would not show a lattice mismatch"


@pytest.mark.slow
def test_a_scene_normalised_model_maps_alike_with_statistics_asked_once(scene, ee_offline,
                                                                       tmp_path):
    """The launcher asks Earth Engine for the date's statistics once; every worker normalises
    by them (they travel in the pipeline's task), and the COGs and tiles' fingerprint record
    them."""
    from dataclasses import replace

    import torch

    _, stack, _ = scene
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = model_file(tmp_path / "scene.pt", stack.grid, norm="scene")
    request = request_for(stack, tmp_path / "streamed")
    streamed = map_region(request, load_model(model),
                          session=session_for(launcher(stack)), echo=lambda _: None)
    asked = launcher(stack)
    piped = map_region(replace(request, outputs=MapOutputs(str(tmp_path / "piped")),
                               runner=DIRECT), load_model(model),
                       session=session_for(asked), worker_sessions=StackSessions(stack),
                       echo=lambda _: None)
    assert len(asked.reductions) == 1 and asked.served == []  # the workers fetch the tiles
    for a, b in zip(cogs(streamed), cogs(piped), strict=True):
        assert np.array_equal(read(a), read(b)), f"{b} differs from the streamed map"
    with rasterio.open(cogs(streamed)[1]) as x, rasterio.open(cogs(piped)[1]) as y:
        assert y.tags()["normalisation"] == x.tags()["normalisation"]
        assert json.loads(y.tags()["normalisation"])["by"] == "scene"
    assert len(list((tmp_path / "piped" / MONTH / "tiles").iterdir())) == 1


@pytest.mark.slow
def test_a_model_of_several_trainings_maps_alike_streamed_and_in_the_pipeline(
        scene, ee_offline, tmp_path):
    """An ``isamap-train --members 2`` file: each worker rebuilds both networks from it."""
    from dataclasses import replace

    from training.modelfile import load_model_file
    from training.models.members import MemberMean

    _, stack, _ = scene
    model = model_file(tmp_path / "members.pt", stack.grid, members=2)
    assert isinstance(load_model_file(model)[0], MemberMean)
    request = request_for(stack, tmp_path / "streamed")
    streamed = map_region(request, load_model(model),
                          session=session_for(launcher(stack)), echo=lambda _: None)
    piped = map_region(replace(request, outputs=MapOutputs(str(tmp_path / "piped")),
                               runner=DIRECT), load_model(model),
                       session=session_for(launcher(stack)), worker_sessions=StackSessions(stack),
                       echo=lambda _: None)
    for a, b in zip(cogs(streamed), cogs(piped), strict=True):
        assert np.array_equal(read(a), read(b)), f"{b} differs from the streamed map"


@NEEDS_INT8
@pytest.mark.parametrize("members", [1, 2])
def test_int8_pipeline_map_equals_the_streamed_int8_map(scene, ee_offline, tmp_path, members):
    """Every worker calibrates on the model file's training patches: one int8 model, so the
    map does not depend on which worker predicted which tile (one network, and the mean of
    two as ``isamap-train --members 2`` writes it)."""
    from tests.support.mapping import dataset_record
    from tests.support.rasters import BANDS, write_patch_dataset
    from training.data import PatchDataset, compute_norm_stats
    from training.modelfile import ModelMeta, save_model_file
    from training.models import create_model

    _, stack, _ = scene
    patches = write_patch_dataset(tmp_path / "patches", n=12, size=32)
    norm = compute_norm_stats(PatchDataset(patches, "train", BANDS, None))
    kwargs = {"members": members} if members > 1 else {}
    meta = ModelMeta("test-band-conv", len(BANDS), 2, BANDS, norm.mean, norm.std,
                     module="tests.support.models", model_kwargs=kwargs,
                     extra={"dataset": {**dataset_record(stack.grid), "root": str(patches)}})
    model = save_model_file(tmp_path / "conv.pt", create_model(
        "test-band-conv", len(BANDS), 2, module="tests.support.models", **kwargs), meta)
    int8 = RuntimeOptions(precision="int8", channels_last=False)

    def mapped(name, runner=None, **kw):
        request = request_for(stack, tmp_path / name, runtime=int8, runner=runner)
        return map_region(request, load_model(model),
                          session=session_for(launcher(stack)), echo=lambda _: None,
                          **kw)

    streamed = mapped("streamed")
    piped = mapped("piped", runner=DIRECT, worker_sessions=StackSessions(stack))
    for a, b in zip(cogs(streamed), cogs(piped), strict=True):
        np.testing.assert_array_equal(read(a), read(b))
    classes = read(cogs(streamed)[0])
    assert (classes == 1).any() and (classes == 0).any()
    with rasterio.open(cogs(streamed)[0]) as ds, rasterio.open(cogs(piped)[0]) as pipe:
        tags = ds.tags()
        assert pipe.tags()["runtime"] == tags["runtime"] == "int8/nchw"
    # the dataset by its name: a map's tags never hold a local absolute path
    assert tags["runtime_int8_calibration"] == \
        f"8 patches of the training split of {patches.name}"


def test_pipeline_runtime_tags_say_what_every_worker_ran():
    explicit = runtime_tags(RuntimeOptions(precision="bf16", channels_last="on"))
    assert explicit["runtime"] == "bf16/nhwc"
    assert explicit["runtime_source"] == "explicit, every worker"
    for options, label in ((RuntimeOptions(), "fp32/nchw"),
                           (RuntimeOptions(precision="bf16"), "bf16/nchw"),
                           (RuntimeOptions(channels_last="on"), "fp32/nhwc")):
        tags = runtime_tags(options)  # auto: settled before launch, the plain path
        assert tags["runtime"] == label and tags["runtime_source"].startswith("auto: ")
    assert runtime_tags(RuntimeOptions(precision="int8"))["runtime"] == "int8/nchw"
    # a map's tiles are named by their runtime too: two runtimes' tiles are never mixed
    lattice = Lattice(TILE, OVERLAP, "core")
    names = {map_fingerprint("m", "i", lattice, runtime=label)
             for label in ("fp32/nchw", "bf16/nchw", "bf16/nhwc")}
    assert len(names) == 3 and map_fingerprint("m", "i", lattice) in names


@pytest.mark.slow
def test_an_auto_pipeline_map_runs_the_plain_path_on_every_worker(scene, ee_offline,
                                                                  monkeypatch, tmp_path):
    """Whatever a worker's measurement (or its machine's autotune cache) would pick: here the
    cache says bf16/nhwc, which the streamed auto map takes and its pixels show."""

    import torch

    from engine import autotune
    from engine.choice_value import TOLERANCE, Choice
    from engine.setting import Setting
    from inference.predict.runtime import TilePredictor
    from training.modelfile import load_model

    _, stack, _ = scene
    model = model_file(tmp_path / "unet.pt", stack.grid)  # convolutions: bf16 shows
    monkeypatch.setenv(autotune.CACHE_ENV, str(tmp_path / "autotune.json"))
    loaded = load_model(model)
    module = TilePredictor.for_model(loaded.module, loaded.meta)._module
    key = autotune.cache_key(module, (4, 6, TILE, TILE), torch.device("cpu"), "inference",
                             "auto", "auto", False, TOLERANCE)
    autotune.write_cache(tmp_path / "autotune.json", key, Choice(Setting("bf16", True)))

    def mapped(name, options, **fields):
        request = request_for(stack, tmp_path / name, runtime=options, **fields)
        return cogs(map_region(request, load_model(model), session=session_for(launcher(stack)),
                               worker_sessions=StackSessions(stack), echo=lambda _: None))

    auto = mapped("auto", RuntimeOptions(), runner=DIRECT)
    plain = mapped("plain", OPTIONS)  # streamed, explicit fp32/nchw
    measured = mapped("measured", RuntimeOptions())  # streamed auto: the cache's bf16/nhwc
    assert not np.array_equal(read(measured[1]), read(plain[1]))
    for ours, theirs in zip(auto, plain, strict=True):
        np.testing.assert_array_equal(read(ours), read(theirs))
        with rasterio.open(ours) as ds:
            assert ds.tags()["runtime"] == "fp32/nchw"
            assert ds.tags()["runtime_source"].startswith("auto: ")


def test_same_image_collection_manifests(runs, scene):
    folder, _, _ = scene
    streamed, piped = runs
    a = json.dumps(streamed.publication.manifests, sort_keys=True)
    b = json.dumps(piped.publication.manifests, sort_keys=True)
    assert b.replace(str(folder / "piped"), str(folder / "streamed")) == a
    assert (folder / "piped" / MONTH / f"isa_{MONTH}_class.stac.json").is_file()


def test_rerun_starts_no_pipeline(runs, scene):
    folder, stack, model = scene
    tiles = sorted((folder / "piped" / MONTH / "tiles").rglob("*.tif"))
    before = {p: p.stat().st_mtime_ns for p in tiles}
    refusing = StackSessions(stack, attempts=1, fail_at={})  # would fetch: must not be used
    again = map_region(request_for(stack, folder / "piped", runner=DIRECT), load_model(model),
                       session=session_for(launcher(stack)),
                       worker_sessions=refusing, echo=lambda _: None)
    assert again.dates[0].outputs.prediction.skipped
    assert {p: p.stat().st_mtime_ns for p in tiles} == before


@pytest.mark.slow
def test_a_failed_tile_fails_the_run_and_is_the_only_one_predicted_again(runs, scene,
                                                                        ee_offline):
    """...without retries the run fails; with them (the ``runs`` fixture) the map is equal."""
    folder, stack, model = scene
    streamed, piped = runs
    out = folder / "piped"
    tiles = sorted((out / MONTH / "tiles").rglob("tile_*.tif"))
    tiles[0].unlink()
    next(tiles[0].parent.glob("mosaic.json")).unlink()
    kept = {p: p.stat().st_mtime_ns for p in tiles[1:]}
    victim = next(t for t in plan_tiles(piped.grid, LATTICE)
                  if t.name == tiles[0].stem)
    west, _, _, north = piped.grid.window_bounds(victim.window)
    unretried = StackSessions(stack, attempts=1, fail_at={request_origin(west, north): [503]})
    with pytest.raises(PipelineFailedError, match="injected failure") as failed:
        map_region(request_for(stack, out, runner=DIRECT), load_model(model),
                   session=session_for(launcher(stack)),
                   worker_sessions=unretried, echo=lambda _: None)
    message = str(failed.value)  # what isamap-map prints: one line, what to do, exit 1
    assert "\n" not in message and "finished tiles are kept" in message
    assert failed.value.exit_code == 1
    again = map_region(request_for(stack, out, runner=DIRECT), load_model(model),
                       session=session_for(launcher(stack)), worker_sessions=StackSessions(stack),
                       echo=lambda _: None)
    prediction = again.dates[0].outputs.prediction
    assert (prediction.tiles, prediction.resumed_strips) == (1, len(tiles) - 1)
    assert {p: p.stat().st_mtime_ns for p in tiles[1:]} == kept, "finished tiles not redone"
    assert tiles[0].is_file()
    class_path, _ = cogs(streamed)
    assert np.array_equal(read(prediction.class_path), read(class_path))


@pytest.mark.slow
def test_dataflow_gpu_job_builds_and_validates_offline(scene, ee_offline, gcs_bucket):
    """DataflowRunner with GPU workers, dry run: the job is built and validated, not sent."""
    from google.cloud import storage

    from inference.mapping.dates import ee_date_image
    from training.modelfile import read_model_file

    _, stack, model = scene
    runner = RunnerConfig("dataflow", project="isamap-test", region="us-central1",
                          temp_location=f"gs://{gcs_bucket}/tmp", machine_type="n1-standard-8",
                          max_workers=4, container="gcr.io/p/isamap:1", gpu="nvidia-tesla-t4:1",
                          dry_run=True)
    assert "--dataflow_service_options=worker_accelerator=type:nvidia-tesla-t4;count:1;" \
           "install-nvidia-driver" in runner.beam_args()
    out = f"gs://{gcs_bucket}/maps/{MONTH}/isa_{MONTH}"
    meta, _ = read_model_file(str(model))
    request = request_for(stack, f"gs://{gcs_bucket}/maps")
    grid, _ = region_grid(request.extent.region, 10.0, model_dataset(meta).grid)
    image, identity = ee_date_image(request.extent.region, grid, meta, model_dataset(meta), MONTH,
                                    session_for(launcher(stack)))
    info = OutputInfo(meta.name, tuple(meta.bands), tuple(meta.class_names), MONTH)
    workers = EarthEngineProject("isamap-test", application_default=True)
    with pytest.raises(ConfigError, match="give --model gs://bucket/"):
        predict_date(image, identity, grid, meta.bands, str(model), out, info, runner, workers)
    storage.Client().bucket(gcs_bucket).blob("models/m.pt").upload_from_filename(str(model))
    result = predict_date(image, identity, grid, meta.bands, f"gs://{gcs_bucket}/models/m.pt",
                          out, info, runner, workers, window=map_window(tile=TILE, overlap=OVERLAP))
    assert result.skipped and result.tiles == len(plan_tiles(grid, LATTICE))
    names = [b.name for b in storage.Client().list_blobs(gcs_bucket)]
    assert names == ["models/m.pt"], "a dry run writes nothing"


@pytest.mark.parametrize(("extra", "code", "message"), [
    (["--runner", "dataflow", "--dataflow-region", "us-central1", "--temp-location",
      "gs://isamap-tmp/t", "--container", "gcr.io/p/isamap:1", "--gpu", "nvidia-tesla-t4",
      "--machine-type", "n1-standard-8", "--out", "gs://isamap-maps/yreb"], 0, ""),
    (["--runner", "dataflow", "--out", "gs://isamap-maps/yreb"], 2, "needs --project"),
    (["--runner", "dataflow", "--dataflow-region", "us-central1", "--temp-location",
      "gs://isamap-tmp/t", "--setup-file", "pyproject.toml", "--out", "gs://isamap-maps/y"],
     2, "need torch"),
    (["--runner", "direct", "--backend", "local", "--scenes", ".", "--allow-recipe-mismatch"],
     2, "use --backend ee"),
    (["--runner", "direct", "--postprocess", "clahe"], 2, "drop --runner or --postprocess"),
    # every worker must calibrate int8 alike: on the model file's training patches, which
    # this model file does not record
    pytest.param(["--runner", "direct", "--precision", "int8"], 2, "cannot be read here",
                 marks=NEEDS_INT8),
    pytest.param(["--runner", "dataflow", "--dataflow-region", "us-central1",
                  "--temp-location", "gs://isamap-tmp/t", "--container", "gcr.io/p/isamap:1",
                  "--out", "gs://isamap-maps/yreb", "--precision", "int8"], 2,
                 "Dataflow workers cannot read", marks=NEEDS_INT8),
])
def test_command_line_runner_is_checked_before_any_work(scene, tmp_path, capsys, extra, code,
                                                        message):
    from cli.map import main

    _, _, model = scene
    args = ["--bbox", "117.0,30.7,117.01,30.71", "--months", "2019-06", "--model", str(model),
            "--out", str(tmp_path / "maps"), "--project", "isamap-test", "--dry-run",
            "--precision", "fp32", "-q", *extra]
    if "needs --project" in message:
        args.remove("--project"), args.remove("isamap-test")
    assert main(args) == code
    captured = capsys.readouterr()
    assert message in captured.err and "Traceback" not in captured.err
    if code == 0:
        assert "Map plan" in captured.out
        assert "10 workers x 4 requests = 40 concurrent" in captured.out  # the runner's budget
        assert "requests  1 computePixels per date, 40 concurrent" in captured.out
        assert "worker_accelerator=type:nvidia-tesla-t4;count:1" in captured.out


@pytest.mark.slow
def test_tiles_an_earlier_isamap_left_without_a_runtime_record_are_predicted_again(
        runs, scene, ee_offline, caplog):
    """Before the runtime was settled at launch, an auto pipeline's workers each measured their
    own, under a fingerprint naming none: a killed map's tiles were resumed as fp32/nchw."""
    folder, stack, model = scene
    streamed, _ = runs
    out = folder / "earlier"
    shutil.copytree(folder / "piped", out)  # the pipeline's map of this region, finished
    tiles = sorted((out / MONTH / "tiles").rglob("tile_*.tif"))
    record = tiles[0].parent / "runtime.json"
    assert json.loads(record.read_text()) == {"runtime": "fp32/nchw"}
    for name in ("runtime.json", "mosaic.json"):  # a killed run of an earlier isamap
        (tiles[0].parent / name).unlink()
    with rasterio.open(tiles[0], "r+") as ds:  # a tile one worker computed at another runtime
        ds.write(np.zeros((ds.count, ds.height, ds.width), ds.dtypes[0]))
    with caplog.at_level(logging.WARNING, logger="inference.mapping.beam_map"):
        again = map_region(request_for(stack, out, runner=DIRECT), load_model(model),
                           session=session_for(launcher(stack)),
                           worker_sessions=StackSessions(stack), echo=lambda _: None)
    assert f"holds {len(tiles)} tiles an earlier isamap wrote without recording" in caplog.text
    prediction = again.dates[0].outputs.prediction
    assert (prediction.tiles, prediction.resumed_strips) == (len(tiles), 0)
    assert record.is_file()
    for mine, theirs in zip(cogs(again), cogs(streamed), strict=True):
        assert np.array_equal(read(mine), read(theirs))
