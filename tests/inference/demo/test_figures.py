"""docs/accuracy.md quotes the demo's assessment figures as its source JSON gives them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from inference.assess.figures import page_block
from inference.assess.intervals import NO_INTERVAL_NOTE, estimate
from inference.demo.figures import accuracy_figures_markdown, change_summary, update_page

ROOT = Path(__file__).resolve().parents[3]
SOURCE = "docs/figures/accuracy_demo.json"


def test_accuracy_page_quotes_the_figures_of_its_json():
    """`make accuracy-figures` regenerates both; a stale page or JSON fails here."""
    page = (ROOT / "docs" / "accuracy.md").read_text(encoding="utf-8")
    figures = json.loads((ROOT / SOURCE).read_text(encoding="utf-8"))
    start, end = page_block(page, SOURCE)
    assert page[start:end].strip() == accuracy_figures_markdown(figures).strip()
    map_ = figures["products"]["map"]
    assert f"| map | {map_['n']} | {estimate(map_['oa'], map_['oa_ci'])} |" in page
    change = figures["change"]
    assert f"| net (gain - loss) | {estimate(change['net_km2'], change['net_ci95_km2'], 2)}" in page
    assert not re.search(r"± 0\.0+ ", page[start:end])  # no interval printed as none


def test_a_zero_width_interval_is_no_interval_and_a_tiny_one_below_the_precision():
    """Rounded before formatting, the JSON turned both into "± 0.0"; now each says what it is."""
    figures = json.loads((ROOT / SOURCE).read_text(encoding="utf-8"))
    map_ = figures["products"]["map"]
    map_.update(oa=99.97, oa_ci=0.02, f1=100.0, f1_ci=0.0)
    figures["change"].update(loss_km2=0.0, loss_ci95_km2=0.0)
    text = accuracy_figures_markdown(figures)
    assert f"| map | {map_['n']} | 100.0 ± <0.1 | 100.0 (n.i.) |" in text
    assert "| loss | 0.00 (n.i.) |" in text
    assert text.count(NO_INTERVAL_NOTE) == 1 and text.rstrip().endswith(NO_INTERVAL_NOTE)
    assert NO_INTERVAL_NOTE in change_summary(figures["change"])


def test_the_page_is_rewritten_from_the_json(tmp_path):
    figures = json.loads((ROOT / SOURCE).read_text(encoding="utf-8"))
    figures["products"]["map"]["oa"] = 12.3
    source = tmp_path / "figures.json"
    source.write_text(json.dumps(figures))
    page = tmp_path / "page.md"
    page.write_text(f"intro\n<!-- figures: {source} -->\nstale\n<!-- end figures -->\nafter\n")
    assert update_page(str(source), str(page)) is True
    text = page.read_text()
    assert "stale" not in text and "| 12.3 ± " in text and text.endswith("after\n")
    assert update_page(str(source), str(page)) is False
    with pytest.raises(ValueError, match="no '<!-- figures"):
        update_page(str(source), str(ROOT / "README.md"))


def test_a_compared_products_points_estimate_is_never_shown_as_mapped():
    """The committed figures were recorded when a compared product's "mapped" was the points'
    estimate: the page marks it so. New figures carry the raster's pixel count (shown bare)
    and, for a product known only at the points, the estimate under its own key (marked)."""
    figures = json.loads((ROOT / SOURCE).read_text(encoding="utf-8"))
    label = figures["products"]["10 m label"]
    old = accuracy_figures_markdown(figures)
    assert f"| {estimate(label['mapped'], None, 2)} (from the points) |" in old
    assert f"| {estimate(figures['products']['map']['mapped'], None, 2)} |" in old
    figures["mapped_area"] = "pixels"
    figures["products"]["ee"] = {**label, "mapped": None, "mapped_from_points": 12.345}
    new = accuracy_figures_markdown(figures)
    assert f"| {estimate(label['mapped'], None, 2)} |" in new
    assert "| 12.35 (from the points) |" in new and "not a count of its pixels" in new
