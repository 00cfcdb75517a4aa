"""The physical rules of band values: each quantity told apart from the others by its values."""

from __future__ import annotations

import numpy as np
import pytest

from contract.band_values import (
    band_value_problem,
    band_value_problems,
    red_nir_swapped,
    s1_unit_evidence,
)

RNG = np.random.default_rng(0)
DB = -14 + 4 * RNG.normal(size=4096)  # sigma0 in dB
LINEAR = 10 ** (DB / 10)  # the same in linear power
REFLECTANCE = np.clip(0.12 + 0.05 * RNG.normal(size=4096), 0.0, None)
CLEAR_WATER_SWIR = 0.003 + 0.001 * RNG.random(4096)  # the darkest a real band gets


@pytest.mark.parametrize("name,values,says", [
    ("VV", DB, None),
    ("VV", LINEAR, "not sigma0 in dB but linear power"),
    ("VH", REFLECTANCE, "not sigma0 in dB"),
    ("VV", DB * 100, "dB x 100"),
    ("B2", REFLECTANCE, None),
    ("B8", REFLECTANCE * 10000, "reflectance x 10000"),
    ("B4", DB, "looks like sigma0 in dB"),
    ("B2", REFLECTANCE * 1e-4, "scaled down a second time"),  # 0-1 values given --scale 0.0001
    ("B12", CLEAR_WATER_SWIR, None),
    ("B2", np.concatenate([np.zeros(8192), REFLECTANCE]), None),  # zero fill, told elsewhere
    ("label", DB, None),  # no value rule for the label
    ("unknown", DB, None),
])
def test_each_quantity_is_told_by_its_values(name, values, says):
    problem = band_value_problem(name, values)
    assert (problem is None) if says is None else (says in problem)


def test_a_sample_with_few_values_is_not_judged():
    assert band_value_problem("B2", np.array([5000.0, np.nan, 7000.0])) is None


def test_red_and_nir_of_vegetation_are_told_apart_from_swapped_ones():
    veg = RNG.random(4096) < 0.7
    red = np.where(veg, 0.04, 0.2) + 0.01 * RNG.random(4096)
    nir = np.where(veg, 0.4, 0.25) + 0.01 * RNG.random(4096)
    assert not red_nir_swapped(red, nir)
    assert red_nir_swapped(nir, red)
    water = np.full(4096, 0.03)  # dark in both: never judged swapped
    assert not red_nir_swapped(water + 0.01, water)
    assert not red_nir_swapped(DB, DB)  # not reflectance: no judgement
    assert "swapped" in band_value_problems({"B4": nir, "B8": red})[0]


def test_unit_evidence_is_the_one_the_local_backend_uses():
    from gee_export.local import plausibility

    assert plausibility.s1_unit_evidence is s1_unit_evidence
    assert s1_unit_evidence(LINEAR).unit == "linear" and s1_unit_evidence(DB).unit == "dB"
