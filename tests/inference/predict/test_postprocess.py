"""CLAHE post-processing: the bounded-memory stream equals the whole-array definition."""

import argparse
import json

import numpy as np
import pytest
import rasterio
import torch
from scipy.ndimage import gaussian_filter

from core.errors import ConfigError
from inference.cog.maps import NODATA, OutputInfo
from inference.predict.postprocess import (
    ClaheParams,
    ClaheStream,
    add_postprocess_arguments,
    check_rule_flags,
    clahe_classes,
    clahe_uint8,
)
from inference.predict.raster import PredictConfig, predict_raster
from inference.predict.runtime import RuntimeOptions, TilePredictor
from tests.support.models import conv1x1
from tests.support.rasters import BANDS, smooth_stack, write_stack

FP32 = RuntimeOptions(precision="fp32")


def smooth_probs(k: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    logits = gaussian_filter(rng.normal(size=(k, h, w)), (0, 3, 3)) * 5
    p = np.exp(logits)
    return (p / p.sum(0)).astype(np.float32)


def stream(probs, isa, params, strip, invalid=None):
    _, h, w = probs.shape
    s = ClaheStream(h, w, isa, params)
    out = np.full((h, w), 99, np.uint8)
    seen = []
    for r0 in range(0, h, strip):
        r1 = min(h, r0 + strip)
        inv = None if invalid is None else invalid[r0:r1]
        for row0, classes, end in s.push(r0, probs[:, r0:r1], inv, r1):
            out[row0:end] = classes
            seen.append((row0, end))
    for row0, classes, end in s.finish():
        out[row0:end] = classes
        seen.append((row0, end))
    return out, seen, s


@pytest.mark.parametrize("block,strip", [(16, 16), (16, 7), (24, 50), (32, 13), (64, 203)])
def test_stream_equals_whole_array(block, strip):
    probs = smooth_probs(4, 203, 77)
    invalid = np.zeros(probs.shape[1:], bool)
    invalid[:5, :9] = True
    params = ClaheParams(block=block)
    whole = clahe_classes(probs, 2, params, invalid)
    out, seen, s = stream(probs, 2, params, strip, invalid)
    np.testing.assert_array_equal(out, whole)
    # the strips come back whole, in order, each once
    assert seen == [(r, min(r + strip, 203)) for r in range(0, 203, strip)]
    assert s.max_buffered_rows <= 4 * block + strip


def test_stream_memory_does_not_grow_with_the_raster():
    params = ClaheParams(block=16)
    held = [stream(smooth_probs(3, h, 40, seed=h), 1, params, 8)[2].max_buffered_rows
            for h in (100, 400)]
    assert held[0] == held[1] <= 4 * 16 + 8


def test_two_class_compact_probabilities_match_the_full_ones():
    probs = smooth_probs(2, 90, 50, seed=3)
    params = ClaheParams(block=16)
    out, _, _ = stream(probs[1:], 1, params, 10)
    np.testing.assert_array_equal(out, clahe_classes(probs, 1, params))


def test_the_tile_grid_is_anchored_at_the_origin():
    """Tiles of exactly ``block`` px: the right/bottom remainder is padded, not stretched."""
    u = np.random.default_rng(0).integers(0, 255, (40, 40), dtype=np.uint8)
    inner = clahe_uint8(u, ClaheParams(block=20))
    # the same 40 x 40 top-left corner inside a larger raster gets the same tiles...
    big = np.pad(u, ((0, 20), (0, 20)), mode="reflect")
    np.testing.assert_array_equal(clahe_uint8(big, ClaheParams(block=20))[:30, :30],
                                  inner[:30, :30])


def test_faint_roads_are_recovered_and_background_suppressed():
    """The paper's point (Figure 9): a locally contrasted weak impervious response wins."""
    h, w = 96, 96
    p_isa = np.full((h, w), 0.05, np.float32)
    p_isa[:, 40:43] = 0.4  # a road the model is unsure about (0.4 < 0.6 for the other class)
    p_isa[60:90, 60:90] = 0.45  # a weak block of buildings
    probs = np.stack([1 - p_isa, p_isa])
    before = np.argmax(probs, 0)
    after = clahe_classes(probs, 1, ClaheParams(block=32))
    assert (before == 0).all()
    assert (after[:, 40:43] == 1).all()
    assert (after[60:90, 60:90] == 1).mean() > 0.9
    assert (after[:, :30] == 0).all()


def test_out_of_order_strips_are_refused():
    s = ClaheStream(40, 10, 1, ClaheParams(block=8))
    s.push(0, smooth_probs(2, 8, 10))
    with pytest.raises(ConfigError, match="in order"):
        s.push(16, smooth_probs(2, 8, 10))


def three_class_model():
    return conv1x1(classes=3, seed=4)


def run(src, out, **extra):
    predictor = TilePredictor(three_class_model(), np.zeros(len(BANDS)), np.ones(len(BANDS)),
                              options=FP32)
    info = OutputInfo("test-model", BANDS, classes=("a", "impervious", "b"))
    config = PredictConfig(tile=256, overlap=0, strip_rows=16, isa_class=1,
                           postprocess="clahe", clahe=ClaheParams(block=32), **extra)
    return predict_raster(str(src), str(out), predictor, info, config, progress=False)


def read(path):
    with rasterio.open(path) as ds:
        return ds.read(1)


def test_predictor_applies_it_in_bounded_strips(tmp_path):
    data = smooth_stack(150, 130, seed=2)
    data[1, 100:110, 20:40] = np.nan
    src = write_stack(tmp_path / "s.tif", data)
    result = run(src, tmp_path / "o")
    # reference: the model on the whole raster at once, then the whole-array definition
    with torch.no_grad():
        logits = three_class_model()(torch.from_numpy(np.nan_to_num(data)[None]))
    probs = torch.softmax(logits, 1)[0].numpy()
    invalid = np.isnan(data).any(0)
    expected = clahe_classes(probs, 1, ClaheParams(block=32), invalid)
    expected[invalid] = NODATA
    classes = read(result.class_path)
    np.testing.assert_array_equal(classes, expected)
    assert (classes != np.where(invalid, NODATA, probs.argmax(0))).any()  # it did something
    for path in (result.class_path, result.prob_path):  # a new user's walk: no word of it
        with rasterio.open(path) as ds:
            assert json.loads(ds.tags()["postprocess"]) == {
                "rule": "clahe", "block": 32, "clip_limit": 40.0, "threshold": 128,
                "inside": 2.0, "outside": 0.5}
    # resuming after losing the last strips gives the same map (context rebuilt)
    again = run(src, tmp_path / "r", keep_work=True)
    work = tmp_path / ".r.partial"
    for strip in sorted(work.glob("strip_*.tif"))[5:]:
        strip.unlink()
    for path in (again.class_path, again.prob_path):
        (tmp_path / path).unlink()
    resumed = run(src, tmp_path / "r")
    assert resumed.resumed_strips == 5
    np.testing.assert_array_equal(read(resumed.class_path), expected)


@pytest.mark.parametrize("flags, says", [
    ("--clahe-clip 3", "--clahe-clip is for --postprocess clahe"),
    ("--clahe-block 64", "--clahe-block is for --postprocess clahe"),
    ("--clahe-threshold 100", "--clahe-threshold is for --postprocess clahe"),
    ("--force-postprocess", "--force-postprocess is for --postprocess clahe"),
    ("--keep-window 32", "--keep-window is for --postprocess keep"),
    ("--postprocess keep --clahe-clip 3", "--clahe-clip is for --postprocess clahe"),
    ("--clahe-clip 3 --clahe-block 64", "--clahe-block, --clahe-clip are for --postprocess clahe"),
])
def test_a_post_processings_flags_without_it_are_refused(flags, says):
    """A new user's walk: --clahe-clip 3 without --postprocess mapped the plain map, exit 0."""
    parser = argparse.ArgumentParser()
    add_postprocess_arguments(parser)
    check_rule_flags(parser.parse_args(["--postprocess", "clahe", "--clahe-clip", "3"]))
    with pytest.raises(ConfigError) as error:
        check_rule_flags(parser.parse_args(flags.split()))
    rule = says.rsplit(" ", 1)[-1]
    them = "them" if " are " in says else "it"
    assert str(error.value) == (f"{says}, which this run does not apply: add --postprocess "
                                f"{rule}, or drop {them}")
