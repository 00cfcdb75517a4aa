"""The temporal consistency rule: fewest relabelled dates, no loss, classes and nodata kept."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio

from inference.cog.maps import NODATA
from inference.predict.change.consistency import RULE, apply_to_maps, consistent_series
from tests.support.assess import class_cog
from tests.support.rasters import assert_valid_cog


def series(*histories):
    return np.array(histories, dtype=np.uint8).T  # (dates, pixels)


def test_flips_are_removed_gain_is_kept_loss_never_survives():
    got = consistent_series(series(
        [1, 1, 0, 1, 1],  # an isolated flip in stable impervious
        [0, 0, 1, 0, 0],  # an isolated flip in stable pervious
        [0, 0, 1, 1, 1],  # a true gain
        [0, 1, 0, 1, 1],  # a gain with a flip: two steps tie, the earlier wins
    ))
    assert got.T.tolist() == [[1, 1, 1, 1, 1], [0, 0, 0, 0, 0], [0, 0, 1, 1, 1],
                              [0, 1, 1, 1, 1]]
    # a pair with loss is a tie too: impervious at both dates
    assert consistent_series(series([1, 0])).T.tolist() == [[1, 1]]
    assert consistent_series(series([0, 1])).T.tolist() == [[0, 1]]
    kept = consistent_series(np.random.default_rng(0).integers(0, 2, (6, 500)))
    assert not ((kept[:-1] == 1) & (kept[1:] != 1)).any()  # no impervious date ever lost


def test_nodata_stays_and_votes_for_nothing_other_classes_are_kept():
    got = consistent_series(series([1, NODATA, 0, 1], [2, 1, 3, 3]), isa_class=1)
    assert got.T.tolist() == [[1, NODATA, 1, 1], [2, 2, 3, 3]]  # nearest non-ISA class


def test_maps_are_written_once_and_tagged(tmp_path):
    rng = np.random.default_rng(1)
    maps = rng.integers(0, 2, (3, 40, 50)).astype(np.uint8)
    maps[:, :2] = NODATA
    paths = [str(class_cog(tmp_path / f"m{i}.tif", m)) for i, m in enumerate(maps)]
    outs = [str(tmp_path / "consistent" / f"m{i}.tif") for i in range(3)]
    changed = apply_to_maps(paths, outs)
    fixed = np.stack([rasterio.open(p).read(1) for p in outs])
    assert np.array_equal(fixed, consistent_series(maps))
    assert sum(changed.values()) == int((fixed != maps).sum()) > 0
    with rasterio.open(outs[0]) as ds:
        assert ds.tags()["temporal_consistency"] == RULE and ds.tags()["classes"]
    assert_valid_cog(outs[0])
    stamp = [p.stat().st_mtime_ns for p in map(Path, outs)]
    assert apply_to_maps(paths, outs) == changed  # up to date: nothing rewritten, counts kept
    assert [p.stat().st_mtime_ns for p in map(Path, outs)] == stamp


def test_a_gs_series_work_folder_is_not_made_in_the_current_folder(
        tmp_path, monkeypatch, gcs_emulator, gcs_bucket):
    """With a gs:// --out, the consistent maps' unfinished work folder was made in the current
    folder (a killed run left it there for good); it goes to the folder the series names (the
    local product folder's consistent/, which the next run cleans), else the system's temp."""
    import tempfile

    from core.storage import TEMP_MARK, files
    from inference.predict.change.consistency import write_series

    rng = np.random.default_rng(2)
    paths = [str(class_cog(tmp_path / f"m{i}.tif", m))
             for i, m in enumerate(rng.integers(0, 2, (2, 30, 40)).astype(np.uint8))]
    cwd, system_temp = tmp_path / "cwd", tmp_path / "tmp"
    cwd.mkdir()
    system_temp.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(tempfile, "tempdir", str(system_temp))  # this test's own $TMPDIR
    seen: list[list[str]] = []

    def fix(_window, stack):  # the rule's block: where is the work folder meanwhile?
        seen.append([p.name for p in cwd.iterdir()] + [
            str(p) for p in (tmp_path / "local").glob(f"*{TEMP_MARK}*")] + [
            p.name for p in system_temp.iterdir()])
        return consistent_series(stack)

    outs = [f"gs://{gcs_bucket}/s/consistent/m{i}.tif" for i in range(2)]
    write_series(paths, outs, RULE, {"run": 1}, fix, work_dir=tmp_path / "local")
    assert seen and all(len(s) == 1 and TEMP_MARK in s[0] and "/local/" in s[0] for s in seen)
    seen.clear()
    write_series(paths, outs, RULE, {"run": 2}, fix)  # no folder named: the system's temp
    assert seen and all(len(s) == 1 and s[0].startswith(f"{TEMP_MARK}consistent-")
                        for s in seen)
    assert list(cwd.iterdir()) == [] and all(files.exists(o) for o in outs)
    assert not list((tmp_path / "local").iterdir()) and not list(system_temp.iterdir())
