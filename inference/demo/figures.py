"""The figures docs/accuracy.md quotes, taken from the demo's two reports and rendered as tables.

``isamap-demo`` writes them to ``<out>/assess/figures.json``; the page's tables are
:func:`accuracy_figures_markdown` of that JSON (committed as ``docs/figures/accuracy_demo.json``),
which a test checks, so the page cannot quote figures its source no longer gives;
:func:`update_page` rewrites them (``make accuracy-figures``) through the one writer of every
page's generated figures, :func:`inference.assess.figures.rewrite_block`.
"""

from __future__ import annotations

from inference.assess.figures import rewrite_block
from inference.assess.intervals import FROM_POINTS, POINTS_NOTE, estimate, notes
from inference.assess.report import MAP_NAME


def demo_figures(report: dict, change_report: dict, change_design: dict) -> dict:
    """The figures docs/accuracy.md quotes, at full precision (percentages as %, areas in km²).

    They are not rounded here: the page's rule for intervals (:mod:`inference.assess.intervals`)
    tells a zero-width interval from one below the printed precision, which a rounded figure
    cannot. :func:`accuracy_figures_markdown` renders them as the page's tables.
    """

    def pct(v: float | None) -> float | None:
        return None if v is None else 100 * v

    isa = report["isa_class"]
    products = {}
    for name, p in report["products"].items():
        c, a = p["per_class"][isa], p["area"][isa]
        products[name] = {"n": p["n"], "oa": pct(p["overall_accuracy"]),
                          "oa_ci": pct(p["overall_accuracy_ci95"]), "f1": pct(c["f1"]),
                          "f1_ci": pct(c["f1_ci95"]), "ua": pct(c["user_accuracy"]),
                          "pa": pct(c["producer_accuracy"]),
                          "area": a["estimate_km2"], "area_ci": a["ci95_km2"],
                          "mapped": a["mapped_km2"]}
        if a.get("points_mapped_km2") is not None:  # known at the points only
            products[name]["mapped_from_points"] = a["points_mapped_km2"]
    ch = change_report["change"]
    size = change_design["sample_size"]
    change = {"n": change_report["n"], "target_se_km2": size["target_se"],
              "target_class": size["target_class"],
              "minimum": change_design["minimum_per_stratum"],
              "allocation_rule": change_design.get("allocation_rule"),
              "points": change_report["strata"]["points"],
              **{k: ch[k] for k in ("gain_km2", "gain_ci95_km2", "loss_km2",
                                          "loss_ci95_km2", "net_km2", "net_ci95_km2")},
              **{f"{c}_mapped": ch[c]["mapped_km2"] for c in ("gain", "loss")},
              **{f"{c}_{k}{ci}": pct(ch[c][f"{k}_accuracy{ci}"]) for c in ("gain", "loss")
                 for k in ("user", "producer") for ci in ("", "_ci95")}}
    return {"command": "isamap-demo --out demo_output (default options)",
            "mapped_area": COUNTED,
            "isa_class": isa, "points": report["strata"]["points"], "products": products,
            "change": change}


COUNTED = "pixels"
"""``mapped_area`` of figures whose products' ``mapped`` km² count their pixels (the strata
map's, and a compared raster's read on its grid); figures without it were recorded when a
compared product's ``mapped`` was the points' estimate, and are shown so."""


def mapped_figure(figures: dict, name: str, product: dict) -> str:
    """A product's mapped km² as the page shows it: a pixel count, or marked as the points'."""
    points = product.get("mapped_from_points")
    if points is None and figures.get("mapped_area") != COUNTED and name != MAP_NAME:
        points = product.get("mapped")  # recorded before compared rasters were counted
    if points is not None:
        return f"{estimate(points, None, 2)} {FROM_POINTS}"
    return estimate(product.get("mapped"), None, 2)


def accuracy_figures_markdown(figures: dict) -> str:
    """The demo's tables as docs/accuracy.md shows them (a test compares the page with this)."""
    lines = ["| product | points | overall accuracy % | impervious F1 % | UA % | PA % | "
             "impervious area km² (from the points) | mapped km² |",
             "|---|---|---|---|---|---|---|---|"]
    for name, p in figures["products"].items():
        lines.append(f"| {name} | {p['n']} | {estimate(p['oa'], p['oa_ci'])} | "
                     f"{estimate(p['f1'], p['f1_ci'])} | {estimate(p['ua'])} | "
                     f"{estimate(p['pa'])} | {estimate(p['area'], p['area_ci'], 2)} | "
                     f"{mapped_figure(figures, name, p)} |")
    points = ", ".join(f"{n} on mapped {c}" for c, n in figures["points"].items())
    lines += ["", f"Points: {points}.", "", change_summary(figures["change"], note=False)]
    if any(FROM_POINTS in line for line in lines):
        lines += ["", POINTS_NOTE]
    lines += notes(lines)
    return "\n".join(lines) + "\n"


def change_summary(change: dict, note: bool = True) -> str:
    """Gain, loss and net impervious change from the change sample, as a table.

    ``note``: the no-interval note under the table when it shows one (off where the caller
    writes one note under several tables).
    """
    points = ", ".join(f"{c} {n}" for c, n in change["points"].items())
    rule = str(change["allocation_rule"]).capitalize()
    lines = [f"Change sample sized for a standard error of {change['target_se_km2']:g} km² of "
             f"{change['target_class']} (eq. 13, {rule} allocation, at least "
             f"{change['minimum']} points per stratum):", "",
             f"| change ({change['n']} points: {points}) | km² from the points (± 95 %) | "
             "mapped km² | UA % (± 95 %) | PA % (± 95 %) |", "|---|---|---|---|---|"]
    for c in ("gain", "loss"):
        lines.append(f"| {c} | {estimate(change[c + '_km2'], change[c + '_ci95_km2'], 2)} | "
                     f"{estimate(change[c + '_mapped'], None, 2)} | "
                     f"{estimate(change[c + '_user'], change[c + '_user_ci95'])} | "
                     f"{estimate(change[c + '_producer'], change[c + '_producer_ci95'])} |")
    net = estimate(change["net_km2"], change["net_ci95_km2"], 2)
    lines.append(f"| net (gain - loss) | {net} | | | |")
    return "\n".join(lines + (notes(lines) if note else []))


def update_page(figures_json: str, page_path: str) -> bool:
    """Rewrite the page's accuracy figures block from the JSON; True when the page changed."""
    return rewrite_block(figures_json, page_path,
                         lambda figures: "\n" + accuracy_figures_markdown(figures))
