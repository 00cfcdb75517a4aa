"""README and docs describe the product as it is, not how it was built.

A reader of the README or of a docs page wants what the tool does and what a figure means
today. Development history (which work period measured what, issue numbers, whether an
acceptance bar was met, what was tried and dropped, re-runs appended with their dates) belongs
in commit messages and ``CHANGES.md``; this test fails on it, and on a README that outgrows a
front door.

The patterns are narrow on purpose: "session" is flagged only with a word that counts work
periods ("fifth session", "a later session", "other sessions' jobs"), not in "Earth Engine
session"; "bar" only as a target ("bar 0.8", "bar: met"), not in "progress bar" or "colour
bar"; an issue only by number or as the one that "sets" something.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.support import REPO_ROOT

README_MAX_LINES = 150

_ORDINAL = (r"first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|later|earlier"
            r"|previous|next|last|same|another|other|work")
NARRATION: dict[str, re.Pattern[str]] = {
    "a work period": re.compile(
        rf"\b(?:{_ORDINAL})\s+(?:work\s+)?sessions?(?:'s?)?\b(?!\s*(?:object|token|cookie))"
        r"|\bwork periods?\b", re.IGNORECASE),
    "an issue number": re.compile(
        r"\b(?:issues?|tickets?|PR|pull request)\s*#?\d+\b"
        r"|\bthe issue(?:'s)?\s+(?:sets|set|asks|says|requires|wants|recipe|bar|demands)\b",
        re.IGNORECASE),
    "an acceptance bar": re.compile(
        r"\bacceptance (?:bar|criteri\w+|threshold)s?\b"
        r"|(?<!progress )(?<!colour )(?<!color )(?<!scale )(?<!tqdm )(?<!status )(?<!menu )"
        r"(?<!title )(?<!tool )(?<!side )(?<!search )(?<!error )\bbars?\b"
        r"(?:\s*(?:[:≥≤<>=]|\d)|\s+(?:is |was )?(?:not )?(?:met|reached|asks|missed)\b)"
        r"|\b(?:bar|target)\b[^.;]{0,40}\b(?:not met|is met|was met|: met)\b",
        re.IGNORECASE),
    "what was tried and dropped": re.compile(
        r"\btried (?:and|but) (?:not kept|dropped|reverted|abandoned)\b|\bnot kept\b",
        re.IGNORECASE),
    "a comparison with an earlier state": re.compile(
        r"\bprevious (?:run|session|pipeline|version|implementation|measurement)s?\b"
        r"|\bbefore this change\b|\bbefore the (?:fix|rework|change|refactor)\b"
        r"|\b(?:after|with) the [\w-]+(?: [\w-]+)? (?:fix|rework|refactor|rewrite)\b"
        r"|\bnow\b[^.;]{0,60}\binstead of\b|\bwhat \w+ does now\b",
        re.IGNORECASE),
    "a dated re-run log": re.compile(
        r"\bre-?(?:run|measured)\b[^.;|]{0,40}\b(?:on|in) (?:20\d\d-\d\d-\d\d|a later|an earlier)"
        r"|\b20\d\d-\d\d-\d\d,? (?:after|before|with) the\b",
        re.IGNORECASE),
}


def narration(text: str) -> list[tuple[int, str, str]]:
    """``(line, kind, excerpt)`` of every line of ``text`` that narrates the development."""
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        for kind, pattern in NARRATION.items():
            match = pattern.search(line)
            if match:
                start = max(0, match.start() - 30)
                found.append((number, kind, line[start:match.end() + 30].strip()))
    return found


def _notebook_markdown(path: Path) -> str:
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")


def user_facing_pages() -> dict[str, str]:
    """Every page a user reads: README, docs/ and the notebooks' markdown (rendered in the site).

    ``CHANGES.md`` is left out: a changelog is history by design.
    """
    pages = {"README.md": (REPO_ROOT / "README.md").read_text(encoding="utf-8")}
    for page in sorted((REPO_ROOT / "docs").rglob("*.md")):
        pages[page.relative_to(REPO_ROOT).as_posix()] = page.read_text(encoding="utf-8")
    for notebook in sorted((REPO_ROOT / "notebooks").glob("*.ipynb")):
        pages[notebook.relative_to(REPO_ROOT).as_posix()] = _notebook_markdown(notebook)
    return pages


@pytest.mark.parametrize("page", sorted(user_facing_pages()))
def test_page_describes_the_product_not_its_development(page):
    hits = narration(user_facing_pages()[page])
    assert not hits, f"{page} narrates the development (history goes in commit messages):\n" + \
        "\n".join(f"  line {n}: {kind}: ...{excerpt}..." for n, kind, excerpt in hits)


def test_readme_is_a_front_door():
    lines = (REPO_ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, (
        f"README.md has {len(lines)} lines (budget {README_MAX_LINES}): move details to docs/")


@pytest.mark.parametrize("text", [
    "measured in the fifth session of the day",
    "re-run in a later session: 478 km²/s",
    "load average 17-19 (busy: other sessions' jobs)",
    "Issue 13's bar asks for 0.8 of the model alone",
    "as the issue sets it",
    "x1.55 faster (bar 1.5x: met)",
    "0.85 (bar ≥ 0.9: not reached)",
    "peak RSS 1.31 GiB (bar < 2)",
    "a tiled reader was tried and not kept",
    "the previous run of the same command",
    "1.62 GiB before this change",
    "the reader now copies one row instead of two",
    "2026-11-22, after the autotune rework",
    "re-run on 2026-11-23: 525 km²/s",
    "with the thread-count fix: grouped 525 km²/s",
])
def test_narration_is_found(text):
    assert narration(text)


@pytest.mark.parametrize("text", [
    "All Earth Engine calls go through one Earth Engine session.",
    "`gee_export/ee/session.py` (`EESession`) retries 429s",
    "A tqdm progress bar counts patches; a colour bar gives the probability.",
    "Each quick-look has a scale bar: 1 km.",
    "An interrupted run resumes; checkpoint strips an earlier run left are reused.",
    "Known issues are listed on the tracker.",
    "| inference | 0.91 | 2026-11-23 | `python benchmarks/bench_inference.py` |",
    "the band order is kept, not sorted",
    "use `--overwrite` instead of deleting the asset",
])
def test_ordinary_prose_is_not_flagged(text):
    assert not narration(text)
