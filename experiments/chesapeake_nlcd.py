"""Reader of the Chesapeake NLCD patches: 1 m NAIP, 1 m land cover and 30 m NLCD on one grid.

The patches (``../shared/data/chesapeake_nlcd``, the CVPR 2019 Chesapeake Land Cover release)
are ``.npz`` files with one float32 array ``arr_0`` of shape ``(1, 29, H, W)`` (or ``(29, H,
W)``) on a local 1 m grid. Channels used here: 0-3 NAIP R, G, B, NIR (8-bit DN), 8 the 1 m land
cover (Chesapeake codes 1-6), 9 the NLCD class codes (30 m cells up-sampled). Both labels are
mapped to the seven land-cover classes with the tables of
:mod:`contract.label_schemes` (``chesapeake``, ``nlcd``).

The 1 m land cover calls crops, lawns and pasture alike "low vegetation" (grassland); NLCD's
cultivated crops are therefore **merged into grassland** (:func:`merge_into_fine_classes`),
so that the coarse product and the reference speak of the same classes.

Files are read with ``allow_pickle=False`` and checked before use: the shape, the NAIP value
range and that every code of both labels is one their table lists (a file in another layout
would otherwise be mapped silently to nodata).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from contract.label_schemes import (
    IGNORED,
    LANDCOVER_CLASSES,
    NLCD_IMPERVIOUS,
    SCHEMES,
)
from core.errors import InputDataError

CHESAPEAKE_FOLDER = "chesapeake_nlcd"  # the sample set's folder under the data root
CHANNELS = 29
NAIP_CHANNELS = (0, 1, 2, 3)  # R, G, B, NIR of the 2014 NAIP
LANDCOVER_CHANNEL = 8
NLCD_CHANNEL = 9
BANDS = ("Red", "Green", "Blue", "NearInfrared")
#: classes of the coarse product that the 1 m reference cannot tell apart from another one
FINE_MERGE = {"cropland": "grassland"}
#: the soft label of NLCD code ``c`` in :func:`composition_labels` is ``SOFT_BASE + c``
SOFT_BASE = 200


@dataclass(frozen=True)
class ChesapeakePatch:
    """One patch: NAIP reflectance-like values, the 1 m truth and the coarse NLCD product.

    Attributes:
        id: the file's stem.
        image: (4, H, W) float32, NAIP DN / 255.
        truth: (H, W) uint8 seven-class 1 m land cover (255 = no data).
        product: (H, W) uint8 seven-class NLCD, cropland merged into grassland.
        codes: (H, W) the NLCD class codes themselves.
    """

    id: str
    image: np.ndarray
    truth: np.ndarray
    product: np.ndarray
    codes: np.ndarray


def merge_into_fine_classes(classes: np.ndarray) -> np.ndarray:
    """``classes`` with the product-only classes of :data:`FINE_MERGE` renamed."""
    out = classes.copy()
    for a, b in FINE_MERGE.items():
        out[classes == LANDCOVER_CLASSES.index(a)] = LANDCOVER_CLASSES.index(b)
    return out


def _codes(values: np.ndarray, scheme: str, what: str, path: Path) -> np.ndarray:
    """Integer codes of a float channel, refusing fractions and codes the table does not list."""
    if not np.isfinite(values).all() or (values != np.round(values)).any():
        raise InputDataError(f"{path}: channel {what} holds non-integer values; is this a "
                             "chesapeake_nlcd patch?")
    codes = values.astype(np.int64)
    known = {c.code for c in SCHEMES[scheme].codes}
    unknown = sorted(set(np.unique(codes).tolist()) - known)
    if unknown:
        raise InputDataError(f"{path}: {what} codes {unknown[:5]} are not in the {scheme} "
                             "legend; is this a chesapeake_nlcd patch?")
    return codes


def read_patch(path: str | Path) -> ChesapeakePatch:
    """One ``.npz`` patch, checked and mapped to the seven classes."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            names = list(npz.files)
            arr = npz["arr_0"] if "arr_0" in names else None
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise InputDataError(f"cannot read {path} as a .npz patch: {exc}") from None
    if arr is None:
        raise InputDataError(f"{path} holds {names}, not the array arr_0 of a "
                             "chesapeake_nlcd patch")
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 3 or arr.shape[0] != CHANNELS or min(arr.shape[1:]) < 8:
        raise InputDataError(f"{path}: array of shape {arr.shape}; a chesapeake_nlcd patch is "
                             f"(1, {CHANNELS}, H, W)")
    naip = arr[list(NAIP_CHANNELS)].astype(np.float32)
    if not np.isfinite(naip).all() or naip.min() < 0 or naip.max() > 255 or naip.max() < 2:
        raise InputDataError(f"{path}: NAIP channels span {naip.min():g}..{naip.max():g}, not "
                             "8-bit DN (0..255)")
    truth = SCHEMES["chesapeake"].apply(_codes(arr[LANDCOVER_CHANNEL], "chesapeake",
                                               "land-cover", path))
    codes = _codes(arr[NLCD_CHANNEL], "nlcd", "NLCD", path)
    nlcd = SCHEMES["nlcd"].apply(codes)
    return ChesapeakePatch(path.stem, naip / 255.0, truth, merge_into_fine_classes(nlcd),
                           codes.astype(np.uint8))


def composition_labels(patch: ChesapeakePatch) -> np.ndarray:
    """The product's classes with each developed code as a soft label (``SOFT_BASE + code``).

    For label super-resolution (``training.losses.composition``): a developed cell is not one
    class but a share of impervious surface (:data:`NLCD_IMPERVIOUS`), the rest left to the
    model. :func:`compositions` gives the expected fractions of these values.
    """
    out = patch.product.copy()
    for code in NLCD_IMPERVIOUS:
        out[patch.codes == code] = SOFT_BASE + code
    return out


#: names of :func:`product_channels`, in order
PRODUCT_BANDS = (*(f"NLCD {c}" for c in LANDCOVER_CLASSES), "NLCD impervious fraction")


def product_channels(patch: ChesapeakePatch) -> np.ndarray:
    """NLCD as input channels: its seven classes one-hot, then the developed cells' fraction.

    (8, H, W) float32 on a unit scale. The fraction channel is ``NLCD_IMPERVIOUS`` (the
    ``nlcd`` scheme's table in :mod:`contract.label_schemes`) of each developed
    code (0 elsewhere): the one-hot classes call open space grassland, the fraction
    tells the network that the cell is developed and how densely. A network that reads these
    refines the product instead of learning it again from the imagery.
    """
    onehot = (patch.product[None] == np.arange(len(LANDCOVER_CLASSES))[:, None, None])
    fraction = np.zeros(patch.codes.shape, np.float32)
    for code, share in NLCD_IMPERVIOUS.items():
        fraction[patch.codes == code] = share
    return np.concatenate([onehot.astype(np.float32), fraction[None]])


def compositions() -> dict[int, dict[str, float]]:
    """``{soft label: {"impervious": fraction}}`` of :func:`composition_labels`."""
    return {SOFT_BASE + code: {"impervious": f} for code, f in NLCD_IMPERVIOUS.items()}


def patch_files(folder: str | Path) -> list[Path]:
    """The ``.npz`` patches of ``folder``, sorted; refuses a folder without any."""
    files = sorted(Path(folder).glob("*.npz"))
    if not files:
        raise InputDataError(f"no .npz patches in {folder}; give a folder of chesapeake_nlcd "
                             "patches")
    return files


def read_patches(folder: str | Path) -> list[ChesapeakePatch]:
    """Every patch of ``folder`` (sorted by name)."""
    return [read_patch(p) for p in patch_files(folder)]


def valid_pixels(patch: ChesapeakePatch) -> np.ndarray:
    """Pixels where both the truth and the product say something (the scored pixels)."""
    return (patch.truth != IGNORED) & (patch.product != IGNORED)
