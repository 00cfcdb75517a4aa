"""Every figure the real-data and land-cover pages quote in prose comes from a source JSON.

The generated blocks are checked against their JSON by each experiment's own test; the prose
around them quotes figures from those blocks. Here every decimal number of a section's prose
(outside code) must be one its block prints, or one derived from its JSON here; a figure
that no longer matches fails with the figures it did not find.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from inference.assess.figures import page_block

ROOT = Path(__file__).resolve().parents[2]
DECIMAL = re.compile(r"(?<![\w.])\d+\.\d+(?![\w.])")


def _page(name: str) -> str:
    return (ROOT / "docs" / name).read_text(encoding="utf-8")


def _json(path: str) -> dict:
    return json.loads((ROOT / path).read_text(encoding="utf-8"))


def _prose(page: str, start: str, end: str) -> str:
    """The text between two markers, without fenced blocks and inline code."""
    i = page.index(start) + len(start)
    text = page[i:page.index(end, i)]
    text = re.sub(r"```.*?```", " ", text, flags=re.S)
    return re.sub(r"`[^`]*`", " ", text)


def _block(page: str, source: str) -> str:
    start, end = page_block(page, source)
    return page[start:end]


def _unmatched(prose: str, allowed: str | set[str]) -> list[str]:
    """Decimals of ``prose`` that are neither in the block text nor in the derived set."""
    if isinstance(allowed, str):
        allowed = set(DECIMAL.findall(allowed))
    return sorted({n for n in DECIMAL.findall(prose) if n not in allowed})


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

    page = _page("real-data.md")
    metrics = _json(FIGURES_JSON)
    block = _block(page, FIGURES_JSON)
    prose = _prose(page, "Standardising each window", "### A stacked arm")
    assert _unmatched(prose, set(DECIMAL.findall(block)) | _margins(metrics)) == []
    built = {t: runs[metrics["arms"][0]][0]["built_pixels"] for t, runs in metrics["runs"].items()}
    text = " ".join(page.split())
    assert f"{built['ghana_b']} labelled built pixels" in text
    assert f"took {metrics['seconds']:,.0f} s of wall time" in text


def test_the_stacked_arm_prose_quotes_its_table():
    from experiments.builtup_loto import figures_markdown

    source = "docs/figures/builtup_stack.json"
    page = _page("real-data.md")
    metrics = _json(source)
    block = _block(page, source)
    assert block.strip() == figures_markdown(metrics).strip()
    assert _unmatched(_prose(page, "<!-- figures: " + source, "### A longer budget"),
                      block) == []
    text = " ".join(page.split())
    assert f"took {metrics['seconds']:,.0f} s of wall time" in text


def test_the_averaged_arm_prose_quotes_its_table():
    """Block figures, F1 margins over NDBI, the 0.95 target's gap and the mapped shares."""
    from experiments.builtup_loto import figures_markdown

    source = "docs/figures/builtup_average.json"
    page = _page("real-data.md")
    metrics = _json(source)
    block = _block(page, source)
    assert block.strip() == figures_markdown(metrics).strip()
    from experiments.builtup_loto import FIGURES_JSON  # the default budget's table, compared

    derived = (set(DECIMAL.findall(block + _block(page, FIGURES_JSON))) | _margins(metrics)
               | _shares(metrics))
    for runs in metrics["runs"].values():
        for seeds in runs.values():
            derived |= {f"{r['threshold']:.2f}" for r in seeds if "threshold" in r}
    prose = _prose(page, "<!-- figures: " + source, "### The prediction tile")
    assert _unmatched(prose, derived) == []
    text = " ".join(page.split())
    assert f"its `seconds` ({metrics['seconds']:,.0f}) is the wall time" in text


def test_the_prediction_tile_prose_quotes_its_two_tables():
    """Both blocks, the mapped and true built shares per seed, and each run's wall time."""
    from experiments.builtup_loto import figures_markdown

    page = _page("real-data.md")
    derived: set[str] = set()
    text = " ".join(page.split())
    for source in ("docs/figures/builtup_tile64.json", "docs/figures/builtup_local.json"):
        metrics = _json(source)
        block = _block(page, source)
        assert block.strip() == figures_markdown(metrics).strip()
        derived |= set(DECIMAL.findall(block)) | _shares(metrics)
        assert f"took {metrics['seconds']:,.0f} s of wall time" in text
    assert _json("docs/figures/builtup_tile64.json")["budget"]["tile"] == 64
    prose = _prose(page, "### The prediction tile", "### Scene statistics")
    assert _unmatched(prose, derived) == []


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

    metrics = _json(source)
    block = _block(page, source)
    assert block.strip() == figures_markdown(metrics).strip()
    derived = set(DECIMAL.findall(block)) | _margins(metrics)
    for runs in metrics["runs"].values():
        for seeds in runs.values():
            derived |= {f"{r[k]:.3f}" for r in seeds for k in per_seed}
    return metrics, derived


def test_the_scene_statistics_prose_quotes_its_table_and_seeds():
    """The block, each seed's scores, shares and calibration error, the margins, the time."""
    page = _page("real-data.md")
    metrics, derived = _loto_section(page, "docs/figures/builtup_scene.json",
                                     ("f1_built", "auc_built", "ece_built"))
    derived |= _shares(metrics)
    assert metrics["runs"]["ghana_b"]["unet-s2-ema10"][0]["built_pixels"] == 204
    assert f"took {metrics['seconds']:,.0f} s of wall time" in " ".join(page.split())
    prose = _prose(page, "### Scene statistics", "### Weight averaging")
    assert _unmatched(prose, derived) == []


def test_the_weight_averaging_prose_quotes_its_table_and_seeds():
    """The block, each seed's scores, the margins; ``unet-s2-ema10`` is ``unet-s2``'s recipe."""
    from training.models import recipe_for

    page = _page("real-data.md")
    metrics, derived = _loto_section(page, "docs/figures/builtup_ema.json",
                                     ("f1_built", "auc_built"))
    assert recipe_for("unet-s2").ema == 10 and "unet-s2-ema10" in metrics["arms"]
    prose = _prose(page, "### Weight averaging", "### Test-time flips")
    assert _unmatched(prose, derived) == []


def test_the_test_time_flips_prose_quotes_its_table_and_seeds():
    """The block, each seed's scores and shares, the margins; ``unet-s2`` is the flipping
    recipe and ``unet-s2-ema10`` the same without flips, at the budget the page names."""
    from training.models import recipe_for

    page = _page("real-data.md")
    source = "docs/figures/builtup_flips.json"
    metrics, derived = _loto_section(page, source, ("f1_built", "auc_built", "best_f1_built"))
    derived |= _shares(metrics)
    # the shorter budget's figures it is compared with, from that section's table
    derived |= set(DECIMAL.findall(_block(page, "docs/figures/builtup_scene.json")))
    assert recipe_for("unet-s2").model_kwargs["flips"] is True
    assert metrics["arms"] == ["unet-s2-ema10", "unet-s2-flips"]
    text = " ".join(page.split())
    assert (f"--iterations {metrics['budget']['iterations']} --arms unet-s2-ema10,unet-s2-flips"
            in text)
    assert f"took {metrics['seconds']:,.0f} s of wall time" in text
    prose = _prose(page, "### Test-time flips", "### Balanced sampling")
    assert _unmatched(prose, derived) == []


def test_the_balanced_sampling_prose_quotes_its_table_and_seeds():
    """The block, each seed's scores, the shares, the margins; ``unet-s2`` samples balanced,
    and the ``unet-s2-flips`` rows are the flips table's (the same arm, the same maps)."""
    from training.models import recipe_for

    page = _page("real-data.md")
    source = "docs/figures/builtup_recipe.json"
    metrics, derived = _loto_section(page, source, ("f1_built", "auc_built", "best_f1_built"))
    derived |= _shares(metrics, mapped=False)
    recipe = recipe_for("unet-s2")
    assert recipe.balanced_sampling and recipe.model_kwargs["flips"] is True
    flips = _json("docs/figures/builtup_flips.json")
    for tile, runs in metrics["runs"].items():
        assert runs["unet-s2-flips"] == flips["runs"][tile]["unet-s2-flips"]
    assert metrics["budget"]["iterations"] == 450
    text = " ".join(page.split())
    assert f"took {metrics['seconds']:,.0f} s of wall time (`seconds` in the JSON)" in text
    prose = _prose(page, "### Balanced sampling", "### The default command")
    assert _unmatched(prose, derived) == []


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

    page = _page("real-data.md")
    metrics, derived = _loto_section(page, "docs/figures/builtup_default.json",
                                     ("f1_built", "auc_built"))
    assert metrics["arms"] == list(DEFAULT_ARMS) and metrics["seeds"] == DEFAULT_SEEDS
    assert metrics["budget"]["iterations"] == DEFAULT_ITERATIONS
    assert metrics["budget"]["tile"] is None and metrics["budget"].get("scl_mask") is None
    assert all(b["pixels_scored"] == "mapped" for b in metrics["ndbi"].values())
    text = " ".join(page.split())
    assert "python -m experiments.builtup --loto --out builtup_default" in text
    assert f"took {metrics['seconds']:,.0f} s of wall time" in text
    prose = _prose(page, "### The default command", "### Clouds flagged over a town")
    assert _unmatched(prose, derived) == []
    flagged = _flagged(metrics)
    prose = " ".join(prose.split())
    assert f"those are {flagged['mapped']} labelled built pixels" in prose
    assert f"the other {flagged['built'].split()[0]} out" in prose


def test_the_scoring_rule_quotes_what_the_default_mask_removes():
    """The built-up section's rule for NDBI's pixels: ``ghana_b``'s flagged built pixels,
    the other pixels' share, NDBI on all and on the covered pixels, Java's left-out ones."""
    metrics = _json("docs/figures/builtup_default.json")
    flagged = _flagged(metrics)
    text = " ".join(_prose(_page("real-data.md"), "Scores: F1 and IoU",
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
             if "pixels_scored" not in _json(f"docs/figures/{n}.json")["ndbi"]["ghana_b"]]
    for name, section in BUILTUP_SECTIONS.items():
        assert (f"[{section}]" in named) == (name in older), section
    if older:
        old = _json(f"docs/figures/{older[0]}.json")["ndbi"]["ghana_b"]
        assert f"{old['ndbi_best_f1']:.3f} @ {old['ndbi_best_threshold']:.3f}" in text
        assert f"AUC {old['ndbi_auc']:.3f}" in text


#: each leave-one-tile-out figures JSON of docs/real-data.md before the default command's,
#: and the section whose table it is (as the page links it)
BUILTUP_SECTIONS = {
    "builtup_loto": "Leave one tile out", "builtup_stack": "A stacked arm",
    "builtup_average": "A longer budget and an averaged arm",
    "builtup_tile64": "The prediction tile", "builtup_local": "The prediction tile",
    "builtup_scene": "Scene statistics", "builtup_ema": "Weight averaging",
    "builtup_flips": "Test-time flips", "builtup_recipe": "Balanced sampling"}


def test_the_flagged_clouds_section_is_the_default_command_with_the_narrower_mask():
    """Its JSON is the default run but for ``--scl-mask 3,11``: every built pixel of
    ``ghana_b`` covered; the prose quotes its block, seeds, shares and the page's counts."""
    page = _page("real-data.md")
    source = "docs/figures/builtup_scl.json"
    metrics, derived = _loto_section(page, source, ("f1_built", "auc_built"))
    derived |= _shares(metrics)
    default = _json("docs/figures/builtup_default.json")
    assert metrics["budget"] == {**default["budget"], "scl_mask": "3,11"}
    assert metrics["arms"] == default["arms"] and metrics["seeds"] == default["seeds"]
    assert metrics["ndbi"]["ghana_b"]["unmapped_built_pixels"] == 0
    flagged = _flagged(default)
    derived.add(flagged["others"].split()[0])
    text = " ".join(page.split())
    assert "python -m experiments.builtup --loto --scl-mask 3,11 --out builtup_scl" in text
    assert f"took {metrics['seconds']:,.0f} s of wall time" in text
    prose = _prose(page, "### Clouds flagged over a town", "### Level-1C")
    assert _unmatched(prose, derived) == []
    prose = " ".join(prose.split())
    assert f"{flagged['built']} labelled built pixels, against {flagged['others']}" in prose
    everything = metrics["ndbi"]["ghana_b"]["all_labelled"]["built_pixels"]
    assert f"cover all {everything} built pixels" in prose


def test_the_ghana_tiles_are_as_hazy_as_the_page_says(shared_data):
    """The medians of the visible bands the page quotes, from the tiles themselves."""
    from experiments.builtup import DW_FOLDER, find_tile, reflectance

    def medians(prefix: str) -> list[float]:
        tile = find_tile(shared_data / DW_FOLDER, prefix)
        return [float(np.nanmedian(v)) for v in reflectance(tile, ("B2", "B3", "B4")).values()]

    ghana = medians("ghana_a") + medians("ghana_b")
    java = medians("java")
    text = " ".join(_page("real-data.md").split())
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
    from inference.predict.change import DEFAULT_SPECTRAL_THRESHOLD

    page = _page("real-data.md")
    metrics = _json(FIGURES_JSON)
    prose = _prose(page, "What it shows:", "holds every seed's and pair's scores")
    block = _block(page, FIGURES_JSON)
    assert _unmatched(prose, set(DECIMAL.findall(block)) | _spectral_margins(
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


def test_the_terramesh_prose_quotes_its_table():
    from experiments.terramesh import FIGURES_JSON

    page = _page("real-data.md")
    metrics = _json(FIGURES_JSON)
    block = _block(page, FIGURES_JSON)
    prose = _prose(page, "Default budget:", "Columns: F1")
    assert _unmatched(prose, block) == []
    text = " ".join(page.split())
    train = metrics["test"][next(iter(metrics["test"]))]
    assert f"({train['pixels']:,} px, {train['built_pixels']} built by the product)" in text
    assert f"took {metrics['seconds']:,.0f} s of wall time" in text


def test_the_land_cover_prose_quotes_its_tables():
    import experiments.landcover_figures as figs

    page = _page("landcover.md")
    prose = _prose(page, "What this shows, and what it does not:", "### Whole patches held out")
    assert _unmatched(prose, _block(page, figs.SOURCE)) == []
    seconds = _json(figs.SOURCE)["timing"]["wall_seconds"]
    assert f"took {seconds:,.0f} s of wall time" in " ".join(page.split())


def test_the_hrnet_sizes_the_land_cover_page_quotes():
    """Parameters, prunable layers and FLOPs of HRNet at C = 18 and 24, unpruned and pruned.

    FLOPs are counted on 64 px and scaled to 256 px: every counted operation is a convolution
    or a matrix product, whose count grows with the pixels exactly.
    """
    import torch

    from gee_export.contract.label_schemes import LANDCOVER_CLASSES
    from training.modelfile import ModelMeta
    from training.models import create_model
    from training.pruning import (
        compact_model,
        flop_count,
        fpgm_step,
        parameter_count,
        prunable_layers,
    )

    text = " ".join(_page("landcover.md").split())
    bands = ("Red", "Green", "Blue", "NearInfrared")
    sizes = {}
    for width in (18, 24):
        torch.manual_seed(0)
        full = create_model("hrnet", 4, len(LANDCOVER_CLASSES), width=width).eval()
        convs = sum(isinstance(m, torch.nn.Conv2d) for m in full.modules())
        layers = len(prunable_layers(full))
        params, flops = parameter_count(full), flop_count(full, 4, 64) * 16 / 1e9
        fpgm_step(full, 0.4)
        meta = ModelMeta("hrnet", 4, len(LANDCOVER_CLASSES), bands, (0.0,) * 4, (1.0,) * 4,
                         "landcover", LANDCOVER_CLASSES, model_kwargs={"width": width})
        small = compact_model(full, meta)[0].eval()
        sizes[width] = (params, parameter_count(small), flops,
                        flop_count(small, 4, 64) * 16 / 1e9, layers, convs)
    p, q, f, g, layers, convs = sizes[18]
    assert f"{layers} of {convs} convolutions" in text
    assert f"{p / 1e6:.2f} M -> {q / 1e6:.2f} M parameters, {f:.2f} -> {g:.2f} GFLOPs" in text
    p, q, f, g, _, _ = sizes[24]
    assert f"{p / 1e6:.2f} M parameters" in text and f"{p:,} -> {q:,} parameters" in text
    assert f"FLOPs {f:.2f} -> {g:.2f} G, {100 * (1 - g / f):.1f} % fewer" in text


def test_the_terramesh_block_is_the_table_of_its_json(tmp_path):
    from experiments.terramesh import FIGURES_JSON, figures_markdown, update_page

    page = _page("real-data.md")
    metrics = _json(FIGURES_JSON)
    assert _block(page, FIGURES_JSON) == figures_markdown(metrics)
    metrics["models"]["unet-s2-window"][metrics["train_cell"]]["f1_built"] = 0.123
    (tmp_path / "f.json").write_text(json.dumps(metrics))
    (tmp_path / "p.md").write_text("a\n<!-- figures: f.json -->\nold\n<!-- end figures -->\n")
    assert update_page("f.json", "p.md", root=str(tmp_path)) is True
    assert "0.123" in (tmp_path / "p.md").read_text()


def test_the_pruning_tables_and_prose_quote_their_json():
    """The three pruning runs' tables, and every decimal the section's prose derives from them."""
    import experiments.landcover_figures as figs

    page = _page("landcover.md")
    derived: set[str] = set()
    oa_changes = []
    for name in ("in", "bn", "bn_x3"):
        report = _json(figs.pruning_source(name))
        block = _block(page, figs.pruning_source(name))
        assert block == figs.pruning_block(report)
        derived |= set(DECIMAL.findall(block))
        oa = {m: 100 * s["OA"]["mean"] for m, s in report["summary"].items()}
        oa_changes.append(f"{oa['hrnet pruned'] - oa['hrnet']:.1f}")
        derived |= {f"{abs(oa['hrnet pruned'] - oa['hrnet']):.1f}",
                    f"{abs(oa['hrnet + CLAHE'] - oa['hrnet']):.1f}"}
        derived |= {f"{v / 1e9:.2f}" for v in report["flops_256"].values()}
    prose = _prose(page, "## What pruning and CLAHE cost in accuracy", "## Pruning speed")
    assert _unmatched(prose, derived) == []
    params = report["parameters"]
    text = " ".join(page.split())
    assert f"parameters {params['hrnet']:,} -> {params['pruned']:,}" in text
    change = "{} (IN), {} (BN), {} (BN 3x)".format(*oa_changes)
    assert f"Accuracy change (`experiments.landcover_pruning`, above): {change}" in text
    pixels = report["test_pixels"]
    listed = ", ".join(f"{c.replace('_land', '')} {n:,}"
                       for c, n in sorted(pixels.items(), key=lambda kv: -kv[1]))
    assert f"({sum(pixels.values()):,} labelled pixels: {listed})" in text
    assert f"({params['hrnet'] / 1e3:.0f} k parameters" in text
    assert f"({params['pruned'] / 1e3:.0f} k parameters" in text


def test_the_chesapeake_counts_the_land_cover_page_quotes(shared_data):
    """Patch 0's share of the impervious pixels, and its quadrants', from the patches."""
    from experiments.chesapeake_nlcd import CHESAPEAKE_FOLDER, read_patches
    from gee_export.contract.label_schemes import LANDCOVER_CLASSES

    patches = read_patches(shared_data / CHESAPEAKE_FOLDER)
    isa = LANDCOVER_CLASSES.index("impervious")
    per_patch = [int((p.truth == isa).sum()) for p in patches]
    first = patches[0].truth == isa
    h, w = first.shape
    quadrants = [int(q.sum()) for q in (first[:h // 2, :w // 2], first[:h // 2, w // 2:],
                                        first[h // 2:, :w // 2], first[h // 2:, w // 2:])]
    text = " ".join(_page("landcover.md").split())
    assert f"Patch 0 holds {per_patch[0]} of the tile's {sum(per_patch)} impervious pixels" in text
    assert f"pool all {sum(p.truth.size for p in patches):,} pixels" in text
    assert "patch 0's quadrants hold {}, {}, {} and {} impervious pixels".format(*quadrants) in text


def _bench_report() -> dict:
    """A small report of ``benchmarks/bench_pruning.py --json`` (two settings, one part)."""
    def rate(u: float, p: float, ratios: list[float]) -> dict:
        return {"unpruned": u, "pruned": p, "ratios": ratios,
                "speedup": float(np.median(ratios))}

    oa = {"hrnet": {"mean": 0.8, "std": 0.03}, "pruned": {"mean": 0.77, "std": 0.05}}
    return {"command": "benchmarks/bench_pruning.py --json x.json",
            "settings": {"width": 18, "rate": 0.4, "size": 512, "batch": 8, "rounds": 3,
                         "compiled": 1, "threads": 1},
            "machine": {"device": "Some CPU (AVX2, 1 threads)", "cores": 2,
                        "native_bf16": False, "torch": "2"},
            "date": "2026-01-02", "seconds": 125.4,
            "load_average": {"before": [0.5, 0.4, 0.3], "after": [1.25, 1.0, 0.5]},
            "parameters": {"unpruned": 1000, "pruned": 600},
            "flops_per_patch": {"unpruned": 4e9, "pruned": 2e9},
            "auto_choice": {"unpruned": "fp32/nhwc/BN folded", "pruned": "fp32/nhwc/BN folded"},
            "speed": {"fp32/nchw": rate(1.0, 1.5, [1.4, 1.5, 1.6]),
                      "fp32/nhwc/BN folded": rate(2.0, 3.2, [1.55, 1.6, 1.7]),
                      "fp32/nhwc/BN folded/compiled": rate(2.5, 3.0, [1.2, 1.25, 1.3])},
            "fastest": {"unpruned": "fp32/nhwc/BN folded/compiled",
                        "pruned": "fp32/nhwc/BN folded", "speedup": 3.2 / 2.5},
            "breakdown": {"setting": "fp32/nhwc/BN folded",
                          "parts": {"stem": {"ms": [20.0, 10.0], "gflops": [1.5, 0.6]},
                                    "everything else": {"ms": [5.0, 4.0], "gflops": None}}},
            "resize": [],
            "fused_ends": {"setting": "fp32/nhwc/BN folded",
                           "fused": rate(2.0, 3.2, [1.6, 1.6, 1.6]),
                           "plain": rate(1.9, 2.8, [1.5, 1.45, 1.4])},
            "accuracy": [{"source": "a.json", "quick": False, "stem": "batch", "iterations": 300,
                          "pruning_rule": 3, **oa},
                         {"source": "b.json", "quick": True, "stem": "batch", "iterations": 900,
                          "pruning_rule": 3, **oa}]}


def test_the_pruning_speed_block_is_rendered_from_the_benchmarks_json(tmp_path, capsys):
    """`python -m experiments.landcover_figures PATH --bench-pruning` copies and rewrites."""
    import experiments.landcover_figures as figs

    report = _bench_report()
    block = figs.bench_block(report)
    assert ("Measured on Some CPU (AVX2, 1 threads), 2 cores, on 2026-01-02: 2 min 5 s of wall "
            "time, one-minute load average 0.50 before and 1.25 after.") in block
    assert ("| **fp32/nhwc, BN folded** (auto's choice of precision and layout, both networks) "
            "| 2.00 | 3.20 | **x1.60** | x1.55-1.70 |") in block
    assert "| fp32/nhwc, BN folded, `torch.compile` | 2.50 | 3.00 | x1.25 | x1.20-1.30 |" in block
    assert ("(unpruned at fp32/nhwc, BN folded, `torch.compile`, pruned at fp32/nhwc, BN folded: "
            "a ratio of best rounds): 2.50 -> 3.20 patches/s, x1.28") in block
    assert "Parameters 1,000 -> 600 (40.0 % fewer), FLOPs per patch 4.00 -> 2.00 G" in block
    assert "-3.0 (BN), -3.0 (BN 3x) OA points. Not the documented results" in block
    assert "| stem | 20.0 -> 10.0 ms (x2.00) | 1.50 -> 0.60 G (x2.50) |" in block
    assert "| plain ops (`fused.disabled()`) | 1.90 | 2.80 | x1.45 | x1.40-1.50 |" in block
    assert "unpruned network x1.05 and the pruned one x1.14 as fast" in block

    source = tmp_path / "run.json"
    source.write_text(json.dumps(report))
    page = tmp_path / figs.PAGE
    page.parent.mkdir()
    page.write_text(f"a\n<!-- figures: {figs.BENCH_SOURCE} -->\nold\n<!-- end figures -->\nb\n")
    assert figs.main([str(source), "--bench-pruning", "--root", str(tmp_path)]) == 0
    assert _block(page.read_text(), figs.BENCH_SOURCE) == block
    assert json.loads((tmp_path / figs.BENCH_SOURCE).read_text()) == report
    source.write_text(json.dumps({"speed": {}}))  # not a finished run: refused, page kept
    before = page.read_text()
    assert figs.main([str(source), "--bench-pruning", "--root", str(tmp_path)]) == 2
    assert "is not a JSON report of benchmarks/bench_pruning.py" in capsys.readouterr().err
    assert page.read_text() == before


def test_the_pruning_speed_section_quotes_its_json():
    """Every number of "Pruning speed" (prose and tables) is one the benchmark's JSON gives.

    Speed-ups are written ``x1.64``, which :data:`DECIMAL` skips; here every number with a
    decimal point counts, ``x`` or not.
    """
    import experiments.landcover_figures as figs

    number = re.compile(r"(?<![\d.])\d+\.\d+(?![\d.])")
    page = _page("landcover.md")
    report = _json(figs.BENCH_SOURCE)
    block = _block(page, figs.BENCH_SOURCE)
    assert block == figs.bench_block(report)
    marker = "<!-- figures: " + figs.BENCH_SOURCE
    after = page[page.index("<!-- end figures -->", page.index(marker)):]
    prose = _prose(page, "## Pruning speed", marker) + _prose(after + "\n<end>", "-->", "<end>")
    assert sorted(set(number.findall(prose)) - set(number.findall(block))) == []
    auto = report["auto_choice"]["unpruned"]
    r = report["speed"][auto]
    text = " ".join(page.split())
    assert auto == "bf16/nhwc/BN folded"  # the prose names auto's choice
    assert (f"the pruned network is x{r['speedup']:.2f} faster** (rounds "
            f"x{min(r['ratios']):.2f}-{max(r['ratios']):.2f})") in text
    assert f"each network at its fastest setting x{report['fastest']['speedup']:.2f}" in text
    f, p = report["fused_ends"]["fused"], report["fused_ends"]["plain"]
    assert (f"(x{f['pruned'] / p['pruned']:.2f} against x{f['unpruned'] / p['unpruned']:.2f}, "
            "best rounds)") in text
    assert report["settings"] == {"width": 18, "rate": 0.4, "size": 512, "batch": 8,
                                  "rounds": 5, "compiled": 1, "threads": 1}  # as the page says


def test_the_readme_quotes_the_default_commands_figures():
    """The front door's built-up line: Java's ROC AUC of ``unet-s2`` in the default command's
    JSON, its margin on every tile, ``ghana_b``'s with the narrower mask, and the link."""
    summary = _json("docs/figures/builtup_default.json")["summary"]
    scl = _json("docs/figures/builtup_scl.json")["summary"]
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    assert f"ROC AUC {summary['java']['unet-s2']['auc']:.3f}" in readme
    assert all(summary[t]["unet-s2"]["f1_minus_ndbi_best"] > 0 for t in summary)
    assert all(scl[t]["unet-s2"]["f1_minus_ndbi_best"] > 0 for t in scl)
    assert f"`ghana_b`: {scl['ghana_b']['unet-s2']['f1_minus_ndbi_best']:+.3f}" in readme
    assert "docs/real-data.md#the-default-command" in readme

