"""The refined Lee speckle filter (Lee 1981; as used by Lee et al. 2009), vectorised.

Per pixel: 3x3 means at the nine sub-window positions of a fixed 7x7 window, the edge direction
(of four) with the largest Lee gradient over those means, of its two 7x7 half-windows the one on
the side whose sub-window resembles the centre, the noise CV^2 from the five most homogeneous
sub-windows, then Lee's MMSE with the half-window's statistics. :func:`refined_lee` computes it
for whole blocks at once (``testing/refined_lee.py`` one pixel at a time: the reference the
tests compare with). The tables are the Earth Engine side's (:mod:`gee_export.ee.speckle`).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from gee_export.local.filter_blocks import DEFAULT_BLOCK, fill_nodata, filter_blocks, keep_nodata

REFINED_LEE_HALO = 3  # fixed 7x7 window

# The nine 3x3 sub-windows of the 7x7 refined-Lee window, centred at (-2|0|2, -2|0|2):
# index k = 3 * (dy // 2 + 1) + (dx // 2 + 1); 4 is the centre.
_SUB_OFFSETS = tuple((dy, dx) for dy in (-2, 0, 2) for dx in (-2, 0, 2))
# Lee (1981) gradient masks over the 3x3 array of sub-window means, one per edge direction
# (vertical, main diagonal, horizontal, anti-diagonal): |sum of the first three - sum of the
# last three|. The same tables as the Earth Engine side (gee_export/ee/speckle.py).
_GRADIENTS = ((2, 5, 8, 0, 3, 6), (1, 2, 5, 3, 6, 7), (0, 1, 2, 6, 7, 8), (0, 1, 3, 5, 7, 8))
# Per direction, the sub-window on each side of the edge: (side A, side B). The centre belongs
# to side B when sub-window B's mean is strictly closer to the centre's mean.
_SIDES = ((5, 3), (2, 6), (1, 7), (0, 8))
# The eight 7x7 half-windows (28 px, centre line included), index 2 * direction + side, as
# per-row inclusive column ranges for row offsets -3..3 (None = row not in the window):
# right, left, upper-right (x >= y), lower-left (x <= y), top, bottom, upper-left
# (x + y <= 0), lower-right (x + y >= 0).
_R = range(-3, 4)
_HALF_WINDOWS: tuple[tuple[tuple[int, int] | None, ...], ...] = (
    tuple((0, 3) for _ in _R),
    tuple((-3, 0) for _ in _R),
    tuple((y, 3) for y in _R),
    tuple((-3, y) for y in _R),
    tuple((-3, 3) if y <= 0 else None for y in _R),
    tuple((-3, 3) if y >= 0 else None for y in _R),
    tuple((-3, -y) for y in _R),
    tuple((-y, 3) for y in _R),
)


def _row_window_sums(prefix: np.ndarray, rows: tuple[tuple[int, int] | None, ...],
                     h: int, w: int) -> np.ndarray:
    """Sum over a 7x7 half-window for every centre, from a row prefix sum of the padded block."""
    total = np.zeros((h, w), dtype=np.float64)
    for r, span in zip(_R, rows, strict=True):
        if span is None:
            continue
        lo, hi = span
        row = prefix[3 + r:3 + r + h]
        total += row[:, 3 + hi + 1:3 + hi + 1 + w] - row[:, 3 + lo:3 + lo + w]
    return total


def _refined_lee_padded(padded: np.ndarray) -> np.ndarray:
    """Refined Lee on a block padded by 3 on every side; returns the block at padded size."""
    a = fill_nodata(padded, 7)
    hp, wp = a.shape
    h, w = hp - 6, wp - 6
    m3 = ndimage.uniform_filter(a, 3, mode="nearest")
    v3 = np.maximum(ndimage.uniform_filter(a * a, 3, mode="nearest") - m3 * m3, 0.0)
    means = [m3[3 + dy:3 + dy + h, 3 + dx:3 + dx + w] for dy, dx in _SUB_OFFSETS]
    # Edge direction: the largest Lee gradient; strict '>' keeps the first maximum on ties,
    # as on Earth Engine. (np.where chains beat stacking + argmax on big blocks.)
    best = None
    direction = np.zeros((h, w), dtype=np.int8)
    for d, g in enumerate(_GRADIENTS):
        grad = np.abs(means[g[0]] + means[g[1]] + means[g[2]]
                      - means[g[3]] - means[g[4]] - means[g[5]])
        if best is None:
            best = grad
        else:
            direction = np.where(grad > best, np.int8(d), direction)
            best = np.maximum(best, grad)
    # Side: B when sub-window B's mean is strictly closer to the centre's than A's.
    centre = means[4]
    window = np.zeros((h, w), dtype=np.int8)
    for d, (sa, sb) in enumerate(_SIDES):
        side_b = np.abs(means[sb] - centre) < np.abs(means[sa] - centre)
        window = np.where(direction == d, (2 * d + side_b).astype(np.int8), window)
    # Noise CV^2: mean of the five most homogeneous of the nine sub-windows, selected with a
    # min/max sorting network (np.sort along a 9-long first axis is several times slower).
    with np.errstate(divide="ignore", invalid="ignore"):
        cv2 = [np.nan_to_num(v3[3 + dy:3 + dy + h, 3 + dx:3 + dx + w] / (m * m), nan=0.0,
                             posinf=0.0)
               for (dy, dx), m in zip(_SUB_OFFSETS, means, strict=True)]
    for step in range(9):
        for i in range(step % 2, 8, 2):
            cv2[i], cv2[i + 1] = np.minimum(cv2[i], cv2[i + 1]), np.maximum(cv2[i], cv2[i + 1])
    sigma_v = (cv2[0] + cv2[1] + cv2[2] + cv2[3] + cv2[4]) / 5.0
    # Mean and variance of the chosen directional half-window (28 pixels).
    zeros = np.zeros((hp, 1))
    prefix = np.concatenate([zeros, np.cumsum(a, axis=1)], axis=1)
    prefix2 = np.concatenate([zeros, np.cumsum(a * a, axis=1)], axis=1)
    d_mean = np.zeros((h, w))
    d_var = np.zeros((h, w))
    for k, rows in enumerate(_HALF_WINDOWS):
        sel = window == k
        if not sel.any():
            continue
        n = sum(hi - lo + 1 for span in rows if span is not None for lo, hi in [span])
        mean = _row_window_sums(prefix, rows, h, w) / n
        var = _row_window_sums(prefix2, rows, h, w) / n - mean * mean
        d_mean = np.where(sel, mean, d_mean)
        d_var = np.where(sel, np.maximum(var, 0.0), d_var)
    var_x = (d_var - d_mean * d_mean * sigma_v) / (1.0 + sigma_v)
    with np.errstate(divide="ignore", invalid="ignore"):
        b = np.clip(np.where(d_var > 0, var_x / d_var, 0.0), 0.0, 1.0)
    out = np.zeros((hp, wp))
    out[3:3 + h, 3:3 + w] = d_mean + b * (a[3:3 + h, 3:3 + w] - d_mean)
    return out


def refined_lee(img: np.ndarray, block: int = DEFAULT_BLOCK) -> np.ndarray:
    """Refined Lee (Lee 1981; as used by Lee et al. 2009): edge-aligned MMSE in a 7x7 window.

    Per pixel: 3x3 means at the nine sub-window positions of the 7x7 window; the edge direction
    (of four) with the largest Lee gradient over those means; of its two 7x7 half-windows
    (28 px, rectangular or triangular) the one on the side whose sub-window resembles the
    centre; the noise CV^2 from the five most homogeneous sub-windows; then Lee's MMSE with the
    half-window's mean and variance. Fully vectorised; only the chosen statistics are kept.
    """
    out = filter_blocks(img, _refined_lee_padded, REFINED_LEE_HALO, block)
    return keep_nodata(img, out)
