"""Run the three notebooks and store their outputs (``make notebooks``).

The notebooks are checked in with the outputs of their smoke run (``ISAMAP_SMOKE=1``: the
SYNTHETIC demo-sized scene through the local backend, no account, no network), so a reader on
GitHub, in the docs site or in Colab sees the tables and pictures before running anything.
This executes them in order with nbclient in one kernel per notebook, in a temporary working
folder (``ISAMAP_WORK=isamap_work`` inside it, so the printed paths are short and relative),
and writes each back with:

- its pictures as palette PNGs of at most ``MAX_BYTES`` (``tools/docs_images.small_png``), as
  the docs' pictures are;
- no timing metadata, and the working folder's absolute path cut from the printed text;
- its install cell (the code cell that defines ``isamap_source``) as ``tools/notebook_install.py``
  holds it, the one source of the three notebooks' install cells;
- under its title, an "Open in Colab" badge that opens this notebook in Colab when the
  repository's GitHub address is known (``--repo OWNER/NAME``, or ``git remote get-url origin``
  on GitHub); without an address, no badge (it could only open Colab's start page) but the
  steps to open the file from a clone.

Usage: ``python tools/notebooks.py [--repo OWNER/NAME] [--stamp-only] [NOTEBOOK ...]``
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
from docs_images import MAX_BYTES, small_png  # the docs' one PNG shrinker

REPO_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO_ROOT / "notebooks"
ORDER = ("01_export_patches.ipynb", "02_train.ipynb", "03_predict_publish.ipynb")
BADGE_IMAGE = "https://colab.research.google.com/assets/colab-badge.svg"
BADGE_MARK = "colab-badge.svg"
STEPS_MARK = "To open in Colab:"  # the line under the title where no address is known
CELL_TIMEOUT_S = 900
INSTALL_CELL = Path(__file__).resolve().parent / "notebook_install.py"
INSTALL_MARK = "def isamap_source"


def github_repo(remote: str | None) -> str | None:
    """``OWNER/NAME`` of a GitHub remote address (https or ssh), else None."""
    match = re.match(r"^(?:https://github\.com/|git@github\.com:)([\w.-]+/[\w.-]+?)(?:\.git)?/?$",
                     (remote or "").strip())
    return match.group(1) if match else None


def origin_repo() -> str | None:
    """The checkout's GitHub repository, from ``git remote get-url origin`` (None: none)."""
    try:
        done = subprocess.run(["git", "remote", "get-url", "origin"], cwd=REPO_ROOT,
                              capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return github_repo(done.stdout) if done.returncode == 0 else None


def badge_line(name: str, repo: str | None) -> str:
    """The line under notebook ``name``'s title: a badge into Colab when the repository is known.

    Without ``repo`` the line says how to open the file in Colab instead: a badge there could
    only open Colab's start page.
    """
    if repo:
        url = f"https://colab.research.google.com/github/{repo}/blob/main/notebooks/{name}"
        return f"[![Open In Colab]({BADGE_IMAGE})]({url})"
    return (f"{STEPS_MARK} *File → Upload notebook* in Colab and pick `notebooks/{name}` of "
            "your clone, or *File → Open notebook → GitHub* with your repository's address.")


def stamp_badge(nb: nbformat.NotebookNode, name: str, repo: str | None) -> None:
    """Put the badge (or the steps) on the line under the title, replacing an earlier one."""
    title = nb.cells[0]
    if title.cell_type != "markdown" or not title.source.startswith("# "):
        raise SystemExit(f"{name}: the first cell must be the markdown title")
    lines = [ln for ln in title.source.splitlines()
             if BADGE_MARK not in ln and not ln.startswith(STEPS_MARK)]
    while len(lines) > 1 and not lines[1].strip():
        del lines[1]
    title.source = "\n".join([lines[0], "", badge_line(name, repo), "", *lines[1:]])


def stamp_install(nb: nbformat.NotebookNode, name: str) -> None:
    """Make the notebook's install cell the code of ``tools/notebook_install.py``."""
    cells = [c for c in nb.cells if c.cell_type == "code" and INSTALL_MARK in c.source]
    if len(cells) != 1:
        raise SystemExit(f"{name}: {len(cells)} install cells (code defining isamap_source)")
    cells[0].source = INSTALL_CELL.read_text().rstrip("\n")


def stamp(nb: nbformat.NotebookNode, name: str, repo: str | None) -> None:
    """The badge (or the steps) under the title and the install cell."""
    stamp_badge(nb, name, repo)
    stamp_install(nb, name)


def tidy_outputs(nb: nbformat.NotebookNode, work: Path) -> list[int]:
    """Shrink pictures, drop timing metadata, cut ``work``'s absolute path; returns PNG sizes."""
    prefix = re.compile(re.escape(str(work.resolve())) + "/?")
    sizes = []
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        for output in cell.get("outputs", []):
            if "text" in output:
                output["text"] = prefix.sub("", output["text"])
            data = output.get("data", {})
            if "text/plain" in data:
                data["text/plain"] = prefix.sub("", data["text/plain"])
            if "image/png" in data:
                png = base64.b64decode(data["image/png"])
                palette = small_png(io.BytesIO(png))  # <= MAX_BYTES, usually a third
                png = palette if len(palette) < len(png) or len(png) > MAX_BYTES else png
                data["image/png"] = base64.b64encode(png).decode("ascii")
                sizes.append(len(png))
    return sizes


def execute(names: list[str], repo: str | None) -> None:
    from nbclient import NotebookClient

    from core.storage import atomic_write

    with tempfile.TemporaryDirectory(prefix="isamap-notebooks-") as tmp:
        work = Path(tmp)
        os.environ.update(ISAMAP_SMOKE="1", ISAMAP_WORK="isamap_work", OMP_NUM_THREADS="1",
                          PYTHONUNBUFFERED="1",
                          # tqdm.auto's note that the kernel has no ipywidgets (Colab has)
                          PYTHONWARNINGS="ignore:IProgress not found")
        os.environ.pop("EE_PROJECT", None)
        os.environ.pop("MPLBACKEND", None)  # the kernel's inline backend draws the figures
        for name in names:
            path = NOTEBOOKS / name
            nb = nbformat.read(path, as_version=4)
            stamp(nb, name, repo)
            started = time.monotonic()
            NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                           record_timing=False,
                           resources={"metadata": {"path": str(work)}}).execute()
            sizes = tidy_outputs(nb, work)
            text = nbformat.writes(nb) + "\n"
            atomic_write(path, lambda fh, t=text: fh.write(t.encode("utf-8")))
            print(f"{name}: {time.monotonic() - started:.0f} s, {len(sizes)} pictures "
                  f"({', '.join(f'{s // 1000} KB' for s in sizes)}), "
                  f"{len(text.encode()) // 1000} KB")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", default=list(ORDER),
                        help="notebook file names in notebooks/ (default: all three, in order)")
    parser.add_argument("--repo", help="GitHub OWNER/NAME for the Colab badges (default: the "
                        "origin remote when it is on GitHub; none: no badge, the steps instead)")
    parser.add_argument("--stamp-only", action="store_true",
                        help="stamp the badges and the install cells without running the "
                        "notebooks (their stored outputs stay)")
    args = parser.parse_args(argv)
    repo = args.repo or origin_repo()
    names = [Path(n).name for n in args.notebooks]
    if args.stamp_only:
        for name in names:
            nb = nbformat.read(NOTEBOOKS / name, as_version=4)
            stamp(nb, name, repo)
            nbformat.write(nb, NOTEBOOKS / name)
        return 0
    execute(names, repo)
    return 0


if __name__ == "__main__":
    sys.exit(main())
