"""Every example in configs/ runs as written on the demo's files, through its command.

The configs name the paths ``make demo`` writes (``demo_output/patches``, the scenes, the demo
model), relative to where the command runs. The session fixture lays out a ``demo_output/`` the
way the demo does (its own steps: synthetic scenes at two dates, the local-backend stack, the
patches, the demo model), only smaller: a 256 px scene cut into 64 px patches. Each test runs
in that folder with the file unchanged, adding only a budget (one iteration, a small batch,
fp32 on the CPU; for the recipes that are costly even so, fewer members, a narrower network or
smaller crops, as FILE_BUDGET says) on the command line, where a flag overrides the file. The
tests that read the folder run on one test worker (``xdist_group``), so it is made once.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import rasterio
import yaml

from core.config_file import read_config_file

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TRAIN_CONFIGS = sorted(p.name for p in CONFIGS.glob("train-*.yaml"))
# the demo scene is cut into 64 px patches instead of 128 (4 x 4 patches on 256 px), so every
# recipe trains an iteration in seconds; 256 px holds the map config's 1.4 km box
SCENE_SIZE, PATCH_SIZE = 256, 64
BUDGET = ["--max-iterations", "1", "--batch-size", "2", "--workers", "0", "--device", "cpu",
          "--precision", "fp32", "--channels-last", "off", "--no-progress", "-q"]
# A budget over a file's own values, given as flags the way a user tries a recipe on a CPU
# (--members, --model-kwargs, --crop-size): what the file says is checked to be what the command
# starts with (cli.train.started_config), the flag to be what the run resolves. Each recipe's
# loss, optimiser, schedule, label and the rest of its model stay the file's.
FILE_BUDGET: dict[str, dict] = {
    # nine members are nine seeds of one training joined into one file: two members show the
    # same training, folders and join, at two ninths of the time
    "train-unet-s2.yaml": {"members": 2},
    # the paper's width, 32..512 channels (a 139 MB model file, a 415 MB checkpoint): the
    # demo's 8..128 (9 MB, 27 MB); 5.3 -> 2.2 CPU-seconds, and the Earth Engine dry run,
    # which maps with this run's model, loads and times a model a sixteenth the size
    "train-crofusenet.yaml": {"model_kwargs": {"widths": [8, 16, 32, 64, 128]}},
    # Table 2's decoder (1024..128 channels) and a 256-channel ASPP on the ResNet-50 encoder:
    # 73M parameters, a 294 MB model file and an 880 MB checkpoint, written and read back in
    # seconds; a decoder of 128..16 and a 32-channel ASPP on the same encoder are 27M
    # (104 MB, 312 MB): 8.6 -> 4.2 CPU-seconds
    "train-runetpp.yaml": {"model_kwargs": {"aspp_channels": 32,
                                            "decoder_channels": [128, 64, 32, 16]}},
    # width 24 (a 65 MB model file, a 130 MB checkpoint): 8 (9 MB, 18 MB)
    "train-hrnet.yaml": {"model_kwargs": {"width": 8}},
    # the 1 m output is ten times the input: a 64 px patch is 640 x 640 px at every upsampling
    # stage; 32 px training crops (320 px) cut the training step by three quarters (13.8 ->
    # 6.8 CPU-seconds); validation and calibration still see the whole patches
    "train-srseg.yaml": {"crop_size": 32},
}


def file_budget(name: str) -> tuple[list[str], dict]:
    """FILE_BUDGET's flags for ``name`` and the values they resolve to (a model_kwargs flag
    holds the file's own keys beside its own: it replaces the file's mapping, as typed)."""
    written = read_config_file(CONFIGS / name)
    flags, values = [], {}
    for key, value in FILE_BUDGET.get(name, {}).items():
        if key == "model_kwargs":
            value = {**written.get("model_kwargs", {}), **value}
        flags += ["--" + key.replace("_", "-"),
                  json.dumps(value) if isinstance(value, dict) else str(value)]
        values[key] = value
    return flags, values


# the demo folder is made once, on the worker that runs every test reading it
ON_THE_DEMO_FOLDER = pytest.mark.xdist_group("configs_demo_folder")


@pytest.fixture(scope="session")
def demo_folder(tmp_path_factory) -> Path:
    """A folder holding ``demo_output/`` as ``make demo`` writes it, scene 256 px, 64 px patches."""
    from inference.demo.steps import DemoContext, step_patches, step_scene, step_stack, step_train

    root = tmp_path_factory.mktemp("configs")
    ctx = DemoContext(root / "demo_output", size=SCENE_SIZE, workers=1, epochs=1,
                      threads=1, progress=False)
    step_scene(ctx)
    step_stack(ctx)
    stack = ctx.need_stack()
    ctx.stack = dataclasses.replace(stack, grid=dataclasses.replace(
        stack.grid, patch_size=PATCH_SIZE, stride=PATCH_SIZE))
    step_patches(ctx)
    step_train(ctx)  # the demo model the map config names
    return root


@pytest.fixture(scope="session")
def crofusenet_run(demo_folder) -> tuple[int, str]:
    """``train-crofusenet.yaml`` run once on the budget (and FILE_BUDGET's) in the demo folder:
    its exit code and stderr. Its test checks the run folder; the Earth Engine dry run maps with
    its model (the header's ``--epochs 1`` changes nothing under ``--max-iterations 1``, which
    replaces the epochs: the same training, which ran twice before)."""
    import contextlib
    import io
    import os

    from cli.train import train_main

    err, here = io.StringIO(), os.getcwd()
    os.chdir(demo_folder)
    try:
        with contextlib.redirect_stderr(err):
            code = train_main(["--config", str(CONFIGS / "train-crofusenet.yaml"), *BUDGET,
                               *file_budget("train-crofusenet.yaml")[0]])
    finally:
        os.chdir(here)
    return code, err.getvalue()


def test_there_is_a_config_per_model_recipe_and_mapping_job():
    from training.models import available_models

    models = {read_config_file(CONFIGS / name)["model"] for name in TRAIN_CONFIGS}
    assert models == {"crofusenet", "unet", "unet-s2", "unet-s1", "runetpp", "hrnet", "srseg"}
    assert models <= set(available_models())
    assert {p.name for p in CONFIGS.glob("map-*.yaml")} == {"map-demo.yaml", "map-ee.yaml"}
    for path in CONFIGS.glob("*.yaml"):  # commented: a header saying what it is and how to run
        text = path.read_text()
        assert text.startswith("# ") and "--config configs/" + path.name in text, path.name


@pytest.mark.slow
@ON_THE_DEMO_FOLDER
@pytest.mark.parametrize("name", TRAIN_CONFIGS)
def test_training_config_runs_as_written_and_its_run_folder_keeps_the_resolved_config(
        demo_folder, name, monkeypatch, capsys, request):
    from cli.train import started_config, train_main
    from training.config import apply_recipe, config_from_mapping, option_keys, read_train_config
    from training.modelfile import read_model_file

    monkeypatch.chdir(demo_folder)
    written = option_keys(read_config_file(CONFIGS / name), name)  # out: is out_dir
    flags, flagged = file_budget(name)  # a flag lowers the file's members, width or crops
    started = started_config(["--config", str(CONFIGS / name), *BUDGET])
    for key in flagged:  # without the flag, the command starts with the file's value
        assert started.option(key) == written.get(key), key
    members = flagged.get("members", written.get("members", 1))
    budget = [*BUDGET, *flags]
    if name == "train-crofusenet.yaml":  # shared with the Earth Engine dry run
        code, err = request.getfixturevalue("crofusenet_run")
    else:
        code = train_main(["--config", str(CONFIGS / name), *budget])
        err = capsys.readouterr().err
    assert code == 0, err
    joined = demo_folder / written["out_dir"]
    assert (joined / "model.pt").stat().st_size > 0
    # a recipe that joins several trainings (unet-s2's nine) keeps each in a run folder of
    # its own under the one it was given, each as one training's; the first stands for all
    run = joined / "member0" if members > 1 else joined
    assert (run / "learning_curves.png").exists()
    if members > 1:
        written = {**written, "members": 1, "out_dir": f"{written['out_dir']}/member0"}
        flagged = {k: v for k, v in flagged.items() if k != "members"}  # the joined run's
        assert read_model_file(joined / "model.pt")[0].model_kwargs["members"] == members

    resolved_file = run / "config.yaml"
    resolved = yaml.safe_load(resolved_file.read_text())
    overridden = {"max_iterations": 1, "batch_size": 2, "num_workers": 0, "device": "cpu",
                  "precision": "fp32", "channels_last": "off", **flagged}
    assert resolved["progress"] is True  # --no-progress is how it ran once, not the run's
    for key, value in {**written, **overridden}.items():  # the file, the flags on top
        if key not in ("data", "out_dir"):
            assert resolved[key] == value, key
    meta, _ = read_model_file(run / "model.pt")
    recorded = json.loads(json.dumps(meta.extra["config"]))

    def absolute(config: dict, base=demo_folder) -> dict:  # the folders, from here
        return {**config, **{k: str((base / config[k]).resolve())
                             for k in ("data", "out_dir")}}

    # beside the model: what the model file records (its folders relative to itself, read
    # back as full paths; config.yaml names them from its own folder, the run folder)
    assert resolved.pop("paths_relative_to_this_file") is True
    assert absolute(resolved, run) == absolute(recorded)
    assert absolute(resolved, run) == absolute(written) | {
        k: v for k, v in absolute(resolved, run).items() if k not in ("data", "out_dir")}
    # read back with --config, it is the same run (the recipe is already filled in)
    again = apply_recipe(config_from_mapping(read_train_config(resolved_file)))
    assert absolute(json.loads(json.dumps(again.to_dict()))) == absolute(recorded)


@pytest.mark.slow
@ON_THE_DEMO_FOLDER
def test_demo_mapping_config_maps_both_dates_as_written(demo_folder, monkeypatch, capsys):
    from cli.map import main

    monkeypatch.chdir(demo_folder)
    code = main(["--config", str(CONFIGS / "map-demo.yaml"), "--precision", "fp32",
                 "--channels-last", "off", "--no-progress", "-q"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    summary = json.loads(captured.out[captured.out.index("\n{") + 1:])
    assert sorted(summary["dates"]) == ["2019-06", "2021-06"]
    maps = demo_folder / "maps" / "demo"
    for month in ("2019-06", "2021-06"):
        with rasterio.open(maps / month / f"isa_{month}_class.tif") as src:
            classes = src.read(1)
            width_m = src.width * src.res[0]
        assert set(np.unique(classes).tolist()) <= {0, 1, 255} and (classes != 255).mean() > 0.9
        assert 1300 <= width_m <= 1600  # the file's 1.4 km box, on the model's 10 m lattice
    assert (maps / "change" / "isa_change_2019-06_2021-06.tif").exists()
    with (maps / "series_area.csv").open() as fh:
        assert [row["date"] for row in csv.DictReader(fh)] == ["2019-06", "2021-06"]


def test_earth_engine_mapping_config_plans_offline(tmp_path, monkeypatch, capsys):
    """The Earth Engine job's dry run (no account): its region, dates and tiling as written."""
    from cli.map import main
    from contract.grid import Grid
    from contract.regions import get_region
    from tests.support.mapping import model_file

    monkeypatch.chdir(tmp_path)
    written = read_config_file(CONFIGS / "map-ee.yaml")
    grid = Grid.from_lonlat_bounds(get_region(written["region"]).bbox)
    model_file(tmp_path / written["model"], grid)  # a model of an Earth Engine export, as named
    code = main(["--config", str(CONFIGS / "map-ee.yaml"), "--dry-run", "-q"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    plan = json.loads(captured.out[captured.out.rindex("\n{"):])
    assert "2017-06, 2019-06, 2021-06, 2023-06" in captured.out
    assert "month(s) 2017-06: Earth Engine's Sentinel-2 L2A (COPERNICUS/S2_SR_HARMONIZED) is " \
           "global only from 2019" in captured.err  # the catalogue's caveat, said when run
    assert plan["compute"]["requests"] == 4 * plan["requests_per_date"] > 0
    assert not (tmp_path / written["out"]).exists()


def test_earth_engine_mapping_config_dry_run_without_a_model_says_to_train_one(
        tmp_path, monkeypatch, capsys):
    """From a clean folder the dry run names what it plans from and the command that writes it."""
    from cli.map import main

    monkeypatch.chdir(tmp_path)
    code = main(["--config", str(CONFIGS / "map-ee.yaml"), "--dry-run", "-q"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "--model runs/crofusenet/model.pt does not exist" in err
    assert "isamap-train --config configs/train-" in err
    assert not (tmp_path / "maps").exists()


@pytest.mark.slow
@ON_THE_DEMO_FOLDER
def test_earth_engine_mapping_config_dry_run_as_its_header_says_with_the_demo(
        demo_folder, crofusenet_run, tmp_path, monkeypatch, capsys):
    """The header's offline route: the demo's patches, a stand-in model, the dry run.

    The dry run times the model on one tile; ``--tile 128`` (a budget flag over the file's
    512) makes that 16 times cheaper (the paper-width CroFuseNet's three 512 px forwards took
    30 s on one thread; the crofusenet run is at the demo's width, FILE_BUDGET). The file's
    own tile is planned by test_earth_engine_mapping_config_plans_offline.
    """
    from cli.map import main

    # a folder of its own beside the demo's output and the crofusenet run (crofusenet_run:
    # the header's training on the budget, shared with that config's test)
    (tmp_path / "demo_output").symlink_to(demo_folder / "demo_output")
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "crofusenet").symlink_to(demo_folder / "runs" / "crofusenet")
    monkeypatch.chdir(tmp_path)
    header = (CONFIGS / "map-ee.yaml").read_text()
    assert "isamap-train --config configs/train-crofusenet.yaml --epochs 1" in header
    assert "isamap-map --config configs/map-ee.yaml --dry-run --allow-recipe-mismatch" in header
    code, err = crofusenet_run
    assert code == 0, err
    capsys.readouterr()
    code = main(["--config", str(CONFIGS / "map-ee.yaml"), "--dry-run",
                 "--allow-recipe-mismatch", "--tile", "128", "-q"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    plan = json.loads(captured.out[captured.out.rindex("\n{"):])
    assert plan["dates"] == ["2017-06", "2019-06", "2021-06", "2023-06"]
    assert plan["requests_per_date"] > 0 and plan["region"] == "wuhan"
    assert not (tmp_path / "maps" / "wuhan").exists()


@pytest.mark.parametrize(("text", "message"), [
    ("tile: big\n", "map.yaml: tile must be a whole number, got 'big'"),
    ("tile: 1.5\n", "map.yaml: tile must be a whole number, got 1.5"),
    ("verbose: 2.5\n", "map.yaml: verbose must be a whole number, got 2.5"),
    ("verbose: -1\n", "map.yaml: verbose must be a whole number >= 0, got -1"),
    ("backend: gee\n", "map.yaml: backend must be one of ee, local, got 'gee'"),
    ("regoin: wuhan\n", "map.yaml: unknown option 'regoin'; did you mean 'region'?"),
    ("colour: red\n", "map.yaml: unknown option 'colour'; known: allow_implausible, allow_l1c,"),
    ("dry_run: yes please\n", "map.yaml: dry_run must be true or false"),
    ("- a list\n", "config file map.yaml must hold a mapping of option: value"),
])
def test_a_bad_mapping_config_is_one_line_with_exit_code_2(text, message, tmp_path,
                                                           monkeypatch, capsys):
    from cli.map import main

    monkeypatch.chdir(tmp_path)
    Path("map.yaml").write_text(text)
    with pytest.raises(SystemExit) as stop:
        main(["--config", "map.yaml", "--model", "m.pt", "--out", "o", "--months", "2019-06"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.startswith("isamap-map: error: ") and message in err
    assert len(err.strip().splitlines()) == 1


def test_a_verbosity_count_in_a_mapping_config_sets_the_level(tmp_path, monkeypatch, capsys):
    """``verbose: 2`` reached the logging set-up as the text '2': a TypeError traceback."""
    from cli.map import main

    monkeypatch.chdir(tmp_path)
    Path("map.yaml").write_text("verbose: 2\nmodel: m.pt\nout: o\nbbox: 114.26,30.55,114.28,30.56"
                                "\nmonths: 2019-06\n")
    code = main(["--config", "map.yaml", "--dry-run"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, err
    assert "--model m.pt does not exist" in err
    assert logging.getLogger("inference").level == logging.DEBUG  # -vv: isamap's debug


def test_flags_given_override_the_mapping_config(tmp_path, monkeypatch):
    from cli.map import build_parser
    from core.config_file import parse_with_config

    monkeypatch.chdir(tmp_path)
    Path("map.yaml").write_text("model: a.pt\nout: maps\ntile: 256\nreader: user:a@b.com\n"
                                "temporal_consistency: true\n")
    args = parse_with_config(build_parser(), ["--config", "map.yaml", "--tile", "128"])
    assert (args.model, args.out, args.tile) == ("a.pt", "maps", 128)
    assert args.overlap is None  # not given: it follows the tile (64 for this one)
    # true is the flag given alone, as before it took a rule
    assert args.reader == ["user:a@b.com"] and args.temporal_consistency == "monotone"
    Path("map.yaml").write_text("model: a.pt\nout: maps\ntemporal_consistency: stretches\n")
    assert parse_with_config(build_parser(), ["--config", "map.yaml"]).temporal_consistency \
        == "stretches"
    Path("map.yaml").write_text("model: a.pt\nout: maps\ntemporal_consistency: false\n")
    assert parse_with_config(build_parser(), ["--config", "map.yaml"]).temporal_consistency \
        is None
    Path("map.yaml").write_text("model: a.pt\nout: maps\ntemporal_consistency: always\n")
    with pytest.raises(SystemExit):
        parse_with_config(build_parser(), ["--config", "map.yaml"])


@pytest.mark.parametrize(("text", "says"), [
    ("batch_szie: 8\n", "unknown option 'batch_szie'; did you mean 'batch_size'?"),
    ("batch_size: 1.5\n", "batch_size must be a whole number, got 1.5"),
    ("batch_size: true\n", "batch_size must be a whole number, got True"),
    ("precision: fp64\n", "precision must be one of auto, fp32, bf16, fp16"),
    ("autotune_cache: yes please\n", "autotune_cache must be true or false, got 'yes please'"),
])
def test_train_and_map_configs_are_checked_by_one_schema_rule(text, says, tmp_path, monkeypatch,
                                                              capsys):
    """The same fault in either command's file is the same one line (issue 69: one schema)."""
    from cli.map import main as map_main
    from cli.train import train_main

    monkeypatch.chdir(tmp_path)
    Path("c.yaml").write_text(text)
    assert train_main(["--config", "c.yaml", "--data", "ds"]) == 2
    train_err = capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:
        map_main(["--config", "c.yaml", "--model", "m.pt", "--out", "o", "--months", "2019-06"])
    map_err = capsys.readouterr().err
    assert stop.value.code == 2
    for err, prog in ((train_err, "isamap-train"), (map_err, "isamap-map")):
        assert err.startswith(f"{prog}: error: c.yaml: {says}"), err
        assert len(err.strip().splitlines()) == 1
    assert not Path("runs").exists() and not Path("o").exists()


@pytest.mark.parametrize(("argv", "says"), [
    (["--config", "c.yaml"], "c.yaml: batch_size must be >= 1, got 0"),
    (["--config", "c.yaml", "--batch-size", "-2"], "--batch-size must be >= 1, got -2"),
    (["--config", "c.yaml", "--batch-size", "2", "--lr", "0"], "--lr must be positive, got 0.0"),
])
def test_a_value_out_of_range_names_the_files_key_or_the_flag(argv, says, tmp_path, monkeypatch,
                                                              capsys):
    """A walk: ``batch_size: 0`` in a --config file was told "--batch-size must be >= 1",
    naming a flag that was never typed and no file or value."""
    from cli.train import train_main

    monkeypatch.chdir(tmp_path)
    Path("c.yaml").write_text("data: ds\nbatch_size: 0\n")
    assert train_main(argv) == 2
    assert capsys.readouterr().err == f"isamap-train: error: {says}\n"


@pytest.mark.parametrize(("typed", "says"), [
    ([], "map.yaml: tile must be at least 8 pixels, got -256"),
    (["--tile=-300"], "--tile must be at least 8 pixels, got -300"),
    ([], "map.yaml: batch_size must be >= 1, got 0"),
])
def test_a_mapping_configs_value_out_of_range_names_the_files_key_or_the_flag(
        typed, says, tmp_path, monkeypatch, capsys):
    """``tile: -256`` in an ``isamap-map --config`` file was told "--tile must be at least 8
    pixels", naming a flag that was never typed (isamap-train's file already named its key)."""
    from cli.map import main

    monkeypatch.chdir(tmp_path)
    key = "batch_size: 0" if "batch_size" in says else "tile: -256"
    Path("map.yaml").write_text(f"{key}\nmodel: m.pt\nout: o\nbackend: local\nscenes: s\n"
                                "bbox: 114.26,30.55,114.28,30.56\nmonths: 2019-06\n")
    assert main(["--config", "map.yaml", *typed]) == 2
    assert capsys.readouterr().err == f"isamap-map: error: {says}\n"
    assert not Path("o").exists()


def test_yaml_merge_keys_are_no_duplicates(tmp_path):
    """A key that overrides one merged in (``<<: *base``) is YAML's own override, not a key
    given twice."""
    from core.config_file import read_config_file

    path = tmp_path / "c.yaml"
    path.write_text("base: &b {epochs: 2, lr: 0.1}\nrun:\n  <<: *b\n  epochs: 3\n")
    assert read_config_file(path)["run"] == {"epochs": 3, "lr": 0.1}


@pytest.mark.parametrize(("text", "says"), [
    ("epochs: [1\n", "line 2, column 1: expected ',' or ']', but got '<stream end>' (while "
                     "parsing a flow sequence from line 1, column 9)"),
    ("a: b: c\n", "line 1, column 5: mapping values are not allowed here"),
    # a walk: PyYAML kept the last of two epochs and the run trained 3 epochs, silently
    ("epochs: 2\nepochs: 3\n", "line 2, column 1: 'epochs' is given twice (first on line 1): "
                               "keep one"),
])
def test_invalid_yaml_is_one_line_where_and_what_in_both_commands(text, says, tmp_path,
                                                                   monkeypatch, capsys):
    """PyYAML's several-line report (with its excerpt of the file) followed the first line."""
    from cli.map import main as map_main
    from cli.train import train_main

    monkeypatch.chdir(tmp_path)
    Path("bad.yaml").write_text(text)
    assert train_main(["--config", "bad.yaml", "--data", "ds"]) == 2
    train_err = capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:
        map_main(["--config", "bad.yaml", "--model", "m.pt", "--out", "o", "--months",
                  "2019-06"])
    assert stop.value.code == 2
    for err, prog in ((train_err, "isamap-train"), (capsys.readouterr().err, "isamap-map")):
        assert err.strip() == f"{prog}: error: config file bad.yaml is not valid YAML: {says}"


def test_a_dashed_key_and_yaml_switch_words_read_alike_in_both_commands(tmp_path):
    from cli.map import build_parser
    from core.config_file import parse_with_config
    from training.config import config_from_mapping, read_train_config

    (tmp_path / "c.yaml").write_text("batch-size: 4\nchannels_last: off\n")
    args = parse_with_config(build_parser(), ["--config", str(tmp_path / "c.yaml"), "--model",
                                              "m.pt", "--out", "o", "--months", "2019-06"])
    cfg = config_from_mapping({**read_train_config(tmp_path / "c.yaml"), "data": "ds"})
    assert (args.batch_size, args.channels_last) == (cfg.loop.batch_size,
                                                     cfg.runtime.channels_last) == (4, "off")



def test_a_null_value_in_a_mapping_config_is_accepted_as_before_the_schema_rule(tmp_path):
    """YAML's ``null`` (``max_eecu_hours:`` with no value) sets nothing; the schema rule
    refused it as "must be a number, got None" until each option's type allowed None."""
    from cli.map import build_parser
    from core.config_file import parse_with_config

    (tmp_path / "c.yaml").write_text("max_eecu_hours:\nworkers: null\nallow_l1c: null\n")
    args = parse_with_config(build_parser(), ["--config", str(tmp_path / "c.yaml"), "--model",
                                              "m.pt", "--out", "o", "--months", "2019-06"])
    assert args.max_eecu_hours is None and args.workers is None and not args.allow_l1c


def test_a_training_config_takes_the_flags_name_out_as_a_mapping_config_does(
        tmp_path, monkeypatch, capsys):
    """``out:`` in a training file was refused ("did you mean 'out_dir'?") though keys are the
    flags' names and a mapping file takes ``out:``; ``out_dir`` (a run's config.yaml) too."""
    from cli.train import started_config, train_main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "taken").write_text("")
    (tmp_path / "train.yaml").write_text("data: demo_output/patches\nout: taken\nworkers: 0\n")
    assert train_main(["--config", "train.yaml"]) == 2  # the run folder checked is out's
    assert capsys.readouterr().err.splitlines()[0] == (
        "isamap-train: error: --out taken is a file, not a folder; give a folder (it is "
        "created if missing)")
    started = started_config(["--config", "train.yaml"])
    assert (started.run.out_dir, started.data.num_workers) == ("taken", 0)
    (tmp_path / "both.yaml").write_text("out: runs/a\nout_dir: runs/b\n")
    assert train_main(["--config", "both.yaml"]) == 2
    assert capsys.readouterr().err.splitlines()[0] == (
        "isamap-train: error: both.yaml: out and out_dir are one option (--out); keep out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["both.yaml", "taken", "train.yaml"]
