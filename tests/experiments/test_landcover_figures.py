"""The land-cover pages quote the experiment's tables as their source JSON gives them.

docs/landcover.md (the user's page) has the default run's headline table, docs/evidence/
landcover.md every table of every run.
"""

from __future__ import annotations

import json
import math
import re

import experiments.landcover_figures as figs
from inference.assess.figures import page_block
from tests.support import REPO_ROOT
from tests.support.page_text import DECIMAL


def test_the_page_quotes_the_tables_of_its_json():
    """`python -m experiments.landcover_figures OUT/metrics.json` rewrites both."""
    page = (REPO_ROOT / figs.EVIDENCE_PAGE).read_text(encoding="utf-8")
    data = json.loads((REPO_ROOT / figs.SOURCE).read_text(encoding="utf-8"))
    start, end = page_block(page, figs.SOURCE)
    assert page[start:end] == figs.figures_block(data)
    nlcd = data["settings"]["nlcd"]
    assert "| map | OA | F1 impervious |" in page[start:end]
    for arm in nlcd["arms"]:
        assert f"| {arm} |" in page[start:end]
    assert all("/" not in str(v) for k, v in data["config"].items() if k.endswith("_dir"))
    assert data["config"]["nlcd_iterations"] == 200  # the default budget, as the page says
    assert data["config"]["split"] == "quadrants"
    test = data["test"]
    product = nlcd["products"]["NLCD"]
    text = " ".join(page.split("### Whole patches held out")[0].split())  # the default run's
    assert (f"NLCD scores {100 * product['OA']['mean']:.1f} % OA and impervious F1 "
            f"{100 * product['F1']['impervious']['mean']:.1f} %") in text

    def oa_f1(arm: str) -> str:
        v = nlcd["arms"][arm]
        f1 = v["F1"]["impervious"]["mean"]
        return (f"{100 * v['OA']['mean']:.1f} % OA and impervious F1 "
                + (f"{100 * f1:.1f} %" if f1 is not None and math.isfinite(f1) else "n/a"))

    assert f"the paper's method {oa_f1(test['paper']['model'])}" in text
    if test["model"] != test["paper"]["model"]:
        assert f"the default arm {oa_f1(test['model'])}" in text
    for arm in nlcd["arms"]:  # every other arm the prose quotes, as `name`: figures
        if f"`{arm}`:" in text:
            assert f"`{arm}`: {oa_f1(arm)}" in text
    assert f"The tables are {len(data['config']['seeds'])} seed(s)" in page
    # "each of the three seeds of the default arm is above NLCD's OA", on the points too
    assert len(nlcd["arms"][test["model"]]["OA"]["per_seed"]) == 3
    assert min(nlcd["arms"][test["model"]]["OA"]["per_seed"]) > product["OA"]["mean"]
    assert test["points"]["oa_model"] > test["points"]["oa_product"]
    assert test["f1_model"]["impervious"] >= test["f1_product"]["impervious"]


def test_the_command_writes_the_json_and_the_block(tmp_path, capsys):
    report = json.loads((REPO_ROOT / figs.SOURCE).read_text(encoding="utf-8"))
    report["settings"]["nlcd"]["per_seed_confusion"] = {"0": {}}
    report["settings"]["nlcd"]["products"]["NLCD"]["OA"]["mean"] = 0.123
    report["config"]["data_dir"] = "/home/someone/private/chesapeake_nlcd"
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps(report))
    (tmp_path / "docs" / "figures").mkdir(parents=True)
    (tmp_path / "docs" / "evidence").mkdir()
    for page in (figs.PAGE, figs.EVIDENCE_PAGE):
        (tmp_path / page).write_text(f"intro\n<!-- figures: {figs.SOURCE} -->\nstale\n"
                                     "<!-- end figures -->\nafter\n")
    assert figs.main([str(metrics), "--root", str(tmp_path)]) == 0
    for page in (figs.PAGE, figs.EVIDENCE_PAGE):
        text = (tmp_path / page).read_text()
        assert "stale" not in text and "| NLCD (the product) | 12.3 (n.i.) |" in text
        assert text.endswith("<!-- end figures -->\nafter\n")
    assert "| map | OA | F1 impervious |" in (tmp_path / figs.EVIDENCE_PAGE).read_text()
    assert "the default arm (`" in (tmp_path / figs.PAGE).read_text()  # the headline only
    written = json.loads((tmp_path / figs.SOURCE).read_text())
    assert "per_seed_confusion" not in written["settings"]["nlcd"]
    assert written["config"]["data_dir"] == "chesapeake_nlcd"  # no machine's path published
    assert figs.main([str(tmp_path / "nothing.json"), "--root", str(tmp_path)]) == 2
    assert "not an experiments.landcover metrics.json" in capsys.readouterr().err


def _variant(name: str) -> tuple[str, dict, int, int]:
    """The page, a variant run's committed JSON and its block's bounds (checked equal)."""
    source = figs.variant_source(name)
    page = (REPO_ROOT / figs.EVIDENCE_PAGE).read_text(encoding="utf-8")
    data = json.loads((REPO_ROOT / source).read_text(encoding="utf-8"))
    start, end = page_block(page, source)
    assert page[start:end] == figs.variant_block(data)
    return page, data, start, end


def test_the_whole_patch_split_is_quoted_from_its_json():
    """`... landcover_figures lc_patches/metrics.json --variant patches` and the prose."""
    page, data, start, end = _variant("patches")
    assert data["config"]["split"] == "patches"
    assert data["config"]["groups"] == [[0, 4], [1, 5], [2, 6], [3, 7]]
    assert "--split patches --groups 0,4 1,5 2,6 3,7 --windows 16 32 128 256 --out lc_patches" in (
        " ".join(page.replace("\\\n", " ").split()))
    seconds = data["timing"]["wall_seconds"]
    assert f"took {seconds:,.0f} s of wall time" in " ".join(page[:start].split())
    nlcd, test = data["settings"]["nlcd"], data["test"]
    text = " ".join(page[end:].split("### Other tiles")[0].split())

    def oa_f1(v: dict) -> str:
        f1 = v["F1"]["impervious"]["mean"]
        return (f"{100 * v['OA']['mean']:.1f} % OA and impervious F1 "
                + (f"{100 * f1:.1f} %" if f1 is not None and math.isfinite(f1) else "n/a"))

    assert f"NLCD: {oa_f1(nlcd['products']['NLCD'])}" in text
    quoted = [arm for arm in nlcd["arms"] if f"`{arm}`:" in text]
    assert {test["model"], test["paper"]["model"], "hrnet IN, true labels"} <= set(quoted)
    for arm in quoted:
        assert f"`{arm}`: {oa_f1(nlcd['arms'][arm])}" in text
    default = nlcd["arms"][test["model"]]["OA"]
    product = nlcd["products"]["NLCD"]["OA"]["mean"]
    above = 100 * (default["mean"] - product)
    seeds = ", ".join(f"{100 * v:.1f}" for v in default["per_seed"][:-1])
    assert f"{above:.1f} points of OA above" in text
    assert f"(seeds {seeds} and {100 * default['per_seed'][-1]:.1f} %)" in text
    # every decimal of the prose (code spans aside) is in the table or derived above
    prose = re.sub(r"`[^`]*`", " ", text)
    derived = {f"{above:.1f}", *(f"{100 * v:.1f}" for v in default["per_seed"])}
    assert set(DECIMAL.findall(prose)) <= set(DECIMAL.findall(page[start:end])) | derived
    ceiling = nlcd["arms"]["hrnet IN, true labels"]["OA"]["mean"]
    assert all(v["OA"]["mean"] > ceiling for arm, v in nlcd["arms"].items() if "true" not in arm)
    # "above NLCD's overall accuracy", with NLCD's impervious F1, and "the only arms above
    # NLCD are the paper's network given NLCD's shares"
    assert above > 0 and min(default["per_seed"]) > product
    windows = nlcd["windows"]
    assert test["model"] in windows.values()
    assert all(v["OA"]["mean"] < product for arm, v in nlcd["arms"].items()
               if arm not in windows.values())
    assert test["f1_model"]["impervious"] >= test["f1_product"]["impervious"]
    # "How much the window matters": at or above NLCD from 16 to 128 px, below at 256 px;
    # every seed above NLCD only at 16 and 64 px
    oa = {int(w): nlcd["arms"][arm]["OA"] for w, arm in windows.items()}
    assert sorted(oa) == [16, 32, 64, 128, 256]
    assert all(oa[w]["mean"] >= product for w in (16, 32, 64, 128)) and oa[256]["mean"] < product
    assert [w for w in oa if min(oa[w]["per_seed"]) > product] == [16, 64]
    prose = " ".join(page[end:].split("### Other tiles")[0].split())
    for w in (16, 32, 64, 128):
        assert f"{100 * (oa[w]['mean'] - product):+.1f}".lstrip("+") in prose
    assert f"it is {100 * (product - oa[256]['mean']):.1f} points below" in prose


def test_the_synthetic_products_run_is_quoted_from_its_json():
    """`... landcover_figures lc_naip/metrics.json --variant naip` and what its prose says."""
    page, data, start, end = _variant("naip")
    assert list(data["settings"]) == ["naip"] and len(data["config"]["seeds"]) == 3
    assert "--settings naip --out lc_naip" in page
    assert f"took {data['timing']['wall_seconds']:,.0f} s of wall time" in " ".join(
        page[:start].split())
    text = " ".join(page[end:].split("## What pruning")[0].split())
    prose = re.sub(r"`[^`]*`", " ", text)
    assert set(DECIMAL.findall(prose)) <= set(DECIMAL.findall(page[start:end]))
    naip = data["settings"]["naip"]
    pairs = {"confusion product": "hrnet BN + filter, confusion product",
             "mode product": "hrnet BN, mode product"}
    for product, plain in pairs.items():  # "do not lift a network above its product",
        shared = next(a for a in naip["arms"] if a.startswith(plain + ",") and "shares" in a)
        assert f"`{shared}`:" in text  # "bring it close and steady it over seeds"
        oa = {k: naip["arms"][k]["OA"] for k in (plain, shared)}
        assert oa[plain]["mean"] < oa[shared]["mean"] < naip["products"][product]["OA"]["mean"]
        assert oa[shared]["std"] < oa[plain]["std"]


def test_the_user_page_quotes_its_headline_table_and_what_fails():
    """docs/landcover.md: the product, the paper's method and the default arm from the JSON;
    its prose quotes them, the whole-patch split's OA and the pruning runs' OA changes only."""
    page = (REPO_ROOT / figs.PAGE).read_text(encoding="utf-8")
    data = json.loads((REPO_ROOT / figs.SOURCE).read_text(encoding="utf-8"))
    start, end = page_block(page, figs.SOURCE)
    block = page[start:end]
    assert block == figs.headline_block(data)
    test, nlcd = data["test"], data["settings"]["nlcd"]
    assert f"| the default arm (`{test['model']}`) |" in block
    assert f"| the paper's method (`{test['paper']['model']}`) |" in block
    assert "| map | OA | F1 woodland | F1 grassland | F1 impervious |" in block
    product = nlcd["products"]["NLCD"]
    text = " ".join(page[end:].split())

    def oa_f1(v: dict) -> str:
        f1 = v["F1"]["impervious"]["mean"]
        return (f"{100 * v['OA']['mean']:.1f} % OA and impervious F1 "
                + (f"{100 * f1:.1f} %" if f1 is not None and math.isfinite(f1) else "n/a"))

    assert f"NLCD scores {oa_f1(product)} on the pooled held-out pixels" in text
    assert f"the default arm {oa_f1(nlcd['arms'][test['model']])}" in text
    assert f"the paper's method {oa_f1(nlcd['arms'][test['paper']['model']])}" in text
    assert (f"The {data['timing']['runs']['count']} training runs took "
            f"{data['timing']['runs']['wall_seconds']:,.0f} s of wall time") in text
    assert test["f1_model"]["impervious"] == test["f1_product"]["impervious"]  # "NLCD's own"
    patches = json.loads((REPO_ROOT / figs.variant_source("patches")).read_text(
        encoding="utf-8"))["test"]
    assert (f"default arm scores {100 * patches['oa_model']:.1f} % OA against NLCD's "
            f"{100 * patches['oa_product']:.1f} %") in text
    changes = []
    for name in ("in", "bn", "bn_x3"):
        oa = {m: s["OA"]["mean"] for m, s in json.loads(
            (REPO_ROOT / figs.pruning_source(name)).read_text(encoding="utf-8"))["summary"].items()}
        changes.append(f"{100 * (oa['hrnet'] - oa['hrnet pruned']):.1f}")
    assert "FPGM at 40 % costs {} (IN stem), {} (BN) and {} (BN, 3x budget) OA points".format(
        *changes) in text
    derived = set(DECIMAL.findall(block)) | set(changes) | {
        f"{100 * patches[k]:.1f}" for k in ("oa_model", "oa_product")}
    prose = re.sub(r"`[^`]*`", " ", text)
    assert set(DECIMAL.findall(prose)) <= derived


def test_the_readme_quotes_the_land_cover_figures():
    """The front door's land-cover line: NLCD and the paper's method from the default run,
    the default arm's OA from both runs."""
    quadrants = json.loads((REPO_ROOT / figs.SOURCE).read_text(encoding="utf-8"))
    patches = json.loads((REPO_ROOT / figs.variant_source("patches")).read_text(encoding="utf-8"))
    readme = " ".join((REPO_ROOT / "README.md").read_text(encoding="utf-8").split())
    nlcd = quadrants["settings"]["nlcd"]
    product = nlcd["products"]["NLCD"]
    assert (f"NLCD {100 * product['OA']['mean']:.1f} % OA, impervious F1 "
            f"{100 * product['F1']['impervious']['mean']:.1f} %") in readme
    paper = quadrants["test"]["paper"]["model"]
    assert f"the paper's method {100 * nlcd['arms'][paper]['OA']['mean']:.1f} %" in readme
    for run, where in ((quadrants, "beside labelled ground"), (patches, "on new patches")):
        test = run["test"]  # "..., both with NLCD's impervious F1"
        assert f"{100 * test['oa_model']:.1f} % {where}" in readme
        assert test["oa_model"] > test["oa_product"]
        assert test["f1_model"]["impervious"] >= test["f1_product"]["impervious"]


def test_what_the_network_adds_is_quoted_from_the_departures():
    """The pages' claims: the default arm's gain is its departures, all the network's; it
    adds no impervious pixel; no arm adds impervious ground at the product's precision."""
    data = json.loads((REPO_ROOT / figs.SOURCE).read_text(encoding="utf-8"))
    nlcd, test = data["settings"]["nlcd"], data["test"]
    d = nlcd["departures"]
    default, paper = d["arms"][test["model"]], d["arms"][test["paper"]["model"]]
    assert default["right"][0] > default["product_right"][0]
    assert paper["right"][0] < paper["product_right"][0]
    assert default["rule_pixels"] == [0.0, 0.0] and default["added"] == [0.0, 0.0]
    assert default["recall_beyond"][0] == 0.0
    assert d["rule"]["rule"] == d["rule"]["product"]  # the rule alone is NLCD here
    product = d["rule"]["product"]["precision"]
    assert all(a["added_precision"][0] < product for a in d["arms"].values()
               if a["added"][0] > 0)
    text = " ".join((REPO_ROOT / figs.PAGE).read_text(encoding="utf-8").split())
    assert (f"gives NLCD's class on {100 * default['equal'][0]:.1f} % of them; where it "
            f"departs, it is right on {100 * default['right'][0]:.1f} %, NLCD on "
            f"{100 * default['product_right'][0]:.1f} %") in text
