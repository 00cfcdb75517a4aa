"""An output that is one of the command's inputs, or lies in a folder it reads, is refused.

``isamap-predict --input x_class.tif --out x`` wrote its class map over the stack it read,
``--compare-with x_class.tif --out x`` replaced the earlier map and compared the new one with
itself (no change, exit 0), ``isamap-prune --model run/model.pt --out run --resume`` "pruned"
nothing into the model's own run folder, and ``isamap-export``/``isamap-map``/``isamap-fit``
with ``--out`` inside ``--scenes`` (searched recursively) left rasters there that every later
run read as scenes, and failed on. Each is now one line, exit 2, before any work, and every
file is left as it was (``core.environment.check_apart``). The same stack given as
``--earlier-stack`` and ``--input`` made a change map of no change (exit 0); it is refused too.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from cli import export, fit, predict, prune
from cli import map as map_cli
from core.environment import check_apart
from core.errors import ConfigError
from gee_export.local.synthetic import generate_scene
from tests.support.mapping import model_file
from tests.support.rasters import smooth_stack, write_stack
from tests.support.refusals import assert_refused


def _files(root: Path) -> dict[str, str]:
    """Every file under ``root``: its path and the SHA-256 of its bytes."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def scene_and_model(tmp_path_factory) -> tuple[Path, Path]:
    """A small synthetic scene folder and a model file on its grid (made once)."""
    root = tmp_path_factory.mktemp("scene")
    scene = generate_scene(root / "scene", width=64, height=64, progress=False)
    return root / "scene", model_file(root / "local.pt", scene.grid, backend="local")


@pytest.fixture
def place(scene_and_model, tmp_path, monkeypatch) -> Path:
    """The scenes (``scene/``) and the model (``local.pt``) in the working directory."""
    scenes, model = scene_and_model
    shutil.copytree(scenes, tmp_path / "scene")
    shutil.copy(model, tmp_path / "local.pt")
    monkeypatch.chdir(tmp_path)
    return tmp_path


SMALL = ("--patch-size", "16", "--stride", "16", "-q")  # patches that fit the small scene
INSIDE_SCENES = {
    "export-same": (export.main, export.build_parser,
                    ["--backend", "local", "--scenes", "scene", *SMALL, "--out", "scene"],
                    "--out scene is --scenes scene,"),
    "export-under": (export.main, export.build_parser,
                     ["--backend", "local", "--scenes", "scene", *SMALL, "--out", "scene/S2",
                      "--dry-run"],
                     "--out scene/S2 lies inside --scenes scene,"),
    "map-under": (map_cli.main, map_cli.build_parser,
                  ["--backend", "local", "--scenes", "scene", "--months", "2019-06", "--model",
                   "local.pt", "--out", "scene/maps"], "--out scene/maps lies inside --scenes"),
    "map-dry-run": (map_cli.main, map_cli.build_parser,
                    ["--backend", "local", "--scenes", "scene", "--months", "2019-06",
                     "--model", "local.pt", "--out", "scene", "--dry-run"],
                    "--out scene is --scenes scene,"),
    "map-local-dir": (map_cli.main, map_cli.build_parser,
                      ["--backend", "local", "--scenes", "scene", "--months", "2019-06",
                       "--model", "local.pt", "--out", "maps", "--local-dir", "scene/png"],
                      "--local-dir scene/png lies inside --scenes scene,"),
    "fit-under": (fit.main, fit.build_parser,
                  ["--points", "points.csv", "--backend", "local", "--scenes", "scene",
                   "--month", "2019-06", "--out", "scene/fit"],
                  "--out scene/fit lies inside --scenes scene,"),
}


@pytest.mark.parametrize("case", list(INSIDE_SCENES))
def test_an_output_inside_the_scenes_it_reads_is_refused_and_nothing_changes(case, place,
                                                                            capsys):
    main, parser, argv, says = INSIDE_SCENES[case]
    (place / "points.csv").write_text("id,lon,lat,reference\n")
    before = _files(place)
    line = assert_refused(main(argv), capsys.readouterr().err, parser(), says)
    assert line.endswith("so its outputs would be read as input; give a "
                         f"{says.split()[0]} outside scene"), line
    assert _files(place) == before
    assert sorted(p.name for p in place.iterdir()) == ["local.pt", "points.csv", "scene"]


@pytest.fixture
def stack_place(scene_and_model, tmp_path, monkeypatch) -> Path:
    """A stack named like a class map (``x_class.tif``), a map ``a_class.tif``, a model."""
    monkeypatch.chdir(tmp_path)
    write_stack(tmp_path / "x_class.tif", smooth_stack(32, 32))
    write_stack(tmp_path / "a_class.tif", smooth_stack(32, 32, seed=1))
    write_stack(tmp_path / "a_prob.tif", smooth_stack(32, 32, seed=2))
    shutil.copy(scene_and_model[1], tmp_path / "local.pt")
    return tmp_path


@pytest.mark.parametrize(("argv", "says"), [
    (["--input", "x_class.tif", "--out", "x"],
     "--out x writes x_class.tif, which is --input x_class.tif: the run would overwrite its "
     "own input; give another --out"),
    (["--input", "x_class.tif", "--out", "a", "--compare-with", "a_class.tif"],
     "--out a writes a_class.tif, which is --compare-with a_class.tif: the run would "
     "overwrite its own input; give another --out"),
    (["--input", "x_class.tif", "--out", "maps/x", "--local-dir", ".", "--zones",
      "x_area.json"],
     "--out maps/x writes x_area.json, which is --zones x_area.json:"),
    (["--input", "x_class.tif", "--out", "y", "--compare-with", "a_class.tif",
      "--earlier-stack", "./x_class.tif"],
     "--earlier-stack ./x_class.tif is --input: give the earlier date's stack, the one "
     "--compare-with's map was predicted from"),
], ids=["input", "compare-with", "zones-in-local-dir", "earlier-stack-is-input"])
def test_a_prediction_that_would_overwrite_its_input_is_refused(argv, says, stack_place,
                                                                capsys):
    (stack_place / "x_area.json").write_text('{"type": "FeatureCollection", "features": []}')
    before = _files(stack_place)
    line = assert_refused(predict.predict_main(["--model", "local.pt", *argv, "-q"]),
                          capsys.readouterr().err, predict.predict_parser())
    assert line.split(": error: ", 1)[1].startswith(says), line
    assert _files(stack_place) == before


def test_pruning_into_the_models_own_run_folder_is_refused(scene_and_model, tmp_path,
                                                            monkeypatch, capsys):
    """Its --resume went on with the training run there: nothing pruned, exit 0."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run").mkdir()
    shutil.copy(scene_and_model[1], tmp_path / "run" / "model.pt")
    (tmp_path / "data").mkdir()
    before = _files(tmp_path)
    line = assert_refused(prune.prune_main(["--model", "run/model.pt", "--data", "data",
                                            "--out", "run", "--resume", "-q"]),
                          capsys.readouterr().err, prune.prune_parser())
    assert line.split(": error: ", 1)[1] == (
        f"--out run writes {Path('run', 'model.pt')}, which is --model run/model.pt: the run "
        "would overwrite its own input; give another --out"), line
    assert _files(tmp_path) == before


def test_inputs_inside_the_output_or_only_named_alike_pass(tmp_path, monkeypatch):
    """What stays allowed: scenes kept inside the output folder, a stack whose name starts
    with the prefix, inputs not there yet, addresses."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "out" / "scenes").mkdir(parents=True)
    write_stack(tmp_path / "stack_2019-06_image.tif", smooth_stack(8, 8))
    check_apart(("--out", "out"), ["out"], [("--scenes", "out/scenes")])
    check_apart(("--out", "stack"), ["stack_class.tif", "stack_prob.tif"],
                [("--input", "stack_2019-06_image.tif")])
    check_apart(("--out", "out"), ["out"], [("--scenes", "missing"), ("--scenes", None),
                                            ("--scenes", "gs://bucket/scenes")])
    with pytest.raises(ConfigError, match=r"^--out out/a lies inside --scenes out/\*\*/\*.tif"):
        check_apart(("--out", "out/a"), ["out/a"], [("--scenes", "out/**/*.tif")])  # a glob
