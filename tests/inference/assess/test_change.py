"""Change area with an interval: the design sizes and allocates for gain, the interval covers."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import rasterio

from inference.assess.design import allocation, allocation_weights, sample_size
from inference.assess.estimators import change_area, draw_ranks
from inference.assess.point_files import write_design
from inference.assess.report import score
from inference.assess.strata import CHANGE_NAMES, Strata
from tests.support.assess import class_cog

STABLE_PERVIOUS, STABLE_ISA, GAIN, LOSS = range(4)
PIXEL_KM2 = 1e-4  # 10 m pixels


def synthetic_change(seed: int = 0, size: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """A true change (80 % stable pervious, 15 % stable ISA, 4 % gain, 1 % loss) and a change
    map that omits some gain and loss, invents some, and flickers stable ISA into loss."""
    rng = np.random.default_rng(seed)
    u = rng.random((size, size))
    truth = np.select([u < 0.04, u < 0.05, u < 0.20], [GAIN, LOSS, STABLE_ISA],
                      STABLE_PERVIOUS).astype(np.uint8)
    v = rng.random(truth.shape)
    mapped = truth.copy()
    mapped[(truth == GAIN) & (v < 0.25)] = STABLE_PERVIOUS  # omitted gain
    mapped[(truth == LOSS) & (v < 0.3)] = STABLE_ISA  # omitted loss
    mapped[(truth == STABLE_PERVIOUS) & (v < 0.01)] = GAIN  # invented gain
    mapped[(truth == STABLE_ISA) & (v < 0.02)] = LOSS  # flicker
    return truth, mapped


def _strata(mapped: np.ndarray) -> Strata:
    pixels = np.bincount(mapped.ravel(), minlength=4)
    return Strata("change.tif", CHANGE_NAMES, tuple(int(p) for p in pixels),
                  tuple(float(p) * PIXEL_KM2 for p in pixels), "EPSG:32633", 10.0)


def test_sizing_for_gain_area_allocates_in_proportion_to_its_standard_deviations():
    _, mapped = synthetic_change()
    strata = _strata(mapped)
    size = sample_size(strata, target_se=0.05, target_class="gain",
                       expected_ua=(0.95, 0.9, 0.75, 0.6))
    neyman = allocation(size.n, allocation_weights(strata, size), strata.pixels, 30)
    proportional = allocation(size.n, strata.area_km2, strata.pixels, 30)
    assert size.rule == "area" and sum(neyman) == size.n
    assert neyman[GAIN] > 1.5 * proportional[GAIN]  # the rare gain stratum gets more points
    assert neyman[STABLE_PERVIOUS] > neyman[GAIN]  # and the stratum hiding omitted gain too


def test_gain_area_interval_covers_the_true_gain_in_at_least_90_percent_of_designs():
    """300 seeded designs sized for an SE of 0.05 km² of gain, the library's allocation."""
    truth, mapped = synthetic_change()
    strata = _strata(mapped)
    size = sample_size(strata, target_se=0.05, target_class="gain",
                       expected_ua=(0.95, 0.9, 0.75, 0.6))
    alloc = allocation(size.n, allocation_weights(strata, size), strata.pixels, 30)
    flat_map, flat_truth = mapped.ravel(), truth.ravel()
    members = [np.flatnonzero(flat_map == h) for h in range(4)]
    true_gain = float((flat_truth == GAIN).sum()) * PIXEL_KM2
    true_net = true_gain - float((flat_truth == LOSS).sum()) * PIXEL_KM2
    designs, covered, covered_net, half = 300, 0, 0, []
    for seed in range(designs):
        ranks = draw_ranks(strata.pixels, alloc, seed)
        points = np.concatenate([m[r] for m, r in zip(members, ranks, strict=True)])
        est = change_area(flat_map[points], strata.area_km2, flat_truth[points], GAIN, LOSS)
        covered += abs(est.gain - true_gain) <= est.gain_ci
        covered_net += abs(est.net - true_net) <= est.net_ci
        half.append(est.gain_ci)
    assert covered / designs >= 0.9 and covered_net / designs >= 0.9
    assert np.mean(half) / 1.96 < 0.05 * 1.25  # the sizing's target SE, roughly met


def test_score_reports_gain_loss_and_net_change_with_intervals(tmp_path):
    truth, mapped = synthetic_change(size=200, seed=1)
    change = class_cog(tmp_path / "change.tif", mapped, kind="change")
    truth_path = class_cog(tmp_path / "truth.tif", truth, kind="change")
    design = write_design(str(change), tmp_path / "d", target_se=0.05, target_class="gain",
                          expected_ua=(0.95, 0.9, 0.75, 0.6), seed=0, minimum=30)
    assert design.design.allocation_rule() == "neyman"
    rows = list(csv.DictReader(design.files["csv"].open()))
    with rasterio.open(truth_path) as ds:
        data = ds.read(1)
        for row in rows:
            r, c = ds.index(float(row["x"]), float(row["y"]))
            row["reference"] = CHANGE_NAMES[int(data[r, c])]
    ref = tmp_path / "ref.csv"
    with ref.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    result = score(str(change), str(ref), tmp_path / "s", design=tmp_path / "d")
    ch = result.report["change"]
    areas = result.report["products"]["map"]["area"]
    assert ch["gain_km2"] == pytest.approx(areas["gain"]["estimate_km2"])
    assert ch["loss_km2"] == pytest.approx(areas["loss"]["estimate_km2"])
    assert ch["net_km2"] == pytest.approx(ch["gain_km2"] - ch["loss_km2"])
    assert ch["net_ci95_km2"] > 0 and ch["gain_ci95_km2"] > 0
    assert 0 < ch["gain"]["user_accuracy"] < 1 and 0 < ch["loss"]["producer_accuracy"] <= 1
    text = result.markdown.read_text()
    assert "## Impervious change" in text and "| net (gain - loss) |" in text
