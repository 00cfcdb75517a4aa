"""Sentinel-1 sigma0 in linear power and in dB: the one conversion, and the import's use of it.

:func:`linear_to_db` is the one place power becomes dB: the local export's monthly mean
(:mod:`gee_export.local.sentinel1`) and ``isamap-import-patches --s1-unit linear``
(:mod:`gee_export.imported.patches`), which converts the bands whose unit is dB
(``contract.bands.find_band(b).unit == "dB"``: VV, VH and their earlier months) while it
writes the patches, before the value checks judge them. The option is refused where the
values already are dB, and linear values imported without it are told to give it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal, get_args

import numpy as np

from contract.band_values import LINEAR_MEDIAN_MAX, finite_values, s1_unit_evidence
from contract.bands import find_band
from core.errors import InputDataError

S1Unit = Literal["dB", "linear"]
#: ``--s1-unit`` of ``isamap-import-patches``: the unit the images' VV/VH are stored in
S1_UNITS: tuple[S1Unit, ...] = get_args(S1Unit)
#: the factor of linear power stored as integers (an int16/uint16 export of sigma0 x 10000)
POWER_INT_SCALE = 10000.0


def linear_to_db(linear: np.ndarray) -> np.ndarray:
    """10*log10(power); power <= 0 has no dB value and becomes NaN."""
    linear = np.asarray(linear, dtype=np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(linear > 0, 10.0 * np.log10(linear), np.nan).astype(np.float32)


def db_band(name: str) -> bool:
    """Whether band ``name`` is sigma0 in dB (VV, VH, ``VV_m1``...), what ``--s1-unit`` names."""
    spec = find_band(name)
    return spec is not None and spec.unit == "dB"


def to_db(image: np.ndarray, bands: Sequence[str], unit: S1Unit) -> np.ndarray:
    """``image`` (bands, h, w), its dB bands converted from linear power if ``unit`` is linear.

    In place; a power <= 0 or not finite becomes NaN, the patches' nodata.
    """
    if unit == "linear":
        for i, name in enumerate(bands):
            if db_band(name):
                image[i] = _patch_db(image[i])
    return image


def _patch_db(power: np.ndarray) -> np.ndarray:
    """Power in dB as a patch holds it: a power <= 0 or not finite is NaN, the nodata."""
    db = linear_to_db(power)
    return np.where(np.isfinite(db), db, np.nan)


def check_s1_unit(samples: Mapping[str, np.ndarray], unit: S1Unit) -> None:
    """Refuse ``--s1-unit linear`` where the images' dB bands, as read, already hold dB.

    Args:
        samples: band name -> a sample of its values as stored (before :func:`to_db`).
        unit: the ``--s1-unit`` given.

    Raises:
        InputDataError: no band in dB to convert, or bands whose median is negative (dB).
    """
    if unit != "linear":
        return
    if scaled := scaled_power_advice(samples):
        raise InputDataError(f"--s1-unit linear reads the values as linear power, but {scaled}")
    if not any(db_band(b) for b in samples):
        raise InputDataError(f"--s1-unit linear names the Sentinel-1 bands (VV, VH), and the "
                             f"images' bands ({', '.join(samples)}) hold none; drop "
                             "--s1-unit")
    shown = {b: e for b, v in samples.items() if db_band(b) and
             (e := s1_unit_evidence(v)).unit == "dB"}
    if shown:
        said = ", ".join(f"{b} ({e.describe()})" for b, e in shown.items())
        raise InputDataError(f"--s1-unit linear converts linear power to dB, but {said} "
                             "already hold dB (a negative median): drop --s1-unit linear and "
                             "import the images again")


def samples_in_db(samples: Mapping[str, np.ndarray], unit: S1Unit) -> dict[str, np.ndarray]:
    """The samples as the patches will hold them (:func:`to_db` applied band by band)."""
    if unit != "linear":
        return dict(samples)
    return {b: _patch_db(v) if db_band(b) else v for b, v in samples.items()}


def scaled_power_advice(samples: Mapping[str, np.ndarray]) -> str | None:
    """The fix for dB bands whose samples are linear power x 10000, None when none are.

    Non-negative integers whose median is above any linear power's (1) and which, divided by
    :data:`POWER_INT_SCALE`, look like linear power: what an integer export of sigma0 stores.
    ``--scale`` multiplies reflectance only, so the files are to be divided.
    """
    found = {}
    for band, values in samples.items():
        finite = finite_values(values)
        if not db_band(band) or finite.size < 16 or (finite < 0).any() \
                or not np.array_equal(finite, np.round(finite)):
            continue
        median = float(np.median(finite))
        if median > LINEAR_MEDIAN_MAX and \
                s1_unit_evidence(finite / POWER_INT_SCALE).unit == "linear":
            found[band] = median
    if not found:
        return None
    shown = ", ".join(f"{b} (median {m:.4g})" for b, m in found.items())
    return (f"{shown} look like sigma0 in linear power x {POWER_INT_SCALE:g} (non-negative "
            f"integers, an integer export): divide them by {POWER_INT_SCALE:g} in the files, "
            "then import them with --s1-unit linear (--scale multiplies reflectance only)")


def linear_advice(samples: Mapping[str, np.ndarray]) -> str | None:
    """The fix for dB bands whose samples are linear power (x 10000 too), None when none are."""
    if scaled := scaled_power_advice(samples):
        return scaled
    linear = [b for b, v in samples.items() if db_band(b) and
              s1_unit_evidence(v).unit == "linear"]
    if not linear:
        return None
    return (f"{', '.join(linear)} look like sigma0 in linear power (never negative, median "
            "below 1): give --s1-unit linear to convert them to dB (10*log10 of the power) "
            "as they are imported")
