"""The local dry run splits the positions as the real run does (``--split-block``, ``--seed``)
and gives the same advice when a split comes out empty: the docs/local-backend.md Java example."""

from __future__ import annotations

import pytest

from cli.export import main

JAVA = ["--backend", "local", "--bbox=111.8181,-8.1367,111.8644,-8.1058", "--crs", "EPSG:32749",
        "--month", "2019-07", "--bands", "B2,B3,B4,B8,B11,B12", "--scene-date", "2019-07-13",
        "--label-map", "7=1,0=255,10=255,*=0", "--patch-size", "64", "--stride", "32",
        "--dry-run"]


def test_the_local_dry_run_uses_the_split_block_and_advises_one(shared_data, tmp_path, capsys):
    scenes = tmp_path / "java"
    scenes.mkdir()
    for kind in ("s2l2a", "scl", "label"):
        (scenes / f"java_{kind}.tif").symlink_to(
            shared_data / "dynamicworld_s2" / f"java_{kind}.tif")
    common = [*JAVA, "--scenes", str(scenes), "--out", str(tmp_path / "ds")]
    assert main(common) == 0
    captured = capsys.readouterr()
    assert "(119 train, 7 val, 0 test; 1 month(s))" in captured.out
    assert "use --split-block 4 (gives train 81, val 14, test 11 positions)" in captured.err
    assert main([*common, "--split-block", "4"]) == 0
    captured = capsys.readouterr()
    assert "(81 train, 14 val, 11 test; 1 month(s))" in captured.out
    assert "no test" not in captured.err
    assert not (tmp_path / "ds").exists()


@pytest.mark.slow
def test_the_split_advice_counts_only_positions_that_hold_data(tmp_path, monkeypatch, capsys):
    """The docs' literal command on the demo's scene (which covers part of the box) got val 0
    and the advice --split-block 7, which gave val 0 again (a new user's walk): the advice
    counted positions without data. It now counts the positions that hold data, those dropped
    at the run's split borders included: it gave val 24 where the advised run wrote 27 (a new
    user's walk). The block it names gives exactly the patches it says, into a new --out.

    The scene has the demo's grid and footprint (768 px, seed 0), which decide the positions
    that hold data and so every count here, with one clear Sentinel-2 and one Sentinel-1
    date instead of the demo's four and five, and a 20 m fine label (the export reads the
    10 m one): compositing and writing those was most of the time."""
    import json
    import shutil

    from gee_export.local.synthetic import generate_scene

    generate_scene(tmp_path / "scene", seed=0, width=768, height=768, fine_scale=2,
                   s2_days=(3,), cloudy=(), s1_days=(11,), progress=False)
    monkeypatch.chdir(tmp_path)
    docs = ["--backend", "local", "--scenes", "scene/", "--bbox=114.20,30.50,114.35,30.62",
            "--month", "2019-06", "--no-progress"]
    assert main([*docs, "--out", "patches/"]) == 0
    err = capsys.readouterr().err
    assert "the dataset gets no val patches (train 45, val 0, test 8;" in err
    assert "use --split-block 4 (gives train 13, val 27, test 4 patches)" in err
    assert "run it into a new --out folder (or delete patches/ first)" in err
    shutil.copytree("patches/stacks", "advised/stacks")  # the same stack, not built again
    assert main([*docs, "--out", "advised/", "--split-block", "4"]) == 0
    out, err = capsys.readouterr()
    per_split = json.loads(out.splitlines()[0])["per_split"]
    assert per_split == {"train": 13, "val": 27, "test": 4} and "no val" not in err
    assert main([*docs, "--out", "patches/", "--split-block", "4"]) == 2  # as the advice says
    assert "already holds a dataset made with other split" in capsys.readouterr().err
