"""What an ``isamap-fit --out`` already holds: another fit's model is refused, never replaced.

A fit records the digest of its request (its files, by where they are, and every option) in
``fit.json`` (``request``). The identical command fits again into its own folder (with
``--backend``, reusing the stack made there); a folder whose ``model.pt`` another request made
(other points, stacks or options, or a run that recorded none, such as ``isamap-train``'s) is
refused before any point is read.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

from core.digest import json_digest
from core.errors import ConfigError
from core.storage import files
from inference.fit.request import FitJob


def fit_request(job: FitJob) -> str:
    """A digest of what makes the fit: its files (by where they are) and every option.

    Paths are made absolute (the same files named from another folder are the same fit) and
    only their digest is recorded (``fit.json``'s ``request``): nothing private is written.
    """
    def where(path: str | None) -> str | None:
        return path if path is None or files.is_gcs(path) else os.path.abspath(path)

    record = {**asdict(job), "out": None, "progress": None, "project": None,
              "points": [where(p) for p in job.points],
              "inputs": [where(p) for p in job.inputs], "points_from": where(job.points_from),
              "encoder": where(job.encoder), "scenes": where(job.scenes),
              "norm": job.normalised_by, "base": where(job.base)}
    if job.points_from is None:  # points from files: no draw, the digest a files' fit had
        record = {k: v for k, v in record.items() if k not in ("points_from", "n")}
    if job.base is None:  # a classifier's fit: the digest it had before fine-tunes were made
        record = {k: v for k, v in record.items() if k not in ("base", "steps", "lr")}
    return "sha256:" + json_digest(record)


def check_out(job: FitJob) -> str:
    """Refuse an ``--out`` holding another fit's model; returns this fit's request digest.

    The identical command fits again into its own folder (with ``--backend``, reusing the
    stack made there); a ``model.pt`` of other points, stacks or options (or of a run that
    recorded none) would be replaced without a word.

    Raises:
        ConfigError: ``OUT/model.pt`` exists and ``OUT/fit.json`` records another request.
    """
    request = fit_request(job)
    out = Path(job.out)
    if not (out / "model.pt").exists():
        return request
    try:
        theirs = json.loads((out / "fit.json").read_text()).get("request")
    except (OSError, ValueError, AttributeError):
        theirs = None
    if theirs != request:
        raise ConfigError(f"--out {job.out} holds another fit's model (model.pt of other "
                          "points, stacks or options); give another --out, or delete that "
                          "folder first")
    return request
