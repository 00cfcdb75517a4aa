"""The project's own Python sources, for tests that pin where a rule is written (one owner).

Such a test states a rule ("the SHA-256 loop is written only in ``core/digest.py``")
as a search over every module of the product, its experiments and benchmarks, so a second
copy written later fails the test of the owning module instead of drifting silently.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from tests.support import LIBRARY_PACKAGES, REPO_ROOT

SOURCE_FOLDERS = (*LIBRARY_PACKAGES, "experiments", "benchmarks")
"""Folders of project code (tests excluded: they may spell out a rule to check it)."""


def project_sources() -> Iterator[tuple[str, str]]:
    """``(path relative to the repository, text)`` of every project ``.py`` file."""
    for folder in SOURCE_FOLDERS:
        for path in sorted((REPO_ROOT / folder).rglob("*.py")):
            yield path.relative_to(REPO_ROOT).as_posix(), path.read_text(encoding="utf-8")
    for path in sorted(REPO_ROOT.glob("*.py")):
        yield path.name, path.read_text(encoding="utf-8")


def where(pattern: str) -> dict[str, list[int]]:
    """``{path: [line numbers]}`` of the project lines matching the regular expression."""
    regex = re.compile(pattern)
    found: dict[str, list[int]] = {}
    for rel, text in project_sources():
        lines = [i for i, line in enumerate(text.splitlines(), 1) if regex.search(line)]
        if lines:
            found[rel] = lines
    return found
