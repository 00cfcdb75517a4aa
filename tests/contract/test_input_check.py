"""The one input check's rules (:mod:`contract.input_check`) on the real tiles of the shared data.

The fingerprint rules judge the shape of a difference, not its size: a stack of another real
scene than the training data's passes (each of the seven tiles against each other's
fingerprint), while a transposition, an offset, a path radiance or a sigma0 shift of the
training scene itself is named. Fill is a constant in every band, or in one sensor's.
"""

from __future__ import annotations

import glob
import itertools

import numpy as np
import pytest
import rasterio

from contract.input_check import (
    Fingerprint,
    fill_value,
    fingerprint_of,
    fingerprint_problems,
    judge_stack,
)
from core.errors import InputDataError

pytestmark = pytest.mark.slow  # the seven tiles take seconds to read


def _tiles(shared_data) -> dict[str, dict[str, np.ndarray]]:
    tiles = {}
    for name in ("java", "ghana_a", "ghana_b"):
        with rasterio.open(shared_data / "dynamicworld_s2" / f"{name}_s2l2a.tif") as ds:
            dn = ds.read([2, 3, 4, 8]).astype(np.float64)
        dn[dn == 0] = np.nan
        tiles[name] = dict(zip(("B2", "B3", "B4", "B8"), dn / 1e4, strict=True))
    for s2 in sorted(glob.glob(str(shared_data / "terramesh_s1s2" / "*_S2L2A.tif"))):
        with rasterio.open(s2) as ds:
            dn = ds.read([2, 3, 4, 8]).astype(np.float64)
        with rasterio.open(s2.replace("S2L2A", "S1RTC")) as ds:
            sar = ds.read().astype(np.float64)
        tiles[s2.split("/")[-1][:12]] = dict(
            zip(("B2", "B3", "B4", "B8", "VV", "VH"), [*(dn / 1e4), *sar], strict=True))
    return tiles


@pytest.fixture(scope="module")
def tiles(shared_data):
    return _tiles(shared_data)


def test_another_real_scene_is_not_taken_for_a_fault(tiles):
    for (a, train), (b, stack) in itertools.permutations(tiles.items(), 2):
        fp = fingerprint_of(train)
        common = {k: v for k, v in stack.items() if k in fp.bands}
        if set(common) == set(fp.bands):
            assert fingerprint_problems(common, fp) == [], (a, b)


@pytest.mark.parametrize("fault, words", [
    ("swap", "B2 and B4 are swapped"), ("offset", "offset of about +0.10"),
    ("toa", "path radiance"), ("s1", "sigma0 is shifted alike"),
    ("scale", "on another scale")])
def test_a_fault_of_the_training_scene_is_named(tiles, fault, words):
    tile = tiles["38D_378R_2_3"]  # a Tanzanian cell: S2 and S1
    fp = Fingerprint.from_dict(fingerprint_of(tile).to_dict())  # as a file records it
    edited = dict(tile)
    if fault == "swap":
        edited["B2"], edited["B4"] = tile["B4"], tile["B2"]
    elif fault == "offset":
        edited.update({b: tile[b] + 0.1 for b in ("B2", "B3", "B4", "B8")})
    elif fault == "toa":
        edited.update({b: tile[b] + d for b, d in zip(("B2", "B3", "B4", "B8"),
                                                        (0.06, 0.04, 0.025, 0.01), strict=True)})
    elif fault == "s1":
        edited.update({b: tile[b] + 2.5 for b in ("VV", "VH")})
    else:
        edited.update({b: tile[b] * 10000 for b in ("B2", "B3", "B4", "B8")})
    assert fingerprint_problems(tile, fp) == []
    assert any(words in p for p in fingerprint_problems(edited, fp)), fault


def test_fill_is_a_constant_of_every_band_or_of_one_sensors(tiles):
    names = ["B2", "B3", "B4", "B8", "VV", "VH"]
    stack = np.stack([tiles["38D_378R_2_3"][b] for b in names])
    assert fill_value(stack, names) is None
    filled = stack.copy()
    filled[:, :30] = -9999
    assert fill_value(filled, names) == (-9999.0, pytest.approx(30 / 224), "every band")
    strip = stack.copy()
    strip[:4, :, :15] = 0
    value, _, words = fill_value(strip, names)
    assert (value, words) == (0.0, "every S2 band (B2, B3, B4, B8)")
    tagged = stack.copy()
    tagged[:, :30] = np.nan  # nodata as read: not fill
    assert fill_value(tagged, names) is None


def test_fill_is_refused_before_any_other_doubt_and_doubts_name_the_override(tiles):
    tile = tiles["38D_378R_2_3"]
    filled = {b: np.where(np.arange(224)[:, None] < 40, -32768.0, v) for b, v in tile.items()}
    with pytest.raises(InputDataError, match=r"are -32768 in every band.*--nodata -32768"):
        judge_stack("x.tif", filled, allow_implausible=True)
    swapped = {**tile, "VV": tile["VH"], "VH": tile["VV"]}
    with pytest.raises(InputDataError, match=r"VV and VH are swapped.*--allow-implausible"):
        judge_stack("x.tif", swapped)
    notes = judge_stack("x.tif", swapped, allow_implausible=True)
    assert notes and notes[0].startswith("accepted with --allow-implausible: ")
