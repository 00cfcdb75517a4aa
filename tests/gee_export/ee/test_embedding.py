"""The Satellite Embedding on the Earth Engine path: the graph offline, the bytes it fetches.

The graph is built with the real client offline (``ee_offline``) and read as the JSON a
request carries: the collection, the year, every algorithm in the wheel's own list, one
reprojection onto the grid, and the quantisation, which is run here step by step with numpy
from the graph itself and compared with the published files' integers. The export then runs
against the fake pixel server (testing/fake_server.py), which answers the embedding's bands
as 8-bit integers as the service does for this graph: patches hold the embedding's values.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import rasterio

from contract.bands import EMBEDDING, parse_band_list
from contract.dataset import DatasetSpec, read_index
from contract.grid import Grid
from contract.stack import StackPaths
from core.errors import ConfigError, EmptyCompositeError
from core.storage import open_store
from gee_export.ee import embedding
from gee_export.ee.export import ExportJob, export_pixels
from gee_export.ee.pixels import SubRequest, decode
from gee_export.ee.prediction_stack import recipe_for_month
from gee_export.ee.recipe import EERecipe, build_stack
from gee_export.ee.sentinel2 import month_window
from testing.ee_graph import Graph, array_rank_errors, constant, names
from testing.fake_server import StackTransport, quantise
from tests.support import ee_graph
from tests.support.ee_http import algorithms
from tests.support.embedding import embedding_stack as write_embedding_stack
from tests.support.embedding import unit_vectors
from tests.support.killed_export import session_for

GRID = Grid(crs="EPSG:32650", x0=400000.0, y0=3380000.0, width=64, height=64, resolution=10.0,
            patch_size=32, stride=32)
MONTH = "2021-06"


def test_quantisation_is_the_published_mapping():
    v = np.array([-1.0, -0.5, -1e-6, 0.0, 1e-6, 0.0156, 0.25, 0.999, 1.0, np.nan])
    q = quantise(v)
    assert q.dtype == np.int8
    assert list(q) == [-127, -90, 0, 0, 0, 16, 64, 127, 127, -128]  # sqrt(|v|) * 127.5
    back = embedding.dequantise(q)
    assert np.isnan(back[-1]) and back.dtype == np.float32
    np.testing.assert_allclose(back[[0, 3, 8]], [-(127 / 127.5) ** 2, 0.0, (127 / 127.5) ** 2])
    # every integer but the masked one maps back to itself
    every = np.arange(-127, 128, dtype=np.int8)
    assert np.array_equal(quantise(embedding.dequantise(every)), every)
    # unit vectors keep their length to within the 8-bit step
    vectors = unit_vectors((40, 40))
    lengths = np.linalg.norm(embedding.dequantise(quantise(vectors)), axis=0)
    assert np.abs(lengths - 1).max() < 0.02


def _chain(graph: Graph, node: dict, source: np.ndarray) -> np.ndarray:
    """Evaluate the graph's per-pixel arithmetic from the loaded mosaic down to ``node``."""
    call = graph.resolve(node)["functionInvocationValue"]
    name, args = call["functionName"], call["arguments"]
    if name in ("ImageCollection.mosaic", "Image.select"):
        return source
    unary = {"Image.abs": np.abs, "Image.sqrt": np.sqrt, "Image.round": np.rint,
             "Image.signum": np.sign, "Image.toInt8": lambda a: a}
    if name in unary:
        return unary[name](_chain(graph, args["value"], source))
    if name in ("Image.multiply", "Image.min"):
        left = _chain(graph, args["image1"], source)
        right = args["image2"]["functionInvocationValue"]
        if right["functionName"] == "Image.constant":
            other = constant(right["arguments"]["value"])
        else:
            other = _chain(graph, args["image2"], source)
        return left * other if name == "Image.multiply" else np.minimum(left, other)
    raise AssertionError(f"unexpected step {name}")


def test_graph_reads_the_year_quantised_on_the_grid(ee_offline, region):
    image = embedding.embedding_on_grid(GRID, 2021, region, EMBEDDING)
    graph = Graph(image)
    assert ee_graph.loaded_ids(image) == [embedding.COLLECTION]
    text = json.dumps(graph.graph)
    assert "2021-01-01" in text and "2022-01-01" in text  # the calendar year's layer
    known = {a["name"].split("/")[-1] for a in json.loads(algorithms())["algorithms"]}
    assert set(names(image)) <= known  # every step is an algorithm the service has
    (reproject,) = [c for c in graph.calls() if c["functionName"] == "Image.reproject"]
    assert constant(graph.resolve(reproject["arguments"])["crsTransform"]) == \
        list(GRID.crs_transform)
    assert array_rank_errors(image) == []
    # the chain below the reprojection: unmask(-128) of toInt8 of the quantised mosaic
    top = graph.resolve(reproject["arguments"]["image"])["functionInvocationValue"]
    assert top["functionName"] == "Image.unmask"
    masked = top["arguments"]["value"]["functionInvocationValue"]
    assert constant(masked["arguments"]["value"]) == embedding.MASKED
    assert constant(top["arguments"]["sameFootprint"]) is False
    cast = top["arguments"]["input"]  # an Image.unmask's image argument
    assert cast["functionInvocationValue"]["functionName"] == "Image.toInt8"
    values = np.concatenate([np.linspace(-1, 1, 2001), unit_vectors((8, 8)).ravel()])
    computed = np.clip(_chain(graph, cast, values), -128, 127).astype(np.int8)
    assert np.array_equal(computed, quantise(values))


def test_stack_carries_the_embedding_as_integers(ee_offline, region):
    bands = parse_band_list("B2,B4,aef")
    assert bands[:3] == ("B2", "B4", "A00") and len(bands) == 66
    image = build_stack(GRID, month_window(MONTH), EERecipe(bands=bands), region)
    calls = list(Graph(image).calls())
    assert sum(c["functionName"] == "Image.toInt8" for c in calls) == 1
    assert ee_graph.loaded_ids(image).count(embedding.COLLECTION) == 1
    assert array_rank_errors(image) == []
    # a map's recipe takes the bands too, and refuses a year before the dataset
    assert recipe_for_month({}, bands, MONTH).recipe.bands == bands
    with pytest.raises(EmptyCompositeError, match="starts in 2017"):
        build_stack(GRID, month_window("2016-06"), EERecipe(bands=bands), region)
    with pytest.raises(EmptyCompositeError, match="no 2026 layer"):
        embedding.require_layer(0, 2026, "wuhan")


def test_local_backend_refuses_the_embedding(tmp_path):
    from gee_export.local.stack import plan_local_stack

    with pytest.raises(ConfigError, match="Earth Engine alone"):
        plan_local_stack(tmp_path, GRID, MONTH, parse_band_list("B2,aef"))


def test_decode_turns_integers_into_values():
    sub = SubRequest(window=_window(4, 4), bands=("B2", "A00"))
    native = np.array([[0.3, -0.2, np.nan, 0.0]] * 4, np.float32)
    answer = np.zeros((4, 4), dtype=[("B2", "<f4"), ("A00", "<i1")])
    answer["B2"] = 0.1
    answer["A00"] = quantise(native)
    out = decode(answer, sub)
    assert out.dtype == np.float32 and out.shape == (2, 4, 4)
    np.testing.assert_allclose(out[1][:, [0, 1, 3]], embedding.dequantise(
        quantise(native))[:, [0, 1, 3]])
    assert np.isnan(out[1][:, 2]).all() and (out[0] == np.float32(0.1)).all()


def _window(h: int, w: int):
    from contract.grid import Window

    return Window(row_off=0, col_off=0, height=h, width=w)


@pytest.fixture
def embedding_stack(tmp_path) -> tuple[StackPaths, np.ndarray]:
    """A stack whose bands are the embedding's native values (what the asset holds)."""
    return write_embedding_stack(tmp_path, GRID, MONTH)


def test_export_fetches_integers_and_writes_values(ee_offline, region, embedding_stack,
                                                   tmp_path):
    stack, native = embedding_stack
    image = build_stack(GRID, month_window(MONTH), EERecipe(bands=EMBEDDING), region,
                        with_label=False).addBands(
        ee_offline.Image.constant(0).rename("label").toFloat())
    transport = StackTransport(stack)
    answers: list[int] = []
    serve = transport.compute_pixels

    def measured(request):
        answer = serve(request)
        buffer = io.BytesIO()
        np.save(buffer, answer)  # the NUMPY_NDARRAY answer's bytes
        answers.append(buffer.tell())
        return answer

    transport.compute_pixels = measured  # type: ignore[method-assign]
    spec = DatasetSpec(GRID, EMBEDDING, backend="ee", region="test", recipe={"test": True},
                       min_valid_fraction=0.5)
    root = tmp_path / "dataset"
    export_pixels(session_for(transport), image, ExportJob(spec, MONTH), str(root), workers=1,
                  progress=False)
    records = read_index(open_store(str(root)))
    assert records
    expected = embedding.dequantise(quantise(native))
    for record in records:
        with rasterio.open(root / record["image"]) as src:
            data, descriptions = src.read(), list(src.descriptions)
            r0 = round((GRID.y0 - src.bounds.top) / 10)
            c0 = round((src.bounds.left - GRID.x0) / 10)
        assert descriptions == list(EMBEDDING)
        window = expected[:, r0:r0 + data.shape[1], c0:c0 + data.shape[2]]
        np.testing.assert_array_equal(np.isnan(data), np.isnan(window))
        np.testing.assert_allclose(data[np.isfinite(data)], window[np.isfinite(window)])
    # the same answer as float32 would be four times the bytes (64 bands, 1 byte each)
    floats = np.zeros((32, 32), dtype=[(b, "<f4") for b in (*EMBEDDING, "label")])
    ints = np.zeros((32, 32), dtype=[*[(b, "<i1") for b in EMBEDDING], ("label", "<f4")])
    size = {k: _npy_bytes(a) for k, a in (("float32", floats), ("int8", ints))}
    assert answers and max(answers) == size["int8"]
    assert size["float32"] / size["int8"] > 3.2


def _npy_bytes(array: np.ndarray) -> int:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.tell()


def _embedding_image(ee, region):
    """The export's image of the embedding's 64 bands and the float label."""
    return build_stack(GRID, month_window(MONTH), EERecipe(bands=EMBEDDING), region,
                       with_label=False).addBands(ee.Image.constant(0).rename("label").toFloat())


def test_a_task_export_of_the_embedding_writes_one_type_and_patches_of_its_values(
        ee_offline, region, embedding_stack, gcs_emulator, gcs_bucket):
    """``--bands aef`` by batch tasks (automatic above 5,000 km2) exported the embedding's
    8-bit integers and the float label into one GeoTIFF, which Earth Engine fails ("Exported
    bands must have compatible data types"). The task exports every band as float32, the
    integers kept, and the tile's reader turns them into the embedding's values."""
    from gee_export.ee.tasks import export_tasks

    stack, native = embedding_stack
    transport = StackTransport(stack, gcs_client=gcs_emulator.client(),
                               task_bands=(*EMBEDDING, "label"))
    spec = DatasetSpec(GRID, EMBEDDING, backend="ee", region="test", recipe={"test": True},
                       min_valid_fraction=0.5)
    out = f"gs://{gcs_bucket}/aef"
    done = export_tasks(session_for(transport), _embedding_image(ee_offline, region),
                        ExportJob(spec, MONTH), out, patches_per_tile=1, poll_seconds=0,
                        sleep=lambda s: None, progress=False)
    assert done.written == 4 and all(t["state"] == "COMPLETED" for t in transport.tasks.values())
    store = open_store(out)
    expected = embedding.dequantise(quantise(native))
    for record in read_index(store):
        with rasterio.MemoryFile(store.read_bytes(record["image"])) as mem, mem.open() as src:
            data = src.read()
            r0 = round((GRID.y0 - src.bounds.top) / 10)
            c0 = round((src.bounds.left - GRID.x0) / 10)
        window = expected[:, r0:r0 + data.shape[1], c0:c0 + data.shape[2]]
        np.testing.assert_array_equal(np.isnan(data), np.isnan(window))
        np.testing.assert_allclose(data[np.isfinite(data)], window[np.isfinite(window)])


def test_a_map_stack_of_the_embedding_made_by_tasks_is_read_as_its_values(
        ee_offline, region, embedding_stack, gcs_emulator, gcs_bucket):
    """A map's stack made by tasks held the embedding's published integers and was read as
    them (0.5 as 90, masked pixels as -128); the computePixels path alone converted them.
    The stack's VRT reads them as the embedding's values, NaN where masked."""
    from gee_export.ee.prediction_stack import export_prediction_stack
    from inference.predict.sources import MaskedFileSource

    stack, native = embedding_stack
    transport = StackTransport(stack, gcs_client=gcs_emulator.client(), task_bands=EMBEDDING)
    image = build_stack(GRID, month_window(MONTH), EERecipe(bands=EMBEDDING), region,
                        with_label=False)
    made = export_prediction_stack(session_for(transport), image, GRID, EMBEDDING,
                                   f"gs://{gcs_bucket}/stacks", "stack_2021-06", tile_px=256,
                                   poll_seconds=0, sleep=lambda s: None, progress=False)
    with MaskedFileSource(made.vrt) as source:
        read = source.read(range(1, 65))
        sample = source.sample(range(1, 65), 64)
    expected = embedding.dequantise(quantise(native))
    for data in (read, sample):
        np.testing.assert_array_equal(np.isnan(data), np.isnan(expected))
        np.testing.assert_allclose(data[np.isfinite(data)], expected[np.isfinite(expected)])
    assert np.nanmax(np.abs(read)) <= 1.0
