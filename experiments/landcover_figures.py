"""The land-cover pages' figures: the experiment's tables, regenerated from its source JSON.

``python -m experiments.landcover_figures landcover_output/metrics.json`` copies the run's
report (without the per-seed matrices) to ``docs/figures/landcover.json`` and rewrites the
blocks between ``<!-- figures: docs/figures/landcover.json -->`` and ``<!-- end figures -->``:
the user's page (docs/landcover.md) gets the headline table (:func:`headline_block`), the
evidence page (docs/evidence/landcover.md) every table
(:func:`experiments.landcover_report.report_table`); tests compare the pages with the JSON,
so a figure quoted there cannot drift from the run that produced it. The other blocks below
are the evidence page's. ``python tools/evidence.py --all`` then cuts the committed JSON to
what the pages and tests read.

``python -m experiments.landcover_figures lccompare_output/metrics.json --pruning NAME`` does
the same for a run of :mod:`experiments.landcover_pruning`: the report goes to
``docs/figures/landcover_pruning_NAME.json`` and its tables to that file's block.

``python -m experiments.landcover_figures lc_patches/metrics.json --variant patches`` copies a
run with another split (or budget) to ``docs/figures/landcover_patches.json`` and rewrites
that file's block with :func:`variant_block`: the held-out pixels and, for every map, OA and
each present class's F1, the figures a page quotes beside the default run's.

``python -m experiments.landcover_figures docs/figures/bench_pruning.json --bench-pruning``
rewrites the "Pruning speed" block from what ``benchmarks/bench_pruning.py --json PATH``
wrote (copied to ``docs/figures/bench_pruning.json`` first when PATH is elsewhere):
:func:`bench_block` of it.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from core.commands import add_logging_arguments, configure_logging, run_command
from core.errors import InputDataError
from core.parsers import CommandParser
from core.storage import atomic_write
from experiments.landcover_departures import departure_table, rule_table
from experiments.landcover_report import (
    NO_SPREAD_NOTE,
    class_table,
    held_out_pixels,
    map_rows,
    report_table,
    window_table,
)
from inference.assess.figures import rewrite_block
from inference.assess.intervals import notes

SOURCE = "docs/figures/landcover.json"
#: the user's page: the headline table of the default run
PAGE = "docs/landcover.md"
#: the lab's page: every table of every run, pruning's cost and speed
EVIDENCE_PAGE = "docs/evidence/landcover.md"


def public_config(report: dict) -> dict:
    """The report with each ``config`` folder (``*_dir``) cut to its last name.

    The committed copy is public: the machine's paths (user names, mount points) stay on it.
    """
    config = {k: (Path(v).name if k.endswith("_dir") and isinstance(v, str) and v else v)
              for k, v in report.get("config", {}).items()}
    return {**report, "config": config} if "config" in report else dict(report)


def figures(report: dict) -> dict:
    """What the page quotes of a run's ``metrics.json``: all but the per-seed matrices.

    Its folders are cut to their names (:func:`public_config`).
    """
    report = public_config(report)
    out = {k: v for k, v in report.items() if k != "settings"}
    out["settings"] = {name: {k: v for k, v in s.items() if k != "per_seed_confusion"}
                       for name, s in report["settings"].items()}
    return out


def figures_block(figures: dict) -> str:
    """The page's generated block: the run's tables as ``comparison.md`` has them."""
    return "\n" + report_table(figures) + "\n\n"


def headline_block(figures: dict) -> str:
    """The user's page's block: the product, the paper's method and the default arm.

    OA and each present class's F1 of the first setting (``test``'s), mean ± std over seeds.
    """
    test = figures["test"]
    s = figures["settings"][test["setting"]]
    rows = {f"{test['product']} (the product)": s["products"][test["product"]],
            f"the paper's method (`{test['paper']['model']}`)": s["arms"][test["paper"]["model"]],
            f"the default arm (`{test['model']}`)": s["arms"][test["model"]]}
    lines = [f"**{test['setting']}**, {len(figures['config']['seeds'])} seeds, % (held-out "
             f"pixels: {held_out_pixels(s)})", "",
             *class_table(rows, s["classes_present"], "F1")]
    if "departures" in s:  # what the network adds to the product, beside the rule alone
        d = s["departures"]
        arms = {f"the paper's method (`{test['paper']['model']}`)":
                d["arms"][test["paper"]["model"]],
                f"the default arm (`{test['model']}`)": d["arms"][test["model"]]}
        lines += ["", *departure_table(arms, d["product"]), "",
                  *rule_table(d["rule"], d["product"])]
    lines += notes(lines, HEADLINE_NOTE)
    return "\n" + "\n".join(lines) + "\n\n"


#: the note under the headline table when a cell has no spread (it has no sample points)
HEADLINE_NOTE = ("n.i.: no spread: every seed gave the same figure (a product does not depend "
                 "on the seed).")


def update_page(source: str | Path, page: str | Path, root: str | Path = ".") -> bool:
    """Rewrite ``page``'s figures block from ``source`` (both named relative to ``root``).

    The user's page (:data:`PAGE`) gets the headline table, any other page every table.
    """
    user = Path(root, page).resolve() == Path(root, PAGE).resolve()
    block = headline_block if user else figures_block
    return rewrite_block(source, page, block, root)


def variant_source(name: str) -> str:
    """The committed copy of another run of the experiment (another split), named ``name``."""
    return f"docs/figures/landcover_{name}.json"


def variant_block(report: dict) -> str:
    """Another run's block: how it held pixels out, then OA and F1 per class of every map."""
    config = report["config"]
    split = (f"--split patches --groups {' '.join(','.join(map(str, g)) for g in config['groups'])}"
             if config.get("split") == "patches" else f"--split {config.get('split')}")
    lines = []
    for name, s in report["settings"].items():
        how = split if name == "nlcd" else f"--settings {name}"  # the split is nlcd's only
        lines += [f"**{name}**, `{how}`, {len(config['seeds'])} seeds (held-out pixels: "
                  f"{held_out_pixels(s)})", "",
                  *class_table(map_rows(s), s["classes_present"], "F1"), ""]
        if "windows" in s:
            lines += [*window_table(s, report["test"]["product"]), ""]
    lines = lines[:-1]  # the note (or the block's end) follows the last table's blank line
    lines += notes(lines, NO_SPREAD_NOTE)
    return "\n" + "\n".join(lines) + "\n\n"


def pruning_source(name: str) -> str:
    """The committed copy of a pruning run's report, named ``name`` (``in``, ``bn``...)."""
    return f"docs/figures/landcover_pruning_{name}.json"


def pruning_block(report: dict) -> str:
    """A pruning run's block: its ``comparison.md`` tables."""
    from experiments.landcover_pruning import report_table as pruning_table

    return "\n" + pruning_table(report) + "\n\n"


BENCH_SOURCE = "docs/figures/bench_pruning.json"


def setting_text(name: str) -> str:
    """A benchmark setting as the page writes it: ``bf16/nhwc, BN folded, `torch.compile```."""
    parts = name.split("/")
    words = {"BN folded": "BN folded", "compiled": "`torch.compile`"}
    return "/".join(parts[:2]) + "".join(f", {words[w]}" for w in parts[2:])


def _rounds(r: dict) -> str:
    return f"x{min(r['ratios']):.2f}-{max(r['ratios']):.2f}"


def _accuracy_labels(changes: list[dict]) -> list[str]:
    """IN / BN by the stem's norm, with ``3x`` where a run had 3x the fewest iterations."""
    fewest = min(c["iterations"] for c in changes)
    return [("IN" if c["stem"] == "instance" else "BN")
            + (f" {c['iterations'] // fewest}x" if c["iterations"] > fewest else "")
            for c in changes]


def bench_block(report: dict) -> str:
    """The "Pruning speed" block of ``benchmarks/bench_pruning.py --json``'s report.

    The run (machine, date, wall time, load), the speed table with every setting's fastest and
    slowest paired round (how much one timing moves), sizes and accuracy changes, where the
    time goes: every figure the section quotes.
    """
    from training.pruning import PRUNING_RULE

    st, m, load = report["settings"], report["machine"], report["load_average"]
    minutes, seconds = divmod(round(report["seconds"]), 60)
    threads = f"{st['threads']} torch thread" + ("s" if st["threads"] != 1 else "")
    lines = [f"Measured on {m['device']}, {m['cores']} cores"
             + (", native bf16" if m["native_bf16"] else "")
             + f", on {report['date']}: {minutes} min {seconds} s of wall time, one-minute load "
             f"average {load['before'][0]:.2f} before and {load['after'][0]:.2f} after. HRNet "
             f"C = {st['width']}, {100 * st['rate']:g} % of the prunable filters pruned, "
             f"{st['size']} px patches in batches of {st['batch']}, {threads}, "
             f"{st['rounds']} paired rounds per setting.", "",
             "| setting | unpruned patches/s | pruned patches/s | speed-up (median) | "
             "fastest-slowest round |", "|---|---|---|---|---|"]
    auto = report["auto_choice"]
    for name, r in report["speed"].items():
        chosen = [net for net in ("unpruned", "pruned") if auto[net] == name]
        text, speedup = setting_text(name), f"x{r['speedup']:.2f}"
        if chosen:
            whose = "both networks" if len(chosen) == 2 else f"the {chosen[0]} network"
            text = f"**{text}** (auto's choice of precision and layout, {whose})"
            speedup = f"**{speedup}**"
        lines.append(f"| {text} | {r['unpruned']:.2f} | {r['pruned']:.2f} | {speedup} | "
                     f"{_rounds(r)} |")
    fast, speed = report["fastest"], report["speed"]
    u, q = speed[fast["unpruned"]]["unpruned"], speed[fast["pruned"]]["pruned"]
    pairing = (f"both at {setting_text(fast['unpruned'])}, paired"
               if fast["unpruned"] == fast["pruned"] else
               f"unpruned at {setting_text(fast['unpruned'])}, pruned at "
               f"{setting_text(fast['pruned'])}: a ratio of best rounds")
    (pu, pp), (fu, fp) = report["parameters"].values(), report["flops_per_patch"].values()
    changes = report["accuracy"]
    listed = ", ".join(f"{100 * (c['pruned']['mean'] - c['hrnet']['mean']):.1f} ({label})"
                       for c, label in zip(changes, _accuracy_labels(changes), strict=True))
    caveats = [c["source"] for c in changes if c["quick"] or c["pruning_rule"] != PRUNING_RULE]
    lines += ["", f"Each network at its fastest setting ({pairing}): {u:.2f} -> {q:.2f} "
              f"patches/s, x{fast['speedup']:.2f}. Parameters {pu:,} -> {pp:,} "
              f"({100 * (1 - pp / pu):.1f} % fewer), FLOPs per patch {fu / 1e9:.2f} -> "
              f"{fp / 1e9:.2f} G (x{fu / fp:.2f} fewer). Accuracy change "
              f"(`experiments.landcover_pruning`, above): {listed} OA points."
              + (" Not the documented results (a quick run, or an older pruning rule): "
                 f"{', '.join(caveats)}." if caveats else "")]
    parts = report["breakdown"]
    lines += ["", f"Where the time goes at {setting_text(parts['setting'])} (ms per batch of "
              f"{st['batch']}, best of {st['rounds']} passes; convolution GFLOPs per patch):", "",
              "| part | unpruned -> pruned time | conv FLOPs |", "|---|---|---|"]
    for part, v in parts["parts"].items():
        (tu, tp), flops = v["ms"], v["gflops"]
        name = f"residual {part}" if part.startswith("blocks") else part
        flops_text = (f"{flops[0]:.2f} -> {flops[1]:.2f} G (x{flops[0] / flops[1]:.2f})"
                      if flops else "")
        lines.append(f"| {name} | {tu:.1f} -> {tp:.1f} ms (x{tu / tp:.2f}) | {flops_text} |")
    return "\n" + "\n".join(lines) + "\n\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m experiments.landcover_figures``; returns the exit status."""
    p = CommandParser(  # exact option names only
        allow_abbrev=False, prog="python -m experiments.landcover_figures",
                                description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("metrics", help="the experiment's OUT/metrics.json")
    p.add_argument("--root", default=".", help="the repository (default: here)")
    p.add_argument("--bench-pruning", action="store_true",
                   help="METRICS is what benchmarks/bench_pruning.py --json wrote: copy it to "
                        f"{BENCH_SOURCE} and rewrite the Pruning speed block")
    p.add_argument("--variant", metavar="NAME",
                   help="METRICS is a run with another split or budget: copy it to "
                        "docs/figures/landcover_NAME.json and rewrite that block")
    p.add_argument("--pruning", metavar="NAME",
                   help="METRICS is an experiments.landcover_pruning report: copy it to "
                        "docs/figures/landcover_pruning_NAME.json and rewrite that block")
    add_logging_arguments(p)
    a = p.parse_args(argv)
    configure_logging(a.verbose, a.quiet, a.debug)
    return run_command("python -m experiments.landcover_figures", lambda: _run(a),
                       debug=a.debug, writes_to=[])


def _run(a: argparse.Namespace) -> int:
    path = Path(a.metrics)
    if a.bench_pruning:
        return _run_bench(path, Path(a.root))
    if a.pruning:
        return _run_pruning(path, a.pruning, Path(a.root))
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
        data = figures(report)
        if a.variant:
            variant_block(data)
    except (OSError, ValueError, KeyError, AttributeError, TypeError) as exc:
        raise InputDataError(f"{path} is not an experiments.landcover metrics.json ({exc}); "
                             "give OUT/metrics.json of a finished run") from None
    source = variant_source(a.variant) if a.variant else SOURCE
    text = json.dumps(data, indent=1, ensure_ascii=False) + "\n"
    atomic_write(Path(a.root) / source, lambda fh: fh.write(text.encode()))
    if a.variant:
        changed = rewrite_block(source, EVIDENCE_PAGE, variant_block, a.root)
        print(f"{source} written; {EVIDENCE_PAGE} {'rewritten' if changed else 'unchanged'}")
        return 0
    for page in (PAGE, EVIDENCE_PAGE):
        changed = update_page(SOURCE, page, a.root)
        print(f"{source} written; {page} {'rewritten' if changed else 'unchanged'}")
    return 0


def _run_pruning(path: Path, name: str, root: Path) -> int:
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
        pruning_block(report)
    except (OSError, ValueError, KeyError, AttributeError, TypeError) as exc:
        raise InputDataError(f"{path} is not an experiments.landcover_pruning metrics.json "
                             f"({exc}); give OUT/metrics.json of a finished run") from None
    source = pruning_source(name)
    text = json.dumps(public_config(report), indent=1, ensure_ascii=False) + "\n"
    atomic_write(root / source, lambda fh: fh.write(text.encode()))
    changed = rewrite_block(source, EVIDENCE_PAGE, pruning_block, root)
    print(f"{source} written; {EVIDENCE_PAGE} {'rewritten' if changed else 'unchanged'}")
    return 0


def _run_bench(path: Path, root: Path) -> int:
    try:
        text = path.read_text(encoding="utf-8")
        bench_block(json.loads(text))
    except (OSError, ValueError, KeyError, AttributeError, TypeError) as exc:
        raise InputDataError(f"{path} is not a JSON report of benchmarks/bench_pruning.py "
                             f"({exc}); give the file a finished run wrote") from None
    target = root / BENCH_SOURCE
    if not target.exists() or not path.resolve().samefile(target):
        atomic_write(target, lambda fh: fh.write(text.encode()))
    changed = rewrite_block(BENCH_SOURCE, EVIDENCE_PAGE, bench_block, root)
    print(f"{BENCH_SOURCE} written; {EVIDENCE_PAGE} {'rewritten' if changed else 'unchanged'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
