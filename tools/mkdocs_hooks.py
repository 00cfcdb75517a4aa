r"""MkDocs hooks of the docs site (``mkdocs.yml``): notebooks, command reference, repository files.

The Colab notebooks live in ``notebooks/`` beside the code, not under ``docs/``; they are added
to the site here so that mkdocs-jupyter renders them (this hook runs before that plugin). The
command reference (``cli.md``) is generated from the commands' own parsers
(``tools/cli_reference.py``). Pages
may name files of the repository outside ``docs/`` (``../benchmarks/bench_inference.py``), which
read well on a code host but are no page of the site: a link to an existing one becomes its
path in code, and a link to a missing one is left for MkDocs' strict check to fail on. A link
to a notebook (``../notebooks/02_train.ipynb``, right in the clone and on a code host) becomes
a link to its page of the site.

A ``|`` inside code in a table cell is written ``\|`` so that a code host's table keeps it in its
cell; Python-Markdown keeps the pipes of code spans in their cell by itself and would print the
backslash, so the table rows lose it here.
"""

from __future__ import annotations

import posixpath
import re
import sys
from pathlib import Path

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
sys.path.insert(0, str(REPO / "tools"))
import cli_reference  # noqa: E402  (tools/ is no package)

_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"(?<!!)\[([^\]\n]+)\]\(([^)\s#]+)(#[^)\s]*)?\)")


@event_priority(100)
def on_files(files: Files, config) -> Files:
    for notebook in sorted(NOTEBOOKS.glob("*.ipynb")):
        files.append(File(f"notebooks/{notebook.name}", src_dir=str(REPO),
                          dest_dir=config["site_dir"],
                          use_directory_urls=config["use_directory_urls"]))
    files.append(File.generated(config, "cli.md", content=cli_reference.markdown()))
    return files


def _outside_docs(page_uri: str, target: str, docs_dir: Path) -> Path | None:
    """The repository file a relative link points at, when it lies outside ``docs/``."""
    if "://" in target or target.startswith(("/", "mailto:")):
        return None
    joined = posixpath.normpath(posixpath.join(posixpath.dirname(page_uri), target))
    if not joined.startswith("../"):
        return None
    path = (docs_dir / joined).resolve()
    return path if path.exists() and REPO in path.parents else None


def on_page_markdown(markdown: str, page, config, files) -> str:
    docs_dir = Path(config["docs_dir"])

    def replace(match: re.Match[str]) -> str:
        path = _outside_docs(page.file.src_uri, match.group(2), docs_dir)
        if path is None:
            return match.group(0)
        if path.parent == NOTEBOOKS and path.suffix == ".ipynb":  # a page of the site (on_files)
            target = posixpath.relpath(f"notebooks/{path.name}",
                                       posixpath.dirname(page.file.src_uri) or ".")
            return f"[{match.group(1)}]({target}{match.group(3) or ''})"
        text = match.group(1).strip("`")
        rel = path.relative_to(REPO).as_posix()
        return f"`{rel}`" if text == rel or text.endswith(Path(rel).name) else \
            f"{match.group(1)} (`{rel}`)"

    return _unescape_table_pipes(_LINK.sub(replace, markdown))


def _unescape_table_pipes(markdown: str) -> str:
    r"""``\|`` inside the code spans of table rows becomes ``|``."""
    lines = markdown.split("\n")
    for i, line in enumerate(lines):
        if line.lstrip().startswith("|") and "\\|" in line:
            lines[i] = _CODE.sub(lambda m: m.group(0).replace("\\|", "|"), line)
    return "\n".join(lines)
