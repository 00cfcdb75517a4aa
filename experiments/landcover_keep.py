"""Keep the coarse product's impervious class in a fine map: the product's cells, minus green.

A coarse product's impervious class is a statement about cells (NLCD's developed low, medium
and high intensity: at least 20 % impervious surface in a 30 m cell), not pixels, so a 1 m map
that copies it calls every lawn and tree in a developed cell impervious, and one that learns
the imagery alone may call none of it impervious at all (docs/landcover.md). This rule keeps
the product's impervious class where the fine pixels say nothing against it:

- **where**: the pixels the product calls impervious, and only those;
- **what is removed**: a pixel that is green, with a normalised difference vegetation index
  (NDVI, from the image's red and near-infrared bands) at least the **green cut**, becomes the
  map's most probable other class;
- **the green cut**: half-way between the median NDVI of the pixels the product calls
  vegetation (woodland, grassland, cropland) and the median NDVI of the pixels it calls
  impervious, over the scenes being mapped. It uses the product and the imagery only, never a
  reference, so a user can apply it wherever they have both; a fixed NDVI cut would not
  carry, because NAIP's digital numbers are not reflectances and their NDVI shifts from tile
  to tile;
- **classes the model never learnt**: a pixel the product gives a class that no training
  label has (water, when every training patch is forest) keeps the product's class: a
  network cannot map a class it was never shown, the product can.

:func:`keep_check` scores the rule without any network, on 1 m references with a product
made from them by NLCD's own definition (:func:`experiments.coarse_products.developed_product`):
what it does to the impervious F1 where developed cells mean what they say.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from experiments.coarse_products import developed_product
from experiments.landcover_train import other_class
from experiments.naip import read_naip_tile
from experiments.scoring import binary_scores
from gee_export.contract.bands import LABEL_NODATA
from gee_export.contract.label_schemes import LANDCOVER_CLASSES, SCHEMES
from gee_export.core.errors import InputDataError

IMPERVIOUS = LANDCOVER_CLASSES.index("impervious")
#: the product's classes whose pixels give the green side of the cut
VEGETATION = tuple(LANDCOVER_CLASSES.index(c) for c in ("cropland", "woodland", "grassland"))
#: the red and near-infrared bands of a four-band NAIP image (R, G, B, NIR)
RED, NIR = 0, 3
#: NLCD's developed low-intensity floor: a cell with this share of impervious pixels or more
#: is impervious in an NLCD-defined product
DEVELOPED_SHARE = 0.2
#: NLCD's cell in 1 m pixels
NLCD_CELL = 30


def ndvi(image: np.ndarray) -> np.ndarray:
    """NDVI of a ``(bands, H, W)`` NAIP image (R, G, B, NIR); 0 where both bands are 0."""
    red, nir = image[RED].astype(np.float64), image[NIR].astype(np.float64)
    total = red + nir
    return np.divide(nir - red, total, out=np.zeros_like(total), where=total != 0)


def green_cut(greenness: Sequence[np.ndarray], products: Sequence[np.ndarray]) -> float | None:
    """The NDVI half-way between the product's vegetation and its impervious pixels (medians).

    Pooled over the scenes; None when the product calls no pixel impervious or none
    vegetation (nothing to keep, or nothing to tell green by).
    """
    veg = np.concatenate([g[np.isin(p, VEGETATION)] for g, p in
                          zip(greenness, products, strict=True)])
    imp = np.concatenate([g[p == IMPERVIOUS] for g, p in zip(greenness, products, strict=True)])
    if not veg.size or not imp.size:
        return None
    return float((np.median(veg) + np.median(imp)) / 2)


def keep_impervious(classes: np.ndarray, other: np.ndarray, product: np.ndarray,
                    greenness: np.ndarray, cut: float | None) -> np.ndarray:
    """A class map with the product's impervious pixels kept unless green.

    Args:
        classes: the map's classes (its argmax).
        other: its most probable class other than impervious, per pixel.
        product: the product's classes on the same pixels.
        greenness: NDVI of the same pixels.
        cut: :func:`green_cut` (None: ``classes`` unchanged).
    """
    if cut is None:
        return classes.copy()
    kept = np.where(greenness >= cut, other, IMPERVIOUS).astype(classes.dtype)
    return np.where(product == IMPERVIOUS, kept, classes).astype(classes.dtype)


def keep_unlearnt(classes: np.ndarray, product: np.ndarray, learnt: Iterable[int]
                  ) -> np.ndarray:
    """``classes`` with the product's class wherever that class is not in ``learnt``.

    Nodata in the product (``LABEL_NODATA``) is not a class: those pixels keep the map's.
    """
    unlearnt = ~np.isin(product, [*learnt, LABEL_NODATA])
    return np.where(unlearnt, product, classes).astype(classes.dtype)


def keep_decision(probs: Sequence[np.ndarray], images: Sequence[np.ndarray],
                  products: Sequence[np.ndarray], learnt: Iterable[int]) -> list[np.ndarray]:
    """The rule on each scene's probabilities (``(K, H, W)``), one green cut for all.

    ``images`` are the scenes' NAIP bands as read (any scale: NDVI is a ratio); ``learnt``
    the classes the model's training labels hold (:func:`keep_unlearnt`). The product's
    impervious pixels are decided by :func:`keep_impervious` whether or not the model learnt
    the class.
    """
    learnt = list(learnt)
    greenness = [ndvi(x) for x in images]
    cut = green_cut(greenness, products)
    out = []
    for p, g, product in zip(probs, greenness, products, strict=True):
        classes = keep_unlearnt(p.argmax(0).astype(np.uint8), product, learnt)
        out.append(keep_impervious(classes, other_class(p, IMPERVIOUS), product, g, cut))
    return out


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
