"""The three Colab notebooks are valid, store their smoke run's outputs, and run offline.

The stored outputs (``make notebooks``: tools/notebooks.py) are checked for what a reader
needs: every cell run once in order without an error, pictures as small PNGs, no absolute path
of the machine that ran them.

Each notebook's code cells are concatenated, IPython magic and shell lines (``%``/``!``) are
dropped (nothing else is changed), and the script runs in a process of its own, forked from a
venv Python that imported the heavy third-party libraries once (tests/support/warm_python.py),
with a working folder shared by the three: 01 writes the patch dataset 02 trains on, and 03
maps the stack with 02's model. The asserts are on the files the notebooks produce.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
from pathlib import Path

import nbformat
import pytest
import rasterio
from PIL import Image

from contract.dataset import read_index
from tests.support.warm_python import FORKS, WarmPython
from training.calibration.temperature import T_RANGE

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
ORDER = ("01_export_patches.ipynb", "02_train.ipynb", "03_predict_publish.ipynb")
PRELUDE = 'import matplotlib\nmatplotlib.use("Agg")\n'
MAX_PICTURE_BYTES = 200_000  # each stored picture (tools/notebooks.py writes them smaller)


def notebook_script(path: Path) -> str:
    """Code cells joined, minus the lines IPython alone understands."""
    nb = nbformat.read(path, as_version=4)
    cells = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        lines = [ln for ln in cell.source.splitlines() if not ln.lstrip().startswith(("%", "!"))]
        cells.append("\n".join(lines))
    return PRELUDE + "\n\n".join(cells) + "\n"


@pytest.mark.parametrize("name", ORDER)
def test_notebook_is_clean_nbformat_v4(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    assert nb.nbformat == 4 and nb.metadata.kernelspec.name == "python3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert sum(c.cell_type == "markdown" for c in nb.cells) >= len(code) // 2
    assert any("ISAMAP_SMOKE" in c.source for c in nb.cells if c.cell_type == "markdown")
    # magics only in cells that hold nothing else, so dropping them leaves no half cell
    for cell in code:
        lines = [ln for ln in cell.source.splitlines() if ln.strip() and not ln.startswith("#")]
        magic = [ln.lstrip().startswith(("%", "!")) for ln in lines]
        assert all(magic) or not any(magic), cell.source


@pytest.mark.parametrize("name", ORDER)
def test_notebook_stores_the_outputs_of_one_smoke_run_with_small_pictures(name):
    """``make notebooks`` ran every cell in order, once, without an error, and kept pictures."""
    path = NOTEBOOKS / name
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1)), (
        "outputs missing or stale: run `make notebooks`")
    outputs = [o for c in code for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    pictures = [base64.b64decode(o.data["image/png"]) for o in outputs
                if "image/png" in o.get("data", {})]
    assert pictures, "no picture stored"
    for png in pictures:
        assert png.startswith(b"\x89PNG") and len(png) <= MAX_PICTURE_BYTES
        with Image.open(io.BytesIO(png)) as picture:
            assert min(picture.size) >= 100  # a figure, not an icon
    text = "".join(o.get("text", "") + o.get("data", {}).get("text/plain", "") for o in outputs)
    assert "Traceback" not in text
    assert not re.search(r"(^|\s)/(tmp|work|home)/", text), "an absolute path of the run"
    assert "isamap is installed: nothing to do" in text  # the install cell left a set-up venv
    assert path.stat().st_size < 400_000


@pytest.mark.parametrize("name", ORDER)
def test_notebook_installs_without_a_placeholder(name):
    """(The line under the title and the install cell: tests/test_notebooks_colab.py.)"""
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    assert nb.cells[0].source.startswith("# ")
    source = "".join(c.source for c in nb.cells)
    assert "YOUR_ORG" not in source and "%pip" not in source
    (install,) = [c.source for c in nb.cells if "def isamap_source" in c.source]
    assert "[ee,notebooks]" in install and "ISAMAP_SOURCE" in install


def test_the_notebooks_extra_leaves_a_hosted_kernel_alone():
    from configparser import ConfigParser

    setup = ConfigParser()
    setup.read(NOTEBOOKS.parent / "setup.cfg")
    extra = setup["options.extras_require"]["notebooks"]
    names = {re.split(r"[<>=!~\[ ]", line.strip())[0].lower()
             for line in extra.splitlines() if line.strip() and not line.strip().startswith("#")}
    assert names == {"geemap"}


def cells(name: str, tag: str | None = None) -> list[str]:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    return [c.source for c in nb.cells if c.cell_type == "code"
            and (tag is None or tag in c.metadata.get("tags", []))]


def parameters(name: str, work: Path, monkeypatch) -> dict:
    """The notebook's parameters cell run as a Colab user would (Earth Engine, no smoke)."""
    monkeypatch.delenv("ISAMAP_SMOKE", raising=False)
    monkeypatch.setenv("ISAMAP_WORK", str(work))
    monkeypatch.setenv("EE_PROJECT", "offline")
    (params,) = [c for c in cells(name) if c.startswith("import os") and "SMOKE =" in c]
    namespace: dict = {}
    exec(params, namespace)
    assert namespace["BACKEND"] == "ee" and namespace["PROJECT"] == "offline"
    return namespace


def test_export_preview_cell_builds_the_recipe_offline(ee_offline, tmp_path, monkeypatch):
    from tests.support import ee_graph

    namespace = parameters(ORDER[0], tmp_path, monkeypatch)
    namespace["ee"] = ee_offline
    (graph_cell,) = cells(ORDER[0], "ee-graph")
    exec(graph_cell, namespace)
    s2_filters = ee_graph.find(namespace["s2"], "Filter.dateRangeContains") + ee_graph.find(
        namespace["s2"], "Filter.intersects")
    assert s2_filters, "the Sentinel-2 collection is not filtered to the area and month"
    text = json.dumps(ee_graph.encode(namespace["s2"])) + json.dumps(
        ee_graph.encode(namespace["s1"])) + json.dumps(ee_graph.encode(namespace["label"]))
    for collection in ("COPERNICUS/S2_SR_HARMONIZED", "COPERNICUS/S1_GRD_FLOAT", "WorldCover"):
        assert collection in text
    assert "2019-06-01" in text and "2019-07-01" in text


def test_map_cell_builds_the_map_request_of_an_earth_engine_user(tmp_path, monkeypatch):
    from contract.dataset import FORMAT, write_manifest
    from contract.grid import Grid
    from contract.regions import parse_bbox
    from core.storage import open_store

    namespace = parameters(ORDER[2], tmp_path, monkeypatch)
    grid = Grid.from_lonlat_bounds(parse_bbox(namespace["BBOX"]).bbox)
    write_manifest(open_store(namespace["DATA"]), {"format": FORMAT, "grid": grid.to_dict()})
    (map_cell,) = cells(ORDER[2], "map-request")
    exec(map_cell, namespace)
    request = namespace["request"]
    inputs, extent = request.inputs, request.extent
    assert inputs.backend == "ee" and inputs.method == "pixels" and extent.grid is None
    assert extent.region.bbox == parse_bbox(namespace["BBOX"]).bbox
    assert extent.dates == ("2019-06",) and inputs.project == "offline"
    assert str(namespace["MODEL_FILE"]).endswith("model.pt") and inputs.workers == 16
    script = notebook_script(NOTEBOOKS / ORDER[2])
    assert "map_region(request, model, echo=print)" in script and "tile_task" not in script
    assert "task.start()" not in script


def test_magic_lines_are_the_only_lines_dropped():
    script = notebook_script(NOTEBOOKS / ORDER[0])
    assert "%pip" not in script and "ee.Authenticate()" in script
    assert "--dry-run" in script and "import geemap" in script


@pytest.mark.slow
@pytest.mark.skipif(not FORKS, reason="the notebooks run forked from a warm Python "
                    "(tests/support/warm_python.py), which needs os.fork and /proc (Linux)")
def test_notebooks_run_in_order_offline(tmp_path):
    work = tmp_path / "work"
    env = {**os.environ, "ISAMAP_SMOKE": "1", "ISAMAP_WORK": str(work), "MPLBACKEND": "Agg",
           "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("EE_PROJECT", None)
    # each notebook runs in a process of its own, forked from one that imported torch & co once
    # (tests/support/warm_python.py): six processes, one start-up's worth of library imports
    with WarmPython(env) as python:
        run_all(python, tmp_path)
        _check_the_outputs_and_the_rerun(python, tmp_path, work)


def run_all(python: WarmPython, tmp_path: Path) -> None:
    """The three notebooks as scripts, in order, each in a process of its own."""
    for name in ORDER:
        script = tmp_path / f"{Path(name).stem}.py"
        script.write_text(notebook_script(NOTEBOOKS / name))
        done = python.run(script, cwd=tmp_path, timeout=300)
        assert done.returncode == 0, (
            f"{name} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")


def _check_the_outputs_and_the_rerun(python: WarmPython, tmp_path: Path, work: Path) -> None:
    """The files the notebooks made, then a second run of all three that redoes nothing."""
    data = work / "data" / "synthetic"
    records = read_index(data)
    assert {r["split"] for r in records} == {"train", "val", "test"}
    assert all((data / r["image"]).exists() for r in records)
    assert (data / "code_editor_bbox_2019-06.js").read_text().startswith("//")
    assert (work / "figures" / "01_patches.png").stat().st_size > 0
    assert (work / "figures" / "01_composite_rgb_2019-06.png").stat().st_size > 0

    run = work / "runs" / "crofusenet_synthetic"
    assert (run / "model.pt").stat().st_size > 0 and (run / "learning_curves.png").exists()
    metrics = json.loads((run / "test" / "metrics.json").read_text())
    assert metrics["split"] == "test" and metrics["patches"] == sum(
        r["split"] == "test" for r in records)
    # the smoke model learned the scene: well above chance on the test split, and a
    # temperature fitted inside its range rather than at a bound (a near-uniform model's)
    assert metrics["pixel"]["kappa"] > 0.6 and metrics["pixel"]["oa"] > 0.8, metrics["pixel"]
    low, high = T_RANGE
    assert 2 * low < metrics["calibration"]["temperature"] < high / 2, metrics["calibration"]

    prefix = work / "maps" / "2019-06" / "isa_2019-06"
    with rasterio.open(f"{prefix}_class.tif") as src:
        classes = src.read(1)
        assert src.crs.to_epsg() == 32650
        assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
    assert set(int(v) for v in set(classes.ravel().tolist())) <= {0, 1, 255}
    assert (classes != 255).mean() > 0.9
    assert (work / "maps" / "2019-06" / "isa_2019-06_class.stac.json").exists()
    (manifest_path,) = (work / "maps" / "publish").glob("*.manifest.json")
    manifest = json.loads(manifest_path.read_text())
    assert manifest["properties"]["metric_test_miou"] == round(metrics["pixel"]["miou"], 4)
    assert manifest["name"].endswith("isa_synthetic_2019_06")
    assert [b["id"] for b in manifest["bands"]] == ["isa_class", "isa_probability"]

    # Running the three notebooks again (a Colab user re-running every cell) redoes nothing.
    finished = [data / records[0]["image"], data / "index.jsonl", run / "model.pt",
                run / "test" / "metrics.json", Path(f"{prefix}_class.tif"),
                Path(f"{prefix}_prob.tif")]
    stamps = [p.stat().st_mtime_ns for p in finished]
    run_all(python, tmp_path)
    assert [p.stat().st_mtime_ns for p in finished] == stamps


def test_class_map_cell_draws_nodata_as_nodata_with_a_legend_and_a_synthetic_mark(tmp_path,
                                                                                   monkeypatch):
    """03's class-map picture: 255 in the quick-looks' nodata colour, named in the legend;
    under the smoke run's title note its title says SYNTHETIC (a real class COG, the cell's
    own code)."""
    import types

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from contract.quicklook import NODATA_COLOUR, title_note
    from inference.cog import maps

    classes = np.zeros((40, 50), np.uint8)
    classes[10:20, 10:30] = 1
    classes[:8, :] = maps.NODATA
    plain = tmp_path / "plain.tif"
    with rasterio.open(plain, "w", driver="GTiff", width=50, height=40, count=1, dtype="uint8",
                       crs="EPSG:32650", nodata=255,
                       transform=rasterio.Affine(10, 0, 500000, 0, -10, 3400000)) as dst:
        dst.write(classes, 1)
    cog = tmp_path / "isa_class.tif"
    maps.write_cog(plain, cog, "class", {"classes": "pervious,impervious"})
    nb = nbformat.read(NOTEBOOKS / "03_predict_publish.ipynb", as_version=4)
    (cell,) = [c.source for c in nb.cells if "03_class_map.png" in c.source]
    figures: list = []
    monkeypatch.setattr(plt, "close", lambda fig=None: figures.append(fig))
    shown: list = []
    namespace = {"outputs": types.SimpleNamespace(
                     prediction=types.SimpleNamespace(class_path=str(cog))),
                 "FIGURES": tmp_path, "plt": plt, "display": shown.append,
                 "Image": lambda filename: filename}
    with title_note("SYNTHETIC"):
        exec(compile(cell, "03 class map cell", "exec"), namespace)
    (fig,) = figures
    ax = fig.axes[0]
    assert ax.get_title() == "SYNTHETIC · ISA class (decimated)"
    image = ax.get_images()[0]
    drawn = image.to_rgba(image.get_array())[:, :, :3]
    assert np.allclose(drawn[0, 0] * 255, NODATA_COLOUR)  # a nodata row
    assert not np.allclose(drawn[15, 20] * 255, NODATA_COLOUR)  # impervious
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["pervious", "impervious", "no data"]
    assert shown == [str(tmp_path / "03_class_map.png")]
    for name in ORDER:  # the smoke run's pictures, isamap's and the notebooks', say SYNTHETIC
        params = nbformat.read(NOTEBOOKS / name, as_version=4).cells[4].source
        assert 'enter_context(title_note("SYNTHETIC"))' in params.split("if SMOKE:")[1]
