"""Scores of a map and of other products on the same labelled points, with 95 % intervals.

Every product is estimated with the strata that drew the sample (the map's classes, or a change
map's), so the map and the products it is compared with are estimated without bias on the same
points (:func:`inference.assess.estimators.stratified_estimates`). The strata come from the
design's own file (``--design``: each point's stratum, joined by id, and the strata's sizes),
or else from the strata raster read at the points. A change map also gets its gain, loss and
net change areas with intervals (:func:`inference.assess.estimators.change_area`). Writes
``report.json`` (the numbers), ``report.md`` (the tables as a person reads them) and
``report.png`` (impervious F1 and area of every product with their intervals).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from contract.quicklook import titled
from core.errors import ConfigError
from core.jsonsafe import dumps
from core.shareable import shareable, shareable_path
from core.storage import atomic_path, atomic_write
from inference.assess.design_file import BLIND, MAP_CLASS_SHOWN, read_design
from inference.assess.estimators import AreaAccuracy, change_area, stratified_estimates
from inference.assess.intervals import FROM_POINTS, POINTS_NOTE, estimate, notes
from inference.assess.point_files import REFERENCE_COLUMN, ReferencePoints, read_references
from inference.assess.product_area import mapped_areas, region_raster, strata_candidates
from inference.assess.products import (
    Comparison,
    ProductAtPoints,
    check_coverage,
    parse_comparison,
    sample_product,
)
from inference.assess.report_inputs import report_inputs, tell_replaced
from inference.assess.sample_strata import (
    check_design_id,
    check_design_positions,
    check_strata_id,
    design_strata,
    raster_strata,
)
from inference.assess.strata import CHANGE_NAMES, Strata, check_codes, class_names, values_at

log = logging.getLogger(__name__)

MAP_NAME = "map"


@dataclass(frozen=True)
class Scores:
    """What ``isamap-assess score`` wrote."""

    report: dict
    json: Path
    markdown: Path
    plot: Path


def product_report(product: ProductAtPoints, estimate: AreaAccuracy, n: int,
                   matrix: np.ndarray, mapped: Sequence[float] | None) -> dict:
    """One product's entry of ``report.json``: fractions in [0, 1], km², 95 % half-widths.

    ``mapped``: the km² the product maps in each class over the assessed region (its pixels);
    None for a product known only at the points, whose ``mapped_km2`` is then null and the
    stratified estimate of it is ``points_mapped_km2``.
    """
    per_class, area = {}, {}
    for i, name in enumerate(estimate.class_names):
        per_class[name] = {"user_accuracy": estimate.ua[i], "user_accuracy_ci95": estimate.ua_ci[i],
                           "producer_accuracy": estimate.pa[i],
                           "producer_accuracy_ci95": estimate.pa_ci[i],
                           "f1": estimate.f1[i], "f1_ci95": estimate.f1_ci[i]}
        area[name] = {"estimate_km2": estimate.area[i], "ci95_km2": estimate.area_ci[i],
                      "mapped_km2": None if mapped is None else mapped[i]}
        if mapped is None:
            area[name]["points_mapped_km2"] = estimate.mapped_area[i]
    return {"source": product.source, "n": n, "classes": list(estimate.class_names),
            "overall_accuracy": estimate.oa, "overall_accuracy_ci95": estimate.oa_ci,
            "per_class": per_class, "area": area,
            "sample_confusion": {"convention": "rows = map class, columns = reference",
                                 "counts": matrix.tolist()},
            "error_matrix": {"convention": "area proportions, rows = map class, "
                                           "columns = reference",
                             "proportions": [list(r) for r in estimate.error_matrix]}}


def score_products(strata: Strata, stratum: np.ndarray, products: Sequence[ProductAtPoints],
                   reference: np.ndarray,
                   counted: Mapping[str, Sequence[float] | None] | None = None) -> dict:
    """``report.json`` of ``products`` scored on the points (strata codes at each point).

    ``counted``: each product's km² per class from its pixels (None: known at the points
    only); a product not in it drew the strata, whose estimate of its mapped area is exact.
    """
    counted = counted or {}
    report: dict[str, Any] = {
        "n": int(reference.size),
        "strata": {"raster": strata.path, "classes": list(strata.classes),
                   "area_km2": dict(zip(strata.classes, strata.area_km2, strict=True)),
                   "points": {c: int((stratum == i).sum()) for i, c in enumerate(strata.classes)}},
        "estimator": "stratified estimators of Olofsson et al. (2014) in the form of Stehman "
                     "(2014); intervals are 95 % (1.96 standard errors)",
        "products": {}}
    for product in products:
        keep = product.values >= 0
        ref = product.reference_code[reference[keep]]
        k = len(product.classes)
        estimate = stratified_estimates(stratum[keep], strata.area_km2, product.values[keep],
                                        ref, product.classes, strata.pixels)
        matrix = np.zeros((k, k), dtype=np.int64)
        np.add.at(matrix, (product.values[keep], ref), 1)
        mapped = counted.get(product.name, estimate.mapped_area)
        report["products"][product.name] = product_report(product, estimate, int(keep.sum()),
                                                          matrix, mapped)
    return report


def score(map_path: str, reference_path: str | Sequence[str], out: Path, *,
          strata_path: str | None = None, design: str | Path | None = None,
          reference_column: str = REFERENCE_COLUMN, compare: Sequence[str] = (),
          isa_class: int | None = None,
          session_factory: Callable[[], Any] | None = None) -> Scores:
    """Score ``map_path`` and every ``compare`` product on the labelled points; write reports.

    ``reference_path``: one labelled file or several (CEO exports of a split design);
    ``design``: the design folder, whose strata are then used (see module docstring).
    """
    # lazy: the workflow imports torch, which scoring needs for nothing else
    from inference.predict.workflow import isa_class_index

    if design is not None and strata_path is not None:
        raise ConfigError(f"--design {design} gives the strata that drew the points; give "
                          f"--design or --strata {strata_path}, not both")
    comparisons: list[Comparison] = [parse_comparison(c) for c in compare]
    names = [MAP_NAME] + [c.name for c in comparisons]
    if len(set(names)) != len(names):
        raise ConfigError(f"--compare names must be unique and not {MAP_NAME!r}: {names}")
    classes = class_names(map_path)
    change_map = classes == CHANGE_NAMES
    if change_map and any(c.isa_rule is not None for c in comparisons):
        raise ConfigError("--compare with impervious codes or Earth Engine products needs a "
                          f"class map; {map_path} is a change map (compare change COGs)")
    # a change map's focus is gain: its F1 and area lead the tables
    isa = (classes.index("gain") if change_map and isa_class is None
           else isa_class_index(classes, isa_class))
    paths = [reference_path] if isinstance(reference_path, str | Path) else list(reference_path)
    points: ReferencePoints = read_references(paths, classes, reference_column,
                                              positions=design is None)
    drawn = read_design(design) if design is not None else None
    if drawn is not None:
        check_design_id(points, drawn, paths, str(design))
        strata, stratum, placed = design_strata(drawn, points)
        check_design_positions(points, placed, strata, paths)
        points = placed
        check_strata_id(points, strata, paths, f"--design {design}")
    else:
        strata, stratum = raster_strata(points, strata_path or map_path, paths)
    own = values_at(map_path, points.lon, points.lat)
    check_codes(own, classes, f"the map {map_path}", points.ids)
    products = [ProductAtPoints(MAP_NAME, map_path, classes, own, np.arange(len(classes)))]
    for comparison in comparisons:
        log.info("reading %s (%s) at %d points", comparison.name, comparison.source,
                 points.reference.size)
        products.append(sample_product(comparison, classes, isa, points.lon, points.lat,
                                       points.ids, session_factory))
        check_coverage(products[-1], stratum, strata)
    region = strata.path if drawn is None else region_raster(
        strata, (map_path, *strata_candidates(strata.path, str(design), map_path)))
    counted = mapped_areas(products, comparisons, classes, isa, region, strata)
    report = score_products(strata, stratum, products, points.reference, counted)
    report["isa_class"] = classes[isa]
    report["unlabelled_points_left_out"] = points.unlabelled
    report["no_data_points_left_out"] = len(points.no_data)
    report["interpretation"] = (drawn.interpretation if drawn is not None else
                                MAP_CLASS_SHOWN if points.map_class_shown else
                                "not recorded (no --design given)")
    if change_map:
        report["change"] = change_report(strata, stratum, points.reference,
                                         report["products"][MAP_NAME])
    for entry in report["products"].values():  # a local file as typed ("../../x.tif"):
        if os.path.exists(entry["source"]):  # relative to out, else its name
            entry["source"] = shareable_path(entry["source"], out)
    report["inputs"] = report_inputs(map_path, paths, out, drawn=drawn, design=design,
                                     strata_path=strata_path, comparisons=comparisons,
                                     reference_column=reference_column, isa_class=isa_class)
    report = shareable(report, out)  # reports are shared: no local path but under out
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "report.json", out / "report.md"
    tell_replaced(json_path, report["inputs"])
    atomic_write(json_path, lambda fh: fh.write(dumps(report, indent=1).encode()))
    atomic_write(md_path, lambda fh: fh.write(markdown(report).encode()))
    plot = plot_report(report, out / "report.png")
    return Scores(report, json_path, md_path, plot)


def change_report(strata: Strata, stratum: np.ndarray, reference: np.ndarray,
                  mapped: dict) -> dict:
    """``report.json``'s ``change``: gain, loss and net impervious change, and map accuracy.

    Areas in km² with 95 % half-widths; the change map's user's and producer's accuracy of
    gain and loss with theirs.
    """
    names = list(CHANGE_NAMES)
    change = change_area(stratum, strata.area_km2, reference, names.index("gain"),
                         names.index("loss"), strata.pixels)
    entry: dict[str, Any] = {
        "gain_km2": change.gain, "gain_ci95_km2": change.gain_ci,
        "loss_km2": change.loss, "loss_ci95_km2": change.loss_ci,
        "net_km2": change.net, "net_ci95_km2": change.net_ci,
        "convention": "net = gain - loss of impervious surface, estimated from the reference"}
    for name in ("gain", "loss"):
        entry[name] = {k: mapped["per_class"][name][k] for k in
                       ("user_accuracy", "user_accuracy_ci95", "producer_accuracy",
                        "producer_accuracy_ci95")} | {
                           k: v for k, v in mapped["area"][name].items()
                           if k in ("mapped_km2", "points_mapped_km2")}
    return entry


def change_markdown(change: dict) -> list[str]:
    """The change section of ``report.md``."""
    lines = ["", "## Impervious change", "",
             "| change | area km² (reference, ± 95 %) | mapped km² | UA % | PA % |",
             "|---|---|---|---|---|"]
    for name in ("gain", "loss"):
        c = change[name]
        lines.append(f"| {name} | {_km2(change[name + '_km2'], change[name + '_ci95_km2'])} | "
                     f"{mapped_cell(c)} | "
                     f"{_pct(c['user_accuracy'], c['user_accuracy_ci95'])} | "
                     f"{_pct(c['producer_accuracy'], c['producer_accuracy_ci95'])} |")
    lines.append(f"| net (gain - loss) | {_km2(change['net_km2'], change['net_ci95_km2'])} "
                 "| | | |")
    return lines


def _pct(value: float | None, ci: float | None) -> str:
    return estimate(value, ci, 1, scale=100)


def markdown(report: dict) -> str:
    """The report's tables as Markdown (percentages and km², ± 95 % half-widths)."""
    strata = report["strata"]
    lines = ["# Accuracy and area from reference points", "",
             f"![{report['isa_class']} F1 and area of each product, with 95 % intervals]"
             "(report.png)", "",
             f"{report['n']} points, strata from `{strata['raster']}`: " + ", ".join(
                 f"{c} {strata['points'][c]} points / {strata['area_km2'][c]:.3f} km²"
                 for c in strata["classes"]) + ".", "",
             f"Estimator: {report['estimator']}.", "",
             *([f"{report['unlabelled_points_left_out']} points of the sample had no reference "
                "and are left out: the estimates assume they are missing at random within "
                "their stratum.", ""] if report.get("unlabelled_points_left_out") else []),
             *([f"{report['no_data_points_left_out']} points could not be labelled (reference "
                "`nodata`: cloud, a gap in the imagery) and are left out: the estimates assume "
                "their classes are as those of the labelled points of their stratum.", ""]
               if report.get("no_data_points_left_out") else []),
             "Interpretation: " + (report.get("interpretation", "") if report.get(
                 "interpretation") != BLIND else "blind (the interpreter saw neither the "
                 "map's class nor the stratum; points in random order)") + ".", "",
             "| product | points | overall accuracy % | " + report["isa_class"] +
             " F1 % | UA % | PA % | area km² (reference) | mapped km² |",
             "|---|---|---|---|---|---|---|---|"]
    isa = report["isa_class"]
    for name, p in report["products"].items():
        c, a = p["per_class"][isa], p["area"][isa]
        oa = _pct(p["overall_accuracy"], p["overall_accuracy_ci95"])
        lines.append(f"| {name} | {p['n']} | {oa} | {_pct(c['f1'], c['f1_ci95'])} | "
                     f"{_pct(c['user_accuracy'], c['user_accuracy_ci95'])} | "
                     f"{_pct(c['producer_accuracy'], c['producer_accuracy_ci95'])} | "
                     f"{_km2(a['estimate_km2'], a['ci95_km2'])} | {mapped_cell(a)} |")
    for name, p in report["products"].items():
        lines += ["", f"## {name} (`{p['source']}`)", "",
                  "| class | UA % | PA % | F1 % | area km² | mapped km² |",
                  "|---|---|---|---|---|---|"]
        for cls in p["classes"]:
            c, a = p["per_class"][cls], p["area"][cls]
            lines.append(f"| {cls} | {_pct(c['user_accuracy'], c['user_accuracy_ci95'])} | "
                         f"{_pct(c['producer_accuracy'], c['producer_accuracy_ci95'])} | "
                         f"{_pct(c['f1'], c['f1_ci95'])} | "
                         f"{_km2(a['estimate_km2'], a['ci95_km2'])} | {mapped_cell(a)} |")
        counts = p["sample_confusion"]["counts"]
        lines += ["", "Sample counts (rows = map, columns = reference): " +
                  "; ".join(f"{cls}: {row}" for cls, row in zip(p["classes"], counts,
                                                                 strict=True)),
                  "", "Estimated error matrix, % of the area (rows = map, columns = reference):",
                  "", "| map \\ reference | " + " | ".join(p["classes"]) + " |",
                  "|---|" + "---|" * len(p["classes"])]
        for cls, row in zip(p["classes"], p["error_matrix"]["proportions"], strict=True):
            lines.append(f"| {cls} | " + " | ".join(
                "n/a" if v is None else f"{100 * v:.2f}" for v in row) + " |")
    if "change" in report:
        lines += change_markdown(report["change"])
    if any(FROM_POINTS in line for line in lines):
        lines += ["", POINTS_NOTE]
    lines += notes(lines)
    return "\n".join(lines) + "\n"


def mapped_cell(area: dict) -> str:
    """The mapped km² of an ``area`` entry: its pixel count, or the points' estimate, marked."""
    if area.get("mapped_km2") is None and area.get("points_mapped_km2") is not None:
        return f"{_km2(area['points_mapped_km2'], None)} {FROM_POINTS}"
    return _km2(area.get("mapped_km2"), None)


def _km2(value: float | None, ci: float | None) -> str:
    return estimate(value, ci, 3)


def clipped_errors(values: Sequence[float], half_widths: Sequence[float], low: float = 0.0,
                   high: float = np.inf) -> np.ndarray:
    """``yerr`` (2 x N: below, above) of ``value ± half_width`` clipped to ``[low, high]``.

    A symmetric normal-approximation interval can pass the quantity's bounds (an F1 of
    0.97 ± 0.05 above 1, an area below 0 km²); drawn as is, it shows values that cannot be.
    """
    v = np.asarray(values, dtype=float)
    h = np.asarray(half_widths, dtype=float)
    return np.stack([v - np.maximum(v - h, low), np.minimum(v + h, high) - v])


def plot_report(report: dict, png: Path) -> Path:
    """Impervious F1 and area of every product, with 95 % intervals, side by side.

    The intervals are clipped to the quantity's range (F1 in [0, 1], area >= 0), and each
    product's bar names the points it was scored on (a compared product has no value at
    some points).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    isa = report["isa_class"]
    names = list(report["products"])
    prods = [report["products"][n] for n in names]
    f1 = [p["per_class"][isa]["f1"] or 0.0 for p in prods]
    f1_ci = [p["per_class"][isa]["f1_ci95"] or 0.0 for p in prods]
    est = [p["area"][isa]["estimate_km2"] or 0.0 for p in prods]
    est_ci = [p["area"][isa]["ci95_km2"] or 0.0 for p in prods]
    mapped = [p["area"][isa]["mapped_km2"] for p in prods]
    guessed = [p["area"][isa].get("points_mapped_km2") or 0.0 if m is None else 0.0
               for p, m in zip(prods, mapped, strict=True)]
    mapped = [m or 0.0 for m in mapped]
    scored = [int(p["n"]) for p in prods]
    labels = [f"{n}\n{k} points" for n, k in zip(names, scored, strict=True)]
    x = np.arange(len(names))
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.8), dpi=100)
    left.bar(x, f1, yerr=clipped_errors(f1, f1_ci, 0.0, 1.0), capsize=4, color="#d7301f")
    left.set_xticks(x, labels, rotation=20)
    left.set_ylim(0, 1.02)
    left.set_ylabel(f"{isa} F1 (95 % interval)")
    left.set_title(f"{isa} F1 on {scored[0]} scored points" if len(set(scored)) == 1
                   else f"{isa} F1 on the points each product scored")
    right.bar(x, mapped, color="#bdbdbd", width=0.5, label="mapped by the product (pixels)")
    if any(guessed):  # a product known at the points only: its share of them, not its pixels
        right.bar(x, guessed, color="none", edgecolor="#737373", hatch="//", width=0.5,
                  label="mapped, estimated from the points")
    right.errorbar(x, est, yerr=clipped_errors(est, est_ci, 0.0), fmt="o", color="#08519c",
                   capsize=5, zorder=3, label="estimated from the points (95 %)")
    right.set_xticks(x, labels, rotation=20)
    right.set_ylabel(f"{isa} area (km²)")
    right.set_title(f"{isa} area")
    right.legend(fontsize=7, loc="lower right", framealpha=0.9)
    fig.suptitle(titled("Accuracy and area from reference points (95 % intervals)"),
                 fontweight="bold")
    fig.tight_layout()
    with atomic_path(png) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return png
