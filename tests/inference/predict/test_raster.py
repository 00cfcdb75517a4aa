import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import rasterio
import torch

from core.errors import ConfigError, InputDataError, ModelError
from inference.cog.maps import OutputInfo
from inference.predict.blending import encode
from inference.predict.raster import (
    INPUT_GDAL_OPTIONS,
    PredictConfig,
    check_same_input,
    check_same_model,
    predict_raster,
)
from inference.predict.runtime import RuntimeOptions, TilePredictor
from tests.support.models import ConstantModel, SuperRes, conv1x1, padded_convnet
from tests.support.rasters import BANDS, assert_valid_cog, cog_levels, smooth_stack, write_stack
from training.models.blocks import check_divisible

FP32 = RuntimeOptions(precision="fp32", channels_last="on")
INFO = OutputInfo("test-model", BANDS, month="2023-06")


def predictor(model, scale=1, options=FP32):
    return TilePredictor(model, np.zeros(len(BANDS)), np.ones(len(BANDS)), scale=scale,
                         options=options)


def run(src, out, model, progress=False, scale=1, writer=None, **config):
    config = {"tile": 64, "overlap": 16, "batch_size": 4, "strip_rows": 32, **config}
    return predict_raster(str(src), str(out), predictor(model, scale), INFO,
                          PredictConfig(**config), progress=progress, writer=writer)


def read(path):
    with rasterio.open(path) as ds:
        return ds.read(1)


def test_constant_model_leaves_no_seam_anywhere(stack, tmp_path):
    result = run(stack, tmp_path / "c", ConstantModel())
    prob = read(result.prob_path)
    expected = round(float(1 / (1 + np.exp(-(-0.4 - 0.3)))) * 250)
    valid = prob != 255
    assert (prob[valid] == expected).all()
    assert (read(result.class_path)[valid] == 0).all()


def test_blend_hides_tile_edges_that_a_plain_mean_shows(tmp_path):
    """A zero-padded conv net differs at tile edges; shifting the tile grid moves those edges.

    With the cosine blend two runs with differently placed tiles agree closely, and both stay
    close to the single-pass result; the uniform mean leaves visible seams.
    """
    stack = write_stack(tmp_path / "s.tif", smooth_stack(180, 220, seed=5))
    model = padded_convnet()
    whole = single_pass(stack, model)
    errors = {}
    for blend in ("cosine", "uniform"):
        a = read(run(stack, tmp_path / f"{blend}a", model, tile=48, overlap=16, blend=blend)
                 .prob_path).astype(int)
        b = read(run(stack, tmp_path / f"{blend}b", model, tile=64, overlap=24, blend=blend)
                 .prob_path).astype(int)
        valid = (a != 255) & (whole != 255)
        # the single pass sees zero padding at the raster's edges, the lattice's tiles hanging
        # over them the edge pixels repeated: the 3 px of the receptive field differ there
        valid[-3:], valid[:, -3:], valid[:3], valid[:, :3] = False, False, False, False
        errors[blend] = (np.abs(a - whole)[valid].max(), np.abs(a - b)[valid].max(),
                         np.abs(a - whole)[valid].mean())
    assert errors["cosine"][0] <= 2 and errors["cosine"][1] <= 2
    assert errors["uniform"][0] > errors["cosine"][0]
    assert errors["uniform"][2] > errors["cosine"][2]


def single_pass(stack, model):
    """The model run once over the whole raster (no tiles): its probability map, encoded."""
    with rasterio.open(stack) as ds:
        data = ds.read(out_dtype="float32")
    probs = predictor(model)([data], compact=True)[0]
    return encode(probs, np.zeros(probs.shape[1:], bool), 1)[1]


def test_tiled_run_equals_single_pass(stack, tmp_path):
    model = conv1x1()
    whole = run(stack, tmp_path / "whole", model, tile=512, overlap=0)
    tiled = run(stack, tmp_path / "tiled", model, tile=64, overlap=20)
    assert tiled.tiles > whole.tiles
    # a per-pixel model gives every overlapping tile the same value, so the blend is exact up
    # to float rounding: the class map must match pixel for pixel, the probability within one
    # step of 1/250 (a rounding boundary)
    classes = read(tiled.class_path)
    np.testing.assert_array_equal(classes, read(whole.class_path))
    assert {0, 1} <= set(np.unique(classes)) <= {0, 1, 255}
    diff = np.abs(read(whole.prob_path).astype(int) - read(tiled.prob_path))
    assert diff.max() <= 1
    valid = classes != 255  # the single pass does not mask the stack's NaN hole
    assert np.abs(single_pass(stack, model).astype(int) - read(tiled.prob_path))[valid].max() <= 1


def test_nodata_propagates_from_any_band(tmp_path):
    data = smooth_stack(100, 120)
    data[1, 10:20, 30:40] = np.nan  # NaN in one band only
    data[5, 70:75, 0:5] = -9999.0  # nodata value in another band
    src = tmp_path / "nd.tif"
    write_stack(src, data, nodata=-9999.0)
    with rasterio.open(src, "r+") as ds:  # NaN too: backends write NaN as nodata
        ds.nodata = -9999.0
    result = run(src, tmp_path / "o", conv1x1())
    for path in (result.prob_path, result.class_path):
        out = read(path)
        assert (out[10:20, 30:40] == 255).all() and (out[70:75, 0:5] == 255).all()
        assert (out == 255).sum() == 100 + 25
        with rasterio.open(path) as ds:
            assert ds.nodata == 255


def test_a_nodata_value_reaches_the_model_as_nan_does(tmp_path):
    """A new user's walk: a -9999 block spoilt the tiles around it (its raw values went in)."""
    data = smooth_stack(100, 120)
    data[:, 40:60, 50:70] = np.nan
    write_stack(tmp_path / "nan.tif", data)
    data[:, 40:60, 50:70] = -9999.0
    write_stack(tmp_path / "value.tif", data, nodata=-9999.0)
    model = padded_convnet()
    by_nan = run(tmp_path / "nan.tif", tmp_path / "n", model)
    by_value = run(tmp_path / "value.tif", tmp_path / "v", model)
    for ours, theirs in ((by_value.prob_path, by_nan.prob_path),
                         (by_value.class_path, by_nan.class_path)):
        assert (read(ours)[40:60, 50:70] == 255).all()
        np.testing.assert_array_equal(read(ours), read(theirs))


def test_output_scale_refines_the_grid(stack, tmp_path):
    result = run(stack, tmp_path / "sr", SuperRes(scale=2), scale=2)
    with rasterio.open(result.class_path) as ds, rasterio.open(stack) as src:
        assert (ds.height, ds.width) == (src.height * 2, src.width * 2)
        assert ds.transform.a == src.transform.a / 2 and ds.transform.c == src.transform.c
        assert ds.tags()["output_scale"] == "2"
        out = ds.read(1)
    assert (out[80:120, 200:260] == 255).all()  # the NaN hole, twice as large
    assert (out[:80] != 255).all()


def test_rerun_of_a_finished_job_does_no_work(stack, tmp_path):
    first = run(stack, tmp_path / "o", conv1x1())
    mtime = os.stat(first.prob_path).st_mtime_ns
    again = run(stack, tmp_path / "o", conv1x1())
    assert again.skipped and again.tiles == 0 and os.stat(first.prob_path).st_mtime_ns == mtime


class Crash(RuntimeError):
    pass


class CrashingModel(ConstantModel):
    def __init__(self, calls):
        super().__init__()
        self.calls = calls

    def forward(self, x):
        self.calls -= 1
        if self.calls < 0:
            raise Crash("simulated failure")
        return super().forward(x)


def crash_after(model, calls):
    """``model`` made to fail (:class:`Crash`) after ``calls`` batches of its forward pass."""
    left = [calls]

    def hook(module, args, output):
        left[0] -= 1
        if left[0] < 0:
            raise Crash("simulated failure")

    model.register_forward_hook(hook)
    return model


def crashing_conv1x1(calls):
    """``conv1x1()`` whose forward pass fails after ``calls`` batches.

    The same weights as the reference run, so the strips written before the crash and those
    written on resuming must together equal the uninterrupted output exactly.
    """
    return crash_after(conv1x1(), calls)


def test_interrupted_run_resumes_from_its_strips(stack, tmp_path):
    reference = run(stack, tmp_path / "ref", conv1x1())
    with pytest.raises(Crash):
        run(stack, tmp_path / "o", crashing_conv1x1(calls=8))
    work = tmp_path / ".o.partial"
    strips = sorted(work.glob("strip_*.tif"))
    assert strips and not list(work.glob("*.tmp"))
    resumed = predict_raster(str(stack), str(tmp_path / "o"), predictor(conv1x1()), INFO,
                             PredictConfig(tile=64, overlap=16, batch_size=4, strip_rows=32),
                             progress=False)
    assert resumed.resumed_strips == len(strips)
    assert resumed.tiles < reference.tiles
    assert not work.exists()
    # resuming recomputes the tile row the first missing strip needs, no more and no less
    np.testing.assert_array_equal(read(resumed.prob_path), read(reference.prob_path))
    np.testing.assert_array_equal(read(resumed.class_path), read(reference.class_path))


@pytest.mark.parametrize(("writer", "compression"), [("stream", "deflate"), ("gdal", "zstd")])
def test_checkpoint_strips_hold_the_maps_rows_and_a_resumed_run_maps_the_same(
        tmp_path, writer, compression):
    """A checkpoint strip is a two-band tiled GeoTIFF (classes, probability) of the map's
    rows (with the streaming encoder, its own DEFLATE tiles stored as they are), and a run
    resumed from them gives the uninterrupted run's maps exactly, at every overview level,
    whichever writer wrote either (the uninterrupted one here is GDAL's)."""
    stack = write_stack(tmp_path / "s.tif", smooth_stack(1100, 700, seed=3))
    config = {"tile": 128, "overlap": 16, "strip_rows": 512}
    reference = run(stack, tmp_path / "ref", conv1x1(), writer="gdal", **config)
    with pytest.raises(Crash):
        run(stack, tmp_path / "o", crashing_conv1x1(calls=16), writer=writer, **config)
    strips = sorted((tmp_path / ".o.partial").glob("strip_*.tif"))
    assert strips
    with rasterio.open(strips[0]) as ds:
        structure = ds.tags(ns="IMAGE_STRUCTURE")
        assert ds.compression.name == compression and structure.get("INTERLEAVE") == "BAND"
        assert (ds.count, ds.height, ds.width, ds.block_shapes) == (2, 512, 700, [(512, 512)] * 2)
        np.testing.assert_array_equal(ds.read(1), read(reference.class_path)[:512])
        np.testing.assert_array_equal(ds.read(2), read(reference.prob_path)[:512])
    resumed = run(stack, tmp_path / "o", conv1x1(), writer=writer, **config)
    assert resumed.resumed_strips == len(strips) and resumed.tiles < reference.tiles
    assert ("encode" in resumed.stages) == (writer == "stream")
    for kind in ("prob_path", "class_path"):
        ours, theirs = cog_levels(getattr(resumed, kind)), cog_levels(getattr(reference, kind))
        assert len(ours) == len(theirs) == 3
        assert all(np.array_equal(a, b) for a, b in zip(ours, theirs, strict=True)), kind
        assert_valid_cog(getattr(resumed, kind))
    assert not list(tmp_path.glob("**/*.level*"))


@pytest.mark.slow
def test_killed_process_resumes_to_the_same_result(stack, tmp_path):
    """SIGKILL in the middle of a run (no cleanup at all), then the same run again (in this
    process: the same code and arguments, without importing torch in a second Python)."""
    script = textwrap.dedent(f"""
        import os, pathlib, signal, sys, time, numpy as np
        sys.path.insert(0, {str(os.getcwd())!r})
        from tests.support.rasters import BANDS
        from tests.support.models import conv1x1
        from inference.cog.maps import OutputInfo
        from inference.predict.raster import predict_raster, PredictConfig
        from inference.predict.runtime import TilePredictor, RuntimeOptions
        model, calls = conv1x1(), [0]
        kill_after = int(sys.argv[1])
        def hook(module, args, output):
            calls[0] += 1
            if calls[0] == kill_after:
                # let the encoder thread put two checkpoint strips down first (one kept strip
                # still needs its first tile row again), so the test does not race that thread
                deadline = time.monotonic() + 60
                while (len(list(pathlib.Path({str(tmp_path)!r}).rglob("strip_*.tif"))) < 2
                       and time.monotonic() < deadline):
                    time.sleep(0.05)
                os.kill(os.getpid(), signal.SIGKILL)
        model.register_forward_hook(hook)
        options = RuntimeOptions(precision="fp32", channels_last="on")
        p = TilePredictor(model, np.zeros(6), np.ones(6), options=options)
        r = predict_raster({str(stack)!r}, {str(tmp_path / "k")!r}, p, OutputInfo("m", BANDS),
                           PredictConfig(tile=64, overlap=16, batch_size=4, strip_rows=32),
                           progress=False)
        print(r.resumed_strips, r.tiles)
    """)
    killed = subprocess.run([sys.executable, "-c", script, "12"], capture_output=True, text=True)
    assert killed.returncode == -9, killed.stderr
    assert not (tmp_path / "k_prob.tif").exists()
    # the same run again, here: the killed process is the subprocess, not the resume
    done = predict_raster(str(stack), str(tmp_path / "k"), predictor(conv1x1()),
                          OutputInfo("m", BANDS), PredictConfig(tile=64, overlap=16,
                                                                batch_size=4, strip_rows=32),
                          progress=False)
    reference = run(stack, tmp_path / "ref", conv1x1())
    resumed_strips, tiles = done.resumed_strips, done.tiles
    # the second run really resumed: it kept the killed run's strips and redid fewer tiles
    assert resumed_strips > 0 and tiles < reference.tiles
    np.testing.assert_array_equal(read(tmp_path / "k_prob.tif"), read(reference.prob_path))
    np.testing.assert_array_equal(read(tmp_path / "k_class.tif"), read(reference.class_path))


def test_work_of_another_run_is_not_mixed_in(stack, tmp_path):
    with pytest.raises(Crash):
        run(stack, tmp_path / "o", CrashingModel(calls=12))
    assert list((tmp_path / ".o.partial").glob("strip_*.tif"))  # strips of another run
    with pytest.raises(ConfigError, match="restart"):
        run(stack, tmp_path / "o", conv1x1(), overlap=8)
    result = predict_raster(str(stack), str(tmp_path / "o"), predictor(conv1x1()), INFO,
                            PredictConfig(tile=64, overlap=8, strip_rows=32), restart=True,
                            progress=False)
    assert result.resumed_strips == 0 and os.path.exists(result.prob_path)


class Sixteens(torch.nn.Module):
    """A network that takes only tiles divisible by 16, as CroFuseNet does."""

    def __init__(self):
        super().__init__()
        self.conv = conv1x1()

    def forward(self, x):
        check_divisible(x, 16, "Sixteens")
        return self.conv(x)


def test_a_refused_tile_leaves_nothing_that_refuses_the_next_run(stack, tmp_path):
    """A new user's walk: --tile 100 was refused after writing run.json, and --tile 256 then
    was refused as 'a different run' though no strip was there."""
    with pytest.raises(ModelError, match="divisible by 16"):
        run(stack, tmp_path / "o", Sixteens(), tile=40)
    assert not (tmp_path / ".o.partial").exists()
    (tmp_path / ".o.partial").mkdir()  # a run stopped before its first strip
    (tmp_path / ".o.partial" / "run.json").write_text(json.dumps({"hash": "another"}))
    result = run(stack, tmp_path / "o", Sixteens(), tile=64)
    assert result.resumed_strips == 0 and os.path.exists(result.class_path)


def test_missing_band_and_wrong_model_output_are_clear_errors(stack, tmp_path):
    info = OutputInfo("m", ("B2", "B11"))
    p = TilePredictor(conv1x1(2), np.zeros(2), np.ones(2), options=FP32)
    with pytest.raises(InputDataError, match="B11"):
        predict_raster(str(stack), str(tmp_path / "x"), p, info, progress=False)
    with pytest.raises(ModelError, match="output scale"):
        run(stack, tmp_path / "y", SuperRes(scale=2), scale=1)


def test_run_record_is_in_the_work_dir_while_running(stack, tmp_path):
    with pytest.raises(Crash):
        run(stack, tmp_path / "o", CrashingModel(calls=12))  # after its first strips
    record = json.loads((tmp_path / ".o.partial" / "run.json").read_text())
    assert record["bands"] == list(BANDS) and record["config"]["tile"] == 64


def test_outputs_record_how_the_model_ran_and_where_the_time_went(stack, tmp_path):
    auto = predictor(padded_convnet(), options=RuntimeOptions())  # precision/layout auto
    auto.expected_tiles = 1000  # a job long enough for measuring to pay (not a short job)
    result = predict_raster(str(stack), str(tmp_path / "a"), auto, INFO,
                            PredictConfig(tile=64, overlap=16, strip_rows=32), progress=False)
    runtime = result.runtime
    assert runtime["source"] in ("measured", "cache") and runtime["shape"][1:] == [6, 64, 64]
    for path in (result.class_path, result.prob_path):
        with rasterio.open(path) as ds:
            tags = ds.tags()
        assert (tags["runtime"], tags["runtime_source"]) == (runtime["label"], "auto")
        assert not any(k.startswith("runtime_ms") or k == "runtime_device" for k in tags)
    stages = {"read", "mask", "predict", "forward", "blend", "take", "checkpoint", "cog"}
    assert stages <= set(result.stages) and all(v >= 0 for v in result.stages.values())
    assert result.stages["forward"] <= result.stages["predict"]
    # no measured call's output lands in the map: its pixels are those of the setting it
    # records, given explicitly
    s = auto.choice.setting
    fixed = predictor(padded_convnet(), options=RuntimeOptions(
        precision=s.precision, channels_last="on" if s.channels_last else "off"))
    given = predict_raster(str(stack), str(tmp_path / "f"), fixed, INFO,
                           PredictConfig(tile=64, overlap=16, strip_rows=32), progress=False)
    for kind in ("class_path", "prob_path"):
        np.testing.assert_array_equal(read(getattr(result, kind)), read(getattr(given, kind)))


def test_strips_compressed_by_gdals_threads_give_the_same_maps(stack, tmp_path, monkeypatch):
    """With the model on a GPU the checkpoint strips are compressed with GDAL's threads."""
    from inference.predict import sliding_window

    reference = run(stack, tmp_path / "one", conv1x1())
    monkeypatch.setattr(sliding_window, "_cpu_is_free", lambda predictor: True)
    parallel = run(stack, tmp_path / "two", conv1x1())
    for kind in ("class_path", "prob_path"):
        with rasterio.open(getattr(reference, kind)) as a, \
                rasterio.open(getattr(parallel, kind)) as b:
            np.testing.assert_array_equal(a.read(1), b.read(1))
            for f in a.overviews(1):
                shape = (a.height // f, a.width // f)
                np.testing.assert_array_equal(a.read(1, out_shape=shape),
                                              b.read(1, out_shape=shape))


def test_auto_knows_how_many_tiles_the_map_has(stack, tmp_path):
    """What decides whether compiling the model can pay for itself on this map."""
    p = predictor(conv1x1(), options=RuntimeOptions(autotune_cache=False,
                                                    autotune_budget_s=0.05))
    result = predict_raster(str(stack), str(tmp_path / "n"), p, INFO,
                            PredictConfig(tile=64, overlap=16, batch_size=4, strip_rows=32),
                            progress=False)
    assert p.expected_tiles == result.tiles > 1
    assert not p.choice.setting.compile  # a few tiles of a small model: not worth compiling
    assert "/compiled" not in "".join(p.choice.errors)


def test_the_predictors_block_cache_holds_megabytes_as_gdal_reads_it():
    """rasterio sets an integer GDAL_CACHEMAX as bytes: 512 (meant as MB) was a 512-byte cache,
    and each resampled read of a compressed stack inside the predictor's environment (its
    input's pixel sample) took 7 s for 300 x 410 pixels."""
    from rasterio.env import get_gdal_config

    with rasterio.Env(**INPUT_GDAL_OPTIONS):
        assert int(get_gdal_config("GDAL_CACHEMAX")) >= 64 * 2**20


def test_an_out_holding_a_map_of_another_model_or_input_is_refused(tmp_path):
    """Another model's or input's map at --out was replaced without a word; the same input
    (also under another name, by its content) maps again."""
    path = str(write_stack(tmp_path / "isa_class.tif", smooth_stack(8, 8, count=1), ("class",)))
    recorded = {"input": "stack.tif", "input_grid": "g", "input_month": "2021-06",
                "input_pixels": "p", "input_content": "c"}
    with rasterio.open(path, "r+") as ds:
        ds.update_tags(model="unet", model_id="aaa", **recorded)
    check_same_model(path, "aaa", "unet")
    with pytest.raises(ConfigError) as error:
        check_same_model(path, "bbb", "unet")
    assert str(error.value) == (f"{path} is a map of another model (unet, id aaa); this run's "
                                "model is unet, id bbb: give another --out, or delete that map "
                                "first")
    check_same_input(path, recorded)
    check_same_input(path, {**recorded, "input": "copy.tif"})  # the same content, renamed
    for ours, what in [
            ({"input": "other.tif"}, "input: stack.tif, where this run's --input is other.tif"),
            ({"input_month": "2019-06"}, "input: stack.tif of 2021-06, where this run's --input "
             "is stack.tif of 2019-06"),
            ({"input_grid": "h"}, "grid (another extent or pixel size): stack.tif, where this "
             "run's --input is stack.tif"),
            ({"input_pixels": "q", "input_content": "c"}, "input: a stack.tif of other pixels "
             "on the same grid, where this run's --input is stack.tif"),
            ({"input": "edited.tif", "input_pixels": "q", "input_content": "c"}, "input: "
             "stack.tif, where this run's --input is edited.tif")]:
        with pytest.raises(ConfigError) as error:  # another content unless it says
            check_same_input(path, {**recorded, "input_content": "d", **ours})
        assert str(error.value) == (f"{path} is a map of another {what}; give another --out, "
                                    "or delete that map first")
