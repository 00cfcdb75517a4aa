"""A Presto series model from the export to the map: ``isamap-export --series-months 2`` on
real local GeoTIFF scenes, ``isamap-train --encoder presto=PATH --freeze-encoder``, then
``isamap-map --backend local`` with the model file alone."""

from __future__ import annotations

import json
import shutil

import pytest
import rasterio
from pyproj import Transformer

from cli.export import main as export_main
from cli.map import main as map_main
from cli.train import train_main
from contract.grid import Grid
from gee_export.local.synthetic import generate_scene
from training.modelfile import load_model_file
from training.models.encoders.fused import EncoderUNet


@pytest.mark.slow
def test_a_presto_series_model_maps_the_series_the_map_builds(presto_file, tmp_path):
    june = generate_scene(tmp_path / "scenes", width=64, height=64, progress=False)
    may = generate_scene(tmp_path / "may", width=64, height=64, month="2019-05", seed=3,
                         progress=False)
    for sensor in ("S2", "S1"):
        for product in (may.root / sensor).iterdir():
            shutil.copytree(product, june.root / sensor / product.name)
    ds = tmp_path / "ds"
    assert export_main(["--backend", "local", "--scenes", str(june.root), "--months",
                        "2019-06", "--series-months", "2", "--patch-size", "32", "--stride",
                        "32", "--split-block", "1", "--min-valid-fraction", "0.5",
                        "--no-progress", "-q", "--out", str(ds)]) == 0
    run = tmp_path / "run"
    assert train_main(["--data", str(ds), "--model", "unet-s2", "--encoder",
                       f"presto={presto_file}", "--freeze-encoder", "--out", str(run),
                       "--max-iterations", "1", "--batch-size", "2", "--model-kwargs",
                       '{"widths": [4, 8, 8, 8, 8]}', "--members", "1", "--workers", "0",
                       "--device", "cpu", "--no-progress", "-q"]) == 0
    model, meta = load_model_file(run / "model.pt")
    assert isinstance(model, EncoderUNet) and model.timesteps == 2
    assert model.months == [4, 5] and "B4_m1" in meta.bands  # May, then June
    grid = Grid.from_dict(json.loads((ds / "manifest.json").read_text())["grid"])
    to_ll = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True)
    bbox = ",".join(f"{v:.6f}" for v in to_ll.transform_bounds(*grid.bounds))
    alone = tmp_path / "elsewhere" / "model.pt"
    alone.parent.mkdir()
    shutil.copyfile(run / "model.pt", alone)
    assert map_main(["--model", str(alone), "--backend", "local", "--scenes",
                     str(june.root), "--months", "2019-06", "--bbox", bbox, "--out",
                     str(tmp_path / "maps"), "--tile", "64", "--overlap", "0", "--device", "cpu",
                     "-q"]) == 0
    (made,) = (tmp_path / "maps").rglob("isa_2019-06_class.tif")
    with rasterio.open(made) as src:
        assert src.read(1).size > 0
