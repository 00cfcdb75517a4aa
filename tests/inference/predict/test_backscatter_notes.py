"""Gamma0 given where sigma0 is expected is mapped with the likely cause recorded.

The pixels cannot tell the two apart (:mod:`contract.backscatter`), so a gamma0 stack mapped
with exit 0 and nothing in its tags. A model whose training recipe says sigma0 (an Earth
Engine export without terrain flattening) is given the stack it was trained on (real
Sentinel-2 L2A of the Dynamic World Java tile, real sigma0 of the Sen1Floods11 chip), and
that stack turned into gamma0 (sigma0 / cos θ at 38°): only the second carries a note, in
the COGs' ``input_notes`` tag and the printed summary. A model file of an older isamap
(no recipe, no ranges) still loads and maps, without the note.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import replace

import numpy as np
import pytest
import rasterio

from tests.inference.predict.test_expected_inputs import older  # noqa: F401
from tests.inference.predict.test_spectral_checks import _predict, _stack, real  # noqa: F401
from tests.support.rasters import BANDS
from training.modelfile import load_model_file, read_model_file, save_model_file

GAMMA0_DB = -10 * math.log10(math.cos(math.radians(38.0)))  # +0.94 dB


#: the module-scoped fixtures below are built once: their tests run on one worker
pytestmark = pytest.mark.xdist_group("inference.predict.test_backscatter_notes")


@pytest.fixture(scope="module")
def sigma0_model(trained_unet, real, tmp_path_factory):  # noqa: F811
    """The trained model, its file recording a sigma0 recipe and the real stack's ranges."""
    model, meta = load_model_file(trained_unet)
    data = np.concatenate([real["l2a"], real["sigma0"]])
    ranges = {b: tuple(float(np.nanpercentile(v, q)) for q in (1, 50, 99))
              for b, v in zip(BANDS, data, strict=True)}
    dataset = {**dict(meta.extra).get("dataset", {}),
               "recipe": {"bands": list(BANDS), "s1": {"terrain_flattening": "none"}}}
    meta = replace(meta, band_ranges=ranges, extra={**dict(meta.extra), "dataset": dataset})
    return save_model_file(tmp_path_factory.mktemp("sigma0") / "m.pt", model, meta)


def _gamma0(data):
    data[4:] += GAMMA0_DB  # sigma0 / cos(theta), in dB
    return data


def _notes(out, capsys):
    report = capsys.readouterr().out
    printed = json.loads(report[report.index("{"):]).get("input_notes")
    tags = []
    for kind in ("class", "prob"):
        with rasterio.open(out.parent / f"{out.name}_{kind}.tif") as ds:
            tags.append(ds.tags().get("input_notes"))
    return printed, tags


def test_the_model_file_says_it_learned_sigma0(sigma0_model):
    meta, _ = read_model_file(sigma0_model)
    assert meta.s1_backscatter().kind == "sigma0"


def test_gamma0_given_to_a_sigma0_model_maps_with_the_likely_cause_recorded(
        sigma0_model, real, tmp_path, capsys):  # noqa: F811
    stack = _stack(real, tmp_path / "g.tif", edit=_gamma0)
    assert _predict(sigma0_model, stack, tmp_path / "o" / "isa") == 0
    printed, tags = _notes(tmp_path / "o" / "isa", capsys)
    assert printed is not None and len(printed) == 1
    (note,) = printed
    assert "the model learned sigma0" in note and "cannot show" in note
    assert "gamma0 given where sigma0 is expected is the likely cause" in note
    shifts = re.search(r"([+-][\d.]+) and ([+-][\d.]+) dB from the training medians", note)
    assert shifts is not None and "0.6-1.6 dB" in note
    assert [float(v) for v in shifts.groups()] == pytest.approx([GAMMA0_DB] * 2, abs=0.15)
    assert all(json.loads(t) == printed for t in tags)


def test_sigma0_given_to_a_sigma0_model_maps_without_a_note(
        sigma0_model, real, tmp_path, capsys):  # noqa: F811
    stack = _stack(real, tmp_path / "s.tif")
    assert _predict(sigma0_model, stack, tmp_path / "o" / "isa") == 0
    printed, tags = _notes(tmp_path / "o" / "isa", capsys)
    assert printed is None and tags == [None, None]


def test_a_model_file_without_the_record_still_loads_and_maps(older, real, tmp_path,  # noqa: F811
                                                              capsys):
    meta, _ = read_model_file(older)
    assert meta.s1_backscatter().kind is None and "does not record" in meta.s1_backscatter().source
    stack = _stack(real, tmp_path / "g.tif", edit=_gamma0)
    assert _predict(older, stack, tmp_path / "o" / "isa") == 0
    printed, _ = _notes(tmp_path / "o" / "isa", capsys)
    assert printed is None  # no training medians: nothing to compare (logged, not noted)
