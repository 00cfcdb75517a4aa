"""Refusals of numbers and dataset folders name the flag as typed and the value given.

A new user's walk: ``isamap-evaluate --points -5`` and ``--batch-size 0`` both said
``--batch-size must be >= 1 and --points >= 0``; ``isamap-predict``/``isamap-map --batch-size
0`` said ``batch size must be >= 1``; ``isamap-train --data notes.txt`` and ``isamap-evaluate
--data .../manifest.json`` named neither the flag nor the path as typed (an absolute path).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cli.evaluate import evaluate_main, evaluate_parser
from cli.predict import predict_main, predict_parser
from cli.train import train_main, train_parser
from tests.support.refusals import assert_refused

DATA = "give the patch dataset folder isamap-export wrote (the one holding manifest.json)"
CASES = {
    "evaluate-points": (evaluate_main, evaluate_parser, [
        "--model", "m.pt", "--data", "patches", "--out", "o", "--points", "-5"],
        "--points must be >= 0, got -5"),
    "evaluate-batch": (evaluate_main, evaluate_parser, [
        "--model", "m.pt", "--data", "patches", "--out", "o", "--batch-size", "0"],
        "--batch-size must be >= 1, got 0"),
    "evaluate-data": (evaluate_main, evaluate_parser, [
        "--model", "m.pt", "--data", "patches/manifest.json", "--out", "o"],
        f"--data patches/manifest.json is a file, not a folder; {DATA}"),
    "predict-batch": (predict_main, predict_parser, [
        "--model", "m.pt", "--input", "s.tif", "--out", "o/isa", "--batch-size", "0"],
        "--batch-size must be >= 1, got 0"),
    "train-data": (train_main, train_parser, ["--data", "notes.txt", "--out", "o"],
                   f"--data notes.txt is a file, not a folder; {DATA}"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_flag_and_value_are_named_as_typed(case, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("patches").mkdir()
    Path("patches/manifest.json").write_text("{}")
    Path("notes.txt").write_text("hello\n")
    for name in ("m.pt", "s.tif"):
        Path(name).write_bytes(b"")
    main, parser, argv, says = CASES[case]
    line = assert_refused(main(argv), capsys.readouterr().err, parser())
    assert line.split(": error: ", 1)[1] == says, line
    assert not Path("o").exists()
