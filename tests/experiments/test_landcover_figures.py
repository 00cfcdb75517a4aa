"""docs/landcover.md quotes the land-cover experiment's tables as its source JSON gives them."""

from __future__ import annotations

import json
from pathlib import Path

import experiments.landcover_figures as figs
from inference.assess.figures import page_block

ROOT = Path(__file__).resolve().parents[2]


def test_the_page_quotes_the_tables_of_its_json():
    """`python -m experiments.landcover_figures OUT/metrics.json` rewrites both."""
    page = (ROOT / figs.PAGE).read_text(encoding="utf-8")
    data = json.loads((ROOT / figs.SOURCE).read_text(encoding="utf-8"))
    start, end = page_block(page, figs.SOURCE)
    assert page[start:end] == figs.figures_block(data)
    nlcd = data["settings"]["nlcd"]
    assert "| map | OA | F1 impervious |" in page[start:end]
    for arm in nlcd["arms"]:
        assert f"| {arm} |" in page[start:end]
    assert data["config"]["nlcd_iterations"] == 200  # the default budget, as the page says
    oa = {a: 100 * v["OA"]["mean"] for a, v in nlcd["arms"].items()}
    product = nlcd["products"]["NLCD"]
    assert (f"NLCD scores {100 * product['OA']['mean']:.1f} % OA and impervious F1 "
            f"{100 * product['F1']['impervious']['mean']:.1f} %") in page
    assert (f"the paper's method {oa['hrnet IN + filter']:.1f} %, the default arm "
            f"{oa['hrnet IN + filter + class weights + label SR']:.1f} %") in " ".join(
                page.split())
    assert f"The tables are {len(data['config']['seeds'])} seed(s)" in page


def test_the_command_writes_the_json_and_the_block(tmp_path, capsys):
    report = json.loads((ROOT / figs.SOURCE).read_text(encoding="utf-8"))
    report["settings"]["nlcd"]["per_seed_confusion"] = {"0": {}}
    report["settings"]["nlcd"]["products"]["NLCD"]["OA"]["mean"] = 0.123
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps(report))
    (tmp_path / "docs" / "figures").mkdir(parents=True)
    (tmp_path / figs.PAGE).write_text(f"intro\n<!-- figures: {figs.SOURCE} -->\nstale\n"
                                      "<!-- end figures -->\nafter\n")
    assert figs.main([str(metrics), "--root", str(tmp_path)]) == 0
    text = (tmp_path / figs.PAGE).read_text()
    assert "stale" not in text and "| NLCD (the product) | 12.3 (n.i.) |" in text
    assert text.endswith("<!-- end figures -->\nafter\n")
    written = json.loads((tmp_path / figs.SOURCE).read_text())
    assert "per_seed_confusion" not in written["settings"]["nlcd"]
    assert figs.main([str(tmp_path / "nothing.json"), "--root", str(tmp_path)]) == 2
    assert "not an experiments.landcover metrics.json" in capsys.readouterr().err
