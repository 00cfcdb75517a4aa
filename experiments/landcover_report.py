"""The land-cover experiment's figures: metrics over seeds and the tables it prints.

From the run records (every seed's confusion matrices on the held-out pixels, and its classes
at the sample points of :mod:`experiments.landcover_points`) and the scenes' held-out pixels,
apart from the training of ``experiments.landcover``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from contract.label_schemes import LANDCOVER_CLASSES
from experiments.landcover_departures import (
    class_departure_table,
    departure_table,
    rule_alone,
    rule_table,
    summarise,
)
from experiments.landcover_keep import green_cut, ndvi
from experiments.landcover_points import draw_points, estimates
from experiments.scoring import best_threshold_f1, binary_scores, roc_auc
from inference.assess.estimators import AreaAccuracy
from inference.assess.intervals import estimate, notes
from training.metrics import compute_metrics, confusion_matrix

K = len(LANDCOVER_CLASSES)


def seed_stats(values: Sequence[float | None]) -> dict:
    """Mean and sample std over seeds of the defined values (None/NaN left out), and each."""
    v = np.array([np.nan if x is None else x for x in values], dtype=float)
    ok = v[np.isfinite(v)]
    return {"mean": float(ok.mean()) if ok.size else math.nan,
            "std": float(ok.std(ddof=1)) if ok.size > 1 else 0.0,
            "per_seed": [float(x) for x in v]}


def metric_summary(matrices: Sequence[np.ndarray], present: Sequence[str]) -> dict:
    """OA and per-class PA, UA, F1 of the ``present`` classes, mean ± std over the matrices."""
    rows = [compute_metrics(np.asarray(m), LANDCOVER_CLASSES) for m in matrices]
    idx = {c: LANDCOVER_CLASSES.index(c) for c in present}
    return {"OA": seed_stats([r.oa for r in rows]),
            **{what: {c: seed_stats([getattr(r, what.lower())[i] for r in rows])
                      for c, i in idx.items()} for what in ("PA", "UA", "F1")}}


def point_summary(estimates: Sequence[AreaAccuracy], present: Sequence[str]) -> dict:
    """OA and the ``present`` classes' F1 from points, and their 95 % half-widths, over seeds."""
    idx = {c: LANDCOVER_CLASSES.index(c) for c in present}
    return {"n": estimates[0].n, "OA": seed_stats([e.oa for e in estimates]),
            "OA_ci95": seed_stats([e.oa_ci for e in estimates]),
            "F1": {c: seed_stats([e.f1[i] for e in estimates]) for c, i in idx.items()},
            "F1_ci95": {c: seed_stats([e.f1_ci[i] for e in estimates]) for c, i in idx.items()}}


IMPERVIOUS = LANDCOVER_CLASSES.index("impervious")
#: the free index the arms' impervious probabilities are ranked beside (no SWIR in NAIP: no NDBI)
BRIGHTNESS = "NAIP brightness (R + G + B) / 3"


def scored_truth(scenes: Sequence[Any]) -> tuple[np.ndarray, np.ndarray | None]:
    """The scenes' scored pixels pooled in order: their classes, and which are developed.

    Developed pixels are ``Scene.developed``'s; None unless every scene has soft labels.
    """
    truth = np.concatenate([s.truth[s.scored] for s in scenes])
    dev = [s.developed for s in scenes]
    developed = (None if any(d is None for d in dev) else
                 np.concatenate([d[s.scored] for d, s in zip(dev, scenes, strict=True)]))
    return truth, developed


def impervious_ranking(score: np.ndarray, truth: np.ndarray,
                       developed: np.ndarray | None) -> dict:
    """ROC AUC of ``score`` for the impervious class: on all pixels and in developed cells.

    Separates *where* a map puts impervious pixels from *how many* it maps: an F1 near zero
    with an AUC near one is a cut that is wrong, an AUC at or below one half is a score that
    does not find impervious ground at all. ``truth`` holds the seven classes of the same
    pixels; ``developed`` marks those in the product's composite (developed) cells, where
    label super-resolution places impervious pixels (None: not computed).
    """
    positive = (truth == IMPERVIOUS).astype(np.int64)
    inside = None if developed is None else roc_auc(score[developed], positive[developed])
    return {"auc": roc_auc(score, positive), "auc_developed": inside}


def brightness_ranking(scenes: Sequence[Any]) -> dict:
    """:func:`impervious_ranking` of :data:`BRIGHTNESS` on the scenes' scored pixels.

    Also its cut of best impervious F1 on those same pixels (``best_f1``, ``best_threshold``,
    ``precision_at_best``): chosen with the reference, so an upper bound of what a cut on
    brightness can do, not a map anyone could make.
    """
    score = np.concatenate([s.image[:3, s.scored].mean(0) for s in scenes])
    truth, developed = scored_truth(scenes)
    positive = (truth == IMPERVIOUS).astype(np.int64)
    threshold, f1 = best_threshold_f1(score, positive)
    precision = binary_scores((score >= threshold).astype(np.int64), positive).precision
    return {**impervious_ranking(score, truth, developed), "best_f1": f1,
            "best_threshold": threshold, "precision_at_best": precision}


def product_confusion(scenes: Sequence[Any], product: str) -> list[list[int]]:
    """The product against the truth on the scored pixels (the models' pixels)."""
    matrix = np.zeros((K, K), np.int64)
    for s in scenes:
        ok = s.scored
        matrix += confusion_matrix(s.products[product][ok], s.truth[ok], K)
    return matrix.tolist()


def summarize(config: dict, specs: Mapping[str, Any], scenes: Mapping[str, Sequence[Any]],
              runs: Mapping[str, Sequence[dict]]) -> dict:
    """Per setting: the products' and every arm's metrics (mean ± std over seeds).

    On the pixels (``products``, ``arms``) and on the setting's sample points (``points``);
    ``test`` holds the default arm and its product in the first setting (``test.paper``: the
    paper's method). ``config`` is the
    experiment's configuration as a dict, ``specs`` its settings and ``scenes`` theirs
    (``experiments.landcover``: ``LandCoverConfig``, ``SETTINGS``, ``Scene``).
    """
    settings = {}
    for name, records in runs.items():
        spec = specs[name]
        sc = scenes[name]
        truth = np.concatenate([s.truth[s.scored] for s in sc])
        present = [c for k, c in enumerate(LANDCOVER_CLASSES) if (truth == k).any()]
        products = {p: metric_summary([np.asarray(product_confusion(sc, p))], present)
                    for p in spec.products}
        arms = {a.name: metric_summary([np.asarray(r["confusion"][a.name]) for r in records],
                                 present) for a in spec.arms}
        points = draw_points(sc, spec.headline[1], config["points_per_stratum"],
                             config["points_seed"])
        at_points = estimates(points, sc, spec.products,
                              {a.name: [r["points"][a.name] for r in records]
                               for a in spec.arms})
        settings[name] = {
            "scenes": {"train": [s.id for s in sc if s.trains],
                       "held_out": [s.id for s in sc if s.test.any()]},
            "test_pixels": {c: int((truth == LANDCOVER_CLASSES.index(c)).sum())
                            for c in present},
            "classes_present": present, "products": products, "arms": arms,
            "points": {"design": points.record(),
                       "products": {p: point_summary([e], present)
                                    for p, e in at_points[0].items()},
                       "arms": {a: point_summary(e, present) for a, e in at_points[1].items()}},
            "filter": {str(r["seed"]): r["filter"] for r in records},
            "train_seconds_mean": {a.name: float(np.mean([r["seconds"][a.name]
                                                          for r in records]))
                                   for a in spec.arms},
            "per_seed_confusion": {str(r["seed"]): r["confusion"] for r in records}}
        if all("departures" in r for r in records):
            settings[name]["departures"] = departure_summary(spec, sc, records)
        windows = default_windows(spec)
        if len(windows) > 1:
            settings[name]["windows"] = windows
        if "impervious" in present:
            settings[name]["impervious_ranking"] = {
                "brightness": brightness_ranking(sc),
                "arms": {a.name: {k: seed_stats([r["ranking"][a.name][k] for r in records])
                                  for k in ("auc", "auc_developed")} for a in spec.arms}}
    first = next(s for s in config["settings"] if s in settings)
    arm, product = specs[first].headline
    head = settings[first]
    test = {"setting": first, "model": arm, "product": product,
            "oa_model": head["arms"][arm]["OA"]["mean"],
            "oa_model_std": head["arms"][arm]["OA"]["std"],
            "oa_product": head["products"][product]["OA"]["mean"],
            "f1_model": {c: v["mean"] for c, v in head["arms"][arm]["F1"].items()},
            "f1_product": {c: v["mean"] for c, v in head["products"][product]["F1"].items()},
            "oa_arms": {a: v["OA"]["mean"] for a, v in head["arms"].items()},
            "points": point_headline(head["points"], arm, product),
            "paper": {"model": specs[first].paper,
                      "oa_model": head["arms"][specs[first].paper]["OA"]["mean"],
                      "f1_model": {c: v["mean"] for c, v in
                                   head["arms"][specs[first].paper]["F1"].items()}}}
    return {"config": config, "test": test, "settings": settings}


def departure_summary(spec: Any, scenes: Sequence[Any], records: Sequence[dict]) -> dict:
    """Where each arm departs from the setting's product, and the keep rule without a network.

    ``departures`` of every arm over seeds (:func:`experiments.landcover_departures.summarise`)
    and ``rule``: the product's impervious pixels, and those of them that are not green by the
    cut of the scenes mapped (every scene of a fold is one of the scored scenes, so the cut is
    the one the keep arms used).
    """
    product = spec.headline[1]
    greenness = [ndvi(s.image) for s in scenes]
    maps = [s.products[product] for s in scenes]
    cut = green_cut(greenness, maps)
    pooled = [np.concatenate([np.asarray(v)[s.scored] for v, s in zip(values, scenes,
                                                                       strict=True)])
              for values in (maps, [s.truth for s in scenes], greenness)]
    green = pooled[2] >= cut if cut is not None else np.zeros(pooled[2].shape, bool)
    return {"product": product, "green_cut": cut,
            "rule": rule_alone(pooled[0], pooled[1], green),
            "arms": {a.name: summarise([r["departures"][a.name] for r in records])
                     for a in spec.arms}}


def default_windows(spec: Any) -> dict[str, str]:
    """``{window: arm}`` of the arms that are the default arm with another shares window.

    The default arm among them; none when it decides without a window. These arms share its
    model (``experiments.landcover_arms.with_windows``).
    """
    default = next(a for a in spec.arms if a.name == spec.headline[0])
    if not getattr(default, "window", 0):
        return {}
    same = replace(default, name="", window=0)
    return {str(a.window): a.name for a in sorted(spec.arms, key=lambda a: a.window)
            if a.window and replace(a, name="", window=0) == same}


def window_table(setting: dict, product: str) -> list[str]:
    """The default arm's OA and impervious F1 at each shares window, beside ``product``'s."""
    base = setting["products"][product]["OA"]["mean"]
    lines = [f"The default arm's decision at each shares window (the same models; "
             f"`--windows`), %: OA mean ± std over seeds, each seed's OA, the mean's "
             f"difference to {product}'s OA ({100 * base:.1f} %), impervious F1", "",
             "| window | OA | OA per seed | OA - " + product + " | F1 impervious |",
             "|---|---|---|---|---|"]
    for window, arm in setting["windows"].items():
        v = setting["arms"][arm]
        seeds = ", ".join(f"{100 * x:.1f}" for x in v["OA"]["per_seed"])
        imp = cell(v["F1"]["impervious"]) if "impervious" in v["F1"] else "n/a"
        lines.append(f"| {window} px | {cell(v['OA'])} | {seeds} | "
                     f"{100 * (v['OA']['mean'] - base):+.1f} | {imp} |")
    return lines


def point_headline(points: dict, arm: str, product: str) -> dict:
    """``test.points``: the model and its product on the setting's points (means over seeds)."""
    m, p = points["arms"][arm], points["products"][product]
    return {"strata": points["design"]["strata"], "n": points["design"]["n"],
            "oa_model": m["OA"]["mean"], "oa_model_ci95": m["OA_ci95"]["mean"],
            "oa_model_std": m["OA"]["std"],
            "oa_product": p["OA"]["mean"], "oa_product_ci95": p["OA_ci95"]["mean"],
            "f1_model": {c: v["mean"] for c, v in m["F1"].items()},
            "f1_model_ci95": {c: v["mean"] for c, v in m["F1_ci95"].items()},
            "f1_product": {c: v["mean"] for c, v in p["F1"].items()},
            "f1_product_ci95": {c: v["mean"] for c, v in p["F1_ci95"].items()}}


NO_SPREAD_NOTE = (
    "n.i.: no spread. Mean ± std columns: every seed gave the same figure (a product does not "
    "depend on the seed; one seed has no spread). Points ± CI columns: the sample shows no "
    "variation there, so the 95 % interval has zero width. Neither value is exact.")
"""The note under the tables when a cell shows :data:`inference.assess.intervals.NO_INTERVAL`."""


def _spread(value: float | None, spread: float | None) -> str:
    """``value ± spread`` in % by the reports' rule (:func:`inference.assess.intervals.estimate`).

    A spread that cannot be computed is ``± n/a``, not left out, so a cell never reads as if
    no spread was asked for.
    """
    if value is None or not math.isfinite(value):
        return "n/a"
    if spread is None or not math.isfinite(spread):
        return f"{100 * value:.1f} ± n/a"
    return estimate(value, spread, 1, scale=100)


def cell(s: dict) -> str:
    """A mean ± std over seeds (``seed_stats``) in %, a zero std as no spread."""
    return _spread(s["mean"], s["std"])


def held_out_pixels(setting: dict) -> str:
    """``class n, ...`` of a setting's held-out pixels."""
    return ", ".join(f"{c} {n:,}" for c, n in setting["test_pixels"].items())


def map_rows(setting: dict) -> dict[str, dict]:
    """Every map of a setting, products first (named ``... (the product)``), then the arms."""
    return {**{f"{p} (the product)": v for p, v in setting["products"].items()},
            **setting["arms"]}


def class_table(rows: Mapping[str, dict], present: Sequence[str], what: str) -> list[str]:
    """A markdown table of every map's OA and ``what`` (F1, PA or UA) per present class."""
    head = ["map", "OA"] + [f"{what} {c}" for c in present]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m, v in rows.items():
        lines.append("| " + " | ".join([m, cell(v["OA"])] + [cell(v[what][c])
                                                             for c in present]) + " |")
    return lines


def report_table(report: dict) -> str:
    """Markdown tables per setting: OA and per-class F1, PA, UA (mean ± std over seeds, %)."""
    lines = []
    for name, s in report["settings"].items():
        present = s["classes_present"]
        lines += [f"**{name}** (held-out pixels: {held_out_pixels(s)})", ""]
        rows = map_rows(s)
        if "impervious" in present:
            lines += ["| map | OA | F1 impervious |", "|---|---|---|"]
            lines += [f"| {m} | {cell(v['OA'])} | {cell(v['F1']['impervious'])} |"
                      for m, v in rows.items()]
            lines.append("")
        if "impervious_ranking" in s:
            lines += [*ranking_table(s["impervious_ranking"]), ""]
        if "departures" in s:
            d = s["departures"]
            lines += [*departure_table(d["arms"], d["product"]), "",
                      *class_departure_table(d["arms"], d["product"]), "",
                      *rule_table(d["rule"], d["product"]), ""]
        for what in ("F1", "PA", "UA"):
            lines += [*class_table(rows, present, what), ""]
        if "windows" in s:
            lines += [*window_table(s, report["test"]["product"]), ""]
        if "points" in s:
            lines += [*point_table(s["points"], rows, present), ""]
        for seed, f in s["filter"].items():
            for arm, d in f.items():
                lines.append(f"seed {seed}, {arm}: {d['dropped_chips']} of {d['scored_chips']} "
                             "chips dropped")
        lines.append("")
    if "keep_check" in report:
        lines += [*keep_table(report["keep_check"]), ""]
    lines += notes(lines, NO_SPREAD_NOTE)
    return "\n".join(lines).rstrip()


def _percent(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{100 * value:.1f} %"


def ranking_table(ranking: dict) -> list[str]:
    """How well each arm's impervious probability ranks impervious pixels, beside brightness."""
    b = ranking["brightness"]
    lines = ["ROC AUC of the impervious score on the held-out pixels, %: on all of them and "
             "inside the product's developed cells, where label super-resolution places "
             "impervious pixels (mean ± std over seeds; n/a: no developed cells)", "",
             "| score | AUC, all pixels | AUC, developed cells |", "|---|---|---|",
             f"| {BRIGHTNESS} | {_spread(b['auc'], 0.0)} | {_spread(b['auc_developed'], 0.0)} |"]
    lines += [f"| {arm}: impervious probability | {cell(v['auc'])} | "
              f"{cell(v['auc_developed'])} |" for arm, v in ranking["arms"].items()]
    if "best_f1" in b:
        lines += ["", f"{BRIGHTNESS} cut where its impervious F1 is best on these pixels (the "
                  "cut chosen with the reference: an upper bound, not a map): F1 "
                  f"{_percent(b['best_f1'])}, precision {_percent(b['precision_at_best'])} "
                  "(the share of the pixels it calls impervious that are)"]
    return lines


def keep_table(check: dict) -> list[str]:
    """The keep rule beside the product it keeps, per GeoBench tile (``landcover_keep``)."""
    share = f"{100 * check['developed_share']:.0f} %"
    lines = [f"The product's impervious unless green, without a network: the GeoBench NAIP "
             f"tiles, each with a product made from its 1 m reference by NLCD's definition "
             f"(a {check['cell']} m cell at least {share} impervious is impervious, the mode "
             "of its other classes otherwise); impervious F1, precision (P) and recall (R) at "
             "1 m, %", "",
             "| tile | impervious pixels | green cut (NDVI) | product F1 | product P | "
             "product R | kept F1 | kept P | kept R |", "|---|---|---|---|---|---|---|---|---|"]
    rows = {**check["tiles"], "all tiles": {**check["pooled"], "green_cut": None}}
    for name, t in rows.items():
        cut = "n/a" if t["green_cut"] is None else f"{t['green_cut']:.3f}"
        cells = [name, f"{t['impervious_pixels']:,}", cut]
        cells += [_percent(t[m][k]).removesuffix(" %") for m in ("product", "kept")
                  for k in ("f1", "precision", "recall")]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _interval(value: dict, half: dict) -> str:
    """A point estimate ± its 95 % half-width (both means over seeds) in %."""
    return _spread(value["mean"], half["mean"])


def point_table(points: dict, pixel_rows: Mapping[str, dict], present: Sequence[str]
                ) -> list[str]:
    """The setting's point estimates (± the 95 % half-width) beside its pixel OA."""
    d = points["design"]
    rows = {**{f"{p} (the product)": v for p, v in points["products"].items()},
            **points["arms"]}
    head = ["map", "OA pixels ± std", "OA points ± CI"] + [f"F1 {c} points ± CI"
                                                           for c in present]
    lines = [f"{d['n']} points, stratified by the classes of {d['strata']} (at least "
             f"{d['minimum_per_stratum']} per stratum, seed {d['seed']}), %: pixels mean ± "
             "std over seeds, points the estimate ± its 95 % interval's half-width (means "
             "over seeds)", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m, v in rows.items():
        cells = [m, cell(pixel_rows[m]["OA"]), _interval(v["OA"], v["OA_ci95"])]
        cells += [_interval(v["F1"][c], v["F1_ci95"][c]) for c in present]
        lines.append("| " + " | ".join(cells) + " |")
    return lines
