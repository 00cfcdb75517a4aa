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


def test_the_encoder_section_is_the_default_command_with_presto_and_quotes_its_table():
    """Presto beside the bands at the default command's budget, seeds and folds, on each
    scene's statistics; ``unet-s2``'s rows are the default's maps
    (the same scores); the prose quotes the block and the seeds."""
    from experiments.builtup_arms import arm_of
    from experiments.builtup_loto import DEFAULT_ITERATIONS, DEFAULT_SEEDS

    page = pt.page("evidence/builtup.md")
    metrics, derived = _loto_section(page, "docs/figures/builtup_encoders.json",
                                     ("f1_built", "auc_built"))
    assert metrics["arms"] == ["unet-s2", "presto-scene"]
    assert metrics["seeds"] == DEFAULT_SEEDS
    assert metrics["budget"]["iterations"] == DEFAULT_ITERATIONS
    default = pt.source_json("docs/figures/builtup_default.json")
    for tile, runs in metrics["runs"].items():
        assert runs["unet-s2"] == default["runs"][tile]["unet-s2"]
    arm = arm_of("presto-scene")
    assert arm.encoder == "presto" and arm.model == "unet-s2"
    assert list(arm.train_args) == ["--norm", "scene"]
    prose = pt.prose(page, "### Presto's features in the recipe",
                     "### Level-1C (top-of-atmosphere) input")
    assert pt.unmatched(prose, derived) == []
    assert f"scored them in {metrics['seconds']:.0f} s" in " ".join(prose.split())

