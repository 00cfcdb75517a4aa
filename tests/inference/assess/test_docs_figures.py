"""docs/accuracy.md quotes the demo's assessment figures as its source JSON gives them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from inference.assess.figures import accuracy_figures_markdown, page_block, update_page

ROOT = Path(__file__).resolve().parents[3]
SOURCE = "docs/figures/accuracy_demo.json"


def test_accuracy_page_quotes_the_figures_of_its_json():
    """`make accuracy-figures` regenerates both; a stale page or JSON fails here."""
    page = (ROOT / "docs" / "accuracy.md").read_text(encoding="utf-8")
    figures = json.loads((ROOT / SOURCE).read_text(encoding="utf-8"))
    start, end = page_block(page, SOURCE)
    assert page[start:end].strip() == accuracy_figures_markdown(figures).strip()
    map_ = figures["products"]["map"]
    assert f"| map | {map_['n']} | {map_['oa']:.1f} ± {map_['oa_ci']:.1f} |" in page
    change = figures["change"]
    assert f"| net (gain - loss) | {change['net_km2']:.2f} ± {change['net_ci95_km2']:.2f}" in page


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
