import numpy as np
import pytest
import rasterio
import torch

from core.errors import ConfigError, ModelError
from engine.devices import resolve_precision
from inference.cog.maps import OutputInfo
from inference.predict.normalise import BatchNormaliser, normalise_into
from inference.predict.raster import PredictConfig, predict_raster
from inference.predict.runtime import RuntimeOptions, TilePredictor, _logit_difference
from tests.support.models import conv1x1, padded_convnet
from tests.support.rasters import BANDS, smooth_stack, write_stack

FP32 = RuntimeOptions(device="cpu", precision="fp32", channels_last="on")


def test_compact_two_class_output_is_the_softmax_of_class_one():
    tiles = smooth_stack(32, 32)[None]
    tiles[0, 0, :4, :4] = np.nan
    p = TilePredictor(conv1x1(), np.full(6, 0.1), np.full(6, 2.0), options=FP32)
    full, compact = p(tiles), p(tiles, compact=True)
    assert full.shape == (1, 2, 32, 32) and compact.shape == (1, 1, 32, 32)
    np.testing.assert_allclose(compact[:, 0], full[:, 1], atol=1e-6)
    np.testing.assert_allclose(full.sum(axis=1), 1.0, atol=1e-6)
    x = (torch.from_numpy(np.nan_to_num(tiles, nan=0.1)) - 0.1) / 2.0
    expected = torch.softmax(conv1x1()(x), dim=1).detach().numpy()
    np.testing.assert_allclose(full, expected, atol=1e-5)


@pytest.mark.parametrize("channels_last", [True, False])
def test_the_logit_difference_of_bf16_pairs_is_the_float32_one_bit_for_bit(channels_last):
    logits = (torch.randn(3, 2, 17, 9) * 40).to(torch.bfloat16)
    logits[0, 0, 0, 0], logits[0, 1, 0, 1] = float("inf"), float("-inf")
    logits[1, 1, 2, 2] = float("nan")
    if channels_last:
        logits = logits.contiguous(memory_format=torch.channels_last)
    got = _logit_difference(logits)
    want = logits[:, 1:2].float() - logits[:, 0:1].float()
    assert got.shape == (3, 1, 17, 9) and got.dtype == torch.float32
    np.testing.assert_array_equal(got.numpy().view(np.uint32), want.numpy().view(np.uint32))


def test_tiles_read_in_place_from_a_row_give_the_batchs_result():
    # the streaming engine hands views into its tile row; the result is the stacked batch's
    row = smooth_stack(32, 80)
    row[2, 5, 70] = np.inf
    views = [row[:, :, x:x + 32] for x in (0, 24, 48)]
    p = TilePredictor(padded_convnet(), np.full(6, 0.1), np.full(6, 2.0), options=FP32)
    stacked = p(np.stack(views), compact=True)
    np.testing.assert_array_equal(p(views, compact=True), stacked)
    assert np.isfinite(stacked).all()  # the infinity became the band mean, as NaN does
    clean = [v.copy() for v in views[:2]]  # no NaN: the caller may skip that pass
    np.testing.assert_array_equal(p(clean, compact=True, finite=True), stacked[:2])
    with pytest.raises(ModelError, match="expects"):
        p([row[:, :, :32], row[:, :, :30]])


def test_nan_is_found_per_tile_and_reported():
    """Unchecked tiles are checked once normalised: only those with NaN or infinities are
    replaced, and the caller learns whether any had some."""
    row = smooth_stack(32, 80)
    views = [row[:, :, x:x + 32] for x in (0, 24, 48)]
    p = TilePredictor(padded_convnet(), np.full(6, 0.1), np.full(6, 2.0), options=FP32)
    clean = p(views, compact=True)
    assert p.last_finite
    row[4, 3, 70] = np.nan  # in the last tile only
    dirty = p(views, compact=True)
    assert not p.last_finite
    np.testing.assert_array_equal(dirty[:2], clean[:2])
    np.testing.assert_array_equal(dirty, p(views, compact=True, finite=False))
    assert np.isfinite(dirty).all()
    p(views[:2], compact=True)
    assert p.last_finite


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_temperature_divides_the_logits_in_every_output_form(precision):
    """Full, compact (the bf16 logit-difference path too) and one-logit heads alike."""
    tiles = smooth_stack(32, 32)[None]
    options = RuntimeOptions(precision=precision, channels_last="on")
    plain = TilePredictor(conv1x1(), np.zeros(6), np.ones(6), options=options)
    hot = TilePredictor(conv1x1(), np.zeros(6), np.ones(6), options=options, temperature=2.0)
    logit = lambda p: np.log(p) - np.log1p(-p)  # noqa: E731
    tol = 1e-4 if precision == "fp32" else 2e-3
    for compact in (False, True):
        p1, p2 = plain(tiles, compact=compact), hot(tiles, compact=compact)
        np.testing.assert_allclose(logit(p2[:, -1]), logit(p1[:, -1]) / 2, atol=tol)
        np.testing.assert_array_equal(p1.argmax(1), p2.argmax(1))  # the class map is kept
    one = TilePredictor(conv1x1(classes=1), np.zeros(6), np.ones(6), options=FP32,
                        temperature=0.5)(tiles)
    x = torch.from_numpy(tiles)
    np.testing.assert_allclose(one[:, 1], torch.sigmoid(conv1x1(classes=1)(x) / 0.5)
                               .detach().numpy()[:, 0], atol=1e-5)
    with pytest.raises(ModelError, match="temperature must be finite and > 0"):
        TilePredictor(conv1x1(), np.zeros(6), np.ones(6), temperature=0.0)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_shift_moves_each_class_logit_after_the_temperature_in_every_output_form(
        precision):
    """A fine-tune's prior shift (isamap-fit --from): full, compact and one-logit alike."""
    tiles = smooth_stack(32, 32)[None]
    options = RuntimeOptions(precision=precision, channels_last="on")
    plain = TilePredictor(conv1x1(), np.zeros(6), np.ones(6), options=options, temperature=2.0)
    moved = TilePredictor(conv1x1(), np.zeros(6), np.ones(6), options=options, temperature=2.0,
                          logit_shift=(0.5, -1.0))
    logit = lambda p: np.log(p) - np.log1p(-p)  # noqa: E731
    tol = 1e-4 if precision == "fp32" else 2e-3
    for compact in (False, True):
        np.testing.assert_allclose(logit(moved(tiles, compact=compact)[:, -1]),
                                   logit(plain(tiles, compact=compact)[:, -1]) - 1.5, atol=tol)
    one = TilePredictor(conv1x1(classes=1), np.zeros(6), np.ones(6), options=FP32,
                        temperature=0.5, logit_shift=(2.0,))(tiles)
    x = torch.from_numpy(tiles)
    np.testing.assert_allclose(one[:, 1], torch.sigmoid(conv1x1(classes=1)(x) / 0.5 + 2.0)
                               .detach().numpy()[:, 0], atol=1e-5)


def test_a_model_files_predictor_applies_its_recorded_temperature():
    from training.modelfile import ModelMeta

    meta = ModelMeta("unet", 6, 2, BANDS, (0.0,) * 6, (1.0,) * 6,
                     calibration={"method": "temperature", "temperature": 1.6})
    assert TilePredictor.for_model(conv1x1(), meta, options=FP32).temperature == 1.6
    old = ModelMeta("unet", 6, 2, BANDS, (0.0,) * 6, (1.0,) * 6)  # an older file: none
    assert TilePredictor.for_model(conv1x1(), old, options=FP32).temperature == 1.0
    tuned = ModelMeta("unet", 6, 2, BANDS, (0.0,) * 6, (1.0,) * 6,
                      calibration={"method": "temperature", "temperature": 1.6,
                                   "shift": [0.0, -0.7]})
    assert TilePredictor.for_model(conv1x1(), tuned, options=FP32).logit_shift == (0.0, -0.7)
    for shift, why in (([0.0], "shifts 1 logits, but it maps 2 classes"),
                       ([0.0, float("nan")], "not a list of finite numbers"),
                       ("0.5", "not a list of finite numbers")):
        with pytest.raises(ModelError, match=why):
            ModelMeta("unet", 6, 2, BANDS, (0.0,) * 6, (1.0,) * 6,
                      calibration={"method": "temperature", "temperature": 1.6, "shift": shift})


def test_multi_class_models_use_argmax_and_the_chosen_isa_class(tmp_path):
    src = write_stack(tmp_path / "s.tif", smooth_stack(100, 90))
    p = TilePredictor(conv1x1(classes=3), np.zeros(6), np.ones(6), options=FP32)
    info = OutputInfo("lc", BANDS, classes=("water", "vegetation", "built"))
    tiled = predict_raster(str(src), str(tmp_path / "t"), p, info,
                           PredictConfig(tile=48, overlap=16, isa_class=2), progress=False)
    whole = predict_raster(str(src), str(tmp_path / "w"), p, info,
                           PredictConfig(tile=128, overlap=0, isa_class=2), progress=False)
    with rasterio.open(tiled.class_path) as a, rasterio.open(whole.class_path) as b:
        classes = a.read(1)
        assert set(np.unique(classes)) <= {0, 1, 2} and len(np.unique(classes)) > 1
        np.testing.assert_array_equal(classes, b.read(1))  # per-pixel model: tiling is exact
    probs = p(smooth_stack(100, 90)[None])[0]
    with rasterio.open(whole.prob_path) as ds:
        np.testing.assert_allclose(ds.read(1) / 250, probs[2], atol=0.003)
    with pytest.raises(ConfigError, match="ISA class 3"):
        predict_raster(str(src), str(tmp_path / "x"), p, info,
                       PredictConfig(tile=48, overlap=16, isa_class=3), progress=False)


def test_auto_is_measured_on_the_first_batch_and_agrees_with_fp32():
    """The predictor's default options are "auto": settled on the first real batch."""
    model, used = padded_convnet(), []
    model.register_forward_hook(lambda module, args, out: used.append(out.dtype))
    auto = TilePredictor(model, np.zeros(6), np.ones(6), options=RuntimeOptions())
    assert auto.choice is None and "auto" in auto.description
    tiles = np.stack([smooth_stack(48, 48), smooth_stack(48, 48)[:, ::-1]])
    probs = auto(tiles)
    choice = auto.choice
    assert choice.source in ("measured", "cache") and choice.shape == (2, 6, 48, 48)
    assert choice.errors[choice.label] <= choice.tolerance
    assert used[-1] == auto.dtype == (choice.setting.autocast_dtype or torch.float32)
    assert probs.dtype == np.float32  # probabilities are computed in fp32 either way
    exact = TilePredictor(padded_convnet(), np.zeros(6), np.ones(6), options=FP32)(tiles)
    assert np.abs(probs - exact).mean() <= choice.tolerance
    calls = len(used)
    auto(tiles)
    assert len(used) == calls + 1  # measured once, not per batch


def test_explicit_options_are_used_as_given_and_bad_normalisation_refused():
    model, used = conv1x1(), []
    model.register_forward_hook(lambda module, args, out: used.append(out.dtype))
    fixed = TilePredictor(model, np.zeros(6), np.ones(6),
                          options=RuntimeOptions(precision="bf16", channels_last="off"))
    assert fixed.choice.source == "explicit" and fixed.choice.label == "bf16/nchw"
    fixed(smooth_stack(16, 16)[None])
    assert used == [torch.bfloat16] and not fixed.channels_last
    assert resolve_precision("fp32", torch.device("cpu")) == torch.float32
    with pytest.raises(ConfigError, match="CUDA"):
        resolve_precision("fp16", torch.device("cpu"))
    with pytest.raises(ModelError, match="std"):
        TilePredictor(conv1x1(), np.zeros(6), np.zeros(6))


def test_the_passes_around_the_forward_run_on_the_calling_thread_alone():
    """Normalising and probabilities run on one thread (their OpenMP waits cost the helpers
    CPU), the forward on the process's count, which is what is left afterwards."""
    seen: dict[str, list[int]] = {"normalise": [], "forward": [], "probabilities": []}

    class ThreadRecorder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(len(BANDS), 2, 1)

        def forward(self, x):
            seen["forward"].append(torch.get_num_threads())
            return self.conv(x)

    saved = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        predictor = TilePredictor(ThreadRecorder(), np.zeros(len(BANDS)), np.ones(len(BANDS)),
                                  options=RuntimeOptions(device="cpu", precision="fp32",
                                                         channels_last="on"))
        for name in ("normalise", "probabilities"):
            method = getattr(predictor, f"_{name}")

            def recorded(*args, _method=method, _name=name, **kwargs):
                seen[_name].append(torch.get_num_threads())
                return _method(*args, **kwargs)

            setattr(predictor, f"_{name}", recorded)
        probs = predictor(np.ones((2, len(BANDS), 8, 8), np.float32), compact=True)
        assert probs.shape == (2, 1, 8, 8) and np.isfinite(probs).all()
        assert seen == {"normalise": [1], "forward": [2], "probabilities": [1]}
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(saved)


def test_a_model_that_cannot_be_compiled_runs_eagerly_and_says_so(tmp_path, monkeypatch):
    """``--compile`` on a machine without a C++ compiler: the map is made, and its runtime
    does not claim a compiled model."""
    from torch._inductor import config as inductor_config

    from engine import compiled

    monkeypatch.setenv(compiled.CACHE_DIR_ENV, str(tmp_path / "inductor"))  # nothing cached
    tiles = smooth_stack(24, 24)[None]
    options = RuntimeOptions(device="cpu", precision="fp32", channels_last="on", compile=True)
    p = TilePredictor(padded_convnet(seed=7), np.zeros(6), np.ones(6), options=options)
    assert p.choice.label == "fp32/nhwc/compiled"
    with inductor_config.patch({"cpp.cxx": ("isamap-no-such-compiler",)}):
        got = p(tiles)
    assert p.choice.label == "fp32/nhwc" and "compiled" not in p.choice.tags()["runtime"]
    eager = TilePredictor(padded_convnet(seed=7), np.zeros(6), np.ones(6), options=FP32)
    np.testing.assert_allclose(got, eager(tiles), atol=1e-6)


def _band0_patches(seed: int, check_source: str, labelled: bool = False):
    """Int8 patches of six bands whose band 0 lies at least 0.5 from 0 (labels with margins)."""
    from engine.quantize import Int8Patches

    g = torch.Generator().manual_seed(seed)
    calib, check = torch.randn(8, 6, 32, 32, generator=g), torch.randn(8, 6, 32, 32, generator=g)
    for x in (calib, check):
        x[:, 0] = torch.sign(x[:, 0]) * (x[:, 0].abs() + 0.5)
    labels = ((check[:, 0] > 0).long(),) if labelled else None
    return Int8Patches((calib,), (check,), labels, "calibration patches", check_source)


@pytest.mark.skipif(not __import__("engine.quantize", fromlist=["x"]).cpu_has_int8(),
                    reason="this CPU has no VNNI/AMX int8 instructions")
def test_int8_calibrated_on_patches_maps_tiles_of_another_size():
    """Patches of 32 px calibrate and check it; the map's 48 px tiles run on the same graph."""
    pytest.importorskip("torchao")
    from tests.support.models import BandConv

    patches = _band0_patches(0, "check patches (labelled)", labelled=True)
    model = BandConv(6).eval()
    predictor = TilePredictor(model, np.zeros(6), np.ones(6), int8_patches=patches, isa_class=1,
                              options=RuntimeOptions(device="cpu", precision="int8"))
    tiles = np.random.default_rng(1).normal(size=(3, 6, 48, 48)).astype(np.float32)
    probs = predictor(tiles)
    ref = TilePredictor(model, np.zeros(6), np.ones(6),
                        options=RuntimeOptions(device="cpu", precision="fp32"))(tiles)
    assert probs.shape == ref.shape == (3, 2, 48, 48)
    assert (probs.argmax(1) == ref.argmax(1)).mean() >= 0.99
    record = predictor.choice.to_dict()["int8"]
    assert record["calibration"] == "calibration patches" and record["isa_f1_labels"][0] > 0.99
    assert predictor.choice.label == "int8/nchw" and predictor.int8 is not None


@pytest.mark.skipif(not __import__("engine.quantize", fromlist=["x"]).cpu_has_int8(),
                    reason="this CPU has no VNNI/AMX int8 instructions")
def test_int8_is_checked_before_the_first_batch_on_its_patches():
    """What a pipeline's driver does before any tile: the same refusal as a first batch."""
    pytest.importorskip("torchao")
    from engine.quantize import Int8RefusedError
    from tests.support.models import BandConv, TiedConv

    patches = _band0_patches(5, "check patches")
    options = RuntimeOptions(device="cpu", precision="int8")
    TilePredictor(BandConv(6).eval(), np.zeros(6), np.ones(6), int8_patches=patches,
                  isa_class=1, options=options).check_int8()  # accepted: no error
    tied = TilePredictor(TiedConv(6).eval(), np.zeros(6), np.ones(6),
                         int8_patches=lambda: patches, isa_class=1, options=options)
    with pytest.raises(Int8RefusedError, match="disagrees with fp32 on check patches"):
        tied.check_int8()
    with pytest.raises(ValueError, match="needs its patches"):
        TilePredictor(BandConv(6).eval(), np.zeros(6), np.ones(6), isa_class=1,
                      options=options).check_int8()


# The batch normalised on the CPU: exactly ``x * (1/std)`` then ``+ (-mean/std)``, each rounded.
#
# numpy's float32 multiply and add are the oracle: the same bits, whatever the layout, the
# array's strides or the SIMD width torch runs with (no fused multiply-add anywhere).


FORMATS = [torch.contiguous_format, torch.channels_last]
TILE = 96


def _coefficients(bands):
    rng = np.random.default_rng(bands)
    mean, std = rng.normal(100, 30, bands), rng.uniform(5, 50, bands)
    return (-mean / std).astype(np.float32), (1 / std).astype(np.float32)


def _raw(bands, height, width, seed=0):
    return np.random.default_rng(seed).normal(100, 40, (bands, height, width)).astype(np.float32)


def _expected(raw, bands):
    """numpy's two rounded float32 operations, NaN and infinities as 0 (bits to compare)."""
    shift, scale = _coefficients(bands)
    raw = np.asarray(raw, np.float32)
    product = raw * scale[:, None, None]
    return np.nan_to_num(product + shift[:, None, None], nan=0.0, posinf=0.0, neginf=0.0)


def _same_bits(x: torch.Tensor, want: np.ndarray) -> None:
    got = np.ascontiguousarray(x.numpy())
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("bands", [1, 6, 20])
@pytest.mark.parametrize("width", [TILE, 37])  # whole vectors, and a remainder
def test_views_of_a_row_give_numpys_bits(fmt, bands, width):
    row = _raw(bands, TILE, 5 * TILE)
    tiles = [row[:, :, x:x + width] for x in (0, 70, 201, 5 * TILE - width)]
    x, clean = BatchNormaliser(*_coefficients(bands))(tiles, fmt)
    assert x.is_contiguous(memory_format=fmt) and clean
    for j, tile in enumerate(tiles):
        _same_bits(x[j], _expected(tile, bands))


@pytest.mark.parametrize("fmt", FORMATS)
def test_odd_arrays_give_numpys_bits(fmt):
    """A whole batch array, a float64 one (rounded to float32 first), pixels with a stride."""
    wide = _raw(4, TILE, 2 * TILE)
    batch = wide.reshape(4, TILE, 2, TILE).transpose(2, 0, 1, 3).copy()
    for tiles in (batch, batch.astype(np.float64), [wide[:, :, ::2], wide[:, :, TILE:]]):
        x, _ = BatchNormaliser(*_coefficients(4))(tiles, fmt)
        for j in range(len(tiles)):
            _same_bits(x[j], _expected(tiles[j], 4))


def test_both_layouts_and_the_device_path_write_the_same_bits():
    """Channels-first, channels-last and :func:`normalise_into` on a stacked batch (the GPU
    path's arithmetic, run here on the CPU) are one computation."""
    shift, scale = _coefficients(6)
    tiles = [_raw(6, TILE, TILE, seed=s) for s in range(3)]
    norm = BatchNormaliser(shift, scale)
    first = norm(tiles, torch.contiguous_format)[0].clone()
    last = norm(tiles, torch.channels_last)[0].clone()
    stacked = torch.empty((3, 6, TILE, TILE))
    normalise_into(torch.from_numpy(np.stack(tiles)), torch.from_numpy(shift).view(1, -1, 1, 1),
                   torch.from_numpy(scale).view(1, -1, 1, 1), stacked)
    for other in (last, stacked):
        np.testing.assert_array_equal(np.ascontiguousarray(other.numpy()).view(np.uint32),
                                      first.numpy().view(np.uint32))


@pytest.mark.parametrize("bands", [3, 6])
def test_nan_and_infinities_become_the_mean(bands):
    tiles = [_raw(bands, TILE, TILE - 1, seed=s) for s in range(3)]
    tiles[1][0, 5, 7], tiles[1][2, 50, 60], tiles[2][1, 0, 0] = np.nan, np.inf, -np.inf
    norm = BatchNormaliser(*_coefficients(bands))
    x, clean = norm(tiles, torch.channels_last)
    assert not clean and bool(torch.isfinite(x).all())
    assert x[1, 0, 5, 7] == 0 and x[1, 2, 50, 60] == 0 and x[2, 1, 0, 0] == 0
    for j in range(3):
        _same_bits(x[j], _expected(tiles[j], bands))
    x, clean = norm(tiles[:1], torch.channels_last)
    assert clean  # a batch without any
    x, clean = norm(tiles, torch.channels_last, finite=False)  # replaced without a check
    assert not clean and bool(torch.isfinite(x).all())
    x, clean = norm(tiles[:1], torch.channels_last, finite=True)  # the caller checked
    assert clean


def test_the_batch_is_reused():
    norm = BatchNormaliser(*_coefficients(6))
    tiles = [_raw(6, TILE, TILE, seed=s) for s in range(2)]
    first = norm(tiles, torch.channels_last)[0].data_ptr()
    assert norm(tiles, torch.channels_last)[0].data_ptr() == first


def test_tiles_of_another_shape_are_refused():
    """The batch's slots are shaped by the first tile: torch would resize its view of a slot
    and leave the slot stale."""
    norm = BatchNormaliser(*_coefficients(6))
    for other in (_raw(6, TILE + 8, TILE), _raw(7, TILE, TILE), _raw(6, TILE, TILE - 4)):
        with pytest.raises(ValueError, match="differ in shape"):
            norm([_raw(6, TILE, TILE), other], torch.channels_last)
    x, clean = norm([_raw(6, TILE, TILE)] * 2, torch.channels_last)  # still usable
    assert clean and x.shape == (2, 6, TILE, TILE)
