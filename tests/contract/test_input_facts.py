"""The spectral facts tell right stacks from plausible wrong ones on real tiles.

The thresholds of ``contract.input_facts`` were set on a calibration set (the
Dynamic World Java and Ghana A tiles, the BigEarthNet Austria patch, eo-learn's first three
L1C dates, the Sen1Floods11, SEN12MS and two TerraMesh S1 files); these tests also run them
on the other real files, which played no part in setting them (Ghana B, BigEarthNet Ireland
and Finland, the four TerraMesh L2A cells, eo-learn's last two dates, the Sen1Floods11 L1C
chip, BigEarthNet's three S1 patches and two more TerraMesh S1 cells).
"""

from __future__ import annotations

import glob
from dataclasses import replace

import numpy as np
import pytest
import rasterio

from contract.input_facts import (
    RED_OVER_BLUE_MIN,
    InputFacts,
    findings,
    input_facts,
    judge_level,
    shown_level,
)

OPTICAL = ("B2", "B3", "B4", "B8")
L2A_CALIBRATION = ("dw:java", "dw:ghana_a", "ben:87_48")
L2A_TEST = ("dw:ghana_b", "ben:36_85", "ben:69_24", "tm:282D_485L_3_3", "tm:38D_378R_2_3",
            "tm:433D_629L_3_1", "tm:609U_541L_3_0")
L1C_CALIBRATION = ("eo:0", "eo:1", "eo:2")
L1C_TEST = ("eo:3", "eo:4", "sf:S2Hand")
S1_CALIBRATION = ("sf:S1Hand", "sen12ms", "tm:282D_485L_3_3", "tm:38D_378R_2_3")
S1_TEST = ("ben:87_48", "ben:36_85", "ben:69_24", "tm:433D_629L_3_1", "tm:609U_541L_3_0")
#: clear tiles: hazy (Ghana) and snow-covered (Hudson Bay) ones spread blue and red alike
CLEAR = ("dw:java", "ben:87_48", "ben:36_85", "ben:69_24", "tm:282D_485L_3_3",
         "tm:38D_378R_2_3", "tm:433D_629L_3_1")
#: vegetated tiles with dark objects below 0.05 (the hazy Ghana tiles' are at 0.08-0.1)
DARK = ("dw:java", "ben:87_48", "ben:36_85", "ben:69_24", "tm:282D_485L_3_3",
        "tm:38D_378R_2_3")


def _reflectance(shared, name: str) -> dict[str, np.ndarray]:
    kind, key = name.split(":")
    if kind == "dw":
        with rasterio.open(shared / "dynamicworld_s2" / f"{key}_s2l2a.tif") as ds:
            dn = ds.read([2, 3, 4, 8]).astype(np.float64)
    elif kind == "tm":
        with rasterio.open(shared / "terramesh_s1s2" / f"{key}_S2L2A.tif") as ds:
            dn = ds.read([2, 3, 4, 8]).astype(np.float64)  # unnamed, ESA's L2A order
    elif kind == "sf":
        with rasterio.open(shared / "sen1floods11_spain" / "Spain_7370579_S2Hand.tif") as ds:
            dn = ds.read([2, 3, 4, 8]).astype(np.float64)
    elif kind == "ben":
        dn = np.stack([_one(glob.glob(str(shared / "bigearthnet_examples" / "*S2*" / f"*{key}*"
                                          / f"*_{b}.tif"))) for b in ("B02", "B03", "B04", "B08")])
    else:  # eo-learn: L1C reflectance 0-1, (time, rows, cols, 13 bands)
        scenes = np.load(shared / "eolearn_slovenia" / "REFERENCE_SCENES.npy")
        return dict(zip(OPTICAL, np.moveaxis(scenes[int(key)][..., [1, 2, 3, 7]], -1, 0)
                        .astype(np.float64), strict=True))
    dn[:, (dn == 0).all(axis=0)] = np.nan
    return dict(zip(OPTICAL, dn / 10000, strict=True))


def _one(paths: list[str]) -> np.ndarray:
    (path,) = paths
    with rasterio.open(path) as ds:
        return ds.read(1).astype(np.float64)


def _sigma0(shared, name: str) -> dict[str, np.ndarray]:
    kind, _, key = name.partition(":")
    if kind == "ben":
        return {p: _one(glob.glob(str(shared / "bigearthnet_examples" / "*S1*" / f"*{key}*"
                                      / f"*_{p}.tif"))) for p in ("VV", "VH")}
    path = {"sf": shared / "sen1floods11_spain" / "Spain_7370579_S1Hand.tif",
            "sen12ms": shared / "sen12ms_patch_p30" / "ROIs1158_spring_s1_1_p30.tif",
            "tm": shared / "terramesh_s1s2" / f"{key}_S1RTC.tif"}[kind]
    with rasterio.open(path) as ds:
        return {"VV": ds.read(1).astype(np.float64), "VH": ds.read(2).astype(np.float64)}


def _kinds(samples) -> list[str]:
    return [f.kind for f in findings(input_facts(samples))]


@pytest.mark.parametrize("tile", L2A_CALIBRATION + L2A_TEST)
def test_real_l2a_tiles_pass_and_their_wrong_versions_do_not(tile, shared_data):
    s = _reflectance(shared_data, tile)
    assert _kinds(s) == []
    if tile in CLEAR:
        assert _kinds({**s, "B2": s["B4"], "B4": s["B2"]}) == ["b2_b4_swapped"]
    if tile != "tm:609U_541L_3_0":  # snow: no vegetation to swap
        assert _kinds({**s, "B3": s["B8"], "B8": s["B3"]}) == ["b3_b8_swapped"]
    if tile in DARK:
        assert _kinds({k: v - 0.1 for k, v in s.items()}) == ["offset_removed_twice"]


#: tiles without enough soil, concrete or roofs to judge by: Finland (forest, lakes), where
#: the spread shows the swap
NO_SOIL = ("ben:69_24",)


@pytest.mark.parametrize("tile", L2A_CALIBRATION + L2A_TEST)
def test_red_above_blue_over_soil_tells_a_swap_whatever_the_spread(tile, shared_data):
    """Red over blue on soil, concrete and roofs judges a swap where the spread cannot (a
    scene whose red spreads like its blue: the demo's synthetic one, 1.18 x, 0.85 x swapped)."""
    s = _reflectance(shared_data, tile)
    right = input_facts(s).optical
    swapped = input_facts({**s, "B2": s["B4"], "B4": s["B2"]}).optical
    assert right is not None and swapped is not None
    if tile in NO_SOIL:
        assert right.red_over_blue is None and swapped.red_over_blue is None
        return
    assert right.red_over_blue is not None and swapped.red_over_blue is not None
    assert right.red_over_blue > RED_OVER_BLUE_MIN  # hazy and snowy tiles near 0
    if tile in CLEAR:
        red_like_blue = replace(swapped, red_blue_spread=1.0)  # as the demo's scene's
        kinds = [f.kind for f in findings(InputFacts(red_like_blue, None))]
        assert kinds == ["b2_b4_swapped"]


@pytest.mark.parametrize("scene", L1C_CALIBRATION[1:] + L1C_TEST)
def test_real_l1c_scenes_are_told_from_l2a_by_path_radiance(scene, shared_data):
    s = _reflectance(shared_data, scene)
    assert _kinds(s) == ["top_of_atmosphere"]
    assert findings(input_facts(s), level="L1C") == []  # expected where the stack says L1C


def test_a_cloudy_l1c_scene_without_vegetation_cannot_show_its_level(shared_data):
    facts = input_facts(_reflectance(shared_data, "eo:0"))
    assert facts.optical is not None and facts.optical.blue_excess is None
    assert findings(facts) == []


@pytest.mark.parametrize("scene", S1_CALIBRATION + S1_TEST)
def test_real_sigma0_and_gamma0_pass_and_shifted_halved_or_amplitude_do_not(scene,
                                                                            shared_data):
    s = _sigma0(shared_data, scene)
    assert _kinds(s) == []
    assert _kinds({k: v + 10 for k, v in s.items()}) == ["s1_db_shifted"]
    assert _kinds({k: v / 2 for k, v in s.items()}) == ["s1_db_halved"]
    assert _kinds({k: np.sqrt(10 ** (v / 10)) for k, v in s.items()}) == ["s1_amplitude"]
    assert _kinds({k: 10 ** (v / 10) for k, v in s.items()}) == []  # linear power is sigma0


def test_the_facts_are_json_numbers():
    rng = np.random.default_rng(0)
    samples = {b: rng.uniform(0.02, 0.3, (32, 32)) for b in OPTICAL}
    samples |= {"VV": rng.normal(-12, 2, (32, 32)), "VH": rng.normal(-18, 2, (32, 32))}
    shown = input_facts(samples).to_dict()
    assert set(shown) == {"optical", "radar"} and shown["radar"]["unit"] == "dB"
    assert isinstance(shown["optical"]["floor"]["B2"], float)


@pytest.mark.parametrize("scene", L1C_CALIBRATION[1:] + L1C_TEST)
def test_a_top_of_atmosphere_stack_is_judged_by_its_pixels_not_its_name(scene, shared_data):
    facts = input_facts(_reflectance(shared_data, scene))
    assert shown_level(facts) == "L1C"
    refused = judge_level(facts)  # named nothing: refused all the same, by its pixels
    assert refused.taken == "L1C" and refused.finding is not None
    assert "path radiance is in the blue" in refused.finding.text
    assert refused.finding.fix == "give the Level-2A product of the scene"
    assert refused.notes == ()
    asked = judge_level(facts, allowed=True)
    assert asked.finding is None
    assert "mapped as asked (isamap-export/isamap-map --allow-l1c)" in asked.notes[0]
    taken = judge_level(facts, model_takes_l1c="it was trained on Level-1C exports")
    assert taken.finding is None and "it was trained on Level-1C exports" in taken.notes[0]


@pytest.mark.parametrize("tile", ("dw:java", "ben:87_48", "tm:433D_629L_3_1"))
def test_a_surface_reflectance_stack_named_l1c_is_mapped_as_what_its_pixels_show(tile,
                                                                                 shared_data):
    facts = input_facts(_reflectance(shared_data, tile))
    judged = judge_level(facts, stated="L1C")
    assert judged.shown == "L2A" and judged.taken == "L2A" and judged.finding is None
    assert "pixels show surface reflectance" in judged.notes[0]
    assert judge_level(facts) == judge_level(facts, allowed=True)  # nothing to allow


def test_a_stack_whose_pixels_cannot_tell_is_taken_at_its_word(shared_data):
    facts = input_facts(_reflectance(shared_data, "eo:0"))  # cloudy: no vegetation
    assert shown_level(facts) is None and judge_level(facts).finding is None
    named = judge_level(facts, stated="L1C")
    assert named.taken == "L1C" and "its tags or band names say" in named.finding.text
