"""What a score report was made from, recorded in ``report.json`` and told when it changes.

``inputs``: the map (``{"name", "sha256"}``) and every compared product (``{"name",
"source", "sha256"}``), each local file named relative to the output folder, or by file name
(the report is shared), with the SHA-256 of its bytes, so a reader can tell whether the map
they hold is the one scored; a source that is no local file (a ``gs://`` address, an Earth
Engine product or asset id) is recorded as given with ``sha256`` null (nothing was read to
digest). Then each reference file's name with its SHA-256, the design (its folder and
``design_id``) or the strata raster, the reference column and the impervious class asked
for. A score into a folder whose report was made from other inputs replaces it, as the user
asked, and says what differs (a map changed under its name: ``map.<name>: <sha256> there,
<sha256> now``; a product: ``compare.<name>.sha256``): a report is never replaced without a
word. A report of an earlier isamap (the map and products by name alone, no digest) differs
too, and is said to.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from contract.dataset_diff import differences
from core.digest import file_sha256
from core.shareable import shareable_path
from inference.assess.design_file import DesignFile
from inference.assess.products import Comparison

log = logging.getLogger(__name__)


def _named(path: str | os.PathLike[str], out: Path) -> str:
    """A local file relative to ``out`` (or by name), any other source as given."""
    return shareable_path(path, out) if os.path.exists(path) else os.fspath(path)


def report_inputs(map_path: str, references: Sequence[str | Path], out: Path, *,
                  drawn: DesignFile | None, design: str | Path | None,
                  strata_path: str | None, comparisons: Sequence[Comparison],
                  reference_column: str, isa_class: int | None) -> dict[str, Any]:
    """``report.json``'s ``inputs`` (see module docstring); no local path but under ``out``."""
    return {
        "map": {"name": _named(map_path, out), "sha256": _digest(map_path)},
        "references": _references(references, out),
        "design": None if drawn is None or design is None else
        {"folder": _named(design, out), "design_id": drawn.design_id},
        "strata": None if strata_path is None else _named(strata_path, out),
        "compare": [{"name": c.name, "source": _named(c.source, out),
                     "sha256": None if c.on_earth_engine else _digest(c.source)}
                    for c in comparisons],
        "reference_column": reference_column, "isa_class": isa_class}


def _digest(source: str | os.PathLike[str]) -> str | None:
    """The SHA-256 of a local file's bytes; None for any other source (not read here)."""
    return file_sha256(source) if os.path.isfile(source) else None


def _references(paths: Sequence[str | Path], out: Path) -> dict[str, str]:
    """Each reference file's shared name -> its SHA-256 (a name given twice: numbered)."""
    named: dict[str, str] = {}
    for path in paths:
        name = _named(path, out)
        named[name if name not in named else f"{name} ({len(named) + 1})"] = file_sha256(path)
    return named


def tell_replaced(report_path: Path, inputs: dict[str, Any]) -> None:
    """Say when ``report_path`` holds a report made from other ``inputs``, before it is replaced."""
    if not report_path.is_file():
        return
    try:
        old = json.loads(report_path.read_text()).get("inputs")
    except (OSError, ValueError, AttributeError):
        old = None
    if old == inputs:
        return
    what = ("; ".join(differences(_readable(old), _readable(inputs)))
            or "recorded by an earlier isamap") if isinstance(old, dict) else \
        "its inputs are not recorded (an earlier isamap)"
    log.warning("%s holds a report made from other inputs (%s): it is replaced by this one",
                report_path, what)


def _readable(inputs: dict[str, Any]) -> dict[str, Any]:
    """``inputs`` as their differences are told: files by name, as the references are.

    The map as ``{name: sha256}`` (an earlier isamap's bare name: no digest), the products as
    ``{name: {source, sha256}}``, so a line names the file or product that differs
    (``map.map.tif: <sha256> there, <sha256> now``).
    """
    view = dict(inputs)
    shown = view.get("map")
    if isinstance(shown, str):
        view["map"] = {shown: None}
    elif isinstance(shown, dict) and "name" in shown:
        view["map"] = {str(shown["name"]): shown.get("sha256")}
    compare = view.get("compare")
    if isinstance(compare, list) and all(isinstance(c, dict) and "name" in c for c in compare):
        view["compare"] = {str(c["name"]): {k: v for k, v in c.items() if k != "name"}
                           for c in compare}
    return view
