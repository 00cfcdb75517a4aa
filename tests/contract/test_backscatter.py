"""Sigma0 or gamma0: what the real tiles show, what a model's recipe says, what a map notes."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from contract.backscatter import (
    LIKELY_SHIFT_DB,
    MIX_UP_DB,
    backscatter_note,
    likely_mix_up,
    trained_backscatter,
)
from contract.input_facts import radar_facts
from tests.contract.test_input_facts import _sigma0

SIGMA0 = ("ben:87_48", "ben:36_85", "ben:69_24", "sf:S1Hand", "sen12ms")
GAMMA0 = ("tm:282D_485L_3_3", "tm:38D_378R_2_3", "tm:433D_629L_3_1", "tm:609U_541L_3_0")
SIGMA0_MODEL = trained_backscatter({"s1": {"terrain_flattening": "none"}})


def _stats(s) -> dict[str, float]:
    ok = np.isfinite(s["VV"]) & np.isfinite(s["VH"])
    vv, vh = s["VV"][ok], s["VH"][ok]
    spread = [np.percentile(v, 90) - np.percentile(v, 10) for v in (vv, vh)]
    return {"VV": float(np.median(vv)), "VH": float(np.median(vh)),
            "cross_pol": float(np.median(vv - vh)), "spread_ratio": spread[0] / spread[1],
            "r": float(np.corrcoef(vv, vh)[0, 1]), "cross_pol_sd": float((vv - vh).std())}


@pytest.fixture(scope="module")
def tiles(shared_data):
    return {t: _sigma0(shared_data, t) for t in SIGMA0 + GAMMA0}


def _ranges(s) -> dict[str, tuple[float, float, float]]:
    return {b: tuple(float(np.nanpercentile(s[b], q)) for q in (1, 50, 99))  # type: ignore
            for b in ("VV", "VH")}


def test_no_pixel_statistic_tells_the_real_gamma0_tiles_from_the_sigma0_ones(tiles):
    stats = {t: _stats(s) for t, s in tiles.items()}
    for name in stats[SIGMA0[0]]:
        sigma0 = [stats[t][name] for t in SIGMA0]
        gamma0 = [stats[t][name] for t in GAMMA0]
        if name == "VV":  # the ranges touch, the gamma0 tiles on the darker side although
            # gamma0 is the brighter quantity: the scenes, not the processing, set the level
            assert 0 <= min(sigma0) - max(gamma0) < 0.1
            continue
        assert min(gamma0) < max(sigma0) and min(sigma0) < max(gamma0), name  # overlap


@pytest.mark.parametrize("tile", SIGMA0)
@pytest.mark.parametrize("angle", [31.0, 38.0, 45.0])
def test_gamma0_made_from_a_real_sigma0_tile_is_noted_as_the_likely_cause(tile, angle, tiles):
    s = tiles[tile]
    shift = -10 * math.log10(math.cos(math.radians(angle)))
    assert MIX_UP_DB[0] - 0.05 <= shift <= MIX_UP_DB[1]
    gamma0 = {b: v + shift for b, v in s.items()}
    note = backscatter_note(radar_facts(gamma0), SIGMA0_MODEL, _ranges(s))
    assert note is not None and "gamma0 given where sigma0 is expected is the likely cause" in note
    assert "--terrain-flattening none" in note
    assert backscatter_note(radar_facts(s), SIGMA0_MODEL, _ranges(s)) is None  # its own kind
    gamma0_model = trained_backscatter({"s1": {"terrain_flattening": "volume"}})
    note = backscatter_note(radar_facts(s), gamma0_model, _ranges(gamma0))
    assert note is not None and "sigma0 given where gamma0 is expected" in note


def test_between_real_scenes_the_mix_up_pattern_is_rare_and_never_across_kinds(tiles):
    """The counts the module's docstring gives: 1 of 32 same-kind pairs, 0 of 40 across."""
    medians = {t: _stats(s) for t, s in tiles.items()}
    kind = {**dict.fromkeys(SIGMA0, "sigma0"), **dict.fromkeys(GAMMA0, "gamma0")}
    same, across, either = [], [], []
    for a, b in itertools.permutations(tiles, 2):
        shift = {p: medians[b][p] - medians[a][p] for p in ("VV", "VH")}
        fired = likely_mix_up(shift, kind[a])  # type: ignore[arg-type]
        (same if kind[a] == kind[b] else across).append(fired)
        either.append(likely_mix_up(shift, None))
    assert (sum(same), len(same)) == (1, 32)
    assert (sum(across), len(across)) == (0, 40)
    assert (sum(either), len(either)) == (4, 72)


@pytest.mark.parametrize(("recipe", "kind"), [
    ({"s1": {"terrain_flattening": "none"}, "s2": {}}, "sigma0"),
    ({"s1": {"terrain_flattening": "volume"}}, "gamma0"),
    ({"s1": {"terrain_flattening": "surface"}}, "gamma0"),
    ({"backend": "local", "speckle": "refined_lee"}, None),  # GRD or RTC scenes: not recorded
    ({"imported": {"impervious": [1]}}, None),
    ({}, None),
    (None, None),
])
def test_the_backscatter_a_model_learned_is_read_from_its_recipe(recipe, kind):
    assert trained_backscatter(recipe).kind == kind


def test_only_a_shift_the_mix_up_makes_is_noted(tiles):
    s = tiles["sf:S1Hand"]
    assert backscatter_note(radar_facts(s), SIGMA0_MODEL, {}) is None  # nothing to compare
    one_band = {**_ranges(s), "VV": (1.0, 2.0)}
    assert backscatter_note(radar_facts(s), SIGMA0_MODEL, one_band) is None
    apart = {"VV": s["VV"] + 1.5, "VH": s["VH"] + 0.5}  # not alike: no mix-up
    assert backscatter_note(radar_facts(apart), SIGMA0_MODEL, _ranges(s)) is None
    darker = {b: v - 1.0 for b, v in s.items()}  # the way sigma0 lies from gamma0, not gamma0
    assert backscatter_note(radar_facts(darker), SIGMA0_MODEL, _ranges(s)) is None
    assert backscatter_note(None, SIGMA0_MODEL, _ranges(s)) is None
    unknown = trained_backscatter({})
    assert backscatter_note(radar_facts(s), unknown, _ranges(s)) is None  # no shift
    shifted = backscatter_note(radar_facts({b: v + 1.0 for b, v in s.items()}), unknown,
                               _ranges(s))
    assert shifted is not None and "does not record which backscatter" in shifted
    assert "sigma0/gamma0 mix-up" in shifted and "0.6-1.6 dB" in shifted


def test_linear_power_is_compared_in_db(tiles):
    s = tiles["ben:87_48"]
    linear = {b: 10 ** (v / 10) for b, v in s.items()}
    gamma0 = {b: v / math.cos(math.radians(38)) for b, v in linear.items()}
    ranges = {b: tuple(float(np.percentile(v, q)) for q in (1, 50, 99))
              for b, v in linear.items()}
    note = backscatter_note(radar_facts(gamma0), SIGMA0_MODEL, ranges)
    assert note is not None and "likely cause" in note
    assert LIKELY_SHIFT_DB[0] < 10 * math.log10(1 / math.cos(math.radians(38))) < LIKELY_SHIFT_DB[1]


@pytest.mark.parametrize("shift", [-0.5, -0.45, 0.4, 0.55])
def test_a_shift_smaller_than_any_mix_up_names_none(shift, tiles):
    """A model's own training stack sat -0.4 and -0.5 dB from its split's medians (a new
    user's walk): less than the smallest real mix-up (MIX_UP_DB), so no mix-up is named."""
    s = tiles["sf:S1Hand"]
    unknown = trained_backscatter({"backend": "local"})
    near = {b: v + shift for b, v in s.items()}
    assert backscatter_note(radar_facts(near), unknown, _ranges(s)) is None
    assert LIKELY_SHIFT_DB[0] >= MIX_UP_DB[0]
    assert not likely_mix_up({"VV": -0.4, "VH": -0.5}, None)
    assert likely_mix_up({"VV": -0.7, "VH": -0.7}, None)  # a real mix-up's size still is
