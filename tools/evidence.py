"""The committed result JSON of the experiments: summaries of full runs, small enough to commit.

An experiment's run writes everything it measured (every seed's reliability bins, confusion
matrices, per-pair scores); the docs' figure blocks and the tests that check them read a small
part of it. ``docs/figures/*.json`` holds that part only, made from a full run by this tool,
never edited by hand:

* every file: no ``reliability`` bins, no ``per_seed_confusion`` matrices, per-seed lists only
  for overall accuracy (``OA``: the pages quote each seed's), floats to 6 significant digits
  (the pages print at most 4), one line of compact JSON;
* ``builtup_*.json`` (``python -m experiments.builtup --loto``'s ``loto.json``): each seed's
  run keeps the scores the pages quote (:data:`RUN_FIELDS`);
* ``change_pairs.json``: the summary, baselines and per-date tables, not every seed's pair
  or date;
* ``landcover_pruning_*.json``: the summary, not every seed's confusion matrices.

``accuracy_demo.json`` and ``bench_pruning.json`` are small reports of other commands and are
not touched. Usage::

    python tools/evidence.py builtup_default/loto.json docs/figures/builtup_default.json
    python tools/evidence.py --all      # summarise every committed file in place
    python tools/evidence.py --check    # exit 1 unless every file is its own summary and
                                        # all of docs/figures stays under LIMIT_BYTES

``make evidence`` runs the experiments and this tool (hours on 2 cores; not run in CI).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
FIGURES = REPO / "docs" / "figures"
#: what docs/figures may hold in all (bytes): four summaries of leave-one-tile-out runs
#: (10 kB each, 18 kB for the two arms of builtup_encoders; the default command's on two
#: processors) beside the land-cover ones and Presto's dates and their change scores (39 kB)
LIMIT_BYTES = 250_000
#: reports of other commands, committed as written
UNTOUCHED = frozenset({"accuracy_demo.json", "bench_pruning.json"})
#: what the pages and tests read of each seed's run in a leave-one-tile-out report
#: (in seed order; the seed itself is the list's index)
RUN_FIELDS = ("f1_built", "auc_built", "ece_built", "best_f1_built", "threshold",
              "pixels", "built_pixels", "mapped_built_share")
DIGITS = 6
#: what no page or test reads: reliability bins, per-seed matrices, and of the worst-seed
#: judge's summary the best seed and the uncalibrated ECE
_DROPPED = frozenset({"reliability", "per_seed_confusion", "f1_best", "ece_t1"})


def _trim(value: Any, key: str | None = None) -> Any:
    """``value`` without the dropped keys, per-seed lists outside ``OA``, rounded floats."""
    if isinstance(value, dict):
        return {k: _trim(v, k) for k, v in value.items()
                if k not in _DROPPED and not (k == "per_seed" and isinstance(v, list)
                                              and key != "OA")}
    if isinstance(value, list):
        return [_trim(v, key) for v in value]
    if isinstance(value, float) and math.isfinite(value) and value != 0.0:
        return float(f"{value:.{DIGITS}g}")
    return value


def summarise(report: dict, name: str) -> dict:
    """The committed summary of a full ``report`` that is to be committed as ``name``."""
    if name in UNTOUCHED:
        return report
    report = dict(report)
    if name.startswith("builtup_") and "runs" in report:
        report["runs"] = {tile: {arm: [{k: r[k] for k in RUN_FIELDS if k in r} for r in seeds]
                                 for arm, seeds in arms.items()}
                          for tile, arms in report["runs"].items()}
    elif name.startswith("change_pairs"):
        report.pop("runs", None)
        report.pop("date_runs", None)
    elif name.startswith("landcover_pruning_"):
        report.pop("per_seed", None)
    return _trim(report)


def dumps(summary: dict) -> str:
    """A summary as the committed file holds it: one line of compact JSON."""
    return json.dumps(summary, separators=(",", ":"), ensure_ascii=False) + "\n"


def write(source: Path, dest: Path) -> None:
    """Summarise the full report ``source`` into ``dest`` (named as committed)."""
    report = json.loads(source.read_text(encoding="utf-8"))
    text = dumps(summarise(report, dest.name))
    tmp = dest.with_name(dest.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(dest)


def committed(folder: Path = FIGURES) -> list[Path]:
    """The committed result JSON files."""
    return sorted(folder.glob("*.json"))


def problems(folder: Path = FIGURES) -> list[str]:
    """What is wrong with the committed files: one that is not its own summary, the total."""
    found = []
    for path in committed(folder):
        if path.name in UNTOUCHED:
            continue
        text = path.read_text(encoding="utf-8")
        if text != dumps(summarise(json.loads(text), path.name)):
            found.append(f"{path.name} is not a summary: run python tools/evidence.py --all")
    total = sum(p.stat().st_size for p in committed(folder))
    if total >= LIMIT_BYTES:
        found.append(f"{folder.name}/ holds {total:,} bytes of JSON, over {LIMIT_BYTES:,}")
    return found


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    p = argparse.ArgumentParser(prog="python tools/evidence.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="*", metavar="SOURCE DEST",
                   help="a full run's JSON and the docs/figures file it is committed as")
    p.add_argument("--all", action="store_true", help="summarise every committed file in place")
    p.add_argument("--check", action="store_true", help="check the committed files")
    a = p.parse_args(argv)
    if a.check:
        found = problems()
        print("\n".join(found) or f"{FIGURES.relative_to(REPO)}/: summaries, "
              f"{sum(f.stat().st_size for f in committed()):,} bytes")
        return 1 if found else 0
    if a.all:
        for path in committed():
            write(path, path)
        return 0
    if len(a.paths) != 2:
        p.error("give SOURCE DEST, --all or --check")
    source, dest = map(Path, a.paths)
    if not source.is_file():
        print(f"{source} does not exist: give the JSON a finished run wrote", file=sys.stderr)
        return 2
    write(source, dest)
    print(f"{dest} written ({dest.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
