"""The values each band had in the training data, and the rule that compares an input with them.

``range_problems`` and ``value_problems`` are the one rule of ``isamap-predict`` (a stack's
sample, tests/inference/predict/test_expected_inputs.py) and ``isamap-evaluate`` (a dataset's
patches, tests/inference/assess/test_evaluate_checks.py).
"""

from __future__ import annotations

import numpy as np

from training.band_ranges import band_ranges, band_samples, range_problems, value_problems


def test_the_scale_is_guessed_only_where_it_explains_the_values():
    ranges = {"VV": (-21.0, -13.0, -4.0), "B2": (0.01, 0.06, 0.2)}
    vv = np.full(64, -1300.0)  # dB x 100
    (problem,) = range_problems({"VV": vv}, ranges)
    assert problem.startswith("VV has a median of -1300, outside the -21 to -4") and \
        problem.endswith("(x 100 of values the model knows?)")
    (problem,) = range_problems({"B2": np.full(64, -13.6)}, ranges)  # dB under a reflectance
    assert "x 10000" not in problem and "x 100 " not in problem
    assert range_problems({"B2": np.full(64, 0.21)}, ranges) == []  # within the 10 % margin


def test_another_scene_is_mapped_with_a_warning_not_refused(caplog):
    """Water or snow beside the training region's fields is another scene, not another unit."""
    ranges = {"B2": (0.1145, 0.15, 0.2031), "VV": (-21.0, -13.0, -4.0)}
    with caplog.at_level("WARNING"):
        assert range_problems({"B2": np.full(64, 0.046), "VV": np.full(64, -24.0)},
                              ranges) == []
    assert "B2 has a median of 0.046" in caplog.text and "scene unlike" in caplog.text
    assert "VV has a median of -24" in caplog.text
    (problem,) = range_problems({"B2": np.full(64, 1500.0)}, ranges)  # x 10000
    assert "x 10000" in problem
    (problem,) = range_problems({"B2": np.full(64, 690.0)}, ranges)  # far away: refused too
    assert problem.startswith("B2 has a median of 690")


def test_a_range_spanning_0_guesses_no_scale_for_a_median_near_it(caplog):
    """Any median divided by 10000 lies in a range spanning 0 (an embedding axis): a median
    just above it was refused as "x 10000 of values the model knows?" instead of warned
    about, by isamap-predict and, on datasets, isamap-evaluate."""
    ranges = {"A05": (-0.2, 0.02, 0.22)}
    near = np.random.default_rng(0).normal(0.27, 0.02, 4096)
    with caplog.at_level("WARNING"):
        assert value_problems({"A05": near}, ranges) == []  # was refused, "x 10000"
    assert "A05 has a median of 0.269" in caplog.text and "scene unlike" in caplog.text
    (problem,) = value_problems({"A05": near * 10000}, ranges)  # far away: refused still
    assert problem.startswith("A05 has a median of 269") and "x 10000" not in problem


def test_the_ranges_are_percentiles_of_the_samples_and_leave_out_class_codes():
    rng = np.random.default_rng(0)
    images = [np.stack([rng.normal(-15, 2, (8, 8)), rng.integers(0, 5, (8, 8)).astype(float)])
              for _ in range(5)]
    images[0][0, :2] = np.nan
    samples = band_samples(lambda i: images[i], len(images), ("VV", "product"))
    assert samples["VV"].size == 5 * 64 - 16 and np.isfinite(samples["VV"]).all()
    ranges = band_ranges(lambda i: images[i], len(images), ("VV", "product"))
    assert set(ranges) == {"VV"}
    assert ranges["VV"] == tuple(round(float(p), 6) for p in
                                 np.percentile(samples["VV"], (1, 50, 99)))
    assert band_samples(lambda i: images[i], 0, ("VV", "product")) == {}
