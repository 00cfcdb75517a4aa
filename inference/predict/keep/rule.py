"""Keep a coarse product's impervious class in a fine land-cover map: its cells, minus green.

A coarse product's impervious class is a statement about cells (NLCD's developed low, medium
and high intensity: at least 20 % impervious surface in a 30 m cell), not pixels, so a fine
map that copies it calls every lawn and tree in a developed cell impervious, and one that
learns the imagery alone may call none of it impervious at all (docs/landcover.md). The rule
keeps the product's impervious class where the fine pixels say nothing against it:

- **where**: the pixels the product calls impervious, and only those;
- **what is removed**: a pixel that is green, with a normalised difference vegetation index
  (NDVI, from the image's red and near-infrared bands) at least the **green cut**, becomes the
  map's most probable other class;
- **the green cut**: half-way between the median NDVI of the pixels the product calls
  vegetation (woodland, grassland, cropland) and the median NDVI of the pixels it calls
  impervious, over the scenes being mapped. It uses the product and the imagery only, never a
  reference, so a user can apply it wherever they have both; a fixed NDVI cut would not
  carry, because digital numbers (NAIP's) are not reflectances and their NDVI shifts from
  tile to tile;
- **classes the model never learnt**: a pixel the product gives a class that no training
  label has (water, when every training patch is forest) keeps the product's class: a
  network cannot map a class it was never shown, the product can;
- **the product's shares** (with a ``window``): every other pixel the product names takes
  the class of the model's probabilities adjusted, per square window of the map, to the
  product's class shares in that window (:mod:`inference.predict.keep.shares`): the product says
  how much of each class a neighbourhood holds, the model where it lies. A window the
  product gives one class takes that class, but for impervious: the model's impervious
  probability is left as it is, so impervious ground the product lacks stays the model's.

Pure array functions: the classes are indices of the model's classes, the product already
mapped to them (``LABEL_NODATA`` where it says nothing). The experiment applies them to
whole scenes (``experiments.landcover_keep``), the predictor to each output strip
(:mod:`inference.predict.keep.inputs` reads the product and the bands; the cut is computed
once per map, before the first tile).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from contract.bands import LABEL_NODATA
from contract.label_schemes import LANDCOVER_CLASSES
from core.errors import ConfigError
from core.shareable import shareable_path
from inference.predict.keep.shares import match_shares

#: the rule's name, as the map's tags and records give it
RULE = "product's impervious unless green"
IMPERVIOUS = LANDCOVER_CLASSES.index("impervious")
#: the product's classes whose pixels give the green side of the cut
VEGETATION_CLASSES: tuple[str, ...] = ("cropland", "woodland", "grassland")
VEGETATION = tuple(LANDCOVER_CLASSES.index(c) for c in VEGETATION_CLASSES)
#: the names a red and a near-infrared band go by: the band registry's Sentinel-2 bands (and
#: their zero-padded names), then the names of four-band aerial imagery (NAIP: R, G, B, N)
RED_NAMES: tuple[str, ...] = ("B4", "B04", "R", "Red", "red")
NIR_NAMES: tuple[str, ...] = ("B8", "B08", "N", "NIR", "NearInfrared", "nir")


@dataclass(frozen=True)
class KeepRule:
    """What a map's keep rule reads, and what it settled before the first tile.

    Attributes:
        product: the coarse land-cover raster (any grid and CRS; read nearest onto the map's).
            Empty: the input stack's own ``product`` band, for a model that reads the
            product as input (``hrnet-coarse``); :func:`~inference.predict.keep.inputs.settle`
            then names the stack, the band and the table the model records.
        table: the label scheme its codes are mapped with
            (:func:`contract.label_schemes.get_landcover_scheme`: ``nlcd``, ...).
        band: the product's band in ``product`` (1-based; 1 for a product raster).
        green_cut: the NDVI cut (None: the product calls no sampled pixel impervious or
            none vegetation, and the impervious part changes nothing).
        red / nir: the model's band names the NDVI is computed from.
        learnt: the model's classes its training labels hold (None: the model file does
            not say, and only the impervious part applies).
        window: the side in output pixels of the windows whose class shares are the
            product's (:mod:`inference.predict.keep.shares`); 0: the model's own argmax.
        proof: what the rule proved on the map's sample before the first tile (the shares
            of the map its product covers and decides, :mod:`inference.predict.step_proof`).

    The fields after ``table`` are settled once per map before the first tile
    (:func:`inference.predict.keep.inputs.settle`), from the model and a sample of the stack.
    """

    product: str = ""
    table: str = ""
    band: int = 1
    green_cut: float | None = None
    red: str = ""
    nir: str = ""
    learnt: tuple[str, ...] | None = None
    window: int = 0
    proof: dict[str, float] | None = None

    def __post_init__(self) -> None:
        if self.window < 0:
            raise ConfigError(f"--keep-window is a side in output pixels (0: off), got "
                              f"{self.window}")

    @property
    def settled(self) -> bool:
        """Whether the model's red and near-infrared bands (and so the cut) are settled."""
        return bool(self.red and self.nir)

    def describe(self, base: str | None = None) -> str:
        """The rule as the map's ``postprocess`` tag records it (JSON, cut to 6 digits).

        The product is named as a shared file may name it
        (:func:`core.shareable.shareable_path`: relative to ``base``, the map's
        folder, when under it, else its file name; ``gs://`` addresses as they are).
        """
        cut = None if self.green_cut is None else float(f"{self.green_cut:.6g}")
        band = {"band": self.band} if self.band != 1 else {}
        window = {"window": self.window} if self.window else {}
        return json.dumps({"rule": RULE, "product": shareable_path(self.product, base),
                           **band, **window, "table": self.table,
                           "green_cut": cut, "red": self.red, "nir": self.nir,
                           "learnt": None if self.learnt is None else list(self.learnt),
                           **({"proof": self.proof} if self.proof else {})})


def red_nir(bands: Sequence[str]) -> tuple[str, str]:
    """The red and near-infrared band among a model's ``bands`` (the first of each name list).

    Raises:
        ConfigError: either is missing.
    """
    red = next((n for n in RED_NAMES if n in bands), None)
    nir = next((n for n in NIR_NAMES if n in bands), None)
    if red is None or nir is None:
        raise ConfigError(f"--postprocess keep tells green pixels by their NDVI, from a red "
                          f"({'/'.join(RED_NAMES)}) and a near-infrared "
                          f"({'/'.join(NIR_NAMES)}) band, and this model takes "
                          f"{', '.join(bands)}; drop --postprocess keep")
    return red, nir


def check_model(class_scheme: str, class_names: Sequence[str], bands: Sequence[str]) -> None:
    """Refuse a model the rule is not made for.

    It needs a land-cover model with an impervious class, and a red and a near-infrared band
    (:func:`red_nir`). Raises ConfigError otherwise.
    """
    if not class_scheme.startswith("landcover") or "impervious" not in class_names:
        raise ConfigError(f"--postprocess keep keeps a land-cover product's impervious class, "
                          f"and this model maps {', '.join(class_names)} (scheme "
                          f"{class_scheme!r}), no land-cover model with an impervious class; "
                          "drop --postprocess keep")
    red_nir(bands)


def ndvi(red: np.ndarray, nir: np.ndarray) -> np.ndarray:
    """``(nir - red) / (nir + red)`` in float64; 0 where both bands are 0 (no signal)."""
    red, nir = np.asarray(red, np.float64), np.asarray(nir, np.float64)
    total = red + nir
    return np.divide(nir - red, total, out=np.zeros_like(total), where=total != 0)


def green_cut(greenness: Sequence[np.ndarray], products: Sequence[np.ndarray]) -> float | None:
    """The NDVI half-way between the product's vegetation and its impervious pixels (medians).

    Pooled over the scenes; None when the product calls no pixel impervious or none
    vegetation (nothing to keep, or nothing to tell green by). NaN NDVI (nodata) is left out.
    """
    pairs = list(zip(greenness, products, strict=True))
    veg = np.concatenate([g[np.isin(p, list(VEGETATION))] for g, p in pairs])
    imp = np.concatenate([g[p == IMPERVIOUS] for g, p in pairs])
    veg, imp = veg[~np.isnan(veg)], imp[~np.isnan(imp)]
    if not veg.size or not imp.size:
        return None
    return float((np.median(veg) + np.median(imp)) / 2)


def other_class(probs: np.ndarray, k: int) -> np.ndarray:
    """The most probable class other than ``k`` per pixel of ``(K, H, W)`` probabilities."""
    other = np.delete(probs, k, axis=0).argmax(0)
    return np.where(other >= k, other + 1, other).astype(np.uint8)


def keep_impervious(classes: np.ndarray, other: np.ndarray, product: np.ndarray,
                    greenness: np.ndarray, cut: float | None,
                    impervious: int = IMPERVIOUS) -> np.ndarray:
    """A class map with the product's impervious pixels kept unless green.

    Args:
        classes: the map's classes (its argmax).
        other: its most probable class other than impervious, per pixel.
        product: the product's classes on the same pixels.
        greenness: NDVI of the same pixels.
        cut: :func:`green_cut` (None: ``classes`` unchanged).
        impervious: the impervious class.
    """
    if cut is None:
        return classes.copy()
    kept = np.where(greenness >= cut, other, impervious).astype(classes.dtype)
    return np.where(product == impervious, kept, classes).astype(classes.dtype)


def keep_unlearnt(classes: np.ndarray, product: np.ndarray, learnt: Iterable[int]
                  ) -> np.ndarray:
    """``classes`` with the product's class wherever that class is not in ``learnt``.

    Nodata in the product (``LABEL_NODATA``) is not a class: those pixels keep the map's.
    """
    unlearnt = ~np.isin(product, [*learnt, LABEL_NODATA])
    return np.where(unlearnt, product, classes).astype(classes.dtype)


def keep_classes(probs: np.ndarray, product: np.ndarray, greenness: np.ndarray,
                 cut: float | None, learnt: Iterable[int] | None,
                 impervious: int = IMPERVIOUS, window: int = 0) -> np.ndarray:
    """The rule's class map (uint8) of one scene's ``(K, H, W)`` probabilities.

    The argmax (of the probabilities given the product's shares per ``window`` px window
    first, :func:`shares`; ``window`` 0: the model's own), with the product's class where
    the model never learnt it (:func:`keep_unlearnt`; skipped when ``learnt`` is None), then
    the product's impervious pixels decided by :func:`keep_impervious` whether or not the
    model learnt the class.
    """
    learnt = None if learnt is None else list(learnt)
    probs = shares(probs, product, cut, learnt, impervious, window)
    classes = probs.argmax(0).astype(np.uint8)
    if learnt is not None:
        classes = keep_unlearnt(classes, product, learnt)
    return keep_impervious(classes, other_class(probs, impervious), product, greenness, cut,
                           impervious)


def shares(probs: np.ndarray, product: np.ndarray, cut: float | None,
           learnt: Iterable[int] | None, impervious: int = IMPERVIOUS, window: int = 0
           ) -> np.ndarray:
    """``probs`` given the product's class shares per ``window`` px window (0: unchanged).

    The pixels the rule decides (:func:`decided`) and those where the product says nothing
    are left out of the shares and keep the model's probabilities
    (:func:`inference.predict.keep.shares.match_shares`). The impervious probability stays the
    model's everywhere (a fixed class): impervious ground the product does not have (built
    since its year, or too small for its cells) is the model's call, never erased by shares.
    """
    if not window:
        return probs
    free = (product != LABEL_NODATA) & ~decided(product, cut, learnt, impervious)
    return match_shares(probs, product, free, window, fixed=(impervious,))


def decided(product: np.ndarray, cut: float | None, learnt: Iterable[int] | None,
            impervious: int = IMPERVIOUS) -> np.ndarray:
    """The pixels :func:`keep_classes` decides instead of the model (a boolean mask)."""
    mask = (product == impervious) if cut is not None else np.zeros(product.shape, bool)
    if learnt is not None:
        mask |= ~np.isin(product, [*learnt, LABEL_NODATA])
    return mask


def keep_probabilities(probs: np.ndarray, product: np.ndarray, greenness: np.ndarray,
                       cut: float | None, learnt: Iterable[int] | None,
                       impervious: int = IMPERVIOUS, window: int = 0) -> np.ndarray:
    """``(K, H, W)`` probabilities whose argmax is :func:`keep_classes`' map, in place.

    With a ``window``, the probabilities are first those given the product's shares
    (:func:`shares`). Where the rule decides a pixel (:func:`decided`) its probabilities
    become the decision's: 1 for the class the rule chose, 0 for the others; elsewhere they
    stay the model's (or the shares'). So the class map and every class's probability agree:
    a pixel the rule keeps impervious has an impervious probability of 1, one it takes out of
    the class 0, and the probability-weighted impervious area is the class map's on the
    decided pixels.
    """
    learnt = None if learnt is None else list(learnt)
    if window:
        probs[...] = shares(probs, product, cut, learnt, impervious, window)
    classes = keep_classes(probs, product, greenness, cut, learnt, impervious)
    mask = decided(product, cut, learnt, impervious)
    if mask.any():
        probs[:, mask] = 0.0
        rows, cols = np.nonzero(mask)
        probs[classes[mask].astype(np.int64), rows, cols] = 1.0
    return probs
