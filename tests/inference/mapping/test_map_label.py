"""``isamap-map --backend local`` never reads the scenes' label raster: a map needs none.

Each date's stack was built as an export's, so a ``labels/label.tif`` among the scenes was
looked for, read and checked: one of codes the recipe's scheme does not map (Dynamic World's
2 and 7) refused the map, advising ``--label-map``, an ``isamap-export`` option; scenes
without one warned "no label raster given or found" for every date. On the project's
SYNTHETIC scene (real GeoTIFFs) with a small U-Net model file.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import rasterio
from pyproj import Transformer

from cli.map import main
from tests.support.mapping import model_file

#: the module-scoped fixtures below are built once: their tests run on one worker
pytestmark = pytest.mark.xdist_group("inference.mapping.test_map_label")


@pytest.fixture(scope="module")
def town(tmp_path_factory):
    from gee_export.local.synthetic import generate_scene

    root = tmp_path_factory.mktemp("label")
    scene = generate_scene(root / "scene", width=64, height=64, progress=False)
    to_ll = Transformer.from_crs(scene.grid.crs, "EPSG:4326", always_xy=True)
    box = ",".join(f"{v:.6f}" for v in to_ll.transform_bounds(*scene.grid.bounds))
    model = model_file(root / "m.pt", scene.grid, backend="local")
    return {"scene": root / "scene", "box": box, "model": model}


def _map(town, scenes, out):  # not -q: the log's warnings are what is looked at
    return main(["--bbox", town["box"], "--months", "2019-06", "--model", str(town["model"]),
                 "--out", str(out), "--backend", "local", "--scenes", str(scenes), "--tile",
                 "64", "--overlap", "16", "--no-progress"])


@pytest.mark.slow
def test_the_scenes_label_is_never_read(town, tmp_path, capsys):
    scenes = tmp_path / "scenes"
    shutil.copytree(town["scene"], scenes)
    with rasterio.open(scenes / "labels" / "label.tif", "r+") as ds:  # Dynamic World's codes
        ds.write(np.where(ds.read(1) == 1, 7, 2).astype("uint8"), 1)
    assert _map(town, scenes, tmp_path / "a") == 0
    assert "label" not in capsys.readouterr().err
    assert list((tmp_path / "a").rglob("*_class.tif"))
    shutil.rmtree(scenes / "labels")
    assert _map(town, scenes, tmp_path / "b") == 0
    assert "label" not in capsys.readouterr().err
