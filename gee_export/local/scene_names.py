"""What a scene file's name says: its sensor, its band, its acquisition date.

Product and file names follow the missions' conventions (``S2A_MSIL2A_20170613T101031_...``,
``S1A_IW_GRDH_..._VV.tif``, the pre-2017 ``S2A_OPER_...`` format whose leading date is the
production's); band names come in several spellings (``B02``, ``b8a``, ``CLM``). These are the
pure rules :mod:`gee_export.local.scenes` reads them with; tags and pixels outrank them there.
"""

from __future__ import annotations

import datetime as dt
import re
import warnings
from collections.abc import Iterable, Mapping
from typing import Literal

Sensor = Literal["S1", "S2"]
RASTER_SUFFIXES = (".tif", ".tiff", ".jp2", ".vrt")
S2_L1C_ORDER = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12")
S2_L2A_ORDER = tuple(b for b in S2_L1C_ORDER if b != "B10")
MASK_NAMES = {"CLOUD_MASK": "CLOUD_MASK", "CLM": "CLOUD_MASK", "CLOUDMASK": "CLOUD_MASK",
              "MASK": "CLOUD_MASK", "SCL": "SCL"}

#: ``<product>_<band>``: the product is the shortest prefix that leaves a band name, so a band
#: spelt with an underscore (``..._T33TVM_CLOUD_MASK``) is not split into ``..._CLOUD`` + ``MASK``
BAND_FILE = re.compile(r"^(?P<product>.+?)_(?P<band>B0?\d{1,2}A?|VV|VH|"
                       + "|".join(sorted(MASK_NAMES, key=len, reverse=True)) + r")$",
                       re.IGNORECASE)
_DATE_COMPACT = re.compile(r"(?<!\d)((?:19|20)\d{2})(\d{2})(\d{2})T\d{1,6}")
_DATE_ISO = re.compile(r"(?<!\d)((?:19|20)\d{2})-(\d{2})-(\d{2})")
_DATE_PLAIN = re.compile(r"(?<!\d)((?:19|20)\d{2})(\d{2})(\d{2})(?!\d)")
BASELINE = re.compile(r"_N(\d{2})(\d{2})(?:_|$)")


def canonical_band(name: str) -> str | None:
    """``B02`` -> ``B2``, ``b8a`` -> ``B8A``, ``clm`` -> ``CLOUD_MASK``; None if not a band name."""
    text = name.strip().upper()
    match = re.fullmatch(r"B0?(\d{1,2})(A?)", text)
    if match:
        return f"B{int(match.group(1))}{match.group(2)}"
    if text in ("VV", "VH", "HH", "HV"):
        return text
    return MASK_NAMES.get(text)


def date_from_text(text: str) -> dt.date | None:
    """An acquisition date in a tag value or a product name, or None."""
    for pattern in (_DATE_COMPACT, _DATE_ISO, _DATE_PLAIN):
        match = pattern.search(text)
        if match:
            try:
                return dt.date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
            except ValueError:
                continue
    return None


_VALIDITY = re.compile(r"_V((?:19|20)\d{2})(\d{2})(\d{2})T\d{6}")  # old format: sensing start
OLD_FORMAT = "_OPER_"  # S2A_OPER_PRD_MSIL1C_PDMC_<production>_R..._V<sensing>_...


def product_date(name: str) -> dt.date | None:
    """The sensing date in a product or file name, or None.

    Sentinel-2 names of the format used until December 2016 (``S2A_OPER_...``) begin with
    the production time, months after the acquisition; their sensing start follows ``_V``,
    and a tile or band file name of that format (``..._TL_SGS__<production>_A..._T33UUP``)
    carries no sensing time at all.
    """
    match = _VALIDITY.search(name)
    if match:
        return dt.date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
    if OLD_FORMAT in name.upper():
        return None
    return date_from_text(name)


#: tags that hold when the pixels were acquired: they outrank a name's date
ACQUISITION_TAGS = ("ACQUISITION_DATE",)
#: tags that hold when the file was written (the TIFF spec's DateTime: creation or
#: processing; a scene saved again by GDAL or QGIS carries that day): a name's date outranks them
FILE_TIME_TAGS = ("TIFFTAG_DATETIME", "DATETIME")


def _tag_date(tags: Mapping[str, str], keys: Iterable[str]) -> tuple[str, dt.date] | None:
    """The first of ``keys`` that holds a date, and that date (TIFF's ``YYYY:MM:DD`` read)."""
    for key in keys:
        stamp = tags.get(key) or ""
        found = date_from_text(stamp.replace(":", "-", 2) if key == "TIFFTAG_DATETIME"
                               else stamp)
        if found:
            return key, found
    return None


def acquisition_date(product: str, tags: Mapping[str, str],
                     undated: dt.date | None = None) -> dt.date | None:
    """A scene's date: its acquisition tag, else its name, else its file-time tag, else ``undated``.

    ``ACQUISITION_DATE`` describes the pixels; a name can be renamed or copied, so the tag
    outranks it. ``TIFFTAG_DATETIME`` and ``DATETIME`` hold when the file was written (a scene
    saved again carries that day), so a name's date outranks them; they date only a file
    whose name holds none. Where a name's date disagrees with either kind of tag, the date
    used is said, with the fix.
    """
    named = product_date(product)
    acquired = _tag_date(tags, ACQUISITION_TAGS)
    if acquired:
        key, tagged = acquired
        if named and tagged != named:
            warnings.warn(f"{product}: its name says {named}, its {key} tag {tagged}; dated "
                          f"{tagged} by the tag (it states the acquisition, names can be "
                          "renamed); if the name is right, fix the tag with: rio edit-info "
                          f"--tag {key}={named} FILE", stacklevel=3)
        return tagged
    written = _tag_date(tags, FILE_TIME_TAGS)
    if named and written and written[1] != named:
        key, tagged = written
        warnings.warn(f"{product}: its name says {named}, its {key} tag {tagged}; dated "
                      f"{named} by the name ({key} is when the file was written, which a "
                      "scene saved again changes); if the scene was acquired on "
                      f"{tagged}, say so with: rio edit-info --tag ACQUISITION_DATE={tagged} "
                      "FILE", stacklevel=3)
    return named or (written[1] if written else None) or undated


def sensor_from(name: str, bands: Iterable[str]) -> Sensor | None:
    upper = name.upper()
    if re.search(r"(^|[_\-/])S1([A-D]|RTC|GRD)?([_\-]|$|HAND)", upper) or "GRD" in upper:
        return "S1"
    if re.search(r"(^|[_\-/])S2([A-D]|L1C|L2A)?([_\-]|$|HAND)", upper) or "MSIL" in upper:
        return "S2"
    names = set(bands)
    if names and names <= {"VV", "VH", "HH", "HV"}:
        return "S1"
    if any(n.startswith("B") for n in names):
        return "S2"
    return None
