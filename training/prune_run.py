"""A pruning run's folder: the run it holds, and whether its work is done.

``isamap-prune`` fine-tunes in a trainer run folder (:mod:`training.run.trainer`) and writes the
compact model and its summary beside it (:mod:`training.pruning`). Run again into that folder,
it goes on with the run found there, made at the same rate from the same model file
(:func:`check_earlier_run`); a finished run whose compact model and summary were written is
kept as it is (:func:`finished_summary`), as a finished ``isamap-train`` run is.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import torch

from core.errors import ConfigError
from training.modelfile import read_model_file
from training.run.checkpoint import read_checkpoint
from training.run.folder import BEST_MODEL, CHECKPOINT, RUN_FILES

PRUNED_MODEL = "pruned.pt"
SUMMARY = "pruning.json"


def run_files(out: str | Path) -> list[Path]:
    """The files a pruning run writes in ``out`` (its fine-tuning run's, and its own)."""
    return [Path(out) / name for name in (*RUN_FILES, PRUNED_MODEL, SUMMARY)]


def check_earlier_run(out: Path, source: Mapping[str, object]) -> bool:
    """Refuse an ``out`` whose pruning run removed another rate or started from another file.

    The fine-tuning resumes or reuses the run it finds there, which records its rate and its
    model file's id (runs of earlier versions: the rate alone).

    Returns:
        Whether the run there is finished, as its checkpoint says (False: none there).

    Raises:
        ConfigError: the run there was made otherwise, or is no pruning run (every pruning
            run records its rate in its checkpoint and model from its start).
    """
    earlier, finished = _recorded_pruning(out)
    if earlier is None:
        if (out / CHECKPOINT).is_file() or (out / BEST_MODEL).is_file():
            raise ConfigError(f"--out {out} holds a run that is not a pruning run (an "
                              "isamap-train run?): pruning would go on with it and prune "
                              "nothing; give another --out")
        return finished
    if earlier.get("rate") != source["rate"]:
        raise ConfigError(f"--out {out} holds a pruning run at --rate {earlier.get('rate')}; "
                          f"give --rate {earlier.get('rate')} to go on with it, or another --out "
                          f"for --rate {source['rate']}")
    if earlier.get("model_id") not in (None, source["model_id"]):
        raise ConfigError(f"--out {out} holds a pruning run of another --model file (the "
                          "file's content differs); give another --out for this one")
    return finished


def _recorded_pruning(out: Path) -> tuple[dict | None, bool]:
    """What the pruning run in ``out`` records of itself, and whether it finished.

    The record is its checkpoint's (else its model's); the checkpoint is read once for both.
    """
    finished = False
    if (out / CHECKPOINT).is_file():
        ck = read_checkpoint(out / CHECKPOINT, torch.device("cpu"))
        meta, finished = ck.get("meta") or {}, bool(ck.get("finished"))
    elif (out / BEST_MODEL).is_file():
        meta = read_model_file(out / BEST_MODEL, flag="model file")[0].to_dict()
    else:
        return None, False
    found = (meta.get("extra") or {}).get("pruning")
    return (dict(found) if isinstance(found, Mapping) else None), finished


def finished_summary(out: Path, finished: bool, rate: float, flops_size: int) -> dict | None:
    """The summary of the finished run in ``out``, where nothing is left to write; else None.

    The run is ``finished`` (:func:`check_earlier_run`), and its compact model and summary,
    at this ``rate`` and FLOP input side, are there: run again, it redoes nothing and
    rewrites nothing. A run stopped before its compact model or summary was written (or that
    wrote them for another ``--flops-size``) gets None: they are made again from its model.
    """
    pruned, summary = out / PRUNED_MODEL, out / SUMMARY
    if not (finished and pruned.is_file() and summary.is_file()):
        return None
    try:
        found = json.loads(summary.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if not isinstance(found, dict) or found.get("rate") != rate or \
            found.get("flops_input") != flops_size:
        return None
    return found
