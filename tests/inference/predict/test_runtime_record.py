"""A map's runtime (precision, layout) is part of its identity: resumed work never mixes two.

Real GeoTIFF stacks, a real small network, and the interruption the other resume tests use
(a forward hook that fails after some batches, once strips are on disk).
"""

import logging
import shutil

import numpy as np
import pytest
import rasterio
import torch

from core.errors import ConfigError
from engine import autotune
from engine.choice_value import TOLERANCE, Choice
from engine.setting import Setting
from inference.predict.raster import PredictConfig, predict_raster
from inference.predict.runtime import RuntimeOptions
from inference.predict.runtime_record import RUNTIME_FILE
from tests.inference.predict.test_raster import INFO, Crash, crash_after, predictor
from tests.support.models import padded_convnet
from tests.support.rasters import smooth_stack, write_stack

CONFIG = PredictConfig(tile=64, overlap=16, batch_size=4, strip_rows=32)
# the CPU's choices are what these tests record and resume (a GPU host picks others)
BF16 = RuntimeOptions(device="cpu", precision="bf16", channels_last="off")
FP32 = RuntimeOptions(device="cpu", precision="fp32", channels_last="off")
AUTO = RuntimeOptions(device="cpu")

#: the module-scoped stack and reference maps below are made once: their tests share a worker
pytestmark = pytest.mark.xdist_group("inference.predict.test_runtime_record")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """A stack as tests/inference/conftest.py's, smaller (20 tiles of 64 px, 5 batches; the
    interruption below comes after 4 of them, strips on disk), written once for the module (no
    test writes it)."""
    data = smooth_stack(200, 250)
    data[2, 40:60, 100:130] = np.nan
    return write_stack(tmp_path_factory.mktemp("stack") / "stack.tif", data)


@pytest.fixture(scope="module")
def made(stack, tmp_path_factory):
    """The whole map of the stack at bf16 and at fp32 (:func:`maps`), made once: the tests
    only compare with them."""
    root = tmp_path_factory.mktemp("made")
    return {name: maps(run(stack, root / name, options))
            for name, options in (("bf16", BF16), ("fp32", FP32))}


def crashing_convnet(calls):
    """``padded_convnet()`` whose forward pass fails after ``calls`` batches."""
    return crash_after(padded_convnet(), calls)


def run(stack, out, options, model=None, restart=False):
    p = predictor(model or padded_convnet(), options=options)
    return predict_raster(str(stack), str(out), p, INFO, CONFIG, progress=False,
                          restart=restart)


def maps(result):
    """Pixels and tags of both COGs of a result."""
    out = {}
    for kind in ("class_path", "prob_path"):
        with rasterio.open(getattr(result, kind)) as ds:
            out[kind] = (ds.read(1), {k: v for k, v in ds.tags().items()
                                      if k.startswith("runtime")})
    return out


def assert_same(a, b):
    for kind in ("class_path", "prob_path"):
        np.testing.assert_array_equal(a[kind][0], b[kind][0])
        assert a[kind][1] == b[kind][1]


def interrupt(stack, out, options):
    with pytest.raises(Crash):
        run(stack, out, options, crashing_convnet(calls=4))
    assert list(out.parent.glob(f".{out.name}.partial/strip_*.tif"))


def remember(setting, monkeypatch, tmp_path, name):
    """Make ``auto`` pick ``setting`` for the test network's tiles (the autotune cache)."""
    path = tmp_path / name
    monkeypatch.setenv(autotune.CACHE_ENV, str(path))
    module = predictor(padded_convnet(), options=AUTO)._module
    key = autotune.cache_key(module, (4, 6, 64, 64), torch.device("cpu"), "inference", "auto",
                             "auto", False, TOLERANCE)
    autotune.write_cache(path, key, Choice(setting, "measured"))


def test_resuming_at_another_explicit_runtime_is_refused_and_auto_takes_the_recorded(
        stack, made, tmp_path):
    """Strips computed at bf16 are never finished at fp32 under a tag that names only one."""
    bf16, fp32 = made["bf16"], made["fp32"]
    assert not np.array_equal(bf16["prob_path"][0], fp32["prob_path"][0])  # it would show
    interrupt(stack, tmp_path / "o", BF16)
    work = tmp_path / ".o.partial"
    strips = sorted(p.name for p in work.glob("strip_*.tif"))
    assert (work / RUNTIME_FILE).exists()
    for options, option in ((FP32, "--precision fp32"),
                            (RuntimeOptions(precision="bf16", channels_last="on"),
                             "--channels-last on")):
        with pytest.raises(ConfigError, match=f"computed at bf16/nchw; this run gives {option}"):
            run(stack, tmp_path / "o", options)
    assert sorted(p.name for p in work.glob("strip_*.tif")) == strips  # nothing touched
    assert not (tmp_path / "o_class.tif").exists()
    resumed = run(stack, tmp_path / "o", AUTO)  # auto: the interrupted run's runtime
    assert resumed.resumed_strips == len(strips)
    assert_same(maps(resumed), bf16)


@pytest.mark.slow
def test_an_auto_run_resumes_at_what_it_measured_not_at_a_new_measurement(
        stack, tmp_path, monkeypatch):
    """The interrupted run's auto chose bf16/nhwc; measuring again would pick fp32/nchw."""
    remember(Setting("bf16", True), monkeypatch, tmp_path, "bf16.json")
    reference = run(stack, tmp_path / "ref", AUTO)
    assert reference.runtime["label"] == "bf16/nhwc"
    interrupt(stack, tmp_path / "o", AUTO)
    remember(Setting("fp32", False), monkeypatch, tmp_path, "fp32.json")
    assert run(stack, tmp_path / "now", AUTO).runtime["label"] == "fp32/nchw"
    resumed = run(stack, tmp_path / "o", AUTO)
    assert resumed.resumed_strips > 0 and resumed.runtime["label"] == "bf16/nhwc"
    assert_same(maps(resumed), maps(reference))
    # --restart discards strips of a refused runtime, and the run starts afresh at fp32
    interrupt(stack, tmp_path / "p", BF16)
    restarted = run(stack, tmp_path / "p", FP32, restart=True)
    assert restarted.resumed_strips == 0 and restarted.runtime["label"] == "fp32/nchw"


def test_a_map_made_at_another_explicit_runtime_is_mapped_again(stack, made, tmp_path,
                                                                caplog):
    """Asking fp32 of a map made at bf16 is not 'already mapped'; auto accepts the recorded."""
    fp32 = made["fp32"]
    first = run(stack, tmp_path / "o", BF16)
    assert run(stack, tmp_path / "o", AUTO).skipped  # auto accepts the recorded runtime
    assert run(stack, tmp_path / "o", BF16).skipped
    with caplog.at_level(logging.INFO, logger="inference.predict.runtime_record"):
        again = run(stack, tmp_path / "o", FP32)
    assert not again.skipped and again.tiles == first.tiles
    assert "computed at runtime bf16/nchw; this run asks --precision fp32" in caplog.text
    assert_same(maps(again), fp32)
    assert run(stack, tmp_path / "o", FP32).skipped


@pytest.mark.parametrize("options", [AUTO, BF16], ids=["auto", "explicit"])
def test_strips_an_earlier_version_left_without_a_record_are_discarded_and_computed_again(
        stack, made, tmp_path, caplog, options):
    """An earlier isamap's strips record no runtime: no option could resume them soundly.

    They were refused whatever was asked, with advice to pass --restart that isamap-map has
    not, so a killed series was stuck.
    """
    reference = made["bf16"] if options is BF16 else maps(run(stack, tmp_path / "ref", options))
    interrupt(stack, tmp_path / "o", FP32)  # strips at another runtime than BF16 too
    work = tmp_path / ".o.partial"
    (work / RUNTIME_FILE).unlink()
    with caplog.at_level(logging.WARNING, logger="inference.predict.runtime_record"):
        resumed = run(stack, tmp_path / "o", options)
    assert f"{work} holds strips an earlier isamap wrote without recording their runtime" \
        in caplog.text
    assert resumed.resumed_strips == 0
    assert_same(maps(resumed), reference)


def test_a_refusal_names_a_way_to_discard_the_strips_isamap_map_has_too(stack, made,
                                                                       tmp_path):
    """isamap-map has no --restart or --work-dir: deleting the named folder is its way."""
    interrupt(stack, tmp_path / "o", BF16)
    work = tmp_path / ".o.partial"
    with pytest.raises(ConfigError, match=f"delete {work} to discard them") as refused:
        run(stack, tmp_path / "o", FP32)
    assert "this run gives --precision fp32" in str(refused.value)
    shutil.rmtree(work)  # as the message says
    assert_same(maps(run(stack, tmp_path / "o", FP32)), made["fp32"])


def test_strips_recorded_at_a_runtime_this_device_cannot_run_are_refused_under_auto(
        stack, tmp_path):
    """Strips a GPU computed at fp16, resumed on a CPU under auto, went on at fp16 (the series
    had this check, isamap-predict's own resume had not: a review)."""
    from engine.choice_value import Choice
    from engine.setting import Setting
    from inference.predict import runtime_record

    out = tmp_path / "o"
    interrupt(stack, out, BF16)
    work = out.parent / f".{out.name}.partial"
    strips = sorted(p.name for p in work.glob("strip_*.tif"))
    (work / runtime_record.RUNTIME_FILE).unlink()  # the record a GPU's run would have left
    runtime_record.record(work, Choice(Setting("fp16", True), "measured"), False)
    with pytest.raises(ConfigError, match=r"computed at fp16/nhwc, which this cpu cannot run "
                                          r".*: resume them on a device that runs fp16, or "
                                          r"delete "):
        run(stack, out, AUTO)
    assert sorted(p.name for p in work.glob("strip_*.tif")) == strips  # nothing discarded
