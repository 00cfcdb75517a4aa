"""The Earth Engine formulas and the local backend's numpy ones agree (one recipe, two backends).

The Earth Engine speckle formulas are expression strings carried verbatim in the graph; here they
are evaluated with numpy on random local statistics and compared with gee_export.local.speckle.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from gee_export.ee import speckle as ee_speckle
from gee_export.local import refined_lee
from gee_export.local import speckle as local_speckle
from tests.support.ee_graph import evaluate, gamma_map_regimes

ENL = 4.4


@pytest.fixture
def stats():
    rng = np.random.default_rng(7)
    m = rng.uniform(0.005, 0.5, 4000)
    ci2 = rng.uniform(0.0, 3.0 / ENL, 4000)  # spans all three Gamma-MAP regimes
    var = ci2 * m * m
    z = m * rng.gamma(ENL, 1 / ENL, 4000)
    return m, var, ci2, z


def test_lee_weight_parity(stats):
    m, var, _, _ = stats
    ee_b = evaluate(ee_speckle.LEE_WEIGHT, m=m, var=var, cu2=1 / ENL)
    np.testing.assert_allclose(ee_b, local_speckle.lee_weight(m, var, ENL), rtol=1e-9,
                               atol=1e-12)


def test_gamma_map_parity(stats, ee_offline):
    m, _, ci2, z = stats
    cu2 = 1 / ENL
    alpha = evaluate(ee_speckle.GAMMA_MAP_ALPHA, cu2=cu2, ci2=ci2)
    est = evaluate(ee_speckle.GAMMA_MAP_ESTIMATE, alpha=alpha, L=ENL, m=m, z=z)
    # the graph's where() chain, thresholds read from the graph itself (test_speckle checks
    # that the low regime gets the mean and the high one the pixel)
    regimes = gamma_map_regimes(ee_offline.Image("S1").select("VV"), ENL)
    ee_x = np.where(ci2 >= regimes["gte"], z, np.where(ci2 <= regimes["lte"], m, est))
    local_x = local_speckle.gamma_map_estimate(z, m, np.sqrt(ci2), ENL)
    np.testing.assert_allclose(ee_x, local_x, rtol=1e-7)
    assert {"mean", "pixel", "map"} == {
        "mean" if c <= cu2 else "pixel" if c >= 2 * cu2 else "map" for c in ci2}


@pytest.mark.parametrize("enl,xi", [(1.0, 0.9), (4.4, 0.9), (4.0, 0.7)])
def test_sigma_range_parity(enl, xi):
    np.testing.assert_allclose(ee_speckle.sigma_range(enl, xi),
                               local_speckle.sigma_range(enl, xi), rtol=1e-6)


def test_refined_lee_tables_parity():
    assert ee_speckle._GRADIENTS == refined_lee._GRADIENTS
    assert ee_speckle._SIDES == refined_lee._SIDES


# ---------------------------------------------------------------------- one manifest writer
def _shape(value):
    """The structure of a JSON value: dict keys (recursively) and the kinds of the leaves."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return "list"
    return type(value).__name__ if value is not None else "null"


def test_both_backends_write_the_same_manifest_and_index(tmp_path, ee_offline):
    """A local-backend export and an Earth Engine export of one recipe: same dataset files.

    The Earth Engine side is the real recipe graph served by the fake pixel server from the
    local backend's stack, so both backends cut the same pixels; they must then describe the
    result identically (one writer: contract.dataset.commit_month).
    """
    from contract.dataset import DatasetSpec, read_index, read_manifest
    from contract.patches import patch_stack
    from gee_export.ee.export import ExportJob, export_pixels
    from gee_export.local.stack import build_local_stack
    from gee_export.local.synthetic import generate_scene
    from testing.fake_server import StackTransport
    from tests.support.killed_export import MONTH, build_recipe_images, session_for

    scene = generate_scene(tmp_path / "scene", width=208, height=208, fine_scale=2)
    stack = build_local_stack(tmp_path / "scene", scene.grid, MONTH, fine_scale=2,
                              speckle="boxcar", out_dir=tmp_path / "stack", progress=False)
    recipe = {"shared": "recipe", "speckle": "boxcar"}
    local_root, ee_root = tmp_path / "local", tmp_path / "ee"
    patch_stack(stack, local_root, backend="local", region="synthetic", recipe=recipe,
                progress=False)
    image, fine = build_recipe_images(ee_offline, stack.grid)
    spec = DatasetSpec(stack.grid, stack.bands, backend="ee", region="synthetic",
                       recipe=recipe, fine_scale=2)
    job = ExportJob(spec, MONTH, sources={"s2_window": {"month": MONTH}})
    export_pixels(session_for(StackTransport(stack, recipe=(image, fine))), image, job, ee_root,
                  fine_label=fine, workers=2, progress=False)

    records = read_index(local_root)
    assert records and records == read_index(ee_root)  # same patches, same records
    local, remote = read_manifest(local_root), read_manifest(ee_root)
    assert set(local) == set(remote)
    for key in ("counts", "label", "split", "grid", "complete", "months", "bands", "recipe"):
        assert _shape(local[key]) == _shape(remote[key]), key
        if key not in ("counts",):
            assert local[key] == remote[key], key
    assert local["counts"] == remote["counts"]  # per split, per month (invalid included)
    assert set(local["sources"]) == set(remote["sources"]) == {MONTH}
    assert isinstance(remote["sources"][MONTH], dict)
    assert remote["sources"][MONTH] == {"s2_window": {"month": MONTH}}
    assert (local["backend"], remote["backend"]) == ("local", "ee")
    assert local["sources"][MONTH]["fingerprint"].startswith("sha256:")
    # the manifest travels: the stack files by name, no folder of this machine
    assert local["sources"][MONTH]["image"] == f"stack_{MONTH}_image.tif"
    assert str(tmp_path) not in json.dumps(local) and str(tmp_path) not in json.dumps(remote)
