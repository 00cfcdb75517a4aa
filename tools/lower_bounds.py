"""The declared lower bounds (setup.cfg) and the environment that tests them (``make test-min``).

``constraints-min.txt`` pins every base requirement of ``setup.cfg`` at its lower bound, and the
tools of the ``dev`` extra that the subset of the suite run by ``make test-min`` needs at
theirs. ``tests/test_lower_bounds.py`` checks that the file and setup.cfg agree, and that the
install page's table of ranges is the one :func:`ranges_table` writes from setup.cfg.

Usage:
    python tools/lower_bounds.py --installed   # in .venv-min: print the versions under test,
                                                # exit 1 if one is not its pin
    python tools/lower_bounds.py --table        # the install page's table of ranges
"""

from __future__ import annotations

import argparse
import configparser
import importlib.metadata
import sys
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO_ROOT = Path(__file__).resolve().parents[1]
SETUP_CFG = REPO_ROOT / "setup.cfg"
CONSTRAINTS_MIN = REPO_ROOT / "constraints-min.txt"
CONSTRAINTS = REPO_ROOT / "constraints.txt"  # the development pins (make setup, make test)


def declared(setup_cfg: Path = SETUP_CFG) -> dict[str, list[Requirement]]:
    """Requirements by section: ``"base"`` (install_requires) and each extra's name."""
    parser = configparser.ConfigParser()
    parser.read(setup_cfg)
    sections = {"base": parser["options"]["install_requires"],
                **dict(parser["options.extras_require"])}
    return {name: [Requirement(line.strip()) for line in text.splitlines()
                   if line.strip() and not line.strip().startswith("#")]
            for name, text in sections.items()}


def lower_bound(requirement: Requirement) -> Version | None:
    """The version of the requirement's ``>=`` clause (None: no lower bound)."""
    bounds = [Version(s.version) for s in requirement.specifier if s.operator == ">="]
    return max(bounds) if bounds else None


def pins(path: Path = CONSTRAINTS_MIN) -> dict[str, Version]:
    """``name==version`` lines of a constraints file, by canonical name."""
    found = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            found[canonicalize_name(name)] = Version(version)
    return found


def installed_mismatches(wanted: dict[str, Version]) -> tuple[list[str], list[str]]:
    """(``name version`` of each pin as installed here, what differs from its pin)."""
    seen, wrong = [], []
    for name, version in wanted.items():
        try:
            have = Version(importlib.metadata.version(name))
        except importlib.metadata.PackageNotFoundError:
            wrong.append(f"{name} is not installed (pin {version})")
            continue
        seen.append(f"{name} {have}")
        if have.release != version.release or have.pre != version.pre:  # 2.4.0+cu121 is 2.4.0
            wrong.append(f"{name} {have} is installed, constraints-min.txt pins {version}")
    return seen, wrong


def _range_text(requirement: Requirement) -> str:
    clauses = sorted(requirement.specifier, key=lambda s: s.operator != ">=")
    return ", ".join(f"{s.operator} {s.version}" for s in clauses)


def ranges_table(setup_cfg: Path = SETUP_CFG, lowest: Path = CONSTRAINTS_MIN,
                 development: Path = CONSTRAINTS) -> str:
    """Markdown table of the base requirements: declared range, and the two versions tested."""
    low, high = pins(lowest), pins(development)
    rows = ["| package | range | lowest, tested by `make test-min` | "
            "pinned, tested by `make test` |", "|---|---|---|---|"]
    for requirement in declared(setup_cfg)["base"]:
        name = canonicalize_name(requirement.name)
        rows.append(f"| {requirement.name} | {_range_text(requirement)} | {low.get(name, '-')} "
                    f"| {high.get(name, '-')} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--installed", action="store_true",
                      help="check this environment against constraints-min.txt")
    what.add_argument("--table", action="store_true", help="print the table of ranges")
    args = parser.parse_args(argv)
    if args.table:
        print(ranges_table())
        return 0
    seen, wrong = installed_mismatches(pins())
    print("lower bounds under test: " + ", ".join(seen))
    for line in wrong:
        print(f"error: {line}; remove the environment and run make test-min again",
              file=sys.stderr)
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
