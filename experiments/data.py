"""Where the experiments find the real sample data: one option, one variable, one default.

The experiments read the project's real sample sets (``shared/data`` beside the checkout in
development and CI). A user points them elsewhere with ``--data-root DIR`` or
``$ISAMAP_SHARED_DATA``; the default is found from this file, not the working directory, so
``python -m experiments.<name>`` runs from any folder.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from core.errors import InputDataError

DATA_ROOT_ENV = "ISAMAP_SHARED_DATA"  # the same variable the test suite reads
CHECKOUT = Path(__file__).resolve().parents[1]


def data_root(given: str | os.PathLike | None = None) -> Path:
    """The sample data folder: ``given``, else ``$ISAMAP_SHARED_DATA``, else beside the checkout."""
    root = given or os.environ.get(DATA_ROOT_ENV) or CHECKOUT.parent / "shared" / "data"
    return Path(root)


def sample_folder(name: str, root: str | os.PathLike | None = None) -> Path:
    """The folder of sample set ``name`` under :func:`data_root` (not checked)."""
    return data_root(root) / name


def existing_folder(path: str | os.PathLike, what: str, flag: str) -> Path:
    """``path`` if it is a folder, else one line saying which option or variable to set."""
    folder = Path(path)
    if not folder.is_dir():
        raise InputDataError(
            f"the {what} folder {folder} does not exist; pass {flag} DIR, or --data-root (the "
            f"folder holding the sample sets), or set {DATA_ROOT_ENV}")
    return folder


def add_data_root_argument(parser: argparse.ArgumentParser) -> None:
    """``--data-root``: the folder holding the sample sets."""
    parser.add_argument("--data-root",
                        help=f"the sample data folder (default: ${DATA_ROOT_ENV}, else "
                             "shared/data beside the checkout)")
