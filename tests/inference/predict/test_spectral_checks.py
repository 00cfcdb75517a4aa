"""Plausible wrong stacks are refused by their spectra, not their names (issue 69).

Each stack is a real GeoTIFF of real pixels: the Dynamic World Java tile (Sentinel-2 L2A),
the Sen1Floods11 chip (Sentinel-1 sigma0 in dB, Sentinel-2 L1C) and a TerraMesh cell
(Sentinel-1 gamma0 in dB), written on one 10 m grid and given to ``isamap-predict`` with a
model ``isamap-train`` trained. Before, every wrong stack here mapped with exit 0 (at most a
warning); now each is refused in one line naming an option ``isamap-predict`` has, or, with
that option, mapped with the reason in the COGs' ``input_notes`` tag and the printed report.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio

from cli.predict import predict_main, predict_parser
from tests.support.rasters import write_stack
from tests.support.refusals import assert_refused

COMMON = ["--tile", "64", "--overlap", "16", "--quiet", "--precision", "fp32"]
SIDE = 224


def _read(path, bands, scale=1.0, nodata_zero=False):
    with rasterio.open(path) as ds:
        data = ds.read(bands, window=((0, SIDE), (0, SIDE))).astype(np.float32) * scale
    if nodata_zero:
        data[:, (data == 0).all(axis=0)] = np.nan
    return data


#: the session's trained_unet and the module fixtures below are built once: their readers
#: run on one worker
pytestmark = pytest.mark.xdist_group("trained_unet")


@pytest.fixture(scope="module")
def real(shared_data):
    """Real B2, B3, B4, B8 (L2A and L1C) and VV, VH (sigma0 and gamma0 dB), 224 px a side."""
    return {
        "l2a": _read(shared_data / "dynamicworld_s2" / "java_s2l2a.tif", [2, 3, 4, 8], 1e-4,
                     True),
        "l1c": _read(shared_data / "sen1floods11_spain" / "Spain_7370579_S2Hand.tif",
                     [2, 3, 4, 8], 1e-4, True),
        "sigma0": _read(shared_data / "sen1floods11_spain" / "Spain_7370579_S1Hand.tif",
                        [1, 2]),
        "gamma0": _read(shared_data / "terramesh_s1s2" / "433D_629L_3_1_S1RTC.tif", [1, 2]),
    }


def _predict(model, stack, out, *extra):
    return predict_main(["--model", str(model), "--input", str(stack), "--out", str(out),
                         *COMMON, *extra])


def _stack(real, path, optical="l2a", radar="sigma0", edit=None):
    data = np.concatenate([real[optical], real[radar]]).copy()
    if edit is not None:
        data = edit(data)
    return write_stack(path, data)


def _swap(a, b):
    def edit(data):
        data[[a, b]] = data[[b, a]]
        return data
    return edit


def _shift(rows, value):
    def edit(data):
        data[rows] += value
        return data
    return edit


def _amplitude(data):
    data[4:] = np.sqrt(10 ** (data[4:] / 10))
    return data


def _halved(data):
    data[4:] /= 2
    return data


CASES = {  # case: (optical, radar, edit, words of the refusal)
    "B2/B4 swapped": ("l2a", "sigma0", _swap(0, 2), ("B2 and B4 are swapped",)),
    "B3/B8 swapped": ("l2a", "sigma0", _swap(1, 3), ("B3 and B8 are swapped",)),
    "L1C given as L2A": ("l1c", "sigma0", None, ("top-of-atmosphere (Level-1C)",
                                                 "give the Level-2A product")),
    "offset removed twice": ("l2a", "sigma0", _shift(slice(0, 4), -0.1),
                             ("reflectance offset (-0.1, 1000 DN) was subtracted",)),
    "S1 dB + 10": ("l2a", "sigma0", _shift(slice(4, 6), 10.0), ("shifted by a constant",)),
    "S1 amplitude in dB": ("l2a", "sigma0", _halved, ("halved: 10 log10 of amplitude",)),
    "S1 amplitude": ("l2a", "sigma0", _amplitude, ("are amplitude", "20 log10(value)")),
}


def test_real_l2a_and_sigma0_map_with_their_facts_recorded(trained_unet, real, tmp_path,
                                                            capsys):
    stack = _stack(real, tmp_path / "ok.tif")
    assert _predict(trained_unet, stack, tmp_path / "o" / "isa") == 0
    assert "input_notes" not in capsys.readouterr().out
    with rasterio.open(tmp_path / "o" / "isa_class.tif") as ds:
        tags = ds.tags()
    assert "input_notes" not in tags
    facts = json.loads(tags["input_facts"])
    assert facts["radar"]["unit"] == "dB" and facts["optical"]["vegetation"] > 0.5


@pytest.mark.parametrize("case", list(CASES))
def test_a_wrong_stack_is_refused_in_one_line(case, trained_unet, real, tmp_path,
                                              capsys):
    optical, radar, edit, words = CASES[case]
    stack = _stack(real, tmp_path / "s.tif", optical, radar, edit)
    status = _predict(trained_unet, stack, tmp_path / "o" / "isa")
    assert_refused(status, capsys.readouterr().err, predict_parser(), *words)
    assert not (tmp_path / "o").exists()  # refused before anything was written


def test_allow_implausible_maps_a_doubted_stack_with_the_reason_recorded(
        trained_unet, real, tmp_path, capsys):
    stack = _stack(real, tmp_path / "s.tif", edit=_swap(0, 2))
    assert _predict(trained_unet, stack, tmp_path / "o" / "isa", "--allow-implausible") == 0
    report = capsys.readouterr().out
    notes = json.loads(report[report.index("{"):])["input_notes"]
    assert len(notes) == 1 and "B2 and B4 are swapped" in notes[0]
    for kind in ("class", "prob"):
        with rasterio.open(tmp_path / "o" / f"isa_{kind}.tif") as ds:
            assert json.loads(ds.tags()["input_notes"]) == notes


def test_gamma0_for_sigma0_maps_with_its_statistics_recorded(trained_unet, real, tmp_path,
                                                             capsys):
    """Gamma0 and sigma0 differ by less than real scenes do: mapped, the medians recorded."""
    stack = _stack(real, tmp_path / "g.tif", radar="gamma0")
    assert _predict(trained_unet, stack, tmp_path / "o" / "isa") == 0
    with rasterio.open(tmp_path / "o" / "isa_class.tif") as ds:
        radar = json.loads(ds.tags()["input_facts"])["radar"]
    assert radar["median"]["VV"] == pytest.approx(float(np.nanmedian(real["gamma0"][0])),
                                                  abs=0.5)
