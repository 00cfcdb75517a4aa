"""The land-cover pages' pruning figures quote their JSONs: sizes, accuracy and speed.

What FPGM pruning costs in accuracy (``experiments.landcover_pruning``'s reports) and gains in
speed (``benchmarks/bench_pruning.py --json``), as docs/evidence/landcover.md's generated
blocks and its prose give them (the network's sizes: docs/landcover.md); every decimal the
prose quotes is one a block prints or the test derives.
"""

from __future__ import annotations

import json
import re

import numpy as np

from tests.support import page_text as pt


def test_the_hrnet_sizes_the_land_cover_page_quotes():
    """Parameters, prunable layers and FLOPs of HRNet at C = 18 and 24, unpruned and pruned.

    FLOPs are counted on 64 px and scaled to 256 px: every counted operation is a convolution
    or a matrix product, whose count grows with the pixels exactly.
    """
    import torch

    from contract.label_schemes import LANDCOVER_CLASSES
    from training.modelfile import ModelMeta
    from training.models import create_model
    from training.pruning import (
        compact_model,
        flop_count,
        fpgm_step,
        parameter_count,
        prunable_layers,
    )

    text = " ".join(pt.page("landcover.md").split())
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


def test_the_pruning_tables_and_prose_quote_their_json():
    """The three pruning runs' tables, and every decimal the section's prose derives from them."""
    import experiments.landcover_figures as figs

    page = pt.page("evidence/landcover.md")
    derived: set[str] = set()
    oa_changes = []
    for name in ("in", "bn", "bn_x3"):
        report = pt.source_json(figs.pruning_source(name))
        block = pt.block(page, figs.pruning_source(name))
        assert block == figs.pruning_block(report)
        derived |= set(pt.DECIMAL.findall(block))
        oa = {m: 100 * s["OA"]["mean"] for m, s in report["summary"].items()}
        oa_changes.append(f"{oa['hrnet pruned'] - oa['hrnet']:.1f}")
        derived |= {f"{abs(oa['hrnet pruned'] - oa['hrnet']):.1f}",
                    f"{abs(oa['hrnet + CLAHE'] - oa['hrnet']):.1f}"}
        derived |= {f"{v / 1e9:.2f}" for v in report["flops_256"].values()}
    prose = pt.prose(page, "## What pruning and CLAHE cost in accuracy", "## Pruning speed")
    assert pt.unmatched(prose, derived) == []
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

    source = tmp_path / "run.json"
    source.write_text(json.dumps(report))
    page = tmp_path / figs.EVIDENCE_PAGE
    page.parent.mkdir(parents=True)
    page.write_text(f"a\n<!-- figures: {figs.BENCH_SOURCE} -->\nold\n<!-- end figures -->\nb\n")
    assert figs.main([str(source), "--bench-pruning", "--root", str(tmp_path)]) == 0
    assert pt.block(page.read_text(), figs.BENCH_SOURCE) == block
    assert json.loads((tmp_path / figs.BENCH_SOURCE).read_text()) == report
    source.write_text(json.dumps({"speed": {}}))  # not a finished run: refused, page kept
    before = page.read_text()
    assert figs.main([str(source), "--bench-pruning", "--root", str(tmp_path)]) == 2
    assert "is not a JSON report of benchmarks/bench_pruning.py" in capsys.readouterr().err
    assert page.read_text() == before


def test_the_pruning_speed_section_quotes_its_json():
    """Every number of "Pruning speed" (prose and tables) is one the benchmark's JSON gives.

    Speed-ups are written ``x1.64``, which :data:`pt.DECIMAL` skips; here every number with a
    decimal point counts, ``x`` or not.
    """
    import experiments.landcover_figures as figs

    number = re.compile(r"(?<![\d.])\d+\.\d+(?![\d.])")
    page = pt.page("evidence/landcover.md")
    report = pt.source_json(figs.BENCH_SOURCE)
    block = pt.block(page, figs.BENCH_SOURCE)
    assert block == figs.bench_block(report)
    marker = "<!-- figures: " + figs.BENCH_SOURCE
    after = page[page.index("<!-- end figures -->", page.index(marker)):]
    prose = pt.prose(page, "## Pruning speed", marker) + pt.prose(after + "\n<end>", "-->", "<end>")
    assert sorted(set(number.findall(prose)) - set(number.findall(block))) == []
    auto = report["auto_choice"]["unpruned"]
    r = report["speed"][auto]
    text = " ".join(page.split())
    assert auto == "bf16/nhwc/BN folded"  # the prose names auto's choice
    assert (f"the pruned network is x{r['speedup']:.2f} faster** (rounds "
            f"x{min(r['ratios']):.2f}-{max(r['ratios']):.2f})") in text
    assert f"each network at its fastest setting x{report['fastest']['speedup']:.2f}" in text
    assert report["settings"] == {"width": 18, "rate": 0.4, "size": 512, "batch": 8,
                                  "rounds": 5, "compiled": 1, "threads": 1}  # as the page says
