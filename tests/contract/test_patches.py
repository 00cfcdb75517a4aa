"""Patching real GeoTIFF stacks: files, index, manifest, resume, failures, gs:// output."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio

from contract.dataset import FORMAT, DatasetSpec, commit_month, read_index, read_manifest
from contract.geotiff import write_geotiff
from contract.grid import Grid
from contract.patch_writer import PatchWriter, valid_mask
from contract.patches import patch_stack
from contract.splits import assign_splits
from contract.stack import StackPaths
from core.errors import ConfigError, GridError, InputDataError
from core.storage import TEMP_MARK, open_store
from core.version import code_version
from tests.support import REPO_ROOT
from tests.support.rasters import BANDS, make_stack

REPO = REPO_ROOT


def mtimes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns
            for p in (root / "patches").rglob("*.tif")}


def assert_complete_tiffs(root: Path) -> None:
    """Every patch file present opens and decodes fully; no temporary file is left."""
    for path in (root / "patches").rglob("*"):
        assert TEMP_MARK not in path.name, f"temporary file left: {path}"
        if path.suffix == ".tif":
            with rasterio.open(path) as src:
                src.read()


def test_patches_match_the_stack(small_stack, tmp_path):
    stack, arrays = small_stack
    out = tmp_path / "ds"
    summary = patch_stack(stack, out, min_valid_fraction=0.9, block=2, workers=2,
                          region="test", recipe={"note": "unit test"}, progress=False)
    grid = stack.grid
    records = read_index(out)
    splits = assign_splits(grid, block=2)
    assert summary.positions == grid.patch_count == 25
    assert summary.candidates == len(splits)
    assert summary.written == len(records) > 0
    assert summary.written + summary.invalid == summary.candidates
    assert summary.invalid > 0  # the no-data corners are filtered
    for rec in records:
        r, c = rec["row"], rec["col"]
        win = grid.patch_window(r, c)
        rows, cols = win.to_rasterio().toslices()
        image, label = arrays["image"][:, rows, cols], arrays["label"][rows, cols]
        assert rec["id"] == f"r{r}_c{c}" and rec["month"] == "2019-06"
        assert rec["split"] == splits[(r, c)]
        assert rec["bounds"] == list(grid.patch_bounds(r, c))
        assert rec["valid_fraction"] == pytest.approx(valid_mask(image, label).mean(), abs=1e-6)
        assert rec["valid_fraction"] >= 0.9
        labelled = label[label != 255]
        assert rec["isa_fraction"] == pytest.approx((labelled == 1).mean(), abs=1e-6)
        with rasterio.open(out / rec["image"]) as src:
            assert src.crs.to_epsg() == 32650
            assert src.transform == grid.patch_transform(r, c)
            assert src.descriptions == BANDS
            assert math.isnan(src.nodata) and src.dtypes[0] == "float32"
            assert src.compression is not None
            assert src.tags(3)["unit"] == "reflectance" and src.tags(5)["unit"] == "dB"
            np.testing.assert_array_equal(src.read(), image)
        with rasterio.open(out / rec["label"]) as src:
            assert src.nodata == 255 and src.transform == grid.patch_transform(r, c)
            np.testing.assert_array_equal(src.read(1), label)
        with rasterio.open(out / rec["label_fine"]) as src:
            fine = grid.scaled(2)
            assert src.shape == (256, 256) and src.transform == fine.patch_transform(r, c)
            f_rows, f_cols = fine.patch_window(r, c).to_rasterio().toslices()
            np.testing.assert_array_equal(src.read(1), arrays["label_fine"][f_rows, f_cols])
    manifest = read_manifest(out)
    assert manifest["format"] == FORMAT and manifest["code_version"] == code_version()
    assert manifest["backend"] == "local" and manifest["region"] == "test"
    assert Grid.from_dict(manifest["grid"]) == grid
    assert manifest["bands"] == list(BANDS) and manifest["months"] == ["2019-06"]
    assert manifest["split"] == {"method": "blocked", "ratios": [0.8, 0.1, 0.1], "seed": 0,
                                 "block": 2}
    assert manifest["label"]["fine_scale"] == 2 and manifest["label"]["nodata"] == 255
    assert manifest["counts"]["patches"] == len(records)
    assert sum(manifest["counts"]["per_split"].values()) == len(records)
    assert manifest["counts"]["per_month"]["2019-06"]["invalid"] == summary.invalid
    assert manifest["complete"] == {"2019-06": True}
    assert manifest["recipe"] == {"note": "unit test"}


def test_second_run_does_no_work_and_a_lost_patch_is_rewritten(small_stack, tmp_path):
    stack, _ = small_stack
    out = tmp_path / "ds"
    first = patch_stack(stack, out, block=2, progress=False)
    before = mtimes(out)
    index_before = read_index(out)
    again = patch_stack(stack, out, block=2, progress=False)
    assert again.up_to_date and again.written == 0 and again.already_done == first.written
    assert mtimes(out) == before, "a finished run must not rewrite any file"
    victim = index_before[3]
    (out / victim["image"]).unlink()
    repaired = patch_stack(stack, out, block=2, progress=False)
    assert repaired.written == 1 and repaired.already_done == first.written - 1
    after = mtimes(out)
    assert {k for k in after if after[k] != before.get(k)} == {
        victim["image"], victim["label"], victim["label_fine"]}
    assert read_index(out) == index_before


def _corrupt_tile(path: str, block_row: int) -> bytes:
    """Overwrite the compressed bytes of one tile; returns the original file content."""
    original = Path(path).read_bytes()
    with rasterio.open(path) as src:
        offset = int(src.get_tag_item(f"BLOCK_OFFSET_0_{block_row}", "TIFF", bidx=1))
        size = int(src.get_tag_item(f"BLOCK_SIZE_0_{block_row}", "TIFF", bidx=1))
    data = bytearray(original)
    data[offset:offset + size] = b"\xff" * size
    Path(path).write_bytes(bytes(data))
    return original


def test_failure_mid_run_leaves_whole_files_and_resumes_without_duplicates(tmp_path):
    stack, _ = make_stack(tmp_path / "stack", fine_scale=None)
    reference = tmp_path / "reference"
    patch_stack(stack, reference, block=2, progress=False)
    original = _corrupt_tile(stack.image, block_row=1)  # rows 256-447 unreadable
    out = tmp_path / "ds"
    with pytest.raises(rasterio.errors.RasterioIOError):
        patch_stack(stack, out, block=2, progress=False)
    assert_complete_tiffs(out)
    partial = mtimes(out)
    assert partial, "the first strips should have been written before the failure"
    assert not (out / "manifest.json").exists() or not read_manifest(out)["complete"]["2019-06"]
    Path(stack.image).write_bytes(original)
    resumed = patch_stack(stack, out, block=2, progress=False)
    assert resumed.already_done == len([k for k in partial if not k.endswith("_label.tif")])
    assert {k: v for k, v in mtimes(out).items() if k in partial} == partial
    assert read_index(out) == read_index(reference)
    assert 0 < resumed.already_done < len(read_index(reference))
    assert resumed.written + resumed.already_done == len(read_index(reference))


_KILL_SCRIPT = """
import sys
from contract.grid import Grid
from contract.patches import patch_stack
from contract.stack import StackPaths
grid = Grid.from_dict({grid!r})
stack = StackPaths(grid, {bands!r}, "2019-06", {image!r}, {label!r})
patch_stack(stack, sys.argv[1], block=2, workers=1, progress=False)
"""


def test_killed_run_leaves_no_partial_files_and_resumes(tmp_path):
    # 25 positions: the kill after the third patch still leaves most of them to do
    stack, _ = make_stack(tmp_path / "stack", width=640, height=640, fine_scale=None)
    out = tmp_path / "ds"
    script = _KILL_SCRIPT.format(grid=stack.grid.to_dict(), bands=stack.bands,
                                 image=stack.image, label=stack.label)
    proc = subprocess.Popen([sys.executable, "-c", script, str(out)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if len(list((out / "patches" / "2019-06").glob("r*_c*_label.tif"))) >= 3:
            break
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    for path in (out / "patches").rglob("*.tif"):  # whole files only, under final names
        if TEMP_MARK in path.name:  # a write the kill cut short: never under a final name
            continue
        with rasterio.open(path) as src:
            src.read()
    killed = mtimes(out)
    resumed = patch_stack(stack, out, block=2, progress=False)
    assert not list(out.rglob(f"*{TEMP_MARK}*"))
    finished_before = {k for k in killed if not k.endswith("_label.tif")}
    assert resumed.already_done == len(finished_before)
    assert {k: mtimes(out)[k] for k in finished_before} == {k: killed[k] for k in finished_before}
    reference = tmp_path / "reference"
    patch_stack(stack, reference, block=2, progress=False)
    assert read_index(out) == read_index(reference)
    assert 0 < len(finished_before) < len(read_index(reference)), "the kill came too late"
    assert resumed.written == len(read_index(reference)) - resumed.already_done


def test_patching_to_gcs(small_stack, gcs_bucket):
    stack, arrays = small_stack
    root = f"gs://{gcs_bucket}/datasets/demo"
    summary = patch_stack(stack, root, block=2, progress=False)
    records = read_index(root)
    assert len(records) == summary.written > 0
    store = open_store(root)
    listed = store.list("patches/2019-06/")
    assert len(listed) == 3 * len(records)  # image, label, fine label
    rec = records[0]
    rows, cols = stack.grid.patch_window(rec["row"], rec["col"]).to_rasterio().toslices()
    with rasterio.open(store.gdal_path(rec["image"])) as src:
        np.testing.assert_array_equal(src.read(), arrays["image"][:, rows, cols])
    assert read_manifest(root)["counts"]["patches"] == len(records)
    assert patch_stack(stack, root, block=2, progress=False).written == 0


def test_patch_writer_without_a_stack(tmp_path):
    """The Earth Engine export writes patches from fetched arrays, one at a time."""
    grid = Grid("EPSG:32650", 238000.0, 3385000.0, 448, 448)
    splits = assign_splits(grid, block=2)
    writer = PatchWriter(tmp_path, grid, ("B2", "VV"), "2020-01", splits=splits, fine_scale=4,
                         image_fine_bands=("R", "G", "B"))
    (row, col), split = next(iter(splits.items()))
    image = np.full((2, 128, 128), 0.5, np.float32)
    label = np.ones((128, 128), np.uint8)
    label[:64] = 0
    rec = writer.write(row, col, image, label, label_fine=np.ones((512, 512), np.uint8),
                       image_fine=np.zeros((3, 512, 512), np.float32))
    assert rec["split"] == split and rec["isa_fraction"] == 0.5 and rec["valid_fraction"] == 1
    assert writer.done_ids() == {rec["id"]}
    assert writer.read_record(rec["id"]) == rec
    with rasterio.open(tmp_path / rec["image_fine"]) as src:
        assert src.descriptions == ("R", "G", "B") and src.res == (2.5, 2.5)
    dropped = next(p for p in grid.iter_patches() if p not in splits)
    with pytest.raises(GridError, match="no split"):
        writer.write(*dropped, image, label)
    with pytest.raises(InputDataError, match="dtype"):
        writer.write(row, col, image.astype(np.float64), label)
    with pytest.raises(InputDataError, match="shape"):
        writer.write(row, col, image[:1], label)
    # what the Earth Engine export does after fetching: commit the month's records
    spec = DatasetSpec(grid, ("B2", "VV"), block=2, fine_scale=4, backend="ee", region="wuhan",
                       recipe={"s2": "COPERNICUS/S2_SR_HARMONIZED"})
    manifest = commit_month(open_store(tmp_path), spec, "2020-01", writer.finished_records(),
                            complete=False, counts={"positions": grid.patch_count})
    assert read_index(tmp_path) == [rec]
    assert manifest == read_manifest(tmp_path)
    assert manifest["backend"] == "ee" and manifest["complete"] == {"2020-01": False}
    assert manifest["counts"]["per_month"]["2020-01"] == {"positions": 25, "patches": 1}
    with pytest.raises(ConfigError, match="other months"):
        commit_month(open_store(tmp_path), spec, "2020-02", [rec], complete=True)
    with pytest.raises(ConfigError, match="other split"):
        commit_month(open_store(tmp_path), DatasetSpec(grid, ("B2", "VV"), block=3, fine_scale=4),
                     "2020-01", [rec], complete=True)


def test_bad_stacks_are_refused_with_reasons(small_stack, tmp_path):
    stack, _arrays = small_stack
    other = Grid("EPSG:32650", 238010.0, 3385000.0, 448, 448)
    with pytest.raises(InputDataError, match="transform"):
        patch_stack(StackPaths(other, BANDS, "2019-06", stack.image, stack.label), tmp_path / "a")
    with pytest.raises(InputDataError, match="6 bands instead of 2"):
        patch_stack(StackPaths(stack.grid, ("B2", "B3"), "2019-06", stack.image, stack.label),
                    tmp_path / "b")
    swapped = tuple(reversed(BANDS))
    with pytest.raises(InputDataError, match="file's order"):
        patch_stack(StackPaths(stack.grid, swapped, "2019-06", stack.image, stack.label),
                    tmp_path / "c")
    with pytest.raises(InputDataError, match="cannot open"):
        patch_stack(StackPaths(stack.grid, BANDS, "2019-06", str(tmp_path / "none.tif"),
                               stack.label), tmp_path / "d")
    with pytest.raises(ConfigError, match="YYYY-MM"):
        StackPaths(stack.grid, BANDS, "June", stack.image, stack.label)
    with pytest.raises(ConfigError, match="fine_scale"):
        StackPaths(stack.grid, BANDS, "2019-06", stack.image, stack.label, label_fine="x.tif")
    out = tmp_path / "ds"
    patch_stack(stack, out, block=2, progress=False)
    with pytest.raises(ConfigError, match="other split"):
        patch_stack(stack, out, block=3, progress=False)
    with pytest.raises(ConfigError, match="min_valid_fraction"):
        patch_stack(stack, out, min_valid_fraction=1.5)


def test_a_second_month_joins_the_dataset(tmp_path):
    first, _ = make_stack(tmp_path / "june", fine_scale=None, month="2019-06")
    second, _ = make_stack(tmp_path / "july", fine_scale=None, month="2019-07", seed=1)
    out = tmp_path / "ds"
    a = patch_stack(first, out, block=2, progress=False)
    b = patch_stack(second, out, block=2, progress=False)
    manifest = read_manifest(out)
    assert manifest["months"] == ["2019-06", "2019-07"]
    records = read_index(out)
    assert len(records) == a.written + b.written
    by_pos = {}
    for rec in records:  # the same ground is in the same split every month
        by_pos.setdefault((rec["row"], rec["col"]), set()).add(rec["split"])
    assert all(len(s) == 1 for s in by_pos.values())
    assert json.loads((out / "manifest.json").read_text())["complete"] == {
        "2019-06": True, "2019-07": True}


def test_one_row_of_patches_with_only_train(tmp_path):
    grid = Grid("EPSG:32650", 0.0, 0.0, 4096, 128)
    image = np.ones((1, 128, 4096), np.float32)
    label = np.zeros((128, 4096), np.uint8)
    write_geotiff(tmp_path / "i.tif", image, grid.transform, grid.crs, float("nan"),
                  descriptions=["B2"])
    write_geotiff(tmp_path / "l.tif", label, grid.transform, grid.crs, 255)
    stack = StackPaths(grid, ("B2",), "2019-06", str(tmp_path / "i.tif"), str(tmp_path / "l.tif"))
    summary = patch_stack(stack, tmp_path / "ds", ratios=(1, 0, 0), progress=False)
    assert summary.written == grid.patch_count == 50


def test_fine_image_patches_for_super_resolution(tmp_path):
    stack, arrays = make_stack(tmp_path / "stack", width=288, height=208, fine_scale=4,
                               image_fine=True)
    out = tmp_path / "ds"
    patch_stack(stack, out, min_valid_fraction=0.0, ratios=(1, 0, 0), progress=False)
    records = read_index(out)
    assert len(records) == stack.grid.patch_count == 3 * 2
    fine = stack.grid.scaled(4)
    for rec in records:
        rows, cols = fine.patch_window(rec["row"], rec["col"]).to_rasterio().toslices()
        with rasterio.open(out / rec["image_fine"]) as src:
            assert src.descriptions == ("R", "G", "B") and src.res == (2.5, 2.5)
            assert src.transform == fine.patch_transform(rec["row"], rec["col"])
            np.testing.assert_array_equal(src.read(), arrays["image_fine"][:, rows, cols])


def test_a_rebuilt_stack_is_not_mixed_with_old_patches(small_stack, tmp_path):
    stack, arrays = small_stack
    out = tmp_path / "ds"
    patch_stack(stack, out, block=2, progress=False)
    # the same pixels written again (new mtime, new inode): the same stack, the run resumes
    os.unlink(stack.image)
    write_geotiff(stack.image, arrays["image"], stack.grid.transform, stack.grid.crs,
                  float("nan"), descriptions=list(BANDS))
    assert patch_stack(stack, out, block=2, progress=False).up_to_date
    write_geotiff(stack.image, arrays["image"] * 2, stack.grid.transform, stack.grid.crs,
                  float("nan"), descriptions=list(BANDS))
    with pytest.raises(ConfigError, match="inputs of 2019-06 changed"):
        patch_stack(stack, out, block=2, progress=False)


def test_dataset_files_get_the_umask_mode_so_others_can_read_them(small_stack, tmp_path):
    stack, _ = small_stack
    out = tmp_path / "ds"
    old = os.umask(0o002)  # a group-shared dataset folder
    try:
        patch_stack(stack, out, block=2, progress=False)
    finally:
        os.umask(old)
    files = [p for p in out.rglob("*") if p.is_file()]
    assert {"index.jsonl", "manifest.json", "invalid.json"} <= {p.name for p in files}
    assert any(p.suffix == ".tif" for p in files)
    assert {oct(p.stat().st_mode & 0o777) for p in files} == {oct(0o664)}


def test_a_month_without_one_valid_patch_is_refused_and_not_tagged_complete(tmp_path):
    """A label of another place gave 0 patches tagged complete, exit 0 (a new user's walk)."""
    stack, arrays = make_stack(tmp_path / "stack", 160, 160, fine_scale=None)
    write_geotiff(stack.label, np.full_like(arrays["label"], 255), stack.grid.transform,
                  stack.grid.crs, 255, descriptions=["label"])
    with pytest.raises(InputDataError, match=r"no patch position of 2019-06 has 90% valid "
                       r"pixels .*all \d+ were left out.*not tagged complete"):
        patch_stack(stack, tmp_path / "ds", block=1, progress=False)
    manifest = read_manifest(tmp_path / "ds")
    assert manifest["complete"] == {"2019-06": False}
    assert manifest["counts"]["patches"] == 0


def test_a_dataset_of_another_producer_is_refused_in_one_readable_line(small_stack, tmp_path):
    """A walk: exporting the demo's scenes into the demo's patches was refused in ~1.6 KB of
    Python reprs (whole recipes, ``recipe.allow_l1c: None there, False now``); now the
    differing values are short, keys one recipe alone records are named, and the producer is."""
    stack, _ = small_stack
    out = tmp_path / "ds"
    local = {"allow_l1c": False, "enl": 4.4, "kernel": 7, "scl_masked": [3, 8, 9, 10, 11],
             "speckle": "refined_lee", "label_scheme": "binary"}
    patch_stack(stack, out, block=2, backend="synthetic", progress=False, recipe={
        "composite": "local backend (gee_export.local.stack)", "local_recipe": local,
        "seed": 0, "s2_dates": [f"201906{d:02d}" for d in range(1, 30)]})
    with pytest.raises(ConfigError) as refused:
        patch_stack(stack, out, block=3, backend="local", progress=False,
                    recipe={**local, "scl_masked": [3, 8, 9, 10]})
    assert str(refused.value) == (
        f"{out} already holds a dataset made with other split, recipe (made by isamap-demo, "
        "not by the local export): split.block: 2 there, 3 now; recipe: composite, "
        "local_recipe, s2_dates, seed recorded only there; allow_l1c, enl, kernel, "
        "label_scheme, scl_masked, speckle only now; to add to it, run with the options it "
        "was made with; else write to another folder (--out) or delete it first")
    with pytest.raises(ConfigError, match=(  # long lists: the items that differ
            r"other recipe: recipe\.local_recipe\.scl_masked: \[3, 8, 9, 10, 11\] there, "
            r"\[3, 8, 9, 10\] now; recipe\.s2_dates: \[20190630\] only now; to add")):
        patch_stack(stack, out, block=2, backend="synthetic", progress=False, recipe={
            "composite": "local backend (gee_export.local.stack)",
            "local_recipe": {**local, "scl_masked": [3, 8, 9, 10]},
            "seed": 0, "s2_dates": [f"201906{d:02d}" for d in range(1, 31)]})
