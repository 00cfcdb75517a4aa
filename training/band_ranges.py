"""What values each band had in the training data, recorded in the model file.

A model only knows the values it was trained on. A stack on another scale (integers of
reflectance x 10000, dB x 100), with its bands in another order, or of another quantity
(linear power where dB was trained) still runs through the network and gives a map that looks
like one. Percentiles of each band's raw values in the training split (``ModelMeta.band_ranges``)
let inference compare an input with the training data before the first tile
(:func:`inference.predict.expected_inputs.check_input`).

A band of class codes (the coarse product's ``product``) has no scale to check and is left
out. The percentiles come from a bounded sample: at most ``max_patches`` patches spread over the
split and ``per_patch`` pixels of each, so a large dataset costs what a small one does.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from contract.bands import is_code_band

PERCENTILES = (1.0, 50.0, 99.0)
"""The recorded percentiles: the range the model saw (1st-99th) and its median."""


def band_ranges(read_image: Callable[[int], np.ndarray], count: int, bands: tuple[str, ...],
                max_patches: int = 64, per_patch: int = 4096) -> dict[str, tuple[float, ...]]:
    """``(p1, p50, p99)`` of each band's finite values over a sample of patches.

    Args:
        read_image: returns patch ``i``'s raw image ``(C, H, W)`` (NaN = nodata), e.g.
            ``lambda i: dataset.read_raw(i)[0]`` of a ``training.data.PatchDataset``.
        count: how many patches there are.
        bands: the band names, in the image's channel order.
        max_patches: at most this many patches are read, evenly spread over ``0..count-1``.
        per_patch: at most this many pixels of each patch (a regular subsample).

    Returns:
        Band name -> percentiles; a band without any finite value, and a band of class
        codes, is left out.
    """
    if count <= 0:
        return {}
    picks = np.unique(np.linspace(0, count - 1, min(count, max_patches)).round().astype(int))
    values: list[list[np.ndarray]] = [[] for _ in bands]
    for i in picks:
        image = np.asarray(read_image(int(i)), dtype=np.float32)
        flat = image.reshape(image.shape[0], -1)
        step = max(1, flat.shape[1] // per_patch)
        for b in range(len(bands)):
            v = flat[b, ::step]
            values[b].append(v[np.isfinite(v)])
    out: dict[str, tuple[float, ...]] = {}
    for name, chunks in zip(bands, values, strict=True):
        v = np.concatenate(chunks) if chunks else np.empty(0, np.float32)
        if v.size and not is_code_band(name):
            out[name] = tuple(round(float(p), 6) for p in np.percentile(v, PERCENTILES))
    return out
