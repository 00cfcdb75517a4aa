"""The refined Lee filter one pixel at a time: the reference the vectorised filter is tested by.

:func:`refined_lee_generic` runs :func:`gee_export.local.refined_lee.refined_lee`'s algorithm
through ``scipy.ndimage.generic_filter``, one Python call per pixel, on the same tables; the
tests check the vectorised filter against it pixel for pixel and ``benchmarks/bench_speckle.py``
times it as the baseline.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from gee_export.local.refined_lee import _GRADIENTS, _HALF_WINDOWS, _R, _SIDES, _SUB_OFFSETS


def _refined_lee_pixel(values: np.ndarray) -> float:
    """The refined Lee for one 7x7 window (row-major 49 values): the reference per pixel."""
    win = values.reshape(7, 7)
    subs = [win[3 + dy - 1:3 + dy + 2, 3 + dx - 1:3 + dx + 2] for dy, dx in _SUB_OFFSETS]
    means = [s.mean() for s in subs]
    grads = [abs(sum(means[i] for i in g[:3]) - sum(means[i] for i in g[3:])) for g in _GRADIENTS]
    d = int(np.argmax(grads))
    sa, sb = _SIDES[d]
    side_b = abs(means[sb] - means[4]) < abs(means[sa] - means[4])
    rows = _HALF_WINDOWS[2 * d + int(side_b)]
    pix = np.concatenate([win[3 + r, 3 + lo:3 + hi + 1] for r, span in zip(_R, rows, strict=True)
                          if span is not None for lo, hi in [span]])
    cv2 = sorted((s.var() / m**2) if m != 0 else 0.0 for s, m in zip(subs, means, strict=True))
    sigma_v = float(np.mean(cv2[:5]))
    mean, var = pix.mean(), pix.var()
    var_x = (var - mean * mean * sigma_v) / (1.0 + sigma_v)
    b = min(max(var_x / var, 0.0), 1.0) if var > 0 else 0.0
    return float(mean + b * (win[3, 3] - mean))


def refined_lee_generic(img: np.ndarray) -> np.ndarray:
    """Straightforward ``scipy.ndimage.generic_filter`` refined Lee: reference and baseline.

    Same algorithm as :func:`refined_lee`, one Python call per pixel; used by the tests to check
    the vectorised filter and by ``benchmarks/bench_speckle.py`` as the speed baseline. No NaN
    handling: pass finite data.
    """
    return ndimage.generic_filter(img.astype(np.float64), _refined_lee_pixel, size=7,
                                  mode="reflect").astype(np.float32)
