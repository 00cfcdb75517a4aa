"""A folder where a file is taken, a file where a folder is: said as such, with the flag.

A new user's walk: ``isamap-assess score --reference adir`` and ``design --map adir`` said the
folder "does not exist"; ``isamap-export --scenes notes.txt`` suggested re-downloading a
corrupt raster (``--scenes`` takes a folder); ``isamap-fit --points adir`` appended a
paragraph on assessment designs; ``isamap-predict --out notes.txt/isa`` said ``--out
notes.txt is a file``. One rule for a missing path or a folder given as a file
(``core.storage.files.file_problem``). An address where a local folder is taken: the last
tests.
"""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from cli import assess, demo, evaluate, export, fit, predict, prune, train
from cli import map as map_cli
from tests.support.refusals import assert_refused


@pytest.fixture
def places(cogs, tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    shutil.copy(cogs.class_path, "map.tif")
    Path("notes.txt").write_text("hello\n")
    Path("labels.csv").write_text("id,lon,lat,reference\n")
    Path("adir").mkdir()
    Path("m.pt").write_bytes(b"")
    Path("s.tif").write_bytes(b"")
    return tmp_path


def _assess(command: str) -> Callable[[], argparse.ArgumentParser]:
    """The parser of ``isamap-assess COMMAND`` (the options its refusals may name)."""
    def parser() -> argparse.ArgumentParser:
        (action,) = [a for a in assess.build_parser()._actions
                     if isinstance(a, argparse._SubParsersAction)]
        return action.choices[command]
    return parser


CASES = {
    "score-reference": (assess.main, _assess("score"), [
        "score", "--map", "map.tif", "--reference", "adir", "--out", "o"],
        "--reference adir is a folder, not a file; give the labelled CSV or GeoJSON file"),
    "score-map": (assess.main, _assess("score"), [
        "score", "--map", "adir", "--reference", "notes.txt", "--out", "o"],
        "--map adir is a folder, not a file; give the class COG that was assessed"),
    "design-map": (assess.main, _assess("design"), [
        "design", "--map", "adir", "--n", "5", "--out", "o"],
        "--map adir is a folder, not a file; give the map's _class.tif"),
    "export-scenes": (export.main, export.build_parser, [
        "--backend", "local", "--scenes", "notes.txt", "--bbox", "114.2,30.4,114.5,30.7",
        "--out", "o"],
        "--scenes notes.txt is a file, not a folder; give the folder of local Sentinel-1/2 "
        "scenes"),
    "fit-points": (fit.main, fit.build_parser, [
        "--points", "adir", "--input", "s.tif", "--out", "o"],
        "--points adir is a folder, not a file; give the labelled CSV, GeoJSON or Collect "
        "Earth Online export"),
    "predict-out": (predict.predict_main, predict.predict_parser, [
        "--model", "m.pt", "--input", "s.tif", "--out", "notes.txt/isa"],
        "--out notes.txt/isa lies under notes.txt, which is a file, not a folder; give a "
        "folder (it is created if missing)"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_kind_of_path_is_said_with_its_flag(case, places, capsys):
    main, parser, argv, says = CASES[case]
    line = assert_refused(main(argv), capsys.readouterr().err, parser())
    assert line.split(": error: ", 1)[1] == says, line
    assert not Path("o").exists()


# A command that writes local files refuses a gs:// output in one line, and makes nothing:
# ``isamap-assess design --out gs://bucket/x`` wrote its sample into ./gs:/bucket/x and exited
# 0 (pathlib reads the address as a relative path). The commands that write through the
# storage seam (isamap-export, isamap-import-patches, isamap-map) take gs:// output folders;
# every other output flag is a local folder (core.environment.check_output_folder).
GS = "gs://my-bucket/isa"

GS_CASES = {
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


@pytest.mark.parametrize("case", list(GS_CASES))
def test_a_local_output_flag_refuses_an_address_and_makes_nothing(case, places, capsys):
    main, parser, argv, flag = GS_CASES[case]
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
