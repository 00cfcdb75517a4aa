"""A docs page's generated figures: the block its marker names, rewritten from a JSON of figures.

A page that quotes figures holds them between ``<!-- figures: SOURCE -->`` and
``<!-- end figures -->``; :func:`rewrite_block` renders ``SOURCE`` into that block, so the page
cannot quote figures its source no longer gives (docs/accuracy.md from the demo's figures,
:mod:`inference.demo.figures`; the evidence pages from the experiments').
"""

from __future__ import annotations

import json
from collections.abc import Callable
from os import PathLike
from pathlib import Path

from core.storage import atomic_write

BLOCK_START = "<!-- figures: {source} -->"
BLOCK_END = "<!-- end figures -->"


def page_block(page: str, source: str) -> tuple[int, int]:
    """Where the generated block of ``source``'s figures lies in ``page`` (start, end)."""
    start_mark = BLOCK_START.format(source=source)
    start = page.find(start_mark)
    end = page.find(BLOCK_END, max(start, 0))  # the block's own end: a page has several
    if start < 0 or end < start:
        raise ValueError(f"the page has no '{start_mark}' ... '{BLOCK_END}' block")
    return start + len(start_mark), end


def rewrite_block(source: str | PathLike[str], page_path: str | PathLike[str],
                  render: Callable[[dict], str], root: str | PathLike[str] = ".") -> bool:
    """Rewrite ``page_path``'s block of ``source``'s figures with ``render(json)``.

    ``source`` is named in the page's marker as given and read relative to ``root``, as is the
    page. The one writer of every page's generated figures (accuracy, built-up, land cover);
    the write is atomic. True when the page changed.
    """
    page_file = Path(root) / page_path
    page = page_file.read_text(encoding="utf-8")
    start, end = page_block(page, str(source))
    data = json.loads((Path(root) / source).read_text(encoding="utf-8"))
    text = page[:start] + render(data) + page[end:]
    if text != page:
        atomic_write(page_file, lambda handle: handle.write(text.encode()))
    return text != page
