"""The metrics reproduce the papers' printed tables from their printed confusion matrices."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from core.errors import ConfigError
from training.metrics import (
    ConfusionMatrix,
    compute_metrics,
    confusion_matrix,
    from_map_rows,
    kappa,
)

# RU-Net++ Table 5: rows = classified (pervious, impervious), columns = reference.
RUNETPP_TABLE5 = [
    ([[188, 2], [0, 10]], 0.99, 0.903),
    ([[190, 3], [0, 7]], 0.985, 0.815),
    ([[189, 2], [0, 9]], 0.99, 0.894),
    ([[153, 2], [0, 45]], 0.99, 0.971),
    ([[166, 2], [0, 32]], 0.99, 0.963),
]


@pytest.mark.parametrize(("table", "oa", "kappa_printed"), RUNETPP_TABLE5)
def test_runetpp_table5_oa_and_kappa(table, oa, kappa_printed):
    m = compute_metrics(from_map_rows(table))
    assert round(m.oa, 3) == oa
    # The paper prints kappa truncated (not rounded) to three decimals: 0.90385 -> 0.903.
    assert math.floor(m.kappa * 1000) / 1000 == kappa_printed
    assert abs(m.kappa - kappa_printed) < 1e-3


def test_runetpp_table5_user_accuracy_row_and_column():
    m = compute_metrics(from_map_rows([[189, 2], [0, 9]]))
    assert round(m.ua[0], 6) == 0.989529  # printed with six decimals in Table 5 (3)
    assert round(m.pa[1], 3) == 0.818


NAMES = ["Cropland", "Woodland", "Grassland", "Water", "Impervious", "Bare land", "Snow/Ice"]
TABLE2 = [[263, 34, 32, 3, 36, 1, 0], [27, 373, 30, 0, 2, 0, 0], [32, 17, 188, 1, 12, 32, 0],
          [0, 3, 1, 89, 1, 3, 2], [9, 1, 2, 2, 132, 1, 0], [5, 9, 49, 2, 8, 526, 3],
          [0, 0, 1, 0, 0, 3, 5]]
TABLE2_UA = [71.27, 86.34, 66.67, 89.90, 89.80, 87.38, 55.56]
TABLE2_PA = [78.27, 85.35, 62.05, 91.75, 69.11, 92.93, 50.00]
TABLE3 = [[282, 27, 20, 3, 20, 1, 0], [21, 391, 26, 2, 6, 0, 1], [22, 10, 223, 1, 7, 19, 0],
          [1, 1, 0, 84, 2, 2, 0], [8, 1, 2, 4, 150, 2, 0], [2, 7, 32, 3, 6, 542, 6],
          [0, 0, 0, 0, 0, 0, 3]]
TABLE3_UA = [79.89, 87.47, 79.08, 93.33, 89.82, 90.64, 100.00]
TABLE3_PA = [83.93, 89.47, 73.60, 86.60, 78.53, 95.76, 30.00]


@pytest.mark.parametrize(("table", "ua", "pa", "oa"), [
    (TABLE2, TABLE2_UA, TABLE2_PA, 81.24), (TABLE3, TABLE3_UA, TABLE3_PA, 86.34)])
def test_landcover_tables_ua_pa_oa(table, ua, pa, oa):
    m = compute_metrics(from_map_rows(table), NAMES)
    assert [round(100 * v, 2) for v in m.ua] == ua
    assert [round(100 * v, 2) for v in m.pa] == pa
    assert round(100 * m.oa, 2) == oa
    assert m.support == (336, 437, 303, 97, 191, 566, 10)  # Table 1 sample counts


def test_landcover_pa_gains_quoted_in_text():
    m10 = compute_metrics(from_map_rows(TABLE2))
    m3 = compute_metrics(from_map_rows(TABLE3))
    gains = [round(100 * (m3.pa[i] - m10.pa[i]), 2) for i in (0, 1, 2, 4, 5)]
    assert gains == [5.65, 4.12, 11.55, 9.42, 2.83]


def test_iou_f1_dice_miou_on_a_known_matrix():
    # ref 0: 50 right, 10 called 1; ref 1: 5 called 0, 35 right.
    m = compute_metrics(np.array([[50, 10], [5, 35]]))
    assert m.iou == pytest.approx((50 / 65, 35 / 50))
    assert m.pa == pytest.approx((50 / 60, 35 / 40))
    assert m.ua == pytest.approx((50 / 55, 35 / 45))
    assert m.dice == pytest.approx((100 / 115, 70 / 85))
    assert m.f1 == pytest.approx(m.dice)
    assert m.miou == pytest.approx((50 / 65 + 35 / 50) / 2)
    assert m.oa == pytest.approx(0.85)
    po, pe = 0.85, (60 * 55 + 40 * 45) / 100**2
    assert m.kappa == pytest.approx((po - pe) / (1 - pe))
    assert kappa(np.array([[50, 10], [5, 35]]).T) == pytest.approx(m.kappa)
    assert "OA 85.00 %" in m.table()


def test_absent_class_is_undefined_not_zero():
    m = compute_metrics(np.array([[10, 0, 0], [0, 5, 0], [0, 0, 0]]))
    assert math.isnan(m.iou[2]) and m.miou == 1.0
    assert m.to_dict()["iou"][2] is None


def test_streaming_matrix_equals_numpy_and_ignores_nodata():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 2, 8, 8, generator=g)
    target = torch.randint(0, 2, (3, 8, 8), generator=g)
    target[0, :2] = 255
    cm = ConfusionMatrix(2)
    cm.update(logits[:2], target[:2])
    cm.update(logits[2:], target[2:])
    ref = confusion_matrix(logits.argmax(1).numpy(), target.numpy(), 2)
    assert (cm.matrix == ref).all()
    assert cm.matrix.sum() == 3 * 64 - 16
    with pytest.raises(ConfigError, match="shape"):
        cm.update(logits, target[:, :4])


def test_matrix_of_channels_last_logits_with_ties_equals_numpy():
    """The class axis moved last before argmax keeps argmax's first-index rule on ties."""
    g = torch.Generator().manual_seed(1)
    logits = torch.randint(0, 3, (2, 3, 6, 6), generator=g).float()  # many exact ties
    target = torch.randint(0, 3, (2, 6, 6), generator=g)
    target[1, 0] = 255
    cm = ConfusionMatrix(3)
    cm.update(logits.contiguous(memory_format=torch.channels_last), target)
    ref = confusion_matrix(logits.argmax(1).numpy(), target.numpy(), 3)
    assert (cm.matrix == ref).all() and cm.matrix.sum() == 2 * 36 - 6


def test_json_safe_writes_undefined_metrics_as_null():
    """One conversion for metrics files and comparison reports: NaN and inf both become null."""
    import json

    from core.jsonsafe import json_safe

    value = {"iou": (0.5, float("nan")), "ratio": np.float64(np.inf), "n": 3,
             "nested": [{"f1": -np.inf}]}
    safe = json_safe(value)
    assert safe == {"iou": [0.5, None], "ratio": None, "n": 3, "nested": [{"f1": None}]}
    assert json.loads(json.dumps(safe, allow_nan=False)) == safe


def test_f1_of_a_class_only_mapped_or_only_missed_is_zero_and_counts_in_the_mean():
    """F1 = 2TP/(2TP+FP+FN): a class with predictions but no reference pixels (PA undefined)
    scores 0, as its Dice does, and lowers mean F1; only a class absent from both is left out."""
    m = compute_metrics(np.array([[10, 2, 0], [0, 5, 0], [0, 0, 0]]))  # class 1 mapped 7 times
    only_mapped = compute_metrics(np.array([[8, 2], [0, 0]]))  # class 1: TP 0, FP 2, FN 0
    assert math.isnan(only_mapped.pa[1]) and only_mapped.f1[1] == only_mapped.dice[1] == 0.0
    assert only_mapped.mean_f1 == pytest.approx((16 / 18 + 0.0) / 2)
    only_missed = compute_metrics(np.array([[8, 0], [2, 0]]))  # class 1: TP 0, FP 0, FN 2
    assert math.isnan(only_missed.ua[1]) and only_missed.f1[1] == 0.0
    assert math.isnan(m.f1[2]) and m.f1 == pytest.approx((20 / 22, 10 / 12, math.nan),
                                                         nan_ok=True)
    row = only_mapped.table().splitlines()[3].split()  # class_1: IoU PA UA F1 Dice support
    assert row[0] == "class_1" and row[2] == "n/a" and row[4] == row[5] == "0.00"
