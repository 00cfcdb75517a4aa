"""Every figure the real-data, land-cover and evidence pages quote in prose comes from a JSON.

The generated blocks are checked against their JSON by each experiment's own test; the prose
around them quotes figures from those blocks. Here every decimal number of a section's prose
(outside code) must be one its block prints, or one derived from its JSON here; a figure
that no longer matches fails with the figures it did not find. The user's page
(docs/real-data.md) keeps the default command's section; every other arm is on
docs/evidence/*.md. The pruning sections of the land-cover evidence page are checked in
``test_pruning_figures.py``.
"""

from __future__ import annotations

import json

import numpy as np

from tests.support import REPO_ROOT
from tests.support import page_text as pt


def _margins(metrics: dict) -> set[str]:
    """What prose derives from a leave-one-tile-out table: each arm's F1 over NDBI's best
    threshold, and Java's ROC AUC against the 0.95 target."""
    derived = {"0.95"}
    for tile, arms in metrics["summary"].items():
        for s in arms.values():
            derived.add(f"{abs(s['f1_minus_ndbi_best']):.3f}")
            if tile == "java":
                derived.add(f"{abs(0.95 - s['auc']):.3f}")
    return derived


def test_the_leave_one_tile_out_prose_quotes_its_table():
    from experiments.builtup_loto import FIGURES_JSON

    page = pt.page("evidence/builtup.md")
    metrics = pt.source_json(FIGURES_JSON)
    block = pt.block(page, FIGURES_JSON)
    prose = pt.prose(page, "Standardising each window", "### A stacked arm")
    assert pt.unmatched(prose, set(pt.DECIMAL.findall(block)) | _margins(metrics)) == []
    built = {t: runs[metrics["arms"][0]][0]["built_pixels"] for t, runs in metrics["runs"].items()}
    text = " ".join(page.split())
    assert f"{built['ghana_b']} labelled built pixels" in text
    assert f"took {metrics['seconds']:,.0f} s of wall time" in text


def test_the_stacked_arm_prose_quotes_its_table():
    from experiments.builtup_loto import figures_markdown

    source = "docs/figures/builtup_stack.json"
    page = pt.page("evidence/builtup.md")
    metrics = pt.source_json(source)
    block = pt.block(page, source)
    assert block.strip() == figures_markdown(metrics).strip()
    assert pt.unmatched(pt.prose(page, "<!-- figures: " + source, "### A longer budget"),
                      block) == []
    text = " ".join(page.split())
    assert f"took {metrics['seconds']:,.0f} s of wall time" in text


def test_the_averaged_arm_prose_quotes_its_table():
    """Block figures, F1 margins over NDBI, the 0.95 target's gap and the mapped shares."""
    from experiments.builtup_loto import figures_markdown

    source = "docs/figures/builtup_average.json"
    page = pt.page("evidence/builtup.md")
    metrics = pt.source_json(source)
    block = pt.block(page, source)
    assert block.strip() == figures_markdown(metrics).strip()
    from experiments.builtup_loto import FIGURES_JSON  # the default budget's table, compared

    derived = (set(pt.DECIMAL.findall(block + pt.block(page, FIGURES_JSON))) | _margins(metrics)
               | _shares(metrics))
    for runs in metrics["runs"].values():
        for seeds in runs.values():
            derived |= {f"{r['threshold']:.2f}" for r in seeds if "threshold" in r}
    prose = pt.prose(page, "<!-- figures: " + source, "### The prediction tile")
    assert pt.unmatched(prose, derived) == []
    text = " ".join(page.split())
    assert f"its `seconds` ({metrics['seconds']:,.0f}) is the wall time" in text


def test_the_prediction_tile_prose_quotes_its_two_tables():
    """Both blocks, the mapped and true built shares per seed, and each run's wall time."""
    from experiments.builtup_loto import figures_markdown

    page = pt.page("evidence/builtup.md")
    derived: set[str] = set()
    text = " ".join(page.split())
    for source in ("docs/figures/builtup_tile64.json", "docs/figures/builtup_local.json"):
        metrics = pt.source_json(source)
        block = pt.block(page, source)
        assert block.strip() == figures_markdown(metrics).strip()
        derived |= set(pt.DECIMAL.findall(block)) | _shares(metrics)
        assert f"took {metrics['seconds']:,.0f} s of wall time" in text
    assert pt.source_json("docs/figures/builtup_tile64.json")["budget"]["tile"] == 64
    prose = pt.prose(page, "### The prediction tile", "### Scene statistics")
    assert pt.unmatched(prose, derived) == []


def _shares(metrics: dict, mapped: bool = True) -> set[str]:
    """Each run's true built share of its tile and, with ``mapped``, its mapped built share,
    in per cent to one decimal (as prose quotes them)."""
    shares = set()
    for runs in metrics["runs"].values():
        for seeds in runs.values():
            for r in seeds:
                shares.add(f"{100 * r['built_pixels'] / r['pixels']:.1f}")
                if mapped:
                    shares.add(f"{100 * r['mapped_built_share']:.1f}")
    return shares


def _loto_section(page: str, source: str, per_seed: tuple[str, ...]) -> tuple[dict, set[str]]:
    """A leave-one-tile-out section's JSON and what its prose may quote: the block (checked
    against the JSON), the margins, and each seed's ``per_seed`` scores to 3 decimals."""
    from experiments.builtup_loto import figures_markdown

    metrics = pt.source_json(source)
    block = pt.block(page, source)
    assert block.strip() == figures_markdown(metrics).strip()
    derived = set(pt.DECIMAL.findall(block)) | _margins(metrics)
    for runs in metrics["runs"].values():
        for seeds in runs.values():
            derived |= {f"{r[k]:.3f}" for r in seeds for k in per_seed}
    return metrics, derived


def test_the_scene_statistics_prose_quotes_its_table_and_seeds():
    """The block, each seed's scores, shares and calibration error, the margins, the time."""
    page = pt.page("evidence/builtup.md")
    metrics, derived = _loto_section(page, "docs/figures/builtup_scene.json",
                                     ("f1_built", "auc_built", "ece_built"))
    derived |= _shares(metrics)
    assert metrics["runs"]["ghana_b"]["unet-s2-ema10"][0]["built_pixels"] == 204
    assert f"took {metrics['seconds']:,.0f} s of wall time" in " ".join(page.split())
    prose = pt.prose(page, "### Scene statistics", "### Weight averaging")
    assert pt.unmatched(prose, derived) == []


def test_the_weight_averaging_prose_quotes_its_table_and_seeds():
    """The block, each seed's scores, the margins; ``unet-s2-ema10`` is ``unet-s2``'s recipe."""
    from training.models import recipe_for

    page = pt.page("evidence/builtup.md")
    metrics, derived = _loto_section(page, "docs/figures/builtup_ema.json",
                                     ("f1_built", "auc_built"))
    assert recipe_for("unet-s2").ema == 10 and "unet-s2-ema10" in metrics["arms"]
    prose = pt.prose(page, "### Weight averaging", "### Test-time flips")
    assert pt.unmatched(prose, derived) == []


def test_the_test_time_flips_prose_quotes_its_table_and_seeds():
    """The block, each seed's scores and shares, the margins; ``unet-s2`` is the flipping
    recipe and ``unet-s2-ema10`` the same without flips, at the budget the page names."""
    from training.models import recipe_for

    page = pt.page("evidence/builtup.md")
    source = "docs/figures/builtup_flips.json"
    metrics, derived = _loto_section(page, source, ("f1_built", "auc_built", "best_f1_built"))
    derived |= _shares(metrics)
    # the shorter budget's figures it is compared with, from that section's table
    derived |= set(pt.DECIMAL.findall(pt.block(page, "docs/figures/builtup_scene.json")))
    assert recipe_for("unet-s2").model_kwargs["flips"] is True
    assert metrics["arms"] == ["unet-s2-ema10", "unet-s2-flips"]
    text = " ".join(page.split())
    assert (f"--iterations {metrics['budget']['iterations']} --arms unet-s2-ema10,unet-s2-flips"
            in text)
    assert f"took {metrics['seconds']:,.0f} s of wall time" in text
    prose = pt.prose(page, "### Test-time flips", "### Balanced sampling")
    assert pt.unmatched(prose, derived) == []


def test_the_balanced_sampling_prose_quotes_its_table_and_seeds():
    """The block, each seed's scores, the shares, the margins; ``unet-s2`` samples balanced,
    and the ``unet-s2-flips`` rows are the flips table's (the same arm, the same maps)."""
    from training.models import recipe_for

    page = pt.page("evidence/builtup.md")
    source = "docs/figures/builtup_recipe.json"
    metrics, derived = _loto_section(page, source, ("f1_built", "auc_built", "best_f1_built"))
    derived |= _shares(metrics, mapped=False)
    recipe = recipe_for("unet-s2")
    assert recipe.balanced_sampling and recipe.model_kwargs["flips"] is True
    flips = pt.source_json("docs/figures/builtup_flips.json")
    for tile, runs in metrics["runs"].items():
        assert runs["unet-s2-flips"] == flips["runs"][tile]["unet-s2-flips"]
    assert metrics["budget"]["iterations"] == 450
    text = " ".join(page.split())
    assert f"took {metrics['seconds']:,.0f} s of wall time (`seconds` in the JSON)" in text
    prose = pt.prose(page, "### Balanced sampling", "### Clouds flagged over a town")
    assert pt.unmatched(prose, derived) == []


def _flagged(metrics: dict) -> dict[str, str]:
    """What the pages say of ``ghana_b``'s pixels the default mask removes, from a JSON of
    the default composites: built pixels left out, of all, and the other pixels' share."""
    b = metrics["ndbi"]["ghana_b"]
    everything = b["all_labelled"]
    others = (b["unmapped_pixels"] - b["unmapped_built_pixels"]) / \
        (everything["pixels"] - everything["built_pixels"])
    return {"built": f"{b['unmapped_built_pixels']} of its {everything['built_pixels']}",
            "mapped": f"{b['built_pixels']} of its {everything['built_pixels']}",
            "share": f"{100 * b['unmapped_built_pixels'] / everything['built_pixels']:.0f} %",
            "others": f"{100 * others:.1f} %", "all": f"{everything['ndbi_best_f1']:.3f}",
            "covered": f"{b['ndbi_best_f1']:.3f}"}


def test_the_default_command_section_is_what_the_command_runs_and_quotes_its_table():
    """The JSON is the default ``--loto`` run (its arms, seeds, budget and mask are the
    command's defaults); the prose quotes its block, seeds and margins, the pixels the
    composite leaves out and the wall time."""
    from experiments.builtup_loto import DEFAULT_ARMS, DEFAULT_ITERATIONS, DEFAULT_SEEDS

    page = pt.page("real-data.md")
    metrics, derived = _loto_section(page, "docs/figures/builtup_default.json",
                                     ("f1_built", "auc_built"))
    assert metrics["arms"] == list(DEFAULT_ARMS) and metrics["seeds"] == DEFAULT_SEEDS
    assert metrics["budget"]["iterations"] == DEFAULT_ITERATIONS
    assert metrics["budget"]["tile"] is None and metrics["budget"].get("scl_mask") is None
    assert all(b["pixels_scored"] == "mapped" for b in metrics["ndbi"].values())
    text = " ".join(page.split())
    assert "python -m experiments.builtup --loto --out builtup_default" in text
    assert f"took {metrics['seconds']:,.0f} s of wall time" in text
    assert [n.removeprefix("tm_") for n in metrics["extra_training"]] == [
        "282D_485L_3_3", "38D_378R_2_3", "433D_629L_3_1", "609U_541L_3_0"]
    worst_ece = max(s["unet-s2"]["ece_worst"] for s in metrics["summary"].values())
    assert f"is {worst_ece:.3f} at worst" in text
    derived.add(f"{worst_ece:.3f}")
    # the same command on the other machine: its two figures at the targets' edge
    xeon = pt.source_json("docs/figures/builtup_default_xeon.json")
    assert xeon["arms"] == metrics["arms"] and xeon["budget"] == metrics["budget"]
    java, ghana_b = xeon["summary"]["java"]["unet-s2"], xeon["summary"]["ghana_b"]["unet-s2"]
    assert (f"there Java's worst seed was {java['f1_worst']:.3f} and `ghana_b`'s spread "
            f"{ghana_b['f1_spread']:.3f}, missing both targets by {0.85 - java['f1_worst']:.3f} "
            f"and {ghana_b['f1_spread'] - 0.10:.3f}") in text
    assert f"{xeon['seconds']:,.0f} s on the Xeon" in text
    derived |= {f"{java['f1_worst']:.3f}", f"{ghana_b['f1_spread']:.3f}",
                f"{0.85 - java['f1_worst']:.3f}", f"{ghana_b['f1_spread'] - 0.10:.3f}",
                "0.85", "0.10"}
    prose = pt.prose(page, "## The default command", "**The worst seed")
    assert pt.unmatched(prose, derived) == []
    flagged = _flagged(metrics)
    prose = " ".join(prose.split())
    assert f"those are {flagged['mapped']} labelled built pixels" in prose
    assert f"the other {flagged['built'].split()[0]} out" in prose


def test_the_scoring_rule_quotes_what_the_default_mask_removes():
    """The built-up section's rule for NDBI's pixels: ``ghana_b``'s flagged built pixels,
    the other pixels' share, NDBI on all and on the covered pixels, Java's left-out ones."""
    metrics = pt.source_json("docs/figures/builtup_default.json")
    flagged = _flagged(metrics)
    text = " ".join(pt.prose(pt.page("evidence/builtup.md"), "Scores: F1 and IoU",
                           "### Leave one tile out").split())
    assert (f"{flagged['built']} labelled built pixels ({flagged['share']}) carry Sen2Cor's "
            f"cloud or thin-cirrus flags, against {flagged['others']} of its other") in text
    assert (f"scores F1 {flagged['all']} on every labelled pixel of the tile and "
            f"{flagged['covered']} on the pixels the maps cover") in text
    java = metrics["ndbi"]["java"]
    assert (f"On Java {java['unmapped_built_pixels']} of "
            f"{java['all_labelled']['built_pixels']:,} built pixels are left out") in text
    # the sections whose tables still score NDBI on every labelled pixel, and only those,
    # are named as such; their ghana_b NDBI figures are quoted from one of them
    named = text[text.index("The tables of"):text.index("were made before this rule")]
    older = [n for n in BUILTUP_SECTIONS
             if "pixels_scored" not in pt.source_json(f"docs/figures/{n}.json")["ndbi"]["ghana_b"]]
    for name, section in BUILTUP_SECTIONS.items():
        assert (f"[{section}]" in named) == (name in older), section
    if older:
        old = pt.source_json(f"docs/figures/{older[0]}.json")["ndbi"]["ghana_b"]
        assert f"{old['ndbi_best_f1']:.3f} @ {old['ndbi_best_threshold']:.3f}" in text
        assert f"AUC {old['ndbi_auc']:.3f}" in text


def test_the_user_page_names_the_worst_seed_and_what_fails_from_the_jsons():
    """docs/real-data.md after the default table: each tile's worst seed of ``unet-s2`` (its F1,
    above NDBI's best on every tile), then what fails: the narrower cloud mask's margin on
    ``ghana_b`` and the span of its seeds; nothing else is quoted."""
    page = pt.page("real-data.md")
    default = pt.source_json("docs/figures/builtup_default.json")
    scl = pt.source_json("docs/figures/builtup_scl.json")
    worst = {t: min(runs["unet-s2"], key=lambda r: r["f1_built"])
             for t, runs in default["runs"].items()}
    best = {t: default["ndbi"][t]["ndbi_best_f1"] for t in worst}
    start = page.index("**The worst seed")
    section = page[start:page.index("What this does not show", start)]
    text = " ".join(section.split())
    assert (f"On Java it scores F1 {worst['java']['f1_built']:.3f}, on `ghana_a` "
            f"{worst['ghana_a']['f1_built']:.3f} and on `ghana_b` "
            f"{worst['ghana_b']['f1_built']:.3f}, all above NDBI's best threshold") in text
    assert all(worst[t]["f1_built"] > best[t] for t in worst)
    older = scl["summary"]["ghana_b"]["unet-s2-scenes-one"]
    margin, worst_margin = older["f1_minus_ndbi_best"], older["worst_minus_ndbi_best"]
    assert margin > 0 and (f"on average ({margin:+.3f}), its worst seed level with it "
                           f"({worst_margin:+.3f})") in text
    seeds = [r["f1_built"] for r in default["runs"]["ghana_b"]["unet-s2"]]
    assert f"its seeds span {min(seeds):.3f}-{max(seeds):.3f}" in text
    derived = {f"{r['f1_built']:.3f}" for r in worst.values()}
    derived |= {f"{min(seeds):.3f}", f"{max(seeds):.3f}", f"{abs(margin):.3f}",
                f"{abs(worst_margin):.3f}"}
    assert pt.unmatched(pt.prose(section + "<end>", "**", "<end>"), derived) == []


#: each leave-one-tile-out figures JSON of docs/evidence/builtup.md before the default command's,
#: and the section whose table it is (as the page links it)
BUILTUP_SECTIONS = {
    "builtup_loto": "Leave one tile out", "builtup_stack": "A stacked arm",
    "builtup_average": "A longer budget and an averaged arm",
    "builtup_tile64": "The prediction tile", "builtup_local": "The prediction tile",
    "builtup_scene": "Scene statistics", "builtup_ema": "Weight averaging",
    "builtup_flips": "Test-time flips", "builtup_recipe": "Balanced sampling"}


def test_the_regions_section_is_the_recipe_drawing_scenes_alike_without_and_with_the_cells():
    """Two runs of ``unet-s2-scenes`` at the default command's budget: on the labelled tiles
    alone (``--terramesh none``) and with the four TerraMesh cells in every fold; the prose
    quotes their blocks, seeds, shares and the seconds each command took."""
    page = pt.page("evidence/builtup.md")
    tiles, derived = _loto_section(page, "docs/figures/builtup_tiles.json",
                                   ("f1_built", "auc_built"))
    cells, more = _loto_section(page, "docs/figures/builtup_scenes.json",
                                ("f1_built", "auc_built"))
    derived |= more | _shares(tiles) | _shares(cells)
    default = pt.source_json("docs/figures/builtup_three.json")
    for run in (tiles, cells):
        assert run["arms"] == ["unet-s2-scenes"]
        assert run["budget"] == default["budget"] and run["seeds"] == default["seeds"]
    assert tiles["extra_training"] == []
    assert cells["extra_training"] == default["extra_training"]
    assert [n.removeprefix("tm_") for n in cells["extra_training"]] == [
        "282D_485L_3_3", "38D_378R_2_3", "433D_629L_3_1", "609U_541L_3_0"]
    text = " ".join(page.split())
    for command in ("--iterations 150 --arms unet-s2-scenes --terramesh none --out builtup_tiles",
                    "--iterations 150 --arms unet-s2-scenes --out builtup_scenes"):
        assert f"python -m experiments.builtup --loto {command}" in text
    assert f"`seconds` in the JSON: {tiles['seconds']:,.0f} and {cells['seconds']:,.0f}" in text
    prose = pt.prose(page, "### Regions labelled by a product", "### A cut from the map")
    assert pt.unmatched(prose, derived) == []


def test_the_flagged_clouds_section_is_the_default_command_with_the_narrower_mask():
    """Its JSON is the default run's budget with ``--scl-mask 3,11``, one training of the
    recipe drawing every scene alike beside the pooled draws (``unet-s2-scenes-one``,
    ``unet-s2-pooled``), on the labelled tiles alone (``--terramesh none``): every built pixel of
    ``ghana_b`` covered; the prose quotes its block, seeds, shares and the page's counts."""
    page = pt.page("evidence/builtup.md")
    source = "docs/figures/builtup_scl.json"
    metrics, derived = _loto_section(page, source, ("f1_built", "auc_built"))
    derived |= _shares(metrics)
    default = pt.source_json("docs/figures/builtup_three.json")
    assert metrics["budget"] == {**default["budget"], "scl_mask": "3,11"}
    assert metrics["arms"] == ["unet-s2-scenes-one", "unet-s2-pooled"]
    assert metrics["extra_training"] == []
    assert metrics["seeds"] == default["seeds"]
    assert metrics["ndbi"]["ghana_b"]["unmapped_built_pixels"] == 0
    flagged = _flagged(default)
    derived.add(flagged["others"].split()[0])
    text = " ".join(page.split())
    assert ("python -m experiments.builtup --loto --iterations 150 --arms unet-s2-scenes-one,"
            "unet-s2-pooled --scl-mask 3,11 --terramesh none --out builtup_scl") in text
    assert f"took {metrics['seconds']:,.0f} s of wall time" in text
    prose = pt.prose(page, "### Clouds flagged over a town", "### Regions labelled by a product")
    assert pt.unmatched(prose, derived) == []
    prose = " ".join(prose.split())
    assert f"{flagged['built']} labelled built pixels, against {flagged['others']}" in prose
    everything = metrics["ndbi"]["ghana_b"]["all_labelled"]["built_pixels"]
    assert f"cover all {everything} built pixels" in prose


def test_the_ghana_tiles_are_as_hazy_as_the_page_says(shared_data):
    """The medians of the visible bands the page quotes, from the tiles themselves."""
    from experiments.builtup_tiles import DW_FOLDER, find_tile, reflectance

    def medians(prefix: str) -> list[float]:
        tile = find_tile(shared_data / DW_FOLDER, prefix)
        return [float(np.nanmedian(v)) for v in reflectance(tile, ("B2", "B3", "B4")).values()]

    ghana = medians("ghana_a") + medians("ghana_b")
    java = medians("java")
    text = " ".join(pt.page("evidence/builtup.md").split())
    assert (f"the medians of their visible bands (B2, B3, B4) are {min(ghana):.3f}-"
            f"{max(ghana):.3f}, those of the Java tile {min(java):.3f}-{max(java):.3f}") in text


def _spectral_margins(summary: dict) -> set[str]:
    """What change prose derives: the F1 gaps between each ``spectral k`` arm, NDBI gain and
    the spectral gate with NDBI's direction, as the table's 3-decimal figures give them."""
    from experiments.change_pairs import GATE

    def f1(s: dict) -> float:
        return round(s["f1"][0], 3)

    ndbi, gate = f1(summary["NDBI gain"]["natural"]), f1(summary[GATE]["natural"])
    derived = {f"{abs(gate - ndbi):.3f}"}
    for arms in summary.values():
        for arm, s in arms.items():
            if arm.startswith("spectral "):
                derived |= {f"{abs(f1(s) - ndbi):.3f}", f"{abs(f1(s) - gate):.3f}"}
    return derived


def test_the_change_prose_quotes_its_table():
    from experiments.change_pairs import FIGURES_JSON, GATE
    from inference.predict.change.arrays import DEFAULT_SPECTRAL_THRESHOLD

    page = pt.page("evidence/change.md")
    metrics = pt.source_json(FIGURES_JSON)
    prose = pt.prose(page, "What it shows:", "holds every seed's and pair's scores")
    block = pt.block(page, FIGURES_JSON)
    assert pt.unmatched(prose, set(pt.DECIMAL.findall(block)) | _spectral_margins(
        metrics["summary"])) == []
    # the first bullet quotes the product's default threshold, its F1, and both baselines' F1
    summary = metrics["summary"]
    k = f"{DEFAULT_SPECTRAL_THRESHOLD:g}"
    first = " ".join(prose.split("\n- ")[1].split())
    assert (f"at k = {k} (the default) finds the implanted gain at F1 "
            f"{summary['unet-s2-window'][f'spectral {k}']['f1'][0]:.3f}") in first
    assert metrics["gate_threshold"] == DEFAULT_SPECTRAL_THRESHOLD
    assert all(f"{summary[row]['natural']['f1'][0]:.3f}" in first for row in ("NDBI gain", GATE))
    text = " ".join(page.split())
    assert f"took {metrics['seconds']:,.0f} s of wall time" in text


def test_the_cut_section_is_the_default_maps_cut_where_their_expected_f1_is_best():
    """``unet-s2+ef1`` beside ``unet-s2``, the default command's maps (the same scores); the
    prose quotes its block, each tile's cuts and the default's worst held-out ECE."""
    page = pt.page("evidence/builtup.md")
    source = "docs/figures/builtup_cut.json"
    metrics = pt.source_json(source)
    default = pt.source_json("docs/figures/builtup_three.json")
    assert metrics["arms"] == ["unet-s2", "unet-s2+ef1"]
    assert metrics["runs"]["ghana_a"]["unet-s2"] == default["runs"]["ghana_a"]["unet-s2"]
    cuts = {t: [r["threshold"] for r in metrics["runs"][t]["unet-s2+ef1"]]
            for t in metrics["runs"]}
    derived = {f"{v:.2f}" for values in cuts.values() for v in (min(values), max(values))}
    derived.add(f"{max(s['unet-s2']['ece_worst'] for s in default['summary'].values()):.3f}")
    start = page.index("### A cut from the map's own probabilities")
    section = page[start:page.index("### Joining more trainings", start)]
    prose = section.replace(pt.block(page, source), "")
    assert pt.unmatched(prose, set(pt.DECIMAL.findall(pt.block(page, source))) | derived) == []
    assert metrics["default_arm"] == "unet-s2+ef1"
    assert f"{metrics['seconds']:.0f} s, `seconds` in the JSON" in " ".join(section.split())


def test_the_joined_section_is_fifteen_default_seeds_and_their_groups_of_nine():
    """``unet-s2x3`` beside ``unet-s2`` at fifteen seeds, whose first five are the default
    command's; the prose quotes its block, the default's five-seed spreads and worst seeds,
    the groups' and seeds' scores, and the seconds of both commands."""
    page = pt.page("evidence/builtup.md")
    source = "docs/figures/builtup_joined.json"
    metrics, derived = _loto_section(page, source, ("f1_built",))
    default = pt.source_json("docs/figures/builtup_three.json")
    assert metrics["arms"] == ["unet-s2", "unet-s2x3", "unet-s2+ef1"] and metrics["seeds"] == 15
    assert metrics["budget"] == default["budget"]
    assert metrics["extra_training"] == default["extra_training"]
    for tile, runs in default["runs"].items():
        assert metrics["runs"][tile]["unet-s2"][:5] == runs["unet-s2"]
        assert len(metrics["runs"][tile]["unet-s2x3"]) == 5
    derived |= {f"{default['summary'][t]['unet-s2'][k]:.3f}" for t in default["summary"]
                for k in ("f1_spread", "f1_worst")} | _shares(metrics)
    derived.add(f"{default['default_margin']:+.3f}")
    lowest = sorted(r["f1_built"] for r in metrics["runs"]["ghana_b"]["unet-s2"])[:3]
    last = [r["f1_built"] for r in metrics["runs"]["ghana_b"]["unet-s2"][12:]]
    assert sorted(last) == lowest  # the last group's three seeds are the tile's lowest
    start = page.index("### Joining more trainings")
    section = page[start:page.index("### Nine short trainings", start)]
    prose = section.replace(pt.block(page, source), "")
    assert pt.unmatched(prose, derived) == []
    text = " ".join(section.split())
    assert f"({default['seconds']:,.0f} s on this machine)" in text
    assert f"in {metrics['seconds']:,.0f} s (`seconds` in the JSON)" in text
    assert ("--arms unet-s2-three,unet-s2-threex3,unet-s2-three+ef1 --seeds 15 "
            "--out builtup_joined") in text


def test_the_default_recipes_change_section_quotes_its_table():
    """The section on ``unet-s2``: its JSON is the command's (that recipe alone, five
    seeds of 50 iterations), its block is the JSON's; its prose quotes its block, and the
    ranking it states holds on every seed."""
    from experiments.change_pairs import GATE, figures_markdown

    page = pt.page("evidence/change.md")
    source = "docs/figures/change_pairs_default.json"
    metrics = pt.source_json(source)
    assert metrics["recipes"] == ["unet-s2"] and metrics["seeds"] == 5
    assert metrics["iterations"] == 50
    section = page[page.index("## The default recipe"):]
    prose = section[section.index("<!-- end figures -->"):]
    block = pt.block(page, source)
    assert block == figures_markdown(metrics)
    assert pt.unmatched(prose, set(pt.DECIMAL.findall(block))) == []
    ranking = metrics["seed_ranking"]
    assert min(ranking["unet-s2"]["spectral 4"]) > ranking[GATE] > min(
        ranking["unet-s2"]["differenced"])
    text = " ".join(section.split())
    assert ("python -m experiments.change_pairs --seeds 5 --iterations 50 --recipes unet-s2 "
            "--out") in text
    assert f"took {metrics['seconds']:,.0f} s of wall time" in text


def test_the_terramesh_prose_quotes_its_table():
    from experiments.terramesh import FIGURES_JSON

    page = pt.page("evidence/terramesh.md")
    metrics = pt.source_json(FIGURES_JSON)
    block = pt.block(page, FIGURES_JSON)
    prose = pt.prose(page, "Default budget:", "Columns: F1")
    assert pt.unmatched(prose, block) == []
    text = " ".join(page.split())
    train = metrics["test"][next(iter(metrics["test"]))]
    assert f"({train['pixels']:,} px, {train['built_pixels']} built by the product)" in text
    assert f"took {metrics['seconds']:,.0f} s of wall time" in text


def test_the_land_cover_prose_quotes_its_tables():
    import experiments.landcover_figures as figs

    page = pt.page("evidence/landcover.md")
    prose = pt.prose(page, "What this shows, and what it does not:", "### Whole patches held out")
    assert pt.unmatched(prose, pt.block(page, figs.SOURCE)) == []
    runs = pt.source_json(figs.SOURCE)["timing"]["runs"]
    assert (f"ran its {runs['count']} (setting, fold, seed) runs, two at a time, in "
            f"{runs['wall_seconds']:,.0f} s of wall time") in " ".join(page.split())


def test_the_terramesh_block_is_the_table_of_its_json(tmp_path):
    from experiments.terramesh import FIGURES_JSON, figures_markdown, update_page

    page = pt.page("evidence/terramesh.md")
    metrics = pt.source_json(FIGURES_JSON)
    assert pt.block(page, FIGURES_JSON) == figures_markdown(metrics)
    metrics["models"]["unet-s2-window"][metrics["train_cell"]]["f1_built"] = 0.123
    (tmp_path / "f.json").write_text(json.dumps(metrics))
    (tmp_path / "p.md").write_text("a\n<!-- figures: f.json -->\nold\n<!-- end figures -->\n")
    assert update_page("f.json", "p.md", root=str(tmp_path)) is True
    assert "0.123" in (tmp_path / "p.md").read_text()


def test_the_chesapeake_counts_the_land_cover_page_quotes(shared_data):
    """Patch 0's share of the impervious pixels, and its quadrants', from the patches."""
    from contract.label_schemes import LANDCOVER_CLASSES
    from experiments.chesapeake_nlcd import CHESAPEAKE_FOLDER, read_patches

    patches = read_patches(shared_data / CHESAPEAKE_FOLDER)
    isa = LANDCOVER_CLASSES.index("impervious")
    per_patch = [int((p.truth == isa).sum()) for p in patches]
    first = patches[0].truth == isa
    h, w = first.shape
    quadrants = [int(q.sum()) for q in (first[:h // 2, :w // 2], first[:h // 2, w // 2:],
                                        first[h // 2:, :w // 2], first[h // 2:, w // 2:])]
    text = " ".join(pt.page("evidence/landcover.md").split())
    assert f"Patch 0 holds {per_patch[0]} of the tile's {sum(per_patch)} impervious pixels" in text
    assert f"pool all {sum(p.truth.size for p in patches):,} pixels" in text
    assert "patch 0's quadrants hold {}, {}, {} and {} impervious pixels".format(*quadrants) in text


def test_the_readme_quotes_the_default_commands_figures():
    """The front door's built-up line: Java's ROC AUC of ``unet-s2`` in the default command's
    JSON, its worst seed's margin on every tile, ``ghana_b``'s with the narrower mask (mean and
    worst seed), and the links."""
    summary = pt.source_json("docs/figures/builtup_default.json")["summary"]
    scl = pt.source_json("docs/figures/builtup_scl.json")["summary"]
    readme = " ".join((REPO_ROOT / "README.md").read_text(encoding="utf-8").split())
    assert f"ROC AUC {summary['java']['unet-s2']['auc']:.3f}" in readme
    assert all(summary[t]["unet-s2"]["worst_minus_ndbi_best"] > 0 for t in summary)
    assert all(scl[t]["unet-s2-scenes-one"]["f1_minus_ndbi_best"] > 0 for t in scl)
    older = scl["ghana_b"]["unet-s2-scenes-one"]
    assert (f"`ghana_b`: {older['f1_minus_ndbi_best']:+.3f} on average, its worst seed "
            f"{older['worst_minus_ndbi_best']:+.3f}") in readme
    assert "docs/real-data.md#the-default-command" in readme
    assert "docs/real-data.md#what-fails-and-when" in readme



def test_the_nine_trainings_section_sets_nine_against_three_on_the_same_folds():
    """``unet-s2-short9`` and ``unet-s2-short9-once`` at the default command's budget, beside
    the default (nine trainings, the views spread) and the recipe of three trainings of 150
    iterations it replaced; the prose quotes its block, each seed's F1, the summaries of the
    three runs and the seconds of the two default commands. The default's run is the one made
    on the machine the two arms ran on (the Intel Xeon: ``builtup_default_xeon.json``)."""
    page = pt.page("evidence/builtup.md")
    source = "docs/figures/builtup_nine.json"
    metrics, derived = _loto_section(page, source, ("f1_built",))
    default = pt.source_json("docs/figures/builtup_default_xeon.json")
    three = pt.source_json("docs/figures/builtup_three.json")
    assert metrics["arms"] == ["unet-s2-short9", "unet-s2-short9-once"]
    assert metrics["budget"] == default["budget"] and metrics["seeds"] == default["seeds"]
    assert metrics["extra_training"] == default["extra_training"]
    assert three["budget"]["iterations"] == 150 and default["budget"]["iterations"] == 50
    for run in (default, three):
        derived |= {f"{s['unet-s2'][k]:.3f}" for s in run["summary"].values()
                    for k in ("f1_worst", "f1_spread", "f1", "ece", "ece_worst",
                              "ece_in_region")}
        derived |= {f"{s['unet-s2']['worst_minus_ndbi_best']:+.3f}"
                    for s in run["summary"].values()}
        derived.add(f"{run['default_margin']:+.3f}")
    derived |= {f"{s[a]['ece_worst']:.3f}" for s in metrics["summary"].values()
                for a in metrics["arms"]}
    start = page.index("### Nine short trainings")
    section = page[start:page.index("### Presto's features in the recipe", start)]
    prose = section.replace(pt.block(page, source), "")
    assert pt.unmatched(prose, derived) == []
    text = " ".join(section.split())
    assert "--arms unet-s2-short9,unet-s2-short9-once --out builtup_nine" in text
    assert f"{default['seconds']:,.0f} s" in text and f"{three['seconds']:,.0f} s" in text
    assert "`docs/figures/builtup_default_xeon.json`" in text


def test_the_encoder_section_is_the_default_command_with_presto_and_quotes_its_table():
    """Presto beside the bands at the default command's budget, seeds and folds, on each
    scene's statistics and on the training ones; ``unet-s2``'s rows are the default's maps
    (the same scores); the prose quotes the block and the seeds."""
    from experiments.builtup_arms import arm_of
    from experiments.builtup_loto import DEFAULT_ITERATIONS, DEFAULT_SEEDS

    page = pt.page("evidence/builtup.md")
    metrics, derived = _loto_section(page, "docs/figures/builtup_encoders.json",
                                     ("f1_built", "auc_built"))
    assert metrics["arms"] == ["unet-s2", "presto-training", "presto-scene"]
    assert metrics["seeds"] == DEFAULT_SEEDS
    assert metrics["budget"]["iterations"] == DEFAULT_ITERATIONS
    default = pt.source_json("docs/figures/builtup_default.json")
    for tile, runs in metrics["runs"].items():
        assert runs["unet-s2"] == default["runs"][tile]["unet-s2"]
    for name, norm in (("presto-training", "training"), ("presto-scene", "scene")):
        arm = arm_of(name)
        assert arm.encoder == "presto" and arm.model == "unet-s2"
        assert list(arm.train_args) == ["--norm", norm]
    prose = pt.prose(page, "### Presto's features in the recipe",
                     "### Level-1C (top-of-atmosphere) input")
    assert pt.unmatched(prose, derived) == []
    assert f"scored them in {metrics['seconds']:.0f} s" in " ".join(prose.split())

