"""What --scenes holds that is no new acquisition: copies of a scene, a name dated otherwise
than its tag, a stack isamap made (a new user's walk)."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio

from core.errors import InputDataError
from gee_export.local.scenes import discover_scenes
from gee_export.local.stack import build_local_stack
from gee_export.local.synthetic import generate_scene

PRODUCT = "S2X_MSIL2A_20190603T103021_N0000_SYNTHETIC"


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("scene")
    generate_scene(root / "scene", width=96, height=96, progress=False)
    return root / "scene"


def _copy(scene: Path, into: Path, name: str) -> Path:
    """``scene`` copied into ``into``, with one more copy of ``PRODUCT`` named ``name``."""
    shutil.copytree(scene, into)
    folder = into / "S2" / name
    folder.mkdir()
    for f in (into / "S2" / PRODUCT).iterdir():
        shutil.copy(f, folder / f.name.replace(PRODUCT, name))
    return folder


def _discover(path: Path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        found = discover_scenes(path)
    return found, [str(w.message) for w in caught]


def test_copies_of_an_acquisition_are_read_once(scene, tmp_path):
    """Every scene copied under another name was read twice into one composite."""
    shutil.copytree(scene / "S2", tmp_path / "more" / "S2")
    for folder in (tmp_path / "more" / "S2").iterdir():
        for f in folder.iterdir():
            f.rename(f.with_name(f.name.replace("SYNTHETIC", "COPY")))
    alone, said = _discover(scene)
    both, said = _discover([scene, tmp_path / "more"])
    assert len(alone.s2) == 4 and [s.product for s in both.s2] == [s.product for s in alone.s2]
    assert len(both.s1) == len(alone.s1)
    copies = [m for m in said if "again: acquired" in m]
    assert len(copies) == 4 and "left out (remove the copy from --scenes)" in copies[0]
    assert f"S2 scene {PRODUCT.replace('SYNTHETIC', 'COPY')}" in copies[0]


def test_another_acquisition_of_the_day_on_the_footprint_is_kept(scene, tmp_path):
    folder = _copy(scene, tmp_path / "scene", name=PRODUCT.replace("T103021", "T113021"))
    band = next(folder.glob("*_B02.tif"))
    with rasterio.open(band, "r+") as ds:  # other pixels: another pass, not a copy
        ds.write(np.clip(ds.read(1).astype(np.int32) + 7, 1, 60000).astype(ds.dtypes[0]), 1)
    found, said = _discover(tmp_path / "scene")
    assert len(found.s2) == 5 and not [m for m in said if "again" in m]


def _blank_centre(band: Path, shift: int = 0) -> None:
    """The centre window a copy is told by set to 0 (no data), ``shift`` added elsewhere."""
    with rasterio.open(band, "r+") as ds:
        data = ds.read(1).astype(np.int32) + shift
        data[16:80, 16:80] = 0
        ds.write(np.clip(data, 0, 60000).astype(ds.dtypes[0]), 1)


def test_acquisitions_whose_centre_holds_no_data_are_both_kept(scene, tmp_path):
    """Two passes of a day over a tile whose centre is outside both swaths compared equal by
    that empty window, and the second acquisition was dropped as a copy."""
    other = PRODUCT.replace("T103021", "T113021")
    folder = _copy(scene, tmp_path / "scene", name=other)
    band = _discover(tmp_path / "scene")[0].s2[0].bands[0][1].path  # the band copies compare
    assert band.parent.name == PRODUCT
    _blank_centre(band)
    _blank_centre(folder / band.name.replace(PRODUCT, other), shift=7)
    found, said = _discover(tmp_path / "scene")
    assert other in [s.product for s in found.s2] and len(found.s2) == 5
    assert not [m for m in said if "again" in m]
    shutil.rmtree(folder)  # a byte copy of the blanked scene is still told by its file
    _copy(tmp_path / "scene", tmp_path / "again", name=other)
    found, said = _discover(tmp_path / "again")
    assert len(found.s2) == 4 and len([m for m in said if "again: acquired" in m]) == 1


def test_a_name_dated_otherwise_than_its_tag_is_said_and_the_tag_used(scene, tmp_path):
    """A name of 2019-06-04 over a tag of 2019-06-03 was taken by the tag without a word."""
    renamed = PRODUCT.replace("20190603", "20190604")
    src = tmp_path / "scene"
    shutil.copytree(scene, src)
    folder = src / "S2" / PRODUCT
    for f in folder.iterdir():
        f.rename(folder / f.name.replace(PRODUCT, renamed))
    folder.rename(folder.with_name(renamed))
    found, said = _discover(src)
    assert [str(s.date) for s in found.s2 if s.product == renamed] == ["2019-06-03"]
    assert sum(f"{renamed}: its name says 2019-06-04, its ACQUISITION_DATE tag 2019-06-03; "
               "dated 2019-06-03 by the tag" in m for m in said) == 1
    _, said = _discover(scene)
    assert not [m for m in said if "its name says" in m]  # name and tag agree: nothing said


def _resaved(scene: Path, into: Path, name: str, written: str) -> None:
    """``scene`` copied with ``PRODUCT`` renamed ``name``, as GDAL or QGIS saves it again:
    no acquisition tag, the TIFF DateTime of the day it was written."""
    shutil.copytree(scene, into)
    folder = into / "S2" / PRODUCT
    for f in folder.iterdir():
        with rasterio.open(f, "r+") as ds:
            ds.update_tags(ACQUISITION_DATE="", TIFFTAG_DATETIME=written)
        f.rename(folder / f.name.replace(PRODUCT, name))
    folder.rename(folder.with_name(name))


def test_a_file_time_tag_does_not_outrank_the_names_date(scene, tmp_path):
    """A scene saved again on 2024-03-05 (TIFF DateTime, the file's processing time) was dated
    by that day, and the warning told the user to fix the name."""
    _resaved(scene, tmp_path / "scene", PRODUCT, "2024:03:05 10:00:00")
    found, said = _discover(tmp_path / "scene")
    assert [str(s.date) for s in found.s2 if s.product == PRODUCT] == ["2019-06-03"]
    told = [m for m in said if "its name says" in m]
    assert len(told) == 1 and told[0].startswith(
        f"{PRODUCT}: its name says 2019-06-03, its TIFFTAG_DATETIME tag 2024-03-05; dated "
        "2019-06-03 by the name (TIFFTAG_DATETIME is when the file was written")
    assert "rio edit-info --tag ACQUISITION_DATE=2024-03-05 FILE" in told[0]


def test_a_file_time_tag_dates_a_name_without_a_date(scene, tmp_path):
    """As before: a file whose only date is its TIFF DateTime is dated by it, with no word."""
    undated = "S2X_MSIL2A_TILE_SYNTHETIC"
    _resaved(scene, tmp_path / "scene", undated, "2019:06:03 10:30:21")
    found, said = _discover(tmp_path / "scene")
    assert [str(s.date) for s in found.s2 if s.product == undated] == ["2019-06-03"]
    assert not [m for m in said if "its name says" in m]


def test_a_stack_isamap_made_is_named_as_one_not_as_an_undated_scene(scene, tmp_path):
    grid = generate_scene(tmp_path / "g", width=96, height=96, progress=False).grid
    stack = build_local_stack(scene, grid, "2019-06", out_dir=tmp_path / "given" / "stack",
                              progress=False)
    with pytest.raises(InputDataError) as err:
        discover_scenes(tmp_path / "given")
    text = str(err.value)
    assert f"{stack.image} is a stack isamap made (the composite of 2019-06), not a scene" in text
    assert "give --scenes the folder of the Sentinel-1/2 scenes" in text
    assert f"isamap-predict --input {stack.image}" in text
    assert "no acquisition date" not in text
