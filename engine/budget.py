"""What ``auto``'s measuring budget pays for first (:mod:`engine.autotune`).

Kept apart from the measuring itself, which is long: the order in which candidates are
checked, so a budget too small to check them all checks the ones that exist for speed.
docs/performance.md ("Timing", "Training") states the rules the budget follows.
"""

from __future__ import annotations

from engine.execution import Setting


def check_order(cands: list[Setting]) -> list[Setting]:
    """The order of the agreement checks.

    fp32 NCHW (the reference) first, then the others from the end of the candidates' list
    (reduced precision and channels-last first: speed is what they exist for), so a budget
    too small to check them all checks those first.
    """
    return sorted(cands, key=lambda c: (c != Setting(), -cands.index(c)))
