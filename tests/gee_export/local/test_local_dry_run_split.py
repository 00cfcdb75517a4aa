"""The local dry run splits the positions as the real run does (``--split-block``, ``--seed``)
and gives the same advice when a split comes out empty: the docs/local-backend.md Java example."""

from __future__ import annotations

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
