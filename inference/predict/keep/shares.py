"""Give each window of a fine map the coarse product's class shares (prior matching).

A coarse product is often wrong about which pixels of a cell hold a class and much less wrong
about how much of a neighbourhood does: NLCD's 30 m cells put a field's edge on the cell
lattice, not where the field ends, but a few cells together hold about the right share of
field. A network trained on the product learns where the classes lie in the imagery but
drifts in how much of each it maps on ground it never saw. This rule takes the shares from
the product and the placement from the network:

- the map is cut into square **windows** of ``window`` output pixels, anchored at the
  raster's origin (the last row and column of windows may be smaller);
- in each window, the **target shares** are the product's class shares over the window's
  free pixels (the pixels the product says something about and no other rule decides);
- each class's probability is multiplied by one weight per window, the same for every pixel
  of the window, and the pixel's probabilities are renormalised; the weights are those under
  which the window's mean probability of every class equals its target share (the prior
  adjustment of Saerens, Latinne and Decaestecker 2002, with the product's shares as the
  new priors), found by the fixed-point iteration ``w_k <- w_k * share_k / mean_k`` from
  ``w_k = 1`` for every class the window's product holds and ``0`` for the others;
- a class the product does not name in a window is never mapped there; a window where the
  product names one class becomes that class; pixels that are not free keep the model's
  probabilities;
- **fixed** classes keep the model's own probability on every pixel: the shares are the
  product's proportions among the other classes, and they share out the rest of each
  pixel's probability. The keep rule fixes the impervious class, so that new construction
  outside the product's developed cells stays the model's call, not the product's.

Each window's weights depend on its own pixels only, and the iteration stops per window
(when every mean is within :data:`TOLERANCE` of its share, or after :data:`MAX_ITERATIONS`),
so the rule gives the same pixels on a whole raster as on any split of it into strips of
whole window rows. Pure array functions; the keep rule composes them
(:func:`inference.predict.keep.rule.keep_probabilities`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: a window's iteration stops when every class's mean probability is this close to its share
TOLERANCE = 1e-4
#: and after this many iterations in any case
MAX_ITERATIONS = 200
#: probabilities are raised to this floor first, so a class the network all but rules out
#: in a window can still take the share the product gives it
FLOOR = 1e-6


def _blocks(a: np.ndarray, window: int, fill: float = 0) -> np.ndarray:
    """``(..., H, W)`` padded with ``fill`` to whole windows as ``(ny, nx, ..., window**2)``."""
    *lead, h, w = a.shape
    ny, nx = -(-h // window), -(-w // window)
    pad = [(0, 0)] * len(lead) + [(0, ny * window - h), (0, nx * window - w)]
    a = np.pad(a, pad, constant_values=fill)
    a = a.reshape(*lead, ny, window, nx, window)
    n = len(lead)
    order = (n, n + 2, *range(n), n + 1, n + 3)
    return a.transpose(order).reshape(ny, nx, *lead, window * window)


def _unblock(b: np.ndarray, h: int, w: int, window: int) -> np.ndarray:
    """The inverse of :func:`_blocks` (the padding dropped)."""
    ny, nx, *lead, _ = b.shape
    n = len(lead)
    a = b.reshape(ny, nx, *lead, window, window)
    order = (*range(2, 2 + n), 0, n + 2, 1, n + 3)
    return a.transpose(order).reshape(*lead, ny * window, nx * window)[..., :h, :w]


def window_shares(product: np.ndarray, free: np.ndarray, classes: int, window: int,
                  fixed: Sequence[int] = ()) -> np.ndarray:
    """Each window's product class shares over its free pixels: ``(ny, nx, classes)``.

    The shares are among the classes that are not ``fixed`` (those get 0). A window without
    free pixels of such classes has all-zero shares.
    """
    counted = np.ones(classes, bool)
    counted[list(fixed)] = False
    codes = np.where(free, product, classes).astype(np.int64)
    blocks = _blocks(codes, window)  # padding is 0: masked by the free blocks below
    fb = _blocks(free, window)
    onehot = (blocks[..., None, :] == np.arange(classes)[:, None]) & fb[..., None, :]
    counts = onehot.sum(-1).astype(np.float64) * counted
    total = counts.sum(-1, keepdims=True)
    return np.divide(counts, total, out=np.zeros_like(counts), where=total > 0)


def match_shares(probs: np.ndarray, product: np.ndarray, free: np.ndarray, window: int,
                 fixed: Sequence[int] = ()) -> np.ndarray:
    """``(K, H, W)`` probabilities whose window means follow the product's shares.

    Args:
        probs: the model's probabilities (any float dtype; not changed).
        product: the product's classes on the same pixels (indices of the model's classes).
        free: the pixels the rule adjusts (and whose product classes give the shares).
        window: the window side in pixels (at least 1).
        fixed: classes whose probabilities stay the model's; the window means of the others
            are the product's shares among them times the window's mean probability left
            to them.

    Returns:
        float32 probabilities: adjusted on the free pixels, the model's elsewhere (and in a
        window whose free pixels the product gives only fixed classes).

    One row of windows at a time, so the float64 work arrays hold ``window`` rows of the
    input, not all of them (a predictor strip is hundreds of rows of a wide map).
    """
    if window < 1:
        raise ValueError(f"window must be at least 1 pixel, got {window}")
    out = np.array(probs, dtype=np.float32, copy=True)
    for y in range(0, probs.shape[1], window):
        rows = slice(y, y + window)
        if free[rows].any():
            adjusted = _match_row(probs[:, rows], product[rows], free[rows], window, fixed)
            band = out[:, rows]
            band[:, free[rows]] = adjusted[:, free[rows]]
    return out


def _match_row(probs: np.ndarray, product: np.ndarray, free: np.ndarray, window: int,
               fixed: Sequence[int]) -> np.ndarray:
    """:func:`match_shares` on one row of windows (float32, every pixel adjusted)."""
    k, h, w = probs.shape
    moving = np.ones(k, bool)
    moving[list(fixed)] = False
    shares = window_shares(product, free, k, window, fixed)  # (1, nx, K), 0 on fixed
    p = np.maximum(probs.astype(np.float64), FLOOR)
    p /= p.sum(0, keepdims=True)
    p = _blocks(p, window, 1.0)  # (1, nx, K, n)
    fb = _blocks(free, window)  # (1, nx, n)
    n_free = fb.sum(-1)
    left = p[..., moving, :].sum(-2)  # (1, nx, n): what the fixed classes leave
    active = (n_free > 0) & (shares.sum(-1) > 0)
    # the moving classes' target means: their shares of what the fixed classes leave
    room = (left * fb).sum(-1) / np.maximum(n_free, 1)
    target_all = shares * room[..., None]
    # a window with nothing to share keeps weights of 1 (its pixels are not changed)
    weights = np.where(active[..., None], (shares > 0) | ~moving, True).astype(np.float64)
    for _ in range(MAX_ITERATIONS):
        if not active.any():
            break
        q = _weighted(p[active], weights[active], left[active], moving)
        mean = (q * fb[active][:, None, :]).sum(-1) / n_free[active][:, None]
        target = target_all[active]
        done = np.abs(mean - target)[:, moving].max(-1) < TOLERANCE
        ratio = np.divide(target, mean, out=np.ones_like(mean), where=mean > 0)
        ratio[:, ~moving] = 1.0
        step = np.where(done[:, None], weights[active], weights[active] * ratio)
        weights[active] = step
        still = active.copy()
        still[active] = ~done
        active = still
    q = _weighted(p, weights, left, moving)
    return _unblock(q, h, w, window).astype(np.float32)


def _weighted(p: np.ndarray, weights: np.ndarray, left: np.ndarray, moving: np.ndarray
              ) -> np.ndarray:
    """``(..., K, n)`` probabilities: fixed classes as given, moving ones weighted.

    The moving classes are scaled to sum to what the fixed ones ``left``.
    """
    q = p * weights[..., None]
    mass = q[..., moving, :].sum(-2, keepdims=True)
    scale = np.divide(left[..., None, :], mass, out=np.zeros_like(mass), where=mass > 0)
    return np.where(moving[:, None], q * scale, p)
