"""Every console script's --help: examples that parse, --version, every option explained."""

from __future__ import annotations

import argparse
import configparser
import re
import runpy
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from cli.assess import build_parser as assess_parser
from cli.demo import build_parser as demo_parser
from cli.evaluate import evaluate_parser
from cli.export import build_parser as export_parser
from cli.fit import build_parser as fit_parser
from cli.import_patches import build_parser as import_parser
from cli.map import build_parser as map_parser
from cli.predict import predict_parser
from cli.prune import prune_parser
from cli.publish import publish_parser
from cli.train import train_parser
from core.commands import attach_values
from core.version import code_version

REPO = Path(__file__).resolve().parents[1]
PARSERS = {"isamap-export": export_parser, "isamap-demo": demo_parser,
           "isamap-train": train_parser, "isamap-evaluate": evaluate_parser,
           "isamap-prune": prune_parser, "isamap-predict": predict_parser,
           "isamap-publish": publish_parser, "isamap-map": map_parser,
           "isamap-assess": assess_parser, "isamap-import-patches": import_parser,
           "isamap-fit": fit_parser}


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    found = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found.update(action.choices)
    return found


def _every_parser() -> list[tuple[str, argparse.ArgumentParser]]:
    out = []
    for name, build in PARSERS.items():
        parser = build()
        out.append((name, parser))
        out += [(f"{name} {sub}", p) for sub, p in _subparsers(parser).items()]
    return out


def _entry_points() -> dict[str, str]:
    """setup.cfg's console scripts: name -> ``module:function``."""
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    lines = cfg["options.entry_points"]["console_scripts"].splitlines()
    return {name.strip(): target.strip() for name, _, target in
            (line.partition("=") for line in lines if line.strip())}


def test_every_console_script_is_covered():
    scripts = set(_entry_points())
    assert scripts == set(PARSERS)
    assert "from cli.export import main" in (REPO / "export_patches.py").read_text()


@pytest.mark.parametrize("name,parser", _every_parser(), ids=lambda v: v if isinstance(v, str)
                         else "")
def test_help_explains_every_option_once_with_examples(name, parser):
    text = parser.format_help()
    flat = " ".join(text.split())
    assert "%%" not in text
    assert "(default: None)" not in flat and "(default: False)" not in flat
    assert not re.search(r"\(default:[^()]*\) \(default:", flat), name
    assert parser.description and len(parser.description) > 40
    unexplained = [a.option_strings or a.dest for a in parser._actions
                   if not isinstance(a, argparse._HelpAction)
                   and (not a.help or a.help == argparse.SUPPRESS)]
    assert unexplained == [], f"{name}: options without help"
    examples = [line.strip() for line in (parser.epilog or "").splitlines()
                if line.strip().startswith(name.split()[0] + " ")]
    assert 2 <= len(examples) <= 3, f"{name}: 2-3 examples in the epilog"
    top = PARSERS[name.split()[0]]()
    for line in examples:  # each example is a command line its parser accepts
        argv = shlex.split(line)[1:]
        args = top.parse_args(attach_values(argv, ("--bbox",)))
        assert args is not None


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_version_prints_the_package_version(name, capsys):
    with pytest.raises(SystemExit) as stop:
        PARSERS[name]().parse_args(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out == f"{name} {code_version()}\n"


@pytest.mark.parametrize("name,argv,needle", [
    ("isamap-train", ["--dat", "ds", "--model", "unet"], "unrecognized arguments: --dat ds"),
    ("isamap-evaluate", ["--model", "m.pt", "--dat", "ds", "--out", "o"],
     "the following arguments are required: --data"),
    ("isamap-export", ["--reg", "wuhan", "--dry-run"], "unrecognized arguments: --reg wuhan"),
    ("isamap-assess", ["score", "--map", "m.tif", "--ref", "r.csv", "--out", "o"],
     "the following arguments are required: --reference"),
])
def test_an_option_prefix_is_refused_not_guessed(name, argv, needle, capsys):
    """argparse took --dat for --data; a prefix that works today changes meaning tomorrow."""
    with pytest.raises(SystemExit) as stop:
        PARSERS[name]().parse_args(argv)
    assert stop.value.code == 2
    assert needle in capsys.readouterr().err


def test_demo_help_shows_the_size_range():
    flat = " ".join(demo_parser().format_help().split())
    assert "from 384 to 2048 (default: 768)" in flat


@pytest.mark.parametrize("name", sorted(set(PARSERS) - {"isamap-assess"}))
def test_grouped_short_flags_still_count_with_exact_names(name):
    """allow_abbrev=False must not cost -vv its meaning (-v twice)."""
    parser = PARSERS[name]()
    required = {a.option_strings[0]: "x" for a in parser._actions
                if a.required and a.option_strings}
    argv = [item for flag, value in required.items() for item in (flag, value)]
    if name == "isamap-publish":  # one of a required pair
        argv += ["--prefix", "maps/x"]
    if name == "isamap-import-patches":  # its source folder
        argv += ["their_patches"]
    assert parser.parse_args([*argv, "-vv"]).verbose == 2


@pytest.mark.filterwarnings("ignore:'cli.:RuntimeWarning")  # runpy: the module was imported
@pytest.mark.parametrize("name", sorted(PARSERS))
def test_python_m_runs_every_command_as_its_console_script(name, monkeypatch, capsys):
    """``python -m cli.map --help`` did nothing and exited 0: the module had no main block.

    Each module's ``__main__`` block is run as ``python -m`` runs it (in this process, so
    fast); the next test runs one for real.
    """
    module = _entry_points()[name].split(":")[0]
    monkeypatch.setattr(sys, "argv", [module, "--help"])
    with pytest.raises(SystemExit) as stop:
        runpy.run_module(module, run_name="__main__", alter_sys=False)
    assert stop.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: {name} ")


def test_python_m_cli_map_help_prints_its_usage():
    proc = subprocess.run([sys.executable, "-m", "cli.map", "--help"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: isamap-map ")
