"""``isamap-map`` reads local scenes with the export's reading options.

Scenes whose names and tags carry no date were refused with advice to pass ``--scene-date``,
which ``isamap-map`` did not accept; the model's recorded date was ignored. The dry run now
reads the scenes as the real run does, before it times the model.
"""

from __future__ import annotations

import json

import pytest
import rasterio
from pyproj import Transformer

from cli.map import main
from tests.support.mapping import BANDS, dataset_record
from tests.support.scenes import undated_copy
from training.modelfile import ModelMeta, save_model_file
from training.models import create_model


def _model(path, grid, window=None, norm="training", **recipe):
    kwargs = {"widths": [4, 8, 8, 16, 16]}
    record = dataset_record(grid, backend="local")
    record["recipe"] = {**record["recipe"], **recipe}
    meta = ModelMeta("unet", len(BANDS), 2, BANDS, (0.0,) * 6, (1.0,) * 6, model_kwargs=kwargs,
                     extra={"dataset": record}, window=window, norm=norm)
    return save_model_file(path, create_model("unet", len(BANDS), 2, **kwargs), meta)


@pytest.mark.slow
def test_undated_scenes_take_the_scene_date_or_the_models_recorded_one(tmp_path, capsys):
    from gee_export.local.synthetic import generate_scene

    scene = generate_scene(tmp_path / "scene", width=96, height=96, progress=False)
    undated = undated_copy(tmp_path / "scene", tmp_path / "undated")
    to_ll = Transformer.from_crs(scene.grid.crs, "EPSG:4326", always_xy=True)
    box = ",".join(f"{v:.6f}" for v in to_ll.transform_bounds(*scene.grid.bounds))
    plain = _model(tmp_path / "plain.pt", scene.grid)
    common = ["--bbox", box, "--out", str(tmp_path / "o"), "--backend", "local", "--scenes",
              str(undated), "--months", "2019-06", "--dry-run", "-q"]
    assert main([*common, "--model", str(plain)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--scene-date YYYY-MM-DD" in err[0], err
    assert main([*common, "--model", str(plain), "--scene-date", "2019-06-10"]) == 0
    assert "2019-06   Sentinel-2" in capsys.readouterr().out
    dated = _model(tmp_path / "dated.pt", scene.grid, scene_date="2019-06-10")
    assert main([*common, "--model", str(dated)]) == 0  # the date the export recorded
    assert main([*common, "--model", str(dated), "--scene-date", "2019-07-10"]) == 2
    assert "2019-06: no Sentinel-2 scene" in capsys.readouterr().err  # the given date wins
    assert main([*common[:-1], "--backend", "ee", "--model", str(plain), "--allow-l1c"]) == 2
    assert ("--allow-l1c describes local scene files: use it with --backend local"
            in capsys.readouterr().err)


def test_a_model_that_records_its_tile_is_refused_another_before_anything_runs(tmp_path,
                                                                                capsys):
    from gee_export.local.synthetic import generate_scene

    scene = generate_scene(tmp_path / "scene", width=96, height=96, progress=False)
    to_ll = Transformer.from_crs(scene.grid.crs, "EPSG:4326", always_xy=True)
    box = ",".join(f"{v:.6f}" for v in to_ll.transform_bounds(*scene.grid.bounds))
    model = _model(tmp_path / "m.pt", scene.grid, window=128, scene_date="2019-06-10")
    common = ["--bbox", box, "--out", str(tmp_path / "o"), "--backend", "local", "--scenes",
              str(tmp_path / "scene"), "--months", "2019-06", "--dry-run", "-q", "--model",
              str(model)]
    assert main([*common, "--tile", "64", "--overlap", "16"]) == 2
    err = capsys.readouterr().err
    assert "its maps are made on 128 px tiles; --tile 64 would make another map" in err
    assert "--any-tile" not in err  # an isamap-predict flag: isamap-map makes no other map
    assert main([*common, "--tile", "128", "--overlap", "16"]) == 0


def test_a_scene_normalised_model_maps_local_scenes_and_plans_its_statistics_on_ee(tmp_path,
                                                                                   capsys):
    from gee_export.local.synthetic import generate_scene

    scene = generate_scene(tmp_path / "scene", width=96, height=96, progress=False)
    to_ll = Transformer.from_crs(scene.grid.crs, "EPSG:4326", always_xy=True)
    box = ",".join(f"{v:.6f}" for v in to_ll.transform_bounds(*scene.grid.bounds))
    model = _model(tmp_path / "m.pt", scene.grid, norm="scene", scene_date="2019-06-10")
    common = ["--bbox", box, "--out", str(tmp_path / "o"), "--months", "2019-06", "-q",
              "--model", str(model), "--tile", "64", "--overlap", "16"]
    # tiles fetched one by one: Earth Engine is asked for the statistics, one request a date
    # (a dry run sends nothing, so no account is needed)
    assert main([*common, "--backend", "ee", "--dry-run", "--allow-recipe-mismatch"]) == 0
    out = capsys.readouterr().out
    assert "scene     1 reduceRegion per date, before its first tile" in out
    assert "sampled at 10 m" in out and not (tmp_path / "o").exists()
    local = [*common, "--backend", "local", "--scenes", str(tmp_path / "scene")]
    assert main([*local, "--dry-run"]) == 0  # the plan times the model before any stack
    assert "reduceRegion" not in capsys.readouterr().out  # the stack file is sampled
    assert main(local) == 0
    (prob,) = (tmp_path / "o").rglob("*_prob.tif")
    with rasterio.open(prob) as ds:
        assert json.loads(ds.tags()["normalisation"])["by"] == "scene"
