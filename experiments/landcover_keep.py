"""Keep the coarse product's impervious class in a fine map, on the experiment's scenes.

The rule (the product's impervious pixels stay impervious unless green, and the product's
classes no training label has are kept) is the library's, :mod:`inference.predict.keep.rule`, the
same functions ``isamap-predict --postprocess keep`` applies strip by strip; this module
applies them to the experiment's NAIP scenes, with one green cut over all the scenes mapped.

:func:`keep_check` scores the rule without any network, on 1 m references with a product
made from them by NLCD's own definition (:func:`experiments.coarse_products.developed_product`):
what it does to the impervious F1 where developed cells mean what they say.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from contract.bands import LABEL_NODATA
from contract.label_schemes import SCHEMES
from core.errors import InputDataError
from experiments.coarse_products import developed_product
from experiments.naip import read_naip_tile
from experiments.scoring import binary_scores
from inference.predict.keep import rule as keep
from inference.predict.keep.rule import IMPERVIOUS, VEGETATION, green_cut, keep_classes

__all__ = ["IMPERVIOUS", "VEGETATION", "green_cut", "keep_check", "keep_decision", "ndvi"]

#: the red and near-infrared bands of a four-band NAIP image (R, G, B, NIR)
RED, NIR = 0, 3
#: NLCD's developed low-intensity floor: a cell with this share of impervious pixels or more
#: is impervious in an NLCD-defined product
DEVELOPED_SHARE = 0.2
#: NLCD's cell in 1 m pixels
NLCD_CELL = 30


def ndvi(image: np.ndarray) -> np.ndarray:
    """NDVI of a ``(bands, H, W)`` NAIP image (R, G, B, NIR); 0 where both bands are 0."""
    return keep.ndvi(image[RED], image[NIR])


def keep_decision(probs: Sequence[np.ndarray], images: Sequence[np.ndarray],
                  products: Sequence[np.ndarray], learnt: Iterable[int], window: int = 0
                  ) -> list[np.ndarray]:
    """The rule on each scene's probabilities (``(K, H, W)``), one green cut for all.

    With a ``window``, the other pixels take the product's class shares per window of the
    scene, anchored at its origin (:mod:`inference.predict.keep.shares`).

    ``images`` are the scenes' NAIP bands as read (any scale: NDVI is a ratio); ``learnt``
    the classes the model's training labels hold
    (:func:`inference.predict.keep.rule.keep_unlearnt`).
    The product's impervious pixels are decided by
    :func:`inference.predict.keep.rule.keep_impervious` whether or not the model learnt the class.
    """
    learnt = list(learnt)
    greenness = [ndvi(x) for x in images]
    cut = green_cut(greenness, products)
    return [keep_classes(p, product, g, cut, learnt, window=window)
            for p, g, product in zip(probs, greenness, products, strict=True)]


def _scores(mapped: np.ndarray, truth: np.ndarray) -> dict:
    s = binary_scores(mapped.astype(np.int64), truth.astype(np.int64))
    return {"f1": s.f1, "precision": s.precision, "recall": s.recall}


def keep_check(naip_dir: str | Path) -> dict:
    """The rule on each GeoBench tile, against the NLCD-defined product made from its truth.

    Per tile: impervious pixels, the product's impervious F1 / precision / recall at 1 m,
    the same after the rule (its impervious pixels are those of the product that are not
    green: no network), and the cut; ``pooled`` sums the tiles' pixels.
    """
    paths = sorted(Path(naip_dir).glob("id_*.hdf5"))
    if not paths:
        raise InputDataError(f"no id_*.hdf5 NAIP tiles in {naip_dir}; pass --naip-dir")
    tiles, pooled = {}, {"truth": [], "product": [], "kept": []}
    for path in paths:
        bands, codes = read_naip_tile(path)
        classes = SCHEMES["chesapeake"].apply(codes)
        ok = classes != LABEL_NODATA
        product = developed_product(classes, NLCD_CELL, DEVELOPED_SHARE)
        g = ndvi(bands)
        cut = green_cut([g[ok]], [product[ok]])
        truth = classes[ok] == IMPERVIOUS
        is_product = product[ok] == IMPERVIOUS
        kept = is_product & (g[ok] < cut) if cut is not None else is_product
        tiles[path.stem] = {"impervious_pixels": int(truth.sum()),
                            "product_impervious_pixels": int(is_product.sum()),
                            "green_cut": cut, "product": _scores(is_product, truth),
                            "kept": _scores(kept, truth)}
        for k, v in (("truth", truth), ("product", is_product), ("kept", kept)):
            pooled[k].append(v)
    t, p, k = (np.concatenate(pooled[x]) for x in ("truth", "product", "kept"))
    return {"cell": NLCD_CELL, "developed_share": DEVELOPED_SHARE, "tiles": tiles,
            "pooled": {"impervious_pixels": int(t.sum()), "product": _scores(p, t),
                       "kept": _scores(k, t)}}
