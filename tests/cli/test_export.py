"""The export command: dry run and Code Editor offline, the auth error, the local backend."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pyproj import Transformer

from cli.export import main
from contract.dataset import read_index, read_manifest
from contract.grid import Grid
from gee_export.local.synthetic import generate_scene

REPO = Path(__file__).resolve().parents[2]


def run_script(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if k not in ("GOOGLE_APPLICATION_CREDENTIALS", "EE_PROJECT")}
    env.update(HOME=str(home), NO_GCE_CHECK="True")
    return subprocess.run([sys.executable, "export_patches.py", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


def _offline(monkeypatch, home: Path) -> None:
    """The environment ``run_script`` gives its process: no credentials, ``home`` as HOME."""
    for name in ("GOOGLE_APPLICATION_CREDENTIALS", "EE_PROJECT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("NO_GCE_CHECK", "True")


def test_dry_run_wuhan_offline(tmp_path, capsys, monkeypatch):
    # in-process: the script's own process is run by test_unauthenticated_run_explains_what_to_do
    _offline(monkeypatch, tmp_path)
    code = main(["--region", "wuhan", "--dry-run"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    out = captured.out
    assert "nothing was sent to Earth Engine" in out
    assert "EPSG:32650, 13781 x 15837 px of 10 m" in out  # UTM 50N, the CroFuseNet extent
    assert "128 px every 80 px: 33,687 positions" in out
    assert "B2, B3, B4, B8, VV, VH + label" in out and "2019-06" in out
    assert "computePixels requests (1 per patch" in out and "max 40" in out
    assert "GB uncompressed" in out


def test_a_dry_run_of_2017_says_earth_engine_l2a_is_not_global_before_2019(tmp_path, capsys,
                                                                            monkeypatch):
    _offline(monkeypatch, tmp_path)
    code = main(["--bbox", "114.2,30.5,114.25,30.55", "--months", "2017-06,2019-06",
                 "--dry-run"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "warning: month(s) 2017-06: Earth Engine's Sentinel-2 L2A " \
           "(COPERNICUS/S2_SR_HARMONIZED) is global only from 2019" in captured.err


@pytest.mark.slow
def test_unauthenticated_run_explains_what_to_do(tmp_path):
    proc = run_script("--bbox", "114.2,30.5,114.25,30.55", "--project", "my-project",
                      "--out", str(tmp_path / "out"), home=tmp_path)
    assert proc.returncode == 1  # the environment (credentials), not the command line
    err = proc.stderr
    for needle in ("earthengine authenticate", "GOOGLE_APPLICATION_CREDENTIALS", "--project",
                   "--backend local", "Earth Engine is not authenticated"):
        assert needle in err, needle
    assert "Traceback" not in err
    proc = run_script("--bbox", "114.2,30.5,114.25,30.55", home=tmp_path)
    assert proc.returncode == 1 and "no --project given" in proc.stderr


def test_code_editor_script(tmp_path, capsys):
    assert main(["--region", "wuhan", "--code-editor", "--out", str(tmp_path),
                 "--labels", "ghsl:0.3"]) == 0
    script = (tmp_path / "code_editor_wuhan_2019-06.js").read_text()
    assert script in capsys.readouterr().out  # printed as well as written
    for needle in ("COPERNICUS/S2_SR_HARMONIZED", "COPERNICUS/S1_GRD_FLOAT", "cs_cdf",
                   ".gte(0.6)", "mean().log10().multiply(10)", "JRC/GHSL/P2023A/GHS_BUILT_S",
                   "min: 0, max: 0.3", "min: [-25, -30, -25]", "Map.addLayer", "EPSG:32650",
                   "2019-06-01", "30.63993"):
        assert needle in script, needle
    assert script.count("(") == script.count(")") and script.count("{") == script.count("}")


def test_local_backend_through_the_same_command(tmp_path):
    scene = generate_scene(tmp_path / "scene", width=256, height=256, fine_scale=2)
    to_ll = Transformer.from_crs(scene.grid.crs, "EPSG:4326", always_xy=True)
    west, south, east, north = to_ll.transform_bounds(*scene.grid.bounds)
    out = tmp_path / "dataset"
    code = main(["--backend", "local", "--scenes", str(tmp_path / "scene"), "--bbox",
                 f"{west},{south},{east},{north}", "--out", str(out), "--speckle", "boxcar",
                 "--min-valid-fraction", "0.5", "--no-progress"])
    assert code == 0
    records = read_index(out)
    assert records and all(r["month"] == "2019-06" for r in records)
    manifest = read_manifest(out)
    assert manifest["backend"] == "local" and manifest["bands"] == [
        "B2", "B3", "B4", "B8", "VV", "VH"]
    # what the month was built from travels with it: scenes by product and date, no folder
    scenes = manifest["sources"]["2019-06"]["scenes"]
    assert {s["sensor"] for s in scenes} == {"S1", "S2"}
    assert all(s["date"].startswith("2019-06") and s["product"] for s in scenes)
    assert str(tmp_path) not in json.dumps(manifest)
    # the region's grid, recorded: the bbox's grid in the scene's UTM zone, on the scene's 10 m
    # pixel lattice, covering the scene (the lon/lat round trip only widens it a little), with
    # the default 128 px patches every 80 px
    grid = Grid.from_dict(manifest["grid"])
    assert grid == Grid.from_lonlat_bounds((west, south, east, north))
    assert (grid.crs, grid.resolution, grid.patch_size, grid.stride) == (
        scene.grid.crs, 10.0, 128, 80)
    assert (grid.x0 - scene.grid.x0) % 10.0 == 0 and (grid.y0 - scene.grid.y0) % 10.0 == 0
    gw, gs, ge, gn = grid.bounds
    sw, ss, se, sn = scene.grid.bounds
    assert gw <= sw and gs <= ss and ge >= se and gn >= sn
    assert max(sw - gw, ss - gs, ge - se, gn - sn) < 100.0
    assert {r["id"] for r in records} <= {f"r{r}_c{c}" for r, c in grid.iter_patches()}
    for rec in records:
        assert rec["bounds"] == list(grid.patch_bounds(rec["row"], rec["col"]))


def test_runner_dry_run_prints_the_beam_job_offline(capsys):
    pytest.importorskip("apache_beam")
    assert main(["--bbox", "114.2,30.5,114.3,30.6", "--dry-run", "--runner", "dataflow",
                 "--project",
                 "isamap-test", "--dataflow-region", "us-central1", "--temp-location",
                 "gs://isamap-tmp/t", "--out", "gs://b/wuhan", "--max-workers", "8", "--container",
                 "gcr.io/p/isamap:1"]) == 0
    out = capsys.readouterr().out
    assert "up to 8 workers x 5 requests = 40 concurrent (--max-concurrent 40)" in out
    assert "--runner=DataflowRunner --max_num_workers=8" in out and "--dry_run" not in out
    assert "computePixels requests (1 per patch" in out and "40 concurrent (max 40)" in out


def test_a_local_export_without_an_area_plans_what_the_scenes_cover(tmp_path, capsys, caplog):
    """It planned the paper's default region (21,825 km² around Wuhan) for a 59 km² scene."""
    import logging

    scene = generate_scene(tmp_path / "scene", width=160, height=160, fine_scale=2,
                           progress=False)
    with caplog.at_level(logging.INFO, logger="cli.export"):
        assert main(["--backend", "local", "--scenes", str(tmp_path / "scene"), "--month",
                     "2019-06", "--dry-run"]) == 0
    plan = capsys.readouterr().out
    assert "for region 'scene'" in plan and "wuhan" not in plan.lower()
    assert "the area is what the scenes in" in caplog.text
    width, height = (int(v) for v in plan.split("grid        ")[1].split(" px")[0]
                     .split(", ")[1].split(" x "))
    assert width <= scene.grid.width and height <= scene.grid.height  # at most the scene
    assert width * height >= 0.9 * scene.grid.width * scene.grid.height


def test_dry_run_states_wall_time_from_the_latency_and_where_the_budget_stops(capsys):
    args = ["--bbox", "114.2,30.5,114.3,30.6", "--dry-run", "--method", "pixels",
            "--workers", "20", "--out", "gs://b/x"]
    assert main([*args, "--latency", "2", "--max-eecu-hours", "0.001"]) == 0
    out = capsys.readouterr().out
    requests = int(out.split("  requests    ")[1].split(" ")[0].replace(",", ""))
    assert f"{requests:,} requests x 2 s / 20 in flight (--latency sets" in out
    assert "then asked as two halves" in out  # the time-out rule
    assert "--max-eecu-hours 0.001: the run stops after about" in out
    assert main([*args, "--max-eecu-hours", "1000"]) == 0
    assert "the whole job fits" in capsys.readouterr().out
    assert main([*args, "--max-eecu-hours", "1000", "--runner", "direct"]) == 0  # Beam too
