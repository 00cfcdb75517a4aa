import ast
import json

import numpy as np
import pytest
import rasterio
from PIL import Image

from contract.bands import LABEL_NODATA
from contract.quicklook import NODATA_COLOUR
from inference.cog import maps
from inference.cog.maps import (
    PROB_PALETTE,
    PROB_SCALE,
    OutputInfo,
    cog_report,
    quicklook,
    quicklook_key,
)
from inference.predict.raster import PredictConfig, predict_raster
from inference.predict.runtime import RuntimeOptions, TilePredictor
from inference.predict.stats import CHANGE_CODES
from tests.support import REPO_ROOT
from tests.support.models import conv1x1
from tests.support.rasters import BANDS, assert_valid_cog, smooth_stack, write_stack
from tests.support.sources import project_sources, where

#: the module-scoped fixtures below are built once: their tests run on one worker
pytestmark = pytest.mark.xdist_group("inference.cog.test_maps")


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cog")
    data = smooth_stack(700, 1100, seed=3)
    data[0, :50, :50] = np.nan
    src = write_stack(tmp / "big.tif", data)
    p = TilePredictor(conv1x1(), np.zeros(6), np.ones(6),
                      options=RuntimeOptions(precision="fp32", channels_last="on"))
    info = OutputInfo("conv1x1", BANDS, month="2023-06", metrics={"iou": 0.81})
    result = predict_raster(str(src), str(tmp / "isa"), p, info,
                            PredictConfig(tile=256, overlap=32, compress="ZSTD"), progress=False)
    return tmp, result


@pytest.mark.parametrize(("attr", "band_id"), [("class_path", "isa_class"),
                                                ("prob_path", "isa_probability")])
def test_outputs_are_valid_cogs_with_metadata(outputs, attr, band_id):
    _, result = outputs
    assert_valid_cog(getattr(result, attr))
    report = cog_report(getattr(result, attr))
    assert report["layout"] == "COG"
    assert report["blocks"] == [(512, 512)]
    assert report["overviews"] == [2, 4]  # 1100 px wide: halved until under one 512 block
    assert report["compression"] == "ZSTD" and report["predictor"] == "2"
    assert report["dtype"] == "uint8" and report["nodata"] == 255
    assert report["descriptions"][0] and "255 = nodata" in report["descriptions"][0]
    tags = report["tags"]
    assert tags["band_id"] == band_id and tags["model"] == "conv1x1"
    assert tags["bands"] == ",".join(BANDS) and tags["month"] == "2023-06"
    assert tags["version"] and tags["metric_iou"] == "0.81"


def test_class_overviews_keep_real_classes_and_probability_is_averaged(outputs):
    _, result = outputs
    with rasterio.open(result.class_path) as ds:
        overview = ds.read(1, out_shape=(350, 550))
        full = ds.read(1)
        assert ds.colormap(1)[1][:3] == (215, 48, 31)
    assert set(np.unique(overview)) <= set(np.unique(full)) <= {0, 1, 255}
    with rasterio.open(result.prob_path) as ds:
        values = ds.read(1)
        assert values[values != 255].max() <= 250 and (values[:50, :50] == 255).all()
        # averaged pyramids produce values that are not plain samples of the full raster
        small = ds.read(1, out_shape=(350, 550)).astype(float)
        full_p = ds.read(1).astype(float)
    block = full_p[100:102, 300:302].mean()
    assert abs(small[50, 150] - block) <= 1


def test_quicklook_is_small_framed_and_white_on_nodata(outputs):
    tmp, result = outputs
    png = quicklook(result.prob_path, tmp / "q.png", "probability", max_size=256)
    image = np.asarray(Image.open(png).convert("RGB"))
    assert max(image.shape[:2]) <= 256 + 300  # the picture plus title, caption and colour bar
    # the picture starts 45 px down (under the title) and 15 px in; its top-left is nodata
    assert tuple(image[50, 20]) == NODATA_COLOUR
    assert (image != 255).any(axis=-1).sum() > 256 * 50


def test_quicklook_keys_name_classes_units_and_change_codes():
    legend, bar = quicklook_key("class", {"classes": "pervious,impervious"})
    assert bar is None and [n for n, _ in legend.entries] == ["pervious", "impervious", "no data"]
    legend, bar = quicklook_key("probability", {})
    assert legend is None and "(0-1)" in bar.label and len(bar.colours) == len(PROB_PALETTE)
    legend, _ = quicklook_key("change", {"codes": json.dumps(CHANGE_CODES)})
    assert [n for n, _ in legend.entries] == ["stable pervious", "stable impervious", "gain",
                                              "loss", "no data"]


def _code_constants(text: str) -> list[ast.Constant]:
    """Constants of a module that are code, not docstrings (docs may name the scale)."""
    tree = ast.parse(text)
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef
                                | ast.AsyncFunctionDef)
                  and node.body and isinstance(node.body[0], ast.Expr)}
    return [node for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and id(node) not in docstrings]


@pytest.mark.slow
def test_the_probability_scale_is_written_only_where_prob_scale_is_defined():
    """Tags, asset properties, area tables and Code Editor scripts all read PROB_SCALE."""
    literal = []
    for rel, text in project_sources():
        for node in _code_constants(text):
            value = node.value
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if (number and value == PROB_SCALE) or (isinstance(value, str) and "250" in value):
                literal.append(f"{rel}:{node.lineno}")
    assert literal == ["inference/cog/maps.py:" + str(_definition_line("PROB_SCALE"))]


def test_nodata_and_block_have_one_definition():
    """``cog`` owns them; the map's nodata is the label's."""
    assert maps.NODATA == LABEL_NODATA
    assert set(where(r"^(NODATA|BLOCK)\s*=")) <= {"inference/cog/maps.py",
                                                   "benchmarks/bench_mapping.py"}
    assert where(r"^NODATA\s*=") == {"inference/cog/maps.py": [
        _definition_line("NODATA")]}


def _definition_line(name: str, rel: str = "inference/cog/maps.py") -> int:
    lines = (REPO_ROOT / rel).read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if line.startswith(f"{name} ="))
