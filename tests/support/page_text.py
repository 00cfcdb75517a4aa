"""Reading a docs page's prose and generated blocks, for the tests of quoted figures.

A generated block lies between ``<!-- figures: SOURCE -->`` and ``<!-- end figures -->``
(:func:`inference.assess.figures.page_block`); the prose around it may quote only the
decimals the block prints or the test derives from the source JSON (:func:`unmatched`).
"""

from __future__ import annotations

import json
import re

from inference.assess.figures import page_block
from tests.support import REPO_ROOT

#: a decimal number as prose writes it (``0.957``, ``86.3``), not part of a word, version or
#: longer number
DECIMAL = re.compile(r"(?<![\w.])\d+\.\d+(?![\w.])")


def page(name: str) -> str:
    """The text of ``docs/<name>``."""
    return (REPO_ROOT / "docs" / name).read_text(encoding="utf-8")


def source_json(path: str) -> dict:
    """A committed JSON, ``path`` relative to the repository."""
    return json.loads((REPO_ROOT / path).read_text(encoding="utf-8"))


def prose(text: str, start: str, end: str) -> str:
    """The text between two markers, without fenced blocks and inline code."""
    i = text.index(start) + len(start)
    part = text[i:text.index(end, i)]
    part = re.sub(r"```.*?```", " ", part, flags=re.S)
    return re.sub(r"`[^`]*`", " ", part)


def block(text: str, source: str) -> str:
    """The generated block of ``source`` in a page's ``text``."""
    start, end = page_block(text, source)
    return text[start:end]


def unmatched(text: str, allowed: str | set[str]) -> list[str]:
    """Decimals of ``text`` that are neither in the block text nor in the derived set."""
    if isinstance(allowed, str):
        allowed = set(DECIMAL.findall(allowed))
    return sorted({n for n in DECIMAL.findall(text) if n not in allowed})
