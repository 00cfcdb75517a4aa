"""Presto's own change score on the Slovenia pairs, beside the bands' and the gate's.

Part of ``python -m experiments.presto_dates`` (its ``change`` block), run with Presto.

Does a pretrained encoder tell change better than the bands it reads? Each pair of clear
dates, earlier before later, is scored as :mod:`experiments.change_pairs` scores it: blocks
of the later date's own artificial-surface spectra are implanted into ground with none
(:func:`experiments.change_pairs.implant`; draw ``d`` of pair ``(i, j)`` uses seed
``j + 10 d``, so draw 0 is that experiment's implant), and those pixels are the only true
change; the pair as it is (no implant) is stable ground. Per pixel two magnitudes, each the
product's own (:func:`experiments.change_pairs.pair_magnitudes`: the root mean square of
the robust z-scores of the differences, each pair under its own fit):

- ``bands``: of the ten Sentinel-2 bands Presto reads (the default recipe's bands);
- ``presto``: of frozen Presto's 128 features of each date (one timestep, its month).

Each is scored undirected and with NDBI's direction (the magnitude where NDBI rose, else 0;
``bands`` so directed is the band-difference gate alone), by ROC AUC of the implanted
pixels, and at the product's default threshold: the share of the stable pair flagged (false
change) and the F1 of what it flags on the implanted pair. ``presto at the bands' rate`` puts
Presto's threshold where it flags as many implanted-pair pixels as the bands do at the
default, so the two false-change shares compare at one rate. ``presto, product rule`` is
``isamap-map --change-rule encoder``'s decision of whether a pixel changed, its own function
(:func:`inference.predict.change.encoder.matched_cut`): each pair, stable and implanted, is cut
on its own sample where Presto flags as many of its pixels as the bands do at the default
(the product's sample is the whole pair on this 101 x 100 px tile, under
:data:`~inference.predict.sources.SAMPLE_SIDE`), so on the stable pair it flags the bands'
share by construction: what it changes is which pixels. No training: a draw changes only
where the blocks go.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from experiments.change_pairs import (
    ARTIFICIAL,
    DEFAULT_BLOCK_SIZE,
    DEFAULT_BLOCKS,
    implant,
    pair_magnitudes,
)
from experiments.scoring import binary_scores, ndbi, roc_auc
from inference.predict.change import arrays as change
from inference.predict.change.encoder import matched_cut
from inference.predict.sources import SAMPLE_SIDE

__all__ = ["DEFAULT_DRAWS", "MATCHED", "PRODUCT", "change_scores", "change_table", "pair_scores",
           "product_rule"]

DEFAULT_DRAWS = 5
MATCHED = "presto at the bands' rate"
PRODUCT = "presto, product rule"
Encode = Callable[[np.ndarray, int], np.ndarray]  # (13, H, W) scene, month -> (H * W, 128)


def _at(stable: np.ndarray, moving: np.ndarray, truth: np.ndarray, threshold: float) -> dict:
    found = moving > threshold
    return {"threshold": float(threshold), "false_change": float((stable > threshold).mean()),
            "flagged_implanted": float(found.mean()), "f1": binary_scores(found, truth).f1}


def _cut_flagging(values: np.ndarray, share: float) -> float:
    """The threshold above which ``share`` of ``values`` lie (more where values tie)."""
    k = round(share * values.size)
    if k == 0:
        return float(np.inf)
    kth = float(np.sort(np.nan_to_num(values), axis=None)[-k])
    return float(np.nextafter(kth, -np.inf))


def pair_scores(magnitudes: dict[str, tuple[np.ndarray, np.ndarray]], rise: np.ndarray,
                truth: np.ndarray, threshold: float = change.DEFAULT_SPECTRAL_THRESHOLD
                ) -> dict[str, dict]:
    """Every arm of one pair and draw (module docstring).

    Args:
        magnitudes: arm -> (stable pair's, implanted pair's) ``(H, W)`` magnitude.
        rise: NDBI(implanted later) - NDBI(earlier), ``(H, W)``.
        truth: the implanted pixels.
        threshold: the product's default spectral threshold.
    """
    out = {}
    label = truth.ravel()
    for arm, (stable, moving) in magnitudes.items():
        out[arm] = {"auc": roc_auc(np.nan_to_num(moving).ravel(), label),
                    "auc_ndbi": roc_auc(np.where(rise > 0, np.nan_to_num(moving), 0).ravel(),
                                        label),
                    **_at(stable, moving, truth, threshold)}
    stable, moving = magnitudes["presto"]
    out[MATCHED] = _at(stable, moving, truth,
                       _cut_flagging(moving, out["bands"]["flagged_implanted"]))
    return out


def product_rule(bands: tuple[np.ndarray, np.ndarray, np.ndarray],
                 features: tuple[np.ndarray, np.ndarray, np.ndarray], truth: np.ndarray,
                 threshold: float = change.DEFAULT_SPECTRAL_THRESHOLD) -> dict:
    """``isamap-map --change-rule encoder`` on the stable and the implanted pair.

    Args:
        bands: the earlier, later and implanted later date's bands, each ``(C, H, W)``.
        features: the same three dates' encoder features, each ``(D, H, W)``.
        truth: the implanted pixels.
        threshold: the spectral threshold the bands' share is read at.
    """
    if max(truth.shape) > SAMPLE_SIDE:
        raise ValueError(f"the product fits on a sample {SAMPLE_SIDE} px a side; this scores "
                         f"the whole pair, and the scene is {truth.shape}")

    def flagged(later: int) -> tuple[np.ndarray, float]:
        cut = matched_cut((bands[later], bands[0]), (features[later], features[0]), threshold)
        found = change.spectral_magnitude(features[later], features[0], cut.fit) > cut.threshold
        return found, cut.threshold

    stable, _ = flagged(1)
    found, cut = flagged(2)
    return {"threshold": cut, "false_change": float(stable.mean()),
            "flagged_implanted": float(found.mean()), "f1": binary_scores(found, truth).f1}


def change_scores(scenes: np.ndarray, dates: Sequence[str], lulc: np.ndarray,
                  columns: Sequence[int], nir_swir: tuple[int, int], encode: Encode,
                  draws: int = DEFAULT_DRAWS) -> dict:
    """Every clear pair's arms over ``draws`` implants: the ``change`` block of the JSON.

    Args:
        scenes: ``(T, 13, H, W)`` clear scenes in date order.
        dates: their dates, ``YYYY-MM-DD``.
        lulc: the land-use register ``(H, W)``; class 8 is implanted.
        columns: the scene indices of the ten bands Presto reads.
        nir_swir: the scene indices of B8 and B11 (NDBI).
        encode: Presto's features of one scene at its month (0-11).
        draws: implants per pair.
    """
    months = [int(d[5:7]) - 1 for d in dates]
    h, w = lulc.shape
    pick = list(columns)

    def features(scene: np.ndarray, month: int) -> np.ndarray:
        return np.ascontiguousarray(encode(scene, month).T.reshape(-1, h, w))

    own = [features(s, m) for s, m in zip(scenes, months, strict=True)]
    b8, b11 = nir_swir
    runs = []
    for i in range(len(dates)):
        for j in range(i + 1, len(dates)):
            for draw in range(draws):
                moved, truth = implant(scenes[j], lulc, DEFAULT_BLOCKS, DEFAULT_BLOCK_SIZE,
                                       seed=j + 10 * draw)
                magnitudes = {
                    "bands": pair_magnitudes(scenes[i][pick], scenes[j][pick], moved[pick]),
                    "presto": pair_magnitudes(own[i], own[j], features(moved, months[j]))}
                rise = ndbi(moved[b11], moved[b8]) - ndbi(scenes[i][b11], scenes[i][b8])
                arms = pair_scores(magnitudes, rise, truth)
                arms[PRODUCT] = product_rule(
                    (scenes[i][pick], scenes[j][pick], moved[pick]),
                    (own[i], own[j], features(moved, months[j])), truth)
                runs.append({"pair": f"{dates[i]}/{dates[j]}", "draw": draw,
                             "implanted": int(truth.sum()), "arms": arms})
    return {"draws": draws, "threshold": change.DEFAULT_SPECTRAL_THRESHOLD,
            "artificial_class": ARTIFICIAL, "runs": runs}


def _cell(values: list[float], scale: float = 1.0, digits: int = 3) -> str:
    return (f"{scale * np.mean(values):.{digits}f} ({scale * min(values):.{digits}f}-"
            f"{scale * max(values):.{digits}f})")


def change_table(block: dict) -> str:
    """One row per arm: means over pairs and draws (lowest-highest), what the command prints."""
    runs = block["runs"]
    lines = [f"{'change score':28}{'AUC':22}{'AUC, NDBI direction':22}"
             f"{'false change %':22}F1 implanted"]
    for arm in runs[0]["arms"]:
        scores = [r["arms"][arm] for r in runs]
        auc = (_cell([s["auc"] for s in scores]), _cell([s["auc_ndbi"] for s in scores])
               ) if "auc" in scores[0] else ("", "")
        lines.append(f"{arm:28}{auc[0]:22}{auc[1]:22}"
                     f"{_cell([s['false_change'] for s in scores], 100, 2):22}"
                     f"{_cell([s['f1'] for s in scores])}")
    pairs = len({r["pair"] for r in runs})
    return "\n".join([*lines, _paired(runs)]) + (
        f"\n({pairs} pairs x {block['draws']} implants; threshold {block['threshold']:g}; "
        "'bands' with NDBI's direction is the band-difference gate alone)")


def _paired(runs: list[dict]) -> str:
    """On how many pairs and draws Presto beats the bands, each compared on its own."""
    def wins(better: Callable[[dict], bool]) -> str:
        return f"{sum(better(r['arms']) for r in runs)} of {len(runs)}"

    text = ("presto above bands: AUC on "
            + wins(lambda a: a["presto"]["auc"] > a["bands"]["auc"])
            + ", with NDBI's direction on "
            + wins(lambda a: a["presto"]["auc_ndbi"] > a["bands"]["auc_ndbi"])
            + "; at the bands' rate F1 on " + wins(lambda a: a[MATCHED]["f1"] > a["bands"]["f1"])
            + ", less false change on "
            + wins(lambda a: a[MATCHED]["false_change"] < a["bands"]["false_change"]))
    if PRODUCT not in runs[0]["arms"]:  # a run made before the product had the rule
        return text
    return (text + "\nproduct rule against bands: F1 higher on "
            + wins(lambda a: a[PRODUCT]["f1"] > a["bands"]["f1"]) + ", lower on "
            + wins(lambda a: a[PRODUCT]["f1"] < a["bands"]["f1"]) + "; false change less on "
            + wins(lambda a: a[PRODUCT]["false_change"] < a["bands"]["false_change"])
            + ", more on "
            + wins(lambda a: a[PRODUCT]["false_change"] > a["bands"]["false_change"]))
