"""Temperature scaling and the expected calibration error (training.calibration.temperature)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from training.calibration.temperature import (
    Reliability,
    check_record,
    describe,
    fit_record,
    fit_temperature,
    fit_transfer_record,
    nll,
    probabilities,
)


def _synthetic(classes: int, temperature: float, n: int = 60_000, seed: int = 0):
    """Labels drawn from the softmax of true logits; the model's logits are them times T."""
    g = torch.Generator().manual_seed(seed)
    true = 2.0 * torch.randn(n, max(classes, 1), generator=g, dtype=torch.float64)
    p = probabilities(true.T.unsqueeze(0))[0].T  # (n, K) or (n, 1)
    if classes == 1:
        labels = (torch.rand(n, generator=g, dtype=torch.float64) < p[:, 0]).long()
    else:
        labels = torch.multinomial(p, 1, generator=g)[:, 0]
    return (true * temperature).float(), labels


@pytest.mark.parametrize(("classes", "temperature"), [(2, 2.5), (3, 0.6), (1, 1.8)])
def test_the_fit_recovers_a_known_temperature(classes, temperature):
    logits, labels = _synthetic(classes, temperature)
    fitted = fit_temperature(logits, labels)
    assert fitted == pytest.approx(temperature, rel=0.05)
    assert nll(logits, labels, fitted) < nll(logits, labels)


def test_ece_is_near_zero_when_calibrated_and_falls_after_the_fit():
    logits, labels = _synthetic(2, 3.0)
    record = fit_record(logits, labels, "val")
    assert record["method"] == "temperature" and record["pixels"] == len(labels)
    assert record["ece_before"] > 0.05 and record["ece_after"] < 0.01
    assert record["nll_after"] < record["nll_before"]
    assert describe(record).startswith(f"temperature {record['temperature']:.3f} fitted on")


def test_the_line_says_on_which_pixels_each_figure_is_and_what_can_refuse_the_fit():
    """A demo's line read 'temperature 1.365 ... (ECE 0.0551 -> 0.0618)': a kept temperature
    that seemed to make the ECE worse. The fit minimises the NLL, and only the held-out scenes'
    ECE can refuse it; the line now says so, with each figure's pixels."""
    logits, labels = _synthetic(2, 3.0)
    one = fit_transfer_record({"2019-06": (logits, labels)}, "val")
    line = describe(one)
    assert f"fitted on {len(labels)} pixels of the val split by their NLL (" \
        f"{one['nll_before']:.4f} -> {one['nll_after']:.4f}); ECE on those pixels " \
        f"{one['ece_before']:.4f} -> {one['ece_after']:.4f}" in line
    assert line.endswith("; its transfer to held-out scenes not tested: 1 scene(s) of >= "
                         "100 pixels")
    half = len(labels) // 2
    two = fit_transfer_record({"a": (logits[:half], labels[:half]),
                               "b": (logits[half:], labels[half:])}, "val")
    assert two["method"] == "temperature"  # it transfers: lower held-out ECE
    assert (f"held-out scenes' mean ECE {two['transfer']['ece_at_1']:.4f} at T = 1, "
            f"{two['transfer']['ece_transferred']:.4f} at the temperatures of the other "
            "scenes") in describe(two)


def test_ece_of_a_hand_made_case_and_nodata_pixels_are_left_out():
    # one bin at p = 0.95 holding 4 pixels, 2 positive: |0.95 - 0.5| = 0.45 (255: no label)
    rel = Reliability(positive=1)
    probs = torch.tensor([0.95, 0.95, 0.95, 0.95, 0.2]).view(1, 1, 1, 5)
    rel.update(probs, torch.tensor([1, 0, 1, 0, 255]).view(1, 1, 5))
    assert rel.pixels == 4 and rel.ece == pytest.approx(0.45)
    top = Reliability(positive=None)  # three classes: top-label confidence against accuracy
    top.update(torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1]]).T.reshape(1, 3, 1, 2),
               np.array([[[0, 2]]]))
    assert top.ece == pytest.approx((abs(0.7 - 1) + abs(0.8 - 0)) / 2)
    assert top.to_dict()["binned"] == "top-label" and math.isnan(Reliability(1).ece)


def test_few_labelled_pixels_leave_the_model_uncalibrated_saying_why():
    record = fit_record(torch.zeros(0, 2), torch.zeros(0, dtype=torch.long), "val")
    assert record["method"] == "none" and record["temperature"] == 1.0
    assert describe(record).startswith("uncalibrated (0 labelled pixels")


def test_a_fit_at_the_end_of_its_range_says_what_it_means():
    """Confident logits that say nothing of the labels: the NLL falls all the way to T = 20,
    which flattens every map's probability toward 1/k of k classes (a new user's short runs recorded
    'temperature 19.999' as a normal fit, with nothing saying so)."""
    gen = torch.Generator().manual_seed(0)
    logits = 8.0 * torch.randn(4000, 2, generator=gen)
    labels = torch.randint(0, 2, (4000,), generator=gen)
    record = fit_record(logits, labels, "val")
    assert record["method"] == "temperature" and record["temperature"] > 19.9
    says = ("the end of the range searched (0.05-20): the model is barely better than chance "
            "there, so its probabilities are flattened toward an equal share for every class "
            "(1/k of k classes); train longer or on more data")
    assert describe(record).endswith(says)
    # of three classes: toward a third each, not one half (a walk)
    three = fit_record(8.0 * torch.randn(4000, 3, generator=gen),
                       torch.randint(0, 3, (4000,), generator=gen), "val")
    assert describe(three).endswith(says) and "one half" not in describe(three)
    right = (logits[:, 1] > logits[:, 0]).long()
    mostly = torch.where(torch.rand(4000, generator=gen) < 0.1, 1 - right, right)
    assert "end of the range" not in describe(fit_record(logits, mostly, "val"))
    assert describe(fit_record(logits, right, "val")).endswith(  # never wrong: T -> 0
        "the model is far less confident than right there")
    check_record(record)


def test_a_temperature_that_transfers_between_scenes_is_kept():
    """Two scenes over-confident alike: each's temperature, fitted on the other, helps it."""
    a, ya = _synthetic(2, 3.0, n=20_000, seed=1)
    b, yb = _synthetic(2, 3.0, n=20_000, seed=2)
    record = fit_transfer_record({"a": (a, ya), "b": (b, yb)}, "val")
    assert record["method"] == "temperature" and record["temperature"] == pytest.approx(3.0,
                                                                                        rel=0.1)
    moved = record["transfer"]
    assert set(moved["scenes"]) == {"a", "b"} and moved["ece_transferred"] < moved["ece_at_1"]


def test_a_temperature_that_does_not_transfer_keeps_t_1():
    """One scene over-confident, the other under-confident: a temperature fitted on one makes
    the other worse, so the model keeps T = 1 and its record says why."""
    a, ya = _synthetic(2, 3.0, n=20_000, seed=1)
    b, yb = _synthetic(2, 0.3, n=20_000, seed=2)
    record = fit_transfer_record({"a": (a, ya), "b": (b, yb)}, "val")
    assert record["method"] == "none" and record["temperature"] == 1.0
    assert "no lower" in record["reason"] and record["transfer"]["ece_transferred"] >= \
        record["transfer"]["ece_at_1"]
    assert describe(record).startswith("uncalibrated (a temperature fitted on the other")


def test_one_scene_is_fitted_as_before_and_says_the_transfer_was_not_tested():
    a, ya = _synthetic(2, 2.0, n=20_000)
    record = fit_transfer_record({"only": (a, ya), "tiny": (a[:10], ya[:10])}, "val")
    assert record["method"] == "temperature" and record["transfer"].startswith("not tested: 1")


def test_a_shift_is_added_after_the_temperature_and_said():
    """A fine-tune's prior shift (isamap-fit --from) moves each class's logit, after T."""
    logits = torch.tensor([[[1.0]], [[3.0]]]).unsqueeze(0)  # (1, 2, 1, 1)
    p = probabilities(logits, 2.0, (0.0, -1.0))
    assert torch.allclose(p[0, :, 0, 0], torch.softmax(torch.tensor([0.5, 0.5]), 0))
    record = {"method": "temperature", "temperature": 2.0, "pixels": 10, "shift": [0.0, -1.0]}
    assert describe(record).endswith("; then the class logits shifted by (+0.000, -1.000) to "
                                      "keep the base network's class shares")
    with pytest.raises(ValueError, match="the calibration shift is 'x', not a list of finite"):
        check_record({**record, "shift": "x"})


@pytest.mark.parametrize("record, says", [
    ([1.0, 2.0], "the calibration record is a list, not a mapping of method, temperature, ..."),
    ({"method": "temperature", "split": "val", "pixels": 500},
     "the calibration record says method 'temperature' but holds no temperature"),
    ({"method": "temperature", "temperature": 1e30},
     "the calibration temperature 1e+30 lies outside 0.05 to 20, the range a fit can give"),
])
def test_a_record_no_fit_could_have_written_is_refused(record, says):
    """A list was an AttributeError, a record without temperature a KeyError, and 1e30 made
    every probability 0.5: a model file's weights digest does not cover its description."""
    with pytest.raises(ValueError) as error:
        check_record(record)
    assert str(error.value) == says
