"""``isamap-map --backend local`` given gamma0 scenes for a model that learned sigma0.

The model's recipe is the local export's, which does not record whether its scenes were GRD
(sigma0) or RTC (gamma0), so both directions are judged; its file
records the VV and VH ranges of the stack the sigma0 scenes make. The same scenes divided by
cos θ (gamma0 on flat ground, θ = 38°) map, exit 0, with the likely cause in the COGs'
``input_notes`` tag and the summary; the sigma0 scenes map without a note.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import replace

import numpy as np
import pytest
import rasterio

from tests.inference.mapping.test_map_l1c import _map, town  # noqa: F401 (a fixture)
from training.modelfile import load_model_file, save_model_file

COS = math.cos(math.radians(38.0))


def _summary_notes(out_dir, capsys):
    out = capsys.readouterr().out
    summary = json.loads(out[out.rfind("\n{") + 1:])
    (date,) = summary["dates"].values()
    (cog,) = out_dir.rglob("*_class.tif")
    with rasterio.open(cog) as ds:
        tag = ds.tags().get("input_notes")
    return date.get("input_notes"), tag


#: the module-scoped fixtures below are built once: their tests run on one worker
pytestmark = pytest.mark.xdist_group("inference.mapping.test_map_backscatter")


@pytest.fixture(scope="module")
def sigma0_model(town, tmp_path_factory):  # noqa: F811
    """The town's model, its file recording the VV and VH ranges of the sigma0 stack."""
    root = tmp_path_factory.mktemp("sigma0")
    assert _map(town, town["scene"], root / "first") == 0
    (stack,) = (root / "first").rglob("stack_*_image.tif")
    with rasterio.open(stack) as ds:
        values = {name: ds.read(i + 1) for i, name in enumerate(ds.descriptions)}
    ranges = {b: tuple(float(np.nanpercentile(values[b], q)) for q in (1, 50, 99))
              for b in ("VV", "VH")}
    model, meta = load_model_file(town["model"])
    assert meta.s1_backscatter().kind is None  # a local export: GRD or RTC, not recorded
    return save_model_file(root / "m.pt", model, replace(meta, band_ranges=ranges))


def _as_gamma0(folder):
    """Every S1 scene (linear power) divided by cos θ, as terrain flattening on flat ground."""
    for path in sorted((folder / "S1").rglob("*.tif")):
        with rasterio.open(path) as src:
            data, profile, tags = src.read(), src.profile, src.tags()
        with rasterio.open(path, "w", **profile) as dst:
            dst.write((data / COS).astype(profile["dtype"]))
            dst.update_tags(**tags)


@pytest.mark.slow
def test_gamma0_scenes_map_with_the_likely_cause_recorded(town, sigma0_model, tmp_path,  # noqa: F811
                                                          capsys):
    scenes = tmp_path / "gamma0"
    shutil.copytree(town["scene"], scenes)
    _as_gamma0(scenes)
    model_town = {**town, "model": sigma0_model}
    assert _map(model_town, scenes, tmp_path / "o") == 0
    printed, tag = _summary_notes(tmp_path / "o", capsys)
    assert printed is not None and json.loads(tag) == printed
    (note,) = printed
    assert "the model file does not record which backscatter it learned (a local export" in note
    assert "as a sigma0/gamma0 mix-up shifts them: a mix-up is the likely cause" in note


def test_sigma0_scenes_map_without_a_note(town, sigma0_model, tmp_path, capsys):  # noqa: F811
    assert _map({**town, "model": sigma0_model}, town["scene"], tmp_path / "o") == 0
    assert _summary_notes(tmp_path / "o", capsys) == (None, None)
