"""Built-up polygons from real class/probability COGs: areas, merging across strips, files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from contract.grid import Grid
from gee_export.local.synthetic import (
    DEFAULT_CRS,
    DEFAULT_ORIGIN,
    ISA_CLASSES,
    class_fractions,
    draw_class_map,
)
from inference.cog import maps
from inference.cog.maps import NODATA, PROB_SCALE
from inference.predict import stats
from inference.predict.vectors import VectorOptions, built_up_polygons, write_vectors

pyogrio = pytest.importorskip("pyogrio")
shapely = pytest.importorskip("shapely")

TRANSFORM = Affine(10.0, 0, DEFAULT_ORIGIN[0], 0, -10.0, DEFAULT_ORIGIN[1])


def _cog(path: Path, data: np.ndarray, kind: maps.Kind) -> str:
    """``data`` as a real map COG (512 px blocks) of ``kind``."""
    plain = path.with_suffix(".plain.tif")
    profile = {"driver": "GTiff", "width": data.shape[1], "height": data.shape[0], "count": 1,
               "dtype": "uint8", "crs": DEFAULT_CRS, "transform": TRANSFORM, "nodata": NODATA}
    with rasterio.open(plain, "w", **profile) as dst:
        dst.write(data, 1)
    maps.write_cog(plain, path, kind, {"classes": "pervious,impervious"})
    return str(path)


#: the module-scoped fixtures below are built once: their tests run on one worker
pytestmark = pytest.mark.xdist_group("inference.predict.test_vectors")


@pytest.fixture(scope="module")
def demo_maps(tmp_path_factory) -> tuple[str, str]:
    """The demo scene's map (SYNTHETIC): its town, 1100 x 1100 px, three strips of 512 rows.

    Impervious where roads and buildings cover at least half of a 10 m pixel, probability
    their share; a nodata corner.
    """
    folder = tmp_path_factory.mktemp("demo_map")
    grid = Grid(DEFAULT_CRS, *DEFAULT_ORIGIN, 1100, 1100, 10.0)
    shares = class_fractions(draw_class_map(grid, 5, seed=0), 5)[list(ISA_CLASSES)].sum(0)
    classes = (shares >= 0.5).astype(np.uint8)
    prob = np.round(shares * PROB_SCALE).astype(np.uint8)
    classes[:40, :60] = prob[:40, :60] = NODATA
    return (_cog(folder / "demo_class.tif", classes, "class"),
            _cog(folder / "demo_prob.tif", prob, "probability"))


def _read(path: Path) -> tuple[list, dict[str, np.ndarray]]:
    _, _, wkb, values = pyogrio.raw.read(str(path), layer="builtup")
    info = pyogrio.read_info(str(path), layer="builtup")
    return list(shapely.from_wkb(wkb)), dict(zip(info["fields"], values, strict=True))


@pytest.mark.slow
def test_demo_map_polygons_add_up_to_the_raster_area(demo_maps, tmp_path):
    class_path, prob_path = demo_maps
    raster_km2 = stats.isa_area(class_path, [stats.Zone("all", None)])[0].isa_km2
    assert raster_km2 > 1.0  # a town, not a few pixels
    result = write_vectors(class_path, prob_path, 1, tmp_path / "demo_builtup",
                           VectorOptions(min_area_m2=0.0))
    polygons, fields = _read(tmp_path / "demo_builtup.gpkg")
    assert len(polygons) == result.polygons > 10
    assert all(p.is_valid and p.geom_type == "Polygon" for p in polygons)
    # the attribute is the raster's own count; the simplified outlines stay within 1 %
    assert fields["area_m2"].sum() / 1e6 == pytest.approx(raster_km2, rel=1e-9)
    drawn = sum(p.area for p in polygons) / 1e6
    assert drawn == pytest.approx(raster_km2, rel=0.01)
    assert np.all((fields["mean_probability"] >= 0.5) & (fields["mean_probability"] <= 1.0))
    # the default minimum area drops the small patches, and only those
    kept = write_vectors(class_path, prob_path, 1, tmp_path / "kept", VectorOptions())
    _, kept_fields = _read(tmp_path / "kept.gpkg")
    small = fields["area_m2"] < VectorOptions().min_area_m2
    assert kept.polygons == int((~small).sum()) < result.polygons
    assert sorted(kept_fields["area_m2"]) == sorted(fields["area_m2"][~small])


def test_strips_give_the_polygons_of_the_whole_map(demo_maps):
    class_path, prob_path = demo_maps
    options = VectorOptions(min_area_m2=0.0, simplify_m=0.0)

    def polygons(rows: int) -> list[tuple[int, float, float]]:
        found = []
        for batch in built_up_polygons(class_path, prob_path, 1, options, rows=rows):
            for geometry, pixels, mean in zip(shapely.from_wkb(batch.wkb), batch.pixels,
                                              batch.mean_probability, strict=True):
                found.append((int(pixels), round(geometry.area, 3), round(float(mean), 9)))
        return sorted(found)

    whole = polygons(1100)
    assert polygons(512) == whole  # the COG's tile rows
    assert polygons(37) == whole  # cuts through every patch taller than 37 rows


def test_a_patch_cut_by_block_edges_comes_out_as_one(tmp_path):
    """A ring crossing the 512-row tile edge, whose two arms meet only below it."""
    classes = np.zeros((700, 600), np.uint8)
    classes[400:650, 100:110] = 1  # left arm, across row 512
    classes[400:650, 300:310] = 1  # right arm
    classes[640:650, 100:310] = 1  # joined below the edge only
    classes[100:120, 500:520] = 1  # a separate square
    prob = np.where(classes == 1, 200, 10).astype(np.uint8)
    prob[640:650, 100:310] = 250
    class_path = _cog(tmp_path / "u_class.tif", classes, "class")
    prob_path = _cog(tmp_path / "u_prob.tif", prob, "probability")
    write_vectors(class_path, prob_path, 1, tmp_path / "u", VectorOptions(geoparquet=True))
    polygons, fields = _read(tmp_path / "u.gpkg")
    assert len(polygons) == 2
    big = int(np.argmax(fields["pixels"]))
    arms, base = 2 * 240 * 10, 10 * 210
    assert fields["pixels"][big] == arms + base
    assert fields["area_m2"][big] == pytest.approx((arms + base) * 100.0)
    assert polygons[big].area == pytest.approx((arms + base) * 100.0)
    mean = (arms * 200 + base * 250) / (arms + base) / PROB_SCALE
    assert fields["mean_probability"][big] == pytest.approx(mean)
    # in map coordinates: the ring's box
    west, south, east, north = polygons[big].bounds
    assert (west, north) == (TRANSFORM.c + 1000.0, TRANSFORM.f - 4000.0)
    assert (east, south) == (TRANSFORM.c + 3100.0, TRANSFORM.f - 6500.0)
    # GeoParquet beside it: WKB geometry, its CRS, the same rows
    import pyarrow.parquet as pq

    table = pq.read_table(tmp_path / "u.parquet")
    geo = json.loads(table.schema.metadata[b"geo"])
    assert geo["primary_column"] == "geometry" and geo["columns"]["geometry"]["encoding"] == "WKB"
    assert geo["columns"]["geometry"]["crs"]["id"]["code"] == 32650
    assert sorted(table["pixels"].to_pylist()) == sorted(fields["pixels"].tolist())


def test_an_empty_map_writes_an_empty_layer(tmp_path):
    class_path = _cog(tmp_path / "e_class.tif", np.zeros((50, 60), np.uint8), "class")
    result = write_vectors(class_path, None, 1, tmp_path / "e", VectorOptions(geoparquet=False))
    assert result.polygons == 0 and result.paths == (tmp_path / "e.gpkg",)
    assert pyogrio.read_info(str(tmp_path / "e.gpkg"), layer="builtup")["features"] == 0


def test_isamap_predict_writes_polygons_beside_the_maps(tmp_path, capsys):
    from cli.predict import predict_main
    from tests.support.rasters import BANDS, smooth_stack, write_stack
    from training.modelfile import ModelMeta, save_model_file
    from training.models import create_model

    kwargs = {"widths": [4, 8, 8, 16, 16]}
    meta = ModelMeta("unet", len(BANDS), 2, BANDS, (0.0,) * 6, (1.0,) * 6, model_kwargs=kwargs)
    model = save_model_file(tmp_path / "unet.pt", create_model("unet", len(BANDS), 2, **kwargs),
                            meta)
    stack = write_stack(tmp_path / "stack.tif", smooth_stack(120, 150))
    common = ["--model", str(model), "--input", str(stack), "--tile", "64", "--overlap", "16",
              "--quiet", "--precision", "fp32", "--out", str(tmp_path / "map" / "isa")]
    assert predict_main([*common, "--vector-min-area", "0"]) == 2  # without --vectors
    assert "add --vectors" in capsys.readouterr().err
    assert predict_main([*common, "--vectors", "--vector-min-area", "0"]) == 0
    printed = capsys.readouterr().out
    assert str(tmp_path / "map" / "isa_builtup.gpkg") in printed
    area = json.loads((tmp_path / "map" / "isa_area.json").read_text())[0]["isa_km2"]
    _, fields = _read(tmp_path / "map" / "isa_builtup.gpkg")
    assert fields["area_m2"].sum() / 1e6 == pytest.approx(area, abs=1e-6)
    assert (tmp_path / "map" / "isa_builtup.parquet").exists() == _has_pyarrow()


def _has_pyarrow() -> bool:
    import importlib.util

    return importlib.util.find_spec("pyarrow") is not None
