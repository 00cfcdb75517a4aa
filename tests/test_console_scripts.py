"""What every isamap command has in common: -v/-q, one-line errors, logging, a light --help."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from cli.assess import main as assess_main
from cli.demo import main as demo_main
from cli.evaluate import evaluate_main
from cli.export import main as export_main
from cli.fit import main as fit_main
from cli.import_patches import main as import_main
from cli.map import main as map_main
from cli.predict import predict_main
from cli.prune import prune_main
from cli.publish import publish_main
from cli.train import train_main
from experiments import (
    builtup,
    data,
    headcompare,
    landcover_pruning,
    naip_patches,
    points,
    points_tune,
    presto_dates,
    temporal_consistency,
    terramesh,
)
from experiments import landcover as lccompare
from experiments import srcompare as compare
from experiments.naip import NAIP_FOLDER
from tests.support import LIBRARY_PACKAGES

REPO = Path(__file__).resolve().parents[1]
COMMANDS = {"isamap-export": export_main, "isamap-import-patches": import_main,
            "isamap-predict": predict_main,
            "isamap-publish": publish_main, "isamap-demo": demo_main,
            "isamap-train": train_main, "isamap-evaluate": evaluate_main,
            "python -m experiments.srcompare": compare.main, "isamap-map": map_main,
            "python -m experiments.headcompare": headcompare.main,
            "python -m experiments.naip_patches": naip_patches.main,
            "isamap-prune": prune_main, "python -m experiments.landcover": lccompare.main,
            "python -m experiments.landcover_pruning": landcover_pruning.main,
            "isamap-assess design": lambda argv: assess_main(["design", *argv]),
            "isamap-assess score": lambda argv: assess_main(["score", *argv]),
            "python -m experiments.temporal_consistency": temporal_consistency.main,
            "python -m experiments.builtup": builtup.main,
            "python -m experiments.terramesh": terramesh.main, "isamap-fit": fit_main,
            "python -m experiments.points": points.main,
            "python -m experiments.points_tune": points_tune.main,
            "python -m experiments.presto_dates": presto_dates.main}
# Modules that are commands: their printed output is the command's result.
COMMAND_MODULES = {*(f"cli/{p.name}" for p in (REPO / "cli").glob("*.py")),
                   "inference/demo/steps.py", "experiments/landcover.py",
                   "experiments/landcover_pruning.py", "experiments/landcover_figures.py",
                   "experiments/srcompare.py", "experiments/headcompare.py",
                   "experiments/naip_patches.py",
                   "experiments/temporal_consistency.py", "experiments/builtup.py",
                   "experiments/terramesh.py", "experiments/change_pairs.py",
                   "experiments/builtup_encoders.py", "experiments/points.py",
                   "experiments/points_tune.py",
                   "experiments/presto_dates.py"}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_has_verbose_quiet_and_debug(name, capsys):
    with pytest.raises(SystemExit) as stop:
        COMMANDS[name](["--help"])
    assert stop.value.code == 0
    text = capsys.readouterr().out
    assert "-v, --verbose" in text and "-q, --quiet" in text and "--debug" in text


def test_library_code_logs_instead_of_printing():
    offenders = []
    for package in (*LIBRARY_PACKAGES, "experiments"):
        for path in sorted((REPO / package).rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            if rel in COMMAND_MODULES:
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Name) and node.id == "print":
                    offenders.append(f"{rel}:{node.lineno}")
    assert offenders == [], "use logging.getLogger(__name__) in library code"


def test_publish_help_does_not_import_torch():
    code = ("import sys\nfrom cli.publish import publish_main\ntry:\n"
            "    publish_main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Publish prediction COGs" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1] == "False"


@pytest.mark.parametrize("argv,needle", [
    (["--size", "10"], "--size must be between 384 and 2048"),
    (["--size", "100000"], "--size must be between 384 and 2048"),
    (["--size", "501"], "--size must be even"),
    (["--epochs", "0"], "--epochs must be between 1 and 1000"),
    (["--epochs", "-5"], "--epochs must be between 1 and 1000"),
])
def test_demo_refuses_out_of_range_numbers_before_any_work(argv, needle, tmp_path, capsys):
    assert demo_main(["--out", str(tmp_path / "demo"), *argv]) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "demo").exists()


def test_experiments_find_their_data_from_any_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("ISAMAP_SHARED_DATA", raising=False)
    monkeypatch.chdir(tmp_path)  # not the repository root
    assert data.sample_folder(NAIP_FOLDER) == REPO.parent / "shared" / "data" / NAIP_FOLDER
    monkeypatch.setenv("ISAMAP_SHARED_DATA", str(tmp_path / "elsewhere"))
    assert data.sample_folder(NAIP_FOLDER) == tmp_path / "elsewhere" / NAIP_FOLDER
    assert data.sample_folder(NAIP_FOLDER, "given") == Path("given") / NAIP_FOLDER
    for run in (compare.main, lccompare.main):
        assert run(["--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err
        assert "does not exist; pass --data-dir DIR, or --data-root" in err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_no_library_module_names_the_sample_data_folder():
    found = [str(path.relative_to(REPO))
             for package in ("core", "contract", "gee_export", "engine", "training", "inference")
             for path in sorted((REPO / package).rglob("*.py"))
             if "shared/data" in path.read_text() or '"shared"' in path.read_text()]
    assert found == []


def test_advice_names_flags_and_installed_tools_not_python_arguments():
    """Messages may mention a Python argument only after "Python:" (the API's own way)."""
    banned = ("gdal_edit", "ogr2ogr", "gsutil", "use a wider window", "re-export it with")
    found = []
    for package in ("core", "contract", "gee_export", "engine", "training", "inference"):
        for path in sorted((REPO / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Constant) and isinstance(node.value, str):
                    text = node.value
                    if any(b in text for b in banned) or (
                            "allow_l1c=True" in text and "Python" not in text
                            and "--allow-l1c" not in text):
                        found.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert found == []


BBOX = "--bbox=114.30,30.50,114.36,30.56"
FOLDER_FLAGS = {  # a command, its arguments with TAKEN where an output folder goes
    "isamap-train": ["--data", "ds", "--model", "unet", "--out", "TAKEN"],
    "isamap-evaluate": ["--model", "m.pt", "--data", "ds", "--out", "TAKEN"],
    "isamap-prune": ["--model", "m.pt", "--data", "ds", "--out", "TAKEN"],
    "isamap-predict": ["--model", "m.pt", "--input", "s.tif", "--out", "o/isa",
                       "--local-dir", "TAKEN"],
    "isamap-demo": ["--out", "TAKEN"],
    "isamap-fit": ["--points", "p.csv", "--input", "s.tif", "--out", "TAKEN"],
    "isamap-map": ["--model", "m.pt", BBOX, "--months", "2023-06", "--out", "TAKEN"],
    "isamap-export": [BBOX, "--project", "p", "--out", "TAKEN/sub"],
}


@pytest.mark.parametrize("name", sorted(FOLDER_FLAGS))
def test_an_output_folder_that_is_a_file_is_refused_first(name, tmp_path, capsys):
    """Before, the file passed check_writable and the command failed only at its first write
    (evaluate and predict after the model had run) with exit 1 and "File exists"."""
    taken = tmp_path / "notes.txt"
    taken.write_text("keep me\n")
    argv = [a.replace("TAKEN", str(taken)) for a in FOLDER_FLAGS[name]]
    assert COMMANDS[name]([*argv, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert str(taken) in err and ("which is a file" in err or "is a file, not a folder" in err)
    assert taken.read_text() == "keep me\n" and sorted(tmp_path.iterdir()) == [taken]
