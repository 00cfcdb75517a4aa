"""What a Colab user meets first: the line under each notebook's title and the install cell.

The badge opens the notebook itself in Colab, and only when the repository's address is known;
otherwise the line says how to open the file (a badge could only open Colab's start page). The
install cell, one source for the three notebooks (``tools/notebook_install.py``), picks the
newest uploaded wheel by version, and stops in one line, with no traceback, when it finds
nothing to install or pip fails: checked in a real Jupyter kernel (nbclient), where isamap is
made unimportable for the cell (``sys.modules["gee_export"] = None``).
"""

from __future__ import annotations

import re
import sys

import nbformat
import pytest

from tests.support import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "tools"))
import notebooks as notebook_tool

NOTEBOOKS = REPO_ROOT / "notebooks"
ORDER = notebook_tool.ORDER
INSTALL = notebook_tool.INSTALL_CELL.read_text()
DIRECT = re.compile(r"\]\(https://colab\.research\.google\.com/github/[\w.-]+/[\w.-]+/blob/main/"
                    r"notebooks/(?P<name>[\w.-]+\.ipynb)\)")


def _title(name: str) -> str:
    return nbformat.read(NOTEBOOKS / name, as_version=4).cells[0].source


@pytest.mark.parametrize("name", ORDER)
def test_the_line_under_the_title_opens_this_notebook_or_says_how(name):
    title = _title(name)
    direct = DIRECT.search(title)
    if direct:  # an address was known when the badge was stamped
        assert direct.group("name") == name and notebook_tool.BADGE_MARK in title
    else:
        assert "colab.research.google.com" not in title, "a badge to Colab's start page"
        (line,) = [ln for ln in title.splitlines() if ln.startswith(notebook_tool.STEPS_MARK)]
        assert f"notebooks/{name}" in line and "Upload notebook" in line


def test_a_known_address_stamps_a_badge_into_the_notebook_and_replaces_the_steps():
    nb = nbformat.read(NOTEBOOKS / ORDER[1], as_version=4)
    notebook_tool.stamp_badge(nb, ORDER[1], None)
    notebook_tool.stamp_badge(nb, ORDER[1], "someone/isamap")
    title = nb.cells[0].source
    assert DIRECT.search(title).group("name") == ORDER[1]
    assert "/github/someone/isamap/blob/main/notebooks/02_train.ipynb" in title
    assert notebook_tool.STEPS_MARK not in title and title.count(notebook_tool.BADGE_MARK) == 1
    notebook_tool.stamp_badge(nb, ORDER[1], None)  # and back: no badge left
    assert notebook_tool.BADGE_MARK not in nb.cells[0].source
    assert nb.cells[0].source.startswith("# 02 ")
    assert notebook_tool.github_repo("git@github.com:someone/isamap.git") == "someone/isamap"


@pytest.mark.parametrize("name", ORDER)
def test_each_install_cell_is_the_one_source(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    (cell,) = [c for c in nb.cells if c.cell_type == "code" and "def isamap_source" in c.source]
    assert cell.source == INSTALL.rstrip("\n"), "run: python tools/notebooks.py --stamp-only"


def test_the_install_cell_picks_the_newest_wheel_by_version(tmp_path, monkeypatch, capsys):
    for version in ("0.9.0", "0.10.0", "0.10.0rc1", "0.2.0"):
        (tmp_path / f"isamap-{version}-py3-none-any.whl").write_bytes(b"")
    (tmp_path / "isamap-latest.whl").write_bytes(b"")  # no version: never picked
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ISAMAP_SOURCE", raising=False)
    namespace: dict = {}
    exec(compile(INSTALL, "install cell", "exec"), namespace)  # isamap is installed here
    assert capsys.readouterr().out == "isamap is installed: nothing to do\n"
    assert namespace["isamap_source"]() == str(tmp_path / "isamap-0.10.0-py3-none-any.whl")
    monkeypatch.setenv("ISAMAP_SOURCE", "git+https://example.org/isamap.git")
    assert namespace["isamap_source"]() == "git+https://example.org/isamap.git"


@pytest.mark.slow
def test_nothing_to_install_and_a_failed_pip_stop_in_one_line_in_a_kernel(tmp_path, monkeypatch):
    from nbclient import NotebookClient

    monkeypatch.delenv("ISAMAP_SOURCE", raising=False)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    missing = tmp_path / "isamap-9.9.9-py3-none-any.whl"
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell('import sys\nsys.modules["gee_export"] = None  # not installed'),
        nbformat.v4.new_code_cell(INSTALL),
        nbformat.v4.new_code_cell(f'import os\nos.environ["ISAMAP_SOURCE"] = "{missing}"'),
        nbformat.v4.new_code_cell(INSTALL),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    NotebookClient(nb, timeout=120, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    for cell, expected in ((nb.cells[1], "no wheel or clone of it was found"),
                           (nb.cells[3], "pip could not install")):
        errors = [o for o in cell.outputs if o.output_type == "error"]
        assert len(errors) == 1, cell.outputs
        (line,) = errors[0].traceback  # one line, no traceback
        assert line.startswith("InstallStopped: ") and expected in line, line
        assert "run this cell again" in line and "\n" not in line
        text = "".join(o.get("text", "") for o in cell.outputs)
        assert "Traceback" not in text
