"""isamap-export keeps a dataset whole: identical commands resume, other ones are refused first.

The local backend through the real command on a small SYNTHETIC scene: a dataset whose stacks
were deleted resumes; a run with another recipe, grid or split, or from changed scenes, is
refused before any stack is rebuilt; a killed stack build leaves no temporary behind after the
next run; a second run into a held output is refused naming the holder; a small area warns
that it gives no validation/test split and says how to get one.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
from pyproj import Transformer

from cli.export import main
from contract.dataset import read_index, read_manifest
from core.storage import TEMP_MARK
from gee_export.local.synthetic import generate_scene
from tests.support import REPO_ROOT

_HOLDER = """
import sys, time
from core.lock import hold_output
with hold_output(sys.argv[1]):
    print("held", flush=True)
    time.sleep(120)
"""


#: the module-scoped fixtures below are built once: their tests run on one worker
pytestmark = pytest.mark.xdist_group("cli.test_export_integrity")


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_scene")
    return generate_scene(root / "scene", width=256, height=256, fine_scale=2)


def bbox_of(scene) -> str:
    to_ll = Transformer.from_crs(scene.grid.crs, "EPSG:4326", always_xy=True)
    return ",".join(f"{v:.6f}" for v in to_ll.transform_bounds(*scene.grid.bounds))


def command(scene, out: Path, *extra: str, speckle: str = "boxcar") -> list[str]:
    return ["--backend", "local", "--scenes", str(scene.root), f"--bbox={bbox_of(scene)}",
            "--out", str(out), "--speckle", speckle, "--min-valid-fraction", "0.5",
            "--no-progress", *extra]


def state_of(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder``: (size, mtime) -- what a rewrite would change."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_identical_command_resumes_and_other_ones_are_refused_before_any_work(
        scene, tmp_path, capsys):
    out = tmp_path / "dataset"
    assert main(command(scene, out)) == 0
    index = read_index(out)
    patches = state_of(out / "patches")
    assert index and patches

    shutil.rmtree(out / "stacks")  # the intermediate stacks are gone: rebuilt, same content
    assert main(command(scene, out)) == 0
    assert read_index(out) == index and state_of(out / "patches") == patches

    before = state_of(out)
    capsys.readouterr()
    assert main([*command(scene, out), "--dry-run"]) == 0  # the same command: no problem
    assert "PROBLEM" not in capsys.readouterr().out
    for argv, what in ((command(scene, out, speckle="lee"), "recipe.speckle: boxcar there, "
                                                          "lee now"),
                       (command(scene, out, "--stride", "64"), "grid.stride: 80 there, 64 now"),
                       (command(scene, out, "--split-block", "2"), "split.block: 8 there, 2 now"),
                       (command(scene, out, "--seed", "3"), "split.seed: 0 there, 3 now"),
                       (command(scene, out, "--scl-mask", "none"), "recipe.scl_masked: [3, ")):
        capsys.readouterr()
        assert main([*argv, "--dry-run"]) == 2, argv  # the dry run says what the run will
        printed = capsys.readouterr()
        assert printed.out.count("PROBLEM") == 1, printed.out  # the details once: the error's
        assert (f"PROBLEM     --out {out} holds a dataset this run would not add to (the error "
                "below says why)") in printed.out and what not in printed.out
        assert "the real run would stop: " in printed.err and "add scenes" not in printed.err
        assert what in printed.err and "{" not in printed.err, printed.err
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert "already holds a dataset made with other" in err and what in err, err
        assert "Traceback" not in err and "{" not in err  # the differing keys, not the dicts
        assert state_of(out) == before, f"{argv} changed files before it was refused"

    assert main(command(scene, out)) == 0  # and the original command still resumes
    assert read_index(out) == index and state_of(out / "patches") == patches

    # the Earth Engine backend checks too, before it even authenticates
    capsys.readouterr()
    assert main([f"--bbox={bbox_of(scene)}", "--out", str(out), "--project", "p"]) == 2
    err = capsys.readouterr().err
    assert "already holds a dataset made with other" in err and "authenticate" not in err
    assert main([f"--bbox={bbox_of(scene)}", "--out", str(out), "--dry-run"]) == 2  # its plan
    printed = capsys.readouterr()
    assert "PROBLEM" in printed.out and "already holds a dataset made with" in printed.err


@pytest.mark.slow
def test_changed_scenes_are_refused_before_the_stack_is_rebuilt(scene, tmp_path, capsys):
    work = tmp_path / "copy"
    shutil.copytree(scene.root, work)
    moved = type(scene)(**{**scene.__dict__, "root": work})
    out = tmp_path / "dataset"
    assert main(command(moved, out)) == 0
    band = next(p for p in sorted(work.rglob("*_B04.tif")))
    with rasterio.open(band, "r+") as dst:  # one reflectance value changes, nothing else
        data = dst.read(1)
        data[5, 5] = np.uint16(data[5, 5] + 7)
        dst.write(data, 1)
    before = state_of(out)
    capsys.readouterr()
    assert main([*command(moved, out), "--dry-run"]) == 2  # the dry run digests them too
    printed = capsys.readouterr()
    assert "PROBLEM     2019-06: the inputs of 2019-06 changed" in printed.out
    assert main(command(moved, out)) == 2
    err = capsys.readouterr().err
    assert "inputs of 2019-06 changed" in err and "--out" in err
    assert state_of(out) == before  # neither the stack nor the dataset was touched


@pytest.mark.slow
def test_a_killed_stack_build_leaves_no_temporary_after_the_next_run(scene, tmp_path):
    out = tmp_path / "dataset"
    argv = command(scene, out, speckle="refined_lee")
    proc = subprocess.Popen([sys.executable, "export_patches.py",
                             *[a for a in argv if a != "--no-progress"]],
                            cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 90
    found: list[Path] = []
    while time.monotonic() < deadline and proc.poll() is None and not found:
        found = list((out / "stacks").glob(f".stack_*_image{TEMP_MARK}*")) \
            if (out / "stacks").is_dir() else []
        time.sleep(0.002)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert found, "the build finished before it could be killed: " + proc.stderr.read().decode()
    assert list((out / "stacks").glob(f".stack_*{TEMP_MARK}*")), "the kill left no temporary"
    assert main(argv) == 0
    assert not [p for p in out.rglob("*") if TEMP_MARK in p.name]
    assert read_manifest(out)["complete"] == {"2019-06": True}


def test_a_second_export_into_a_held_output_is_refused_naming_the_holder(
        scene, tmp_path, capsys):
    out = tmp_path / "dataset"
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(out)], cwd=REPO_ROOT,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        capsys.readouterr()
        assert main(command(scene, out)) == 1  # the environment, not the command line
        err = capsys.readouterr().err.strip()
        refusal = [line for line in err.splitlines() if "error:" in line]
        assert len(refusal) == 1 and "Traceback" not in err
        assert f"pid {holder.pid}" in refusal[0] and "in use by another isamap run" in refusal[0]
        assert not (out / "stacks").exists() and not (out / "manifest.json").exists()
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()


@pytest.mark.slow
def test_a_small_area_warns_in_the_dry_run_and_at_export(scene, tmp_path, capsys):
    out = tmp_path / "dataset"
    area = "--bbox=114.2,30.5,114.245,30.54"  # 4.4 x 4.6 km: 5 x 4 patch positions
    assert main([area, "--dry-run"]) == 0
    plan = capsys.readouterr().out
    assert "train 20, val 0, test 0 positions" in plan  # the real split, not "8:1:1"
    assert "WARNING" in plan and "no val and no test patches" in plan
    assert "use --split-block 3 (gives train 10, val 2, test 2 positions)" in plan
    assert main([area, "--dry-run", "--split-block", "3"]) == 0
    plan = capsys.readouterr().out
    assert "train 10, val 2, test 2 positions" in plan and "WARNING" not in plan

    assert main(command(scene, out)) == 0
    err = capsys.readouterr().err
    assert err.count("no val and no test patches") == 1  # warned once, before the work
    assert "too small for a train/val/test split; use a larger area" in err
    assert read_manifest(out)["counts"]["per_split"]["val"] == 0


def test_scenes_without_sentinel1_get_one_advice_and_leave_no_empty_folders(scene, tmp_path,
                                                                             capsys):
    """Default bands (VV, VH among them) on Sentinel-2 scenes alone: the dry run advised 'add
    scenes of that month ... or choose other months', the real run 'add scenes or drop VV/VH';
    the refused run left <out>/stacks/ behind, empty."""
    work = tmp_path / "s2_only"
    shutil.copytree(scene.root, work, ignore=shutil.ignore_patterns("S1*"))
    moved = type(scene)(**{**scene.__dict__, "root": work})
    out = tmp_path / "dataset"
    capsys.readouterr()
    assert main([*command(moved, out), "--dry-run"]) == 2
    planned = capsys.readouterr().err.strip().splitlines()[-1]
    assert main(command(moved, out)) == 2
    refused = capsys.readouterr().err.strip().splitlines()[-1]
    advice = "; add scenes or drop VV/VH"
    assert planned.endswith(advice) and refused.endswith(advice), (planned, refused)
    assert "choose other months" not in planned
    assert not out.exists()  # neither --out nor its stacks/ was left behind
    earlier = tmp_path / "earlier"
    (earlier / "stacks").mkdir(parents=True)  # folders that were there stay
    assert main(command(moved, earlier)) == 2
    assert (earlier / "stacks").is_dir() and not list((earlier / "stacks").iterdir())
