"""docs/landcover.md's figures: the experiment's tables, regenerated from its source JSON.

``python -m experiments.landcover_figures landcover_output/metrics.json`` copies the run's
report (without the per-seed matrices) to ``docs/figures/landcover.json`` and rewrites the
page's block between ``<!-- figures: docs/figures/landcover.json -->`` and ``<!-- end figures
-->`` with :func:`experiments.landcover_report.report_table` of it; a test compares the page
with the JSON, so a figure quoted there cannot drift from the run that produced it.

``python -m experiments.landcover_figures lccompare_output/metrics.json --pruning NAME`` does
the same for a run of :mod:`experiments.landcover_pruning`: the report goes to
``docs/figures/landcover_pruning_NAME.json`` and its tables to that file's block.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from experiments.landcover_report import report_table
from gee_export.core.commands import add_logging_arguments, configure_logging, run_command
from gee_export.core.errors import InputDataError
from gee_export.core.storage import atomic_write
from inference.assess.figures import rewrite_block

SOURCE = "docs/figures/landcover.json"
PAGE = "docs/landcover.md"


def figures(report: dict) -> dict:
    """What the page quotes of a run's ``metrics.json``: all but the per-seed matrices."""
    out = {k: v for k, v in report.items() if k != "settings"}
    out["settings"] = {name: {k: v for k, v in s.items() if k != "per_seed_confusion"}
                       for name, s in report["settings"].items()}
    return out


def figures_block(figures: dict) -> str:
    """The page's generated block: the run's tables as ``comparison.md`` has them."""
    return "\n" + report_table(figures) + "\n\n"


def update_page(source: str | Path, page: str | Path, root: str | Path = ".") -> bool:
    """Rewrite ``page``'s figures block from ``source`` (named relative to ``root``)."""
    return rewrite_block(source, page, figures_block, root)


def pruning_source(name: str) -> str:
    """The committed copy of a pruning run's report, named ``name`` (``in``, ``bn``...)."""
    return f"docs/figures/landcover_pruning_{name}.json"


def pruning_block(report: dict) -> str:
    """A pruning run's block: its ``comparison.md`` tables."""
    from experiments.landcover_pruning import report_table as pruning_table

    return "\n" + pruning_table(report) + "\n\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m experiments.landcover_figures``; returns the exit status."""
    p = argparse.ArgumentParser(prog="python -m experiments.landcover_figures",
                                description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("metrics", help="the experiment's OUT/metrics.json")
    p.add_argument("--root", default=".", help="the repository (default: here)")
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
    if a.pruning:
        return _run_pruning(path, a.pruning, Path(a.root))
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
        data = figures(report)
    except (OSError, ValueError, KeyError, AttributeError) as exc:
        raise InputDataError(f"{path} is not an experiments.landcover metrics.json ({exc}); "
                             "give OUT/metrics.json of a finished run") from None
    text = json.dumps(data, indent=1, ensure_ascii=False) + "\n"
    atomic_write(Path(a.root) / SOURCE, lambda fh: fh.write(text.encode()))
    changed = update_page(SOURCE, PAGE, a.root)
    print(f"{SOURCE} written; {PAGE} {'rewritten' if changed else 'unchanged'}")
    return 0


def _run_pruning(path: Path, name: str, root: Path) -> int:
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
        pruning_block(report)
    except (OSError, ValueError, KeyError, AttributeError, TypeError) as exc:
        raise InputDataError(f"{path} is not an experiments.landcover_pruning metrics.json "
                             f"({exc}); give OUT/metrics.json of a finished run") from None
    source = pruning_source(name)
    text = json.dumps(report, indent=1, ensure_ascii=False) + "\n"
    atomic_write(root / source, lambda fh: fh.write(text.encode()))
    changed = rewrite_block(source, PAGE, pruning_block, root)
    print(f"{source} written; {PAGE} {'rewritten' if changed else 'unchanged'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
