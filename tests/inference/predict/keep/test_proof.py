"""``--postprocess keep`` proves it decides something before its tag names the product.

A product that does not overlap the map, a product whose degrees are tagged as metres, and
WorldCover codes read with the NLCD table (and the reverse) each gave the model's own map,
exit 0, with a ``postprocess`` tag naming the product. Now each is refused in one line naming
its cause; a product that fits is kept, and its tag records the shares it covered and decided.
The stack is real (the Dynamic World Java tile, Sentinel-2 L2A); the products are GeoTIFFs.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.warp import transform_bounds

from cli.predict import predict_main, predict_parser
from contract.geotiff import write_geotiff
from contract.label_schemes import LANDCOVER_CLASSES, LANDCOVER_SCHEME
from tests.support.rasters import write_stack
from tests.support.refusals import assert_refused
from training.modelfile import ModelMeta, save_model_file
from training.models import create_model

BANDS = ("B2", "B3", "B4", "B8")
K = len(LANDCOVER_CLASSES)
SIDE = 96  # 10 m pixels of the stack (tests.support.rasters.write_stack's grid)
X0, Y0, CRS = 500_000.0, 3_400_000.0, "EPSG:32650"
WORLDCOVER = (50, 10, 40)  # built-up, tree cover, cropland
NLCD = (23, 41, 82)  # developed medium, deciduous forest, cultivated crops


def _codes(values: tuple[int, ...], cells: int) -> np.ndarray:
    return np.array([[values[(i + j) % len(values)] for j in range(cells)]
                     for i in range(cells)], np.uint8)[None]


@pytest.fixture(scope="module")
def scene(tmp_path_factory, shared_data):
    folder = tmp_path_factory.mktemp("keep_proof")
    with rasterio.open(shared_data / "dynamicworld_s2" / "java_s2l2a.tif") as ds:
        data = ds.read([2, 3, 4, 8], window=((0, SIDE), (0, SIDE))).astype(np.float32) / 1e4
    stack = write_stack(folder / "stack.tif", data, bands=BANDS, nodata=None)
    weight = np.zeros((K, len(BANDS)))
    weight[LANDCOVER_CLASSES.index("impervious"), 2] = 20.0
    net = create_model("test-linear", len(BANDS), K, module="tests.support.models",
                       weight=weight.tolist(), bias=[0.0] * K)
    meta = ModelMeta("test-linear", len(BANDS), K, BANDS, (0.0,) * 4, (1.0,) * 4,
                     class_scheme=LANDCOVER_SCHEME, class_names=LANDCOVER_CLASSES,
                     module="tests.support.models", learnt_classes=LANDCOVER_CLASSES)
    model = save_model_file(folder / "model.pt", net, meta)
    cells = SIDE // 3 + 2  # 30 m cells over the stack, with a margin
    on_grid = Affine(30.0, 0, X0 - 30, 0, -30.0, Y0 + 30)
    west, south, east, north = transform_bounds(CRS, "EPSG:4326", X0 - 30, Y0 - 30 * cells + 30,
                                                X0 - 30 + 30 * cells, Y0 + 30)
    degrees = Affine((east - west) / cells, 0, west, 0, -(north - south) / cells, north)
    products = {
        "worldcover": write_geotiff(folder / "wc.tif", _codes(WORLDCOVER, cells), on_grid, CRS,
                                    None),
        "nlcd": write_geotiff(folder / "nlcd.tif", _codes(NLCD, cells), on_grid, CRS, None),
        "elsewhere": write_geotiff(folder / "far.tif", _codes(WORLDCOVER, cells),
                                   on_grid @ Affine.translation(5000, 0), CRS, None),
        "degrees_as_metres": write_geotiff(folder / "deg.tif", _codes(WORLDCOVER, cells),
                                           degrees, CRS, None),
    }
    return {"folder": folder, "stack": stack, "model": model, **products}


def _keep(scene, name, product, table):
    out = scene["folder"] / name / "lc"
    status = predict_main(["--model", str(scene["model"]), "--input", str(scene["stack"]),
                           "--out", str(out), "--precision", "fp32", "--quiet", "--tile", "64",
                           "--overlap", "16", "--postprocess", "keep", "--keep-product",
                           str(scene[product]), "--keep-table", table, "--keep-window", "0"])
    return status, out


@pytest.mark.parametrize(("product", "table"), [("worldcover", "worldcover"), ("nlcd", "nlcd")])
def test_a_product_that_fits_is_kept_and_its_proof_recorded(scene, product, table):
    status, out = _keep(scene, f"ok_{product}", product, table)
    assert status == 0
    with rasterio.open(f"{out}_class.tif") as ds:
        rule = json.loads(ds.tags()["postprocess"])
    assert rule["table"] == table and rule["proof"]["covered"] == 1.0
    assert 0 < rule["proof"]["decided"] < 1


@pytest.mark.parametrize(("case", "product", "table", "words"), [
    ("worldcover read as nlcd", "worldcover", "nlcd",
     ("holds codes 10, 40, 50", "they are 'worldcover' codes: pass --keep-table worldcover")),
    ("nlcd read as worldcover", "nlcd", "worldcover",
     ("holds codes 23, 41, 82", "they are 'nlcd' codes: pass --keep-table nlcd")),
    ("no overlap", "elsewhere", "worldcover", ("does not overlap the map",)),
    ("degrees tagged as metres", "degrees_as_metres", "worldcover",
     ("which are degrees of longitude and latitude", "EPSG:32650", "the CRS tag is wrong")),
])
def test_a_keep_that_would_keep_nothing_is_refused_with_its_cause(scene, capsys, case, product,
                                                                  table, words):
    status, out = _keep(scene, case.replace(" ", "_"), product, table)
    line = assert_refused(status, capsys.readouterr().err, predict_parser(),
                          "--postprocess keep: --keep-product", *words)
    assert "--keep-window 1" not in line  # the old warning's advice, beside the point
    assert not out.parent.exists() or not any(out.parent.iterdir())  # before any tile
