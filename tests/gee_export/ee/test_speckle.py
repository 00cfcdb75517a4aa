"""Speckle filters: the formulas (evaluated with numpy, checked against the papers) and graphs."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from gee_export.ee import speckle
from tests.support import ee_graph
from tests.support.ee_graph import evaluate, gamma_map_regimes


def test_lee_weight_is_lee_1980():
    rng = np.random.default_rng(0)
    m = rng.uniform(0.01, 1, 1000)
    var = rng.uniform(0.0, 1, 1000) * m * m
    cu2 = 1 / 4.4
    b = evaluate(speckle.LEE_WEIGHT, m=m, var=var, cu2=cu2)
    ci2 = var / m**2
    paper = np.maximum((1 - cu2 / ci2) / (1 + cu2), 0)  # Lee (1980) in Lopes (1990) notation
    np.testing.assert_allclose(b, paper, rtol=1e-9)
    est = evaluate(speckle.LEE_ESTIMATE, m=m, b=b, z=2 * m)
    assert np.all(est >= m) and np.all(est <= 2 * m)  # between the mean and the pixel


def test_gamma_map_is_lopes_positive_root():
    rng = np.random.default_rng(1)
    L, cu2 = 4.4, 1 / 4.4
    m = rng.uniform(0.01, 1, 500)
    ci2 = rng.uniform(cu2 * 1.01, 2 * cu2 * 0.99, 500)  # the MAP regime
    z = m * rng.gamma(L, 1 / L, 500)
    alpha = evaluate(speckle.GAMMA_MAP_ALPHA, cu2=cu2, ci2=ci2)
    np.testing.assert_allclose(alpha, (1 + cu2) / (ci2 - cu2))
    x = evaluate(speckle.GAMMA_MAP_ESTIMATE, alpha=alpha, L=L, m=m, z=z)
    assert np.all(x > 0)
    # Lopes (1990): alpha x^2 - (alpha - L - 1) m x - L z m = 0
    residual = alpha * x**2 - (alpha - L - 1) * m * x - L * z * m
    np.testing.assert_allclose(residual / (L * z * m), 0, atol=1e-9)
    # nearly homogeneous scene (alpha -> infinity): the estimate tends to the local mean
    big = evaluate(speckle.GAMMA_MAP_ESTIMATE, alpha=1e9, L=L, m=m, z=z)
    np.testing.assert_allclose(big, m, rtol=1e-6)


@pytest.mark.parametrize("enl,xi", [(1.0, 0.9), (4.0, 0.9), (4.4, 0.8), (4.0, 0.5)])
def test_lee_sigma_range_conditions(enl, xi):
    i1, i2, eta = speckle.sigma_range(enl, xi)
    g = stats.gamma(a=enl, scale=1 / enl)
    assert g.cdf(i2) - g.cdf(i1) == pytest.approx(xi, abs=1e-6)  # holds xi of the speckle
    inside = g.expect(lambda x: x, lb=i1, ub=i2) / xi
    assert inside == pytest.approx(1.0, abs=1e-6)  # unbiased mean (Lee et al. 2009)
    sample = g.rvs(size=400_000, random_state=2)
    kept = sample[(sample >= i1) & (sample <= i2)]
    assert kept.std() / kept.mean() == pytest.approx(eta, rel=0.02)
    assert eta < 1 / np.sqrt(enl)  # truncation reduces the speckle variation


def test_lee_sigma_four_look_table_close_to_paper():
    i1, i2, eta = speckle.sigma_range(4.0, 0.5)
    assert (round(i1, 3), round(i2, 3), round(eta, 3)) == (0.694, 1.385, 0.192)


def test_filter_graphs(ee_offline):
    ee = ee_offline
    z = ee.Image("COPERNICUS/S1_GRD_FLOAT/S1A_X").select("VV")
    region = ee.Geometry.Rectangle([114.2, 30.4, 114.5, 30.7])

    box = ee_graph.names(speckle.boxcar(z, 5))
    assert "Reducer.mean" in box and "Kernel.square" in box

    lee = speckle.lee(z, 7, 4.4)
    assert speckle.LEE_WEIGHT in ee_graph.expressions(lee)
    kernel = ee_graph.first_call(lee, "Kernel.square")["arguments"]
    assert kernel["radius"]["constantValue"] == 3

    gmap = speckle.gamma_map(z, 7, 4.4)
    exprs = ee_graph.expressions(gmap)
    assert speckle.GAMMA_MAP_ESTIMATE in exprs and speckle.GAMMA_MAP_ALPHA in exprs
    assert ee_graph.names(gmap).count("Image.where") == 2  # three regimes

    rlee = speckle.refined_lee(z)
    fixed = [c for c in ee_graph.calls(rlee) if c["functionName"] == "Kernel.fixed"]
    weights = {str(c["arguments"]["weights"]) for c in fixed}
    assert len(weights) == 1 + 8  # the sub-window sampler + eight directional half-windows
    assert {"Image.neighborhoodToBands", "Image.arraySort", "Image.arraySlice"} <= set(
        ee_graph.names(rlee))

    sig = speckle.lee_sigma(z, region)
    names = ee_graph.names(sig)
    assert "Image.and" in names and "Image.or" not in names  # the range test is And
    assert "Reducer.countDistinctNonNull" not in names  # bright pixels are summed
    assert "Image.neighborhoodToArray" in names and "Reducer.percentile" in names


@pytest.mark.parametrize("method", speckle.SPECKLE_FILTERS)
def test_every_filter_indexes_its_arrays_with_their_rank(ee_offline, method):
    z = ee_offline.Image("COPERNICUS/S1_GRD_FLOAT/S1A_X").select("VV")
    region = ee_offline.Geometry.Rectangle([114.2, 30.4, 114.5, 30.7])
    assert ee_graph.array_rank_errors(speckle.apply(z, method, region=region)) == []


def test_lee_sigma_counts_over_the_whole_2d_window(ee_offline):
    """neighborhoodToArray gives rows x columns: the sums run over both axes, read at [0, 0]."""
    z = ee_offline.Image("COPERNICUS/S1_GRD_FLOAT/S1A_X").select("VV")
    sig = speckle.lee_sigma(z, ee_offline.Geometry.Rectangle([114.2, 30.4, 114.5, 30.7]))
    reduces = ee_graph.find(sig, "Image.arrayReduce")
    assert len(reduces) == 3  # count, sum, sum of squares
    assert all(ee_graph.constant(r["arguments"]["axes"]) == [0, 1] for r in reduces)
    for get in ee_graph.find(sig, "Image.arrayGet"):
        position = get["arguments"]["position"]["functionInvocationValue"]
        assert position["functionName"] == "Image.addBands"  # two coordinates


def test_array_rank_check_finds_wrong_indexing(ee_offline):
    ee = ee_offline
    z = ee.Image("COPERNICUS/S1_GRD_FLOAT/S1A_X").select("VV")
    square = z.neighborhoodToArray(ee.Kernel.square(1))
    summed = square.arrayReduce(ee.Reducer.sum(), [0])
    assert ee_graph.array_rank_errors(summed.arrayGet([0])) == [
        "Image.arrayGet: a position of 1 coordinate(s) in a 2-D array"]
    assert ee_graph.array_rank_errors(summed.arrayGet([0, 0])) == []
    line = z.addBands(z).toArray()  # 1-D
    assert ee_graph.array_rank_errors(line.arrayReduce(ee.Reducer.sum(), [1])) == [
        "Image.arrayReduce: axis 1 of a 1-D array"]
    assert ee_graph.array_rank_errors(square.multiply(z).arrayFlatten([["a", "b"]])) == [
        "Image.arrayFlatten: 1 label list(s) for a 2-D array"]  # broadcast keeps the rank
    assert ee_graph.array_rank_errors(z.arrayGet([0])) == [
        "Image.arrayGet: its input is not an array"]


def test_gamma_map_regimes_in_graph(ee_offline):
    """Lopes et al. (1990): Ci <= Cu -> the local mean; Ci >= Cmax = sqrt(2) Cu -> the pixel
    unchanged; in between the MAP estimate. On Ci^2 the thresholds are Cu^2 and 2 Cu^2."""
    z = ee_offline.Image("COPERNICUS/S1_GRD_FLOAT/S1A_X").select("VV")
    for enl in (4.4, 1.0):
        cu2 = 1.0 / enl
        regimes = gamma_map_regimes(z, enl)
        assert regimes["lte"] == pytest.approx(cu2, rel=1e-12)
        assert regimes["gte"] == pytest.approx(2.0 * cu2, rel=1e-12)
        pixel = ee_graph.Graph(z)
        assert regimes["high_value"] == pixel.resolve(pixel.values[pixel.graph["result"]])
        mean = regimes["low_value"]["functionInvocationValue"]
        assert mean["functionName"] == "Image.select"
        assert ee_graph.constant(mean["arguments"]["bandSelectors"]) == [0]  # mean, not var
        stats = mean["arguments"]["input"]["functionInvocationValue"]
        assert stats["functionName"] == "Image.reduceNeighborhood"
        assert regimes["estimate"] == speckle.GAMMA_MAP_ESTIMATE


def test_directional_windows_are_halves():
    for d in range(4):
        a = np.array(speckle.directional_weights(d, 0))
        b = np.array(speckle.directional_weights(d, 1))
        assert a[3, 3] == b[3, 3] == 1  # the centre belongs to both halves
        assert a.sum() == b.sum() == 28  # 21 + the 7 pixels on the edge line
        assert np.all((a | b) == 1)


def test_unknown_filter_is_a_config_error(ee_offline):
    from core.errors import ConfigError

    with pytest.raises(ConfigError, match="choose one of"):
        speckle.apply(ee_offline.Image(1), "median")
