"""What ``auto``'s measuring budget pays for first (:mod:`engine.autotune`).

Kept apart from the measuring itself, which is long: the order in which candidates are
checked, so a budget too small to check them all checks the ones that exist for speed, and
which of them the rest of the budget can time.
docs/performance.md ("Timing", "Training") states the rules the budget follows.

May import: ``engine.execution``, ``engine.prior``, torch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

import torch

from engine import prior
from engine.execution import Mode, Setting

log = logging.getLogger(__name__)


def check_order(cands: list[Setting]) -> list[Setting]:
    """The order of the agreement checks.

    fp32 NCHW (the reference) first, then the others from the end of the candidates' list
    (reduced precision and channels-last first: speed is what they exist for), so a budget
    too small to check them all checks those first.
    """
    return sorted(cands, key=lambda c: (c != Setting(), -cands.index(c)))


def within_budget(agreeing: list[Setting], first_call: Mapping[Setting, float],
                   call_seconds: float, mode: Mode, deadline: float,
                   device: torch.device) -> tuple[list[Setting], list[Setting]]:
    """The agreeing candidates the rest of the budget can time, and those it cannot.

    Each candidate still needs one timed call, and in training a warm-up step before it. When
    the budget cannot pay for all of them (a slow step, or a loaded machine), as many as fit
    are timed: in inference the device rule's pick (:func:`engine.prior.preferred`) first,
    then those whose agreement check ran fastest. So the measuring stays near its budget.
    """
    per_candidate = call_seconds * (2 if mode == "training" else 1)
    fits = max(int((deadline - time.perf_counter()) / max(per_candidate, 1e-9)), 0)
    if fits >= len(agreeing):
        return agreeing, []
    cpu_inference = mode == "inference" and device.type == "cpu"  # no rule on a GPU
    ruled = prior.preferred(device, agreeing) if cpu_inference and agreeing else None
    ranked = sorted(agreeing, key=lambda c: (c != ruled, first_call[c]))
    keep = ranked[:fits]
    log.info("autotune: the budget leaves time to time %d of %d candidates (%.3g s a call); "
             "timing the quickest by their agreement check: %s", len(keep), len(agreeing),
             call_seconds, ", ".join(c.label for c in keep))
    return keep, ranked[len(keep):]
