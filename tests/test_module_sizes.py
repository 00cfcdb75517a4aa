"""Library modules stay readable in one sitting: at most 400 lines each.

A module past it is split by moving a cohesive piece out (a new module is named in
docs/architecture.md, tests/test_architecture_map.py), not by squeezing lines.
"""

from __future__ import annotations

from tests.support import LIBRARY_PACKAGES, REPO_ROOT

MAX_LINES = 400


def test_every_library_module_is_at_most_400_lines():
    long = {path.relative_to(REPO_ROOT).as_posix(): n
            for folder in LIBRARY_PACKAGES for path in sorted((REPO_ROOT / folder).rglob("*.py"))
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"
