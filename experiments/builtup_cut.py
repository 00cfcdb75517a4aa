"""A cut arm of the leave-one-tile-out comparison: where the map's own probabilities promise most.

An arm named ``BASE+ef1`` (``unet-s2+ef1``) trains nothing. A calibrated probability ``p``
says a pixel is built with chance ``p``, so a map cut at ``t`` expects as true positives the
sum of ``p`` over the pixels at or above ``t``, as false positives the sum of ``1 - p`` there
and as misses the sum of ``p`` below it. Its expected F1 is ``2 TP / (2 TP + FP + FN)``: the
plug-in estimate of the F1 a cut will reach (Nan, Chai, Lee & Chieu 2012, "Optimizing
F-measures: a tale of two approaches"; for calibrated scores the best cut lies at half the F1
it reaches, Lipton, Elkan & Narayanaswamy 2014), which falls below one half where built ground
is hard to find. The arm cuts each held-out map at the ``t`` of :data:`CUTS` whose expected F1
is largest, over every pixel the map covers in the held-out area: it reads the map's
probabilities, never a label (the labels only score the result). Every other arm cuts at one
half. The functions here are the rule alone, on arrays;
:func:`experiments.builtup_stack.cut_seed` applies it to a fold's maps.
"""

from __future__ import annotations

import numpy as np

SUFFIX = "+ef1"
#: the cuts searched (0.01 to 0.99)
CUTS = np.round(np.arange(1, 100) / 100, 2)


def expected_f1_cut(prob: np.ndarray) -> tuple[float, float]:
    """The cut of :data:`CUTS` with the largest expected F1 of ``prob``, and that F1.

    ``prob``: calibrated probabilities in [0, 1] (finite). With ``k`` pixels at or above the
    cut and expected true positives ``TP`` among them, ``FP = k - TP`` and ``FN = P - TP``
    (``P`` the sum of every probability), so the expected F1 is ``2 TP / (k + P)``. Ties go to
    the lowest cut; with no probability above 0 the cut is one half and the F1 0.
    """
    p = np.sort(np.asarray(prob, dtype=np.float64).ravel())[::-1]
    above = np.concatenate([[0.0], np.cumsum(p)])
    total = float(above[-1])
    if total <= 0:
        return 0.5, 0.0
    counts = np.searchsorted(-p, -CUTS, side="right")  # pixels at or above each cut
    f1 = 2 * above[counts] / (counts + total)
    best = int(np.argmax(f1))
    return float(CUTS[best]), float(f1[best])
