"""A refused command line: the error first, "did you mean" for a misspelling, no usage block."""

from __future__ import annotations

import configparser
import importlib
from pathlib import Path

import pytest

from core.errors import ConfigError
from core.parsers import add_subcommand, command_parser, given_once, suggestion

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = (("one", "isamap-x --tile 3"), ("two", "isamap-x --blend core"))


def _console_scripts() -> dict[str, str]:
    """Every console script setup.cfg installs -> its entry point."""
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    lines = config["options.entry_points"]["console_scripts"].strip().splitlines()
    return dict(tuple(part.strip() for part in line.split("=")) for line in lines)


def _parser():
    p = command_parser("isamap-x", "A command to test how refusals read, with a subcommand.",
                       EXAMPLES)
    p.add_argument("--tile", type=int, required=True, help="tile size")
    p.add_argument("--blend", choices=("cosine", "uniform", "core"), default="cosine",
                   help="blending")
    p.add_argument("--zones", help="zones file")
    return p


def _refusal(parser, argv, capsys) -> list[str]:
    with pytest.raises(SystemExit) as stop:
        parser.parse_args(argv)
    assert stop.value.code == 2
    return capsys.readouterr().err.strip().splitlines()


def test_a_misspelt_option_is_named_with_the_one_meant(capsys):
    lines = _refusal(_parser(), ["--tile", "3", "--zone", "z.geojson"], capsys)
    assert lines[0] == "isamap-x: error: unrecognized arguments: --zone z.geojson"
    assert lines[1].strip() == "did you mean --zones (for --zone)?"
    assert len(lines) == 3 and "usage" not in " ".join(lines)
    # a required option misspelt: argparse only says it is missing; the misspelling is named
    lines = _refusal(_parser(), ["--tiel", "3"], capsys)
    assert lines[0] == "isamap-x: error: the following arguments are required: --tile"
    assert lines[1].strip() == "did you mean --tile (for --tiel)?"


def test_choices_subcommands_and_several_misspellings(capsys):
    lines = _refusal(_parser(), ["--tile", "3", "--blend", "cosin"], capsys)
    assert lines[0].startswith("isamap-x: error: argument --blend: invalid choice: 'cosin'")
    assert lines[1].strip() == "did you mean 'cosine'?"
    lines = _refusal(_parser(), ["--tile=3", "--blnd=core", "--zoness", "z"], capsys)
    assert lines[1].strip() == "did you mean --blend (for --blnd=core), --zones (for --zoness)?"
    parent = command_parser("isamap-y", "A command with steps, to test subcommand refusals.",
                            EXAMPLES)
    steps = parent.add_subparsers(dest="step", required=True)
    score = add_subcommand(steps, "score", "score it", "Score the map at the points.",
                           EXAMPLES)
    score.add_argument("--map", required=True, help="the map")
    lines = _refusal(parent, ["scroe"], capsys)
    assert lines[1].strip() == "did you mean 'score'?"
    lines = _refusal(parent, ["score", "--mapp", "m.tif"], capsys)
    assert lines[0] == "isamap-y score: error: the following arguments are required: --map"
    assert lines[1].strip() == "did you mean --map (for --mapp)?"
    assert lines[2].strip() == "(isamap-y score --help lists every option, with examples)"


def test_nothing_close_and_negative_numbers_are_not_suggested():
    parser = _parser()
    assert suggestion(parser, "unrecognized arguments: --frobnicate") is None
    assert suggestion(parser, "argument --tile: expected one argument", ["--tile", "-3"]) is None


@pytest.mark.parametrize("script", sorted(_console_scripts()))
def test_every_console_script_names_the_option_meant(script, capsys):
    module, function = _console_scripts()[script].split(":")
    main = getattr(importlib.import_module(module), function)
    with pytest.raises(SystemExit) as stop:
        main(["--verbos"])
    err = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2
    assert err[0].startswith(f"{script}: error: ")
    assert err[1].strip() == "did you mean --verbose (for --verbos)?"
    assert len(err) == 3 and not any(line.startswith("usage:") for line in err)


def test_an_option_given_once_or_refused_in_one_line():
    """argparse keeps a repeated option's last value silently; ``given_once`` refuses it."""
    parser = command_parser("isamap-x", "x", ())
    parser.add_argument("--encoder", action="append")
    assert given_once(parser.parse_args([]).encoder, "--encoder", "one") is None
    assert given_once(parser.parse_args(["--encoder", "a=1"]).encoder, "--encoder", "one") == "a=1"
    twice = parser.parse_args(["--encoder", "a=1", "--encoder", "b=2"]).encoder
    with pytest.raises(ConfigError) as err:
        given_once(twice, "--encoder", "a model fuses one encoder")
    assert str(err.value) == ("--encoder given 2 times (a=1, b=2): a model fuses one encoder; "
                              "give it once")


#: a seed, count or budget no command can use, as a user types it, and the first line said
NUMBERS = [
    ("isamap-train", ["--data", "data/wuhan", "--seed", "-1"],
     "argument --seed: must be a whole number from 0 to 4294967295, got -1"),
    ("isamap-export", ["--bbox", "114.2,30.5,114.3,30.6", "--dry-run", "--seed", "-1"],
     "argument --seed: must be a whole number from 0 to 4294967295, got -1"),
    ("isamap-fit", ["--points", "p.csv", "--input", "s.tif", "--seed", "-1"],
     "argument --seed: must be a whole number from 0 to 4294967295, got -1"),
    ("isamap-fit", ["--points", "p.csv", "--input", "s.tif", "--seed", str(2**64)],
     f"argument --seed: must be a whole number from 0 to 4294967295, got {2**64}"),
    ("isamap-import-patches", ["theirs", "--out", "o", "--month", "2021-06", "--seed", "-1"],
     "argument --seed: must be a whole number from 0 to 4294967295, got -1"),
    ("isamap-evaluate", ["--model", "m.pt", "--data", "d", "--out", "o", "--point-seed", "-1"],
     "argument --point-seed: must be a whole number from 0 to 4294967295, got -1"),
    ("isamap-export", ["--bbox", "114.2,30.5,114.3,30.6", "--dry-run", "--max-eecu-hours",
                       "1e308"],
     "argument --max-eecu-hours: must be a positive number up to 1e+12, got 1e+308; leave it "
     "out to set no bound"),
    ("isamap-map", ["--bbox", "117.0,30.7,117.01,30.71", "--model", "m.pt", "--out", "o",
                    "--months", "2019-06", "--dry-run", "--max-eecu-hours", "1e308"],
     "argument --max-eecu-hours: must be a positive number up to 1e+12, got 1e+308; leave it "
     "out to set no bound"),
    ("isamap-export", ["--bbox", "114.2,30.5,114.3,30.6", "--dry-run", "--max-concurrent", "0"],
     "argument --max-concurrent: must be a whole number >= 1, got 0"),
]


@pytest.mark.parametrize(("script", "argv", "line"), NUMBERS,
                         ids=[f"{s} {' '.join(a[-2:])}" for s, a, _ in NUMBERS])
def test_a_seed_count_or_budget_no_command_can_use_is_refused_in_one_line(
        script, argv, line, tmp_path, monkeypatch, capsys):
    """Negative and 65-bit seeds were numpy tracebacks, 1e308 EECU-hours an OverflowError in
    the dry run's plan, and --max-concurrent 0 was taken without --runner; each kind of
    number has one type now, the same in every command."""
    monkeypatch.chdir(tmp_path)
    module, function = _console_scripts()[script].split(":")
    main = getattr(importlib.import_module(module), function)
    with pytest.raises(SystemExit) as stop:
        main(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "Traceback" not in err
    assert err.splitlines()[0] == f"{script}: error: {line}"
    assert list(tmp_path.iterdir()) == []  # nothing written by a refused run


def test_a_train_config_files_seed_is_checked_as_the_flag_is(tmp_path, monkeypatch, capsys):
    """``seed: -1`` in a train config was a numpy traceback once the run had started."""
    from cli.train import train_main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "train.yaml").write_text("data: data/wuhan\nseed: -1\n")
    assert train_main(["--config", "train.yaml"]) == 2
    assert capsys.readouterr().err.splitlines()[0] == (
        "isamap-train: error: train.yaml: seed must be a whole number from 0 to 4294967295 "
        "(with --members K, seed + K - 1 too), got -1")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.yaml"]
