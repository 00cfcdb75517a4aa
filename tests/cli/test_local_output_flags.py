"""A command that writes local files refuses a ``gs://`` output in one line, and makes nothing.

``isamap-assess design --out gs://bucket/x`` wrote its sample into ``./gs:/bucket/x`` and
exited 0: ``pathlib`` reads the address as a relative path. The commands that write through
the storage seam (``isamap-export``, ``isamap-import-patches``, ``isamap-map``) take
``gs://`` output folders; every other output flag is a local folder
(``core.environment.check_output_folder``).
"""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from cli import assess, demo, evaluate, fit, predict, prune, train
from cli import map as map_cli
from tests.support.refusals import assert_refused

GS = "gs://my-bucket/isa"


@pytest.fixture
def places(cogs, tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    shutil.copy(cogs.class_path, "map.tif")
    Path("labels.csv").write_text("id,lon,lat,reference\n")
    Path("adir").mkdir()
    Path("m.pt").write_bytes(b"")
    Path("s.tif").write_bytes(b"")
    return tmp_path


def _assess(command: str) -> Callable[[], argparse.ArgumentParser]:
    def parser() -> argparse.ArgumentParser:
        (action,) = [a for a in assess.build_parser()._actions
                     if isinstance(a, argparse._SubParsersAction)]
        return action.choices[command]
    return parser


CASES = {
    "assess-design": (assess.main, _assess("design"),
                      ["design", "--map", "map.tif", "--n", "5", "--out", GS], "--out"),
    "assess-score": (assess.main, _assess("score"),
                     ["score", "--map", "map.tif", "--reference", "labels.csv", "--out", GS],
                     "--out"),
    "demo": (demo.main, demo.build_parser, ["--out", GS], "--out"),
    "evaluate": (evaluate.evaluate_main, evaluate.evaluate_parser,
                 ["--model", "m.pt", "--data", "adir", "--out", GS], "--out"),
    "fit": (fit.main, fit.build_parser,
            ["--points", "labels.csv", "--input", "s.tif", "--out", GS], "--out"),
    "prune": (prune.prune_main, prune.prune_parser,
              ["--model", "m.pt", "--data", "adir", "--out", GS], "--out"),
    "train": (train.train_main, train.train_parser, ["--data", "adir", "--out", GS], "--out"),
    "predict-local-dir": (predict.predict_main, predict.predict_parser,
                          ["--model", "m.pt", "--input", "s.tif", "--out", "isa",
                           "--local-dir", GS], "--local-dir"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_local_output_flag_refuses_an_address_and_makes_nothing(case, places, capsys):
    main, parser, argv, flag = CASES[case]
    before = sorted(p.name for p in places.iterdir())
    line = assert_refused(main(argv), capsys.readouterr().err, parser())
    assert line.split(": error: ", 1)[1] == (
        f"{flag} {GS}: this command writes local files; give a local folder (and copy it "
        f"afterwards: gcloud storage cp -r FOLDER {GS})"), line
    assert sorted(p.name for p in places.iterdir()) == before  # no ./gs: folder


def test_a_seam_command_takes_gs_but_no_other_address(places, capsys):
    """``isamap-map`` writes ``gs://`` through the storage seam; ``s3://`` it cannot."""
    argv = ["--backend", "local", "--scenes", "adir", "--months", "2019-06", "--model", "m.pt",
            "--out", "s3://my-bucket/isa"]
    line = assert_refused(map_cli.main(argv), capsys.readouterr().err, map_cli.build_parser())
    assert line.endswith("--out s3://my-bucket/isa: give a local folder or gs://bucket/prefix")
    assert not Path("s3:").exists()
