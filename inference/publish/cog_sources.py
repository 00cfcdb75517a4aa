"""Where Earth Engine reads a publication's COGs: Cloud Storage, uploaded there when local.

A COG on ``gs://`` is ingested from where it is; a local one is uploaded under the options'
``gcs_prefix`` (MD5-verified, through the storage seam) after the first Earth Engine call, so
missing credentials cost no upload (:func:`target_uri`, :func:`upload_cogs`). A COG-backed
asset (``image:importExternal``) is read in place on every request, from a bucket Earth Engine
can serve: :func:`check_external_bucket` applies the documented rule to the bucket's metadata
before any Earth Engine call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio.errors
from rasterio.enums import Resampling
from rasterio.windows import Window

from contract.publishing import check_gcs_prefix
from core.errors import ConfigError, InputDataError, StorageError
from core.storage import files
from inference.cog.maps import NODATA, extra_codes_problem, map_kind_problem

logger = logging.getLogger(__name__)

# image:importExternal reads COGs in place. Earth Engine serves them only from the US
# multi-region, a US dual-region including US-CENTRAL1 (NAM4 is the predefined one), or
# US-CENTRAL1 itself; the Standard storage class is recommended, not required.
EXTERNAL_REGION = "US-CENTRAL1"
EXTERNAL_STORAGE_CLASS = "STANDARD"
DEFAULT_CLASSES = ("pervious", "impervious")
"""The classes of a class COG whose tags name none (the asset's properties say the same)."""
COG_KINDS = ("class", "probability")
"""The two COGs of a map, as the manifest names their tilesets."""
_FLAGS = {"class": "--class-cog", "probability": "--prob-cog"}
_SUFFIX = {"class": "_class.tif", "probability": "_prob.tif"}
UPLOAD_PREFIX = ("--gcs-prefix gs://BUCKET/PREFIX to upload to (Earth Engine ingests only from "
                 "Cloud Storage)")
"""What publishing local COGs needs (:func:`check_upload_prefix`; the map's dry run says it)."""


@dataclass(frozen=True)
class BucketCheck:
    """Whether a bucket can back COG assets: ``problems`` refuse it, ``advice`` only warns."""

    problems: tuple[str, ...] = ()
    advice: tuple[str, ...] = ()


def check_external_bucket(uri: str, client: Any | None = None,
                          warn: Callable[[str], None] = logger.warning) -> None:
    """Refuse a bucket Earth Engine cannot serve COG-backed assets from, before any EE call.

    ``warn`` receives what is only advised (the storage class).
    """
    try:
        info = files.bucket_info(uri, client)
    except StorageError as exc:
        raise ConfigError(f"cannot read the bucket of {uri} to check its location ({exc}); "
                          "COG-backed assets need a readable bucket") from exc
    check = judge_external_bucket(info.location, info.data_locations, info.storage_class,
                                  info.location_type)
    if check.problems:
        raise ConfigError(
            f"gs://{info.name} cannot back an Earth Engine COG asset: "
            f"{'; '.join(check.problems)}. Copy the COGs to a conforming bucket "
            "(--gcs-prefix) or use --mode ingest.")
    for advice in check.advice:
        warn(f"gs://{info.name}: {advice}")


def judge_external_bucket(location: str | None, data_locations: Sequence[str] | None,
                          storage_class: str | None, location_type: str | None = None
                          ) -> BucketCheck:
    """The documented rule for COG-backed assets, applied to a bucket's metadata.

    Accepted: the ``US`` multi-region, ``US-CENTRAL1``, the predefined dual-region ``NAM4``
    (US-CENTRAL1 + US-EAST1), and a configurable dual-region (location ``US``, two data
    locations) whose regions include US-CENTRAL1. Any other class than STANDARD is only
    advised against: Earth Engine reads the COGs on every request, and colder classes charge
    for each read and for early deletion.
    """
    location = (location or "").upper()
    members = [m.upper() for m in (data_locations or [])]
    kind = (location_type or "").lower()
    storage_class = (storage_class or "").upper()
    if members:
        ok = location == "US" and EXTERNAL_REGION in members
    elif kind == "dual-region" and location not in ("NAM4",):
        ok = False  # a dual-region whose regions are not known cannot be vouched for
    else:
        ok = location in ("US", EXTERNAL_REGION, "NAM4")
    problems, advice = [], []
    if not ok:
        where = f"{location or 'unknown'}" + (f" ({', '.join(members)})" if members else "")
        problems.append(f"its location is {where}; Earth Engine reads COGs only from the US "
                        "multi-region, US-CENTRAL1, or a US dual-region that includes "
                        "US-CENTRAL1")
    if storage_class != EXTERNAL_STORAGE_CLASS:
        advice.append(f"its storage class is {storage_class or 'unknown'}; Google recommends "
                      "STANDARD for COG-backed assets (colder classes charge per read)")
    return BucketCheck(tuple(problems), tuple(advice))


def check_cog_pair(class_path: str, prob_path: str) -> dict[str, str]:
    """Refuse two COGs that are not one map's class and probability, or cannot be read.

    Each must be one uint8 band; where isamap tagged them, of its kind (a change map or a
    stack is not a class map); on one grid; and, where both record them, of one run and
    month; and readable to their last block (:func:`read_ends`: a cut copy). Each file is
    opened once: the class COG's tags, what its asset's properties are made of, are returned.

    Raises:
        ConfigError: one file given for both.
        InputDataError: a file is not such a COG, or the two are not one map's.
    """
    if files.is_gcs(class_path) == files.is_gcs(prob_path) and (
            class_path == prob_path if files.is_gcs(class_path)
            else Path(class_path).resolve() == Path(prob_path).resolve()):
        raise ConfigError(f"--class-cog and --prob-cog are one file ({class_path}); give the "
                          "map's _class.tif and _prob.tif")
    seen, sampled = {}, {}
    for kind, path in zip(COG_KINDS, (class_path, prob_path), strict=True):
        try:
            with files.open_raster(path) as ds:
                seen[kind] = (ds.count, ds.dtypes[0], ds.tags(), (ds.width, ds.height),
                              ds.transform, ds.crs)
                read_ends(ds)
                sampled[kind] = (_sampled_codes(ds) if ds.dtypes[0] == "uint8" and (
                    kind == "class" or "band_id" not in ds.tags()) else None)
        except rasterio.errors.RasterioError as exc:
            raise InputDataError(files.raster_refusal(
                _FLAGS[kind], path, exc, f"the map's {_SUFFIX[kind]} that isamap-predict "
                "wrote")) from None
        count, dtype, tags, *_ = seen[kind]
        given = f"{_FLAGS[kind]} {path}"
        problem = map_kind_problem(given, tags, (kind,), f"the map's {_SUFFIX[kind]}")
        if problem:
            raise InputDataError(problem)
        if count != 1 or dtype != "uint8":
            raise InputDataError(f"{given} holds {count} {dtype} band(s); a map's {kind} COG "
                                 "is one uint8 band (isamap-predict's output)")
    (*_, tags_c, size_c, at_c, crs_c), (*_, tags_p, size_p, at_p, crs_p) = (
        seen["class"], seen["probability"])
    if size_c != size_p or not at_c.almost_equals(at_p) or crs_c != crs_p:
        raise InputDataError(f"--class-cog {class_path} and --prob-cog {prob_path} lie on other "
                             "grids; give one map's two COGs")
    for key, what in (("month", "months"), ("isamap_run", "runs")):
        if tags_c.get(key) and tags_p.get(key) and tags_c[key] != tags_p[key]:
            raise InputDataError(f"--class-cog {class_path} and --prob-cog {prob_path} are of "
                                 f"two {what} ({tags_c[key]}, {tags_p[key]}); give one map's "
                                 "two COGs")
    problem = _codes_problem(class_path, prob_path, tags_c, sampled)
    if problem:
        raise InputDataError(problem)
    return dict(tags_c)


def _codes_problem(class_path: str, prob_path: str, tags_c: Mapping[str, str],
                   sampled: Mapping[str, np.ndarray | None]) -> str | None:
    """Why COGs whose pixels are not a class map and its probability are not a map's pair.

    Where the tags are gone, the pixels tell: an untagged class COG holds only its classes'
    codes (:func:`inference.cog.maps.extra_codes_problem`); a pixel mapped impervious has an
    impervious probability of at least 1/k (k classes), so a probability COG holding only 0
    and 1 (0.4 % at most) beside one is a class map.
    """
    classes = tuple(c for c in tags_c.get("classes", ",".join(DEFAULT_CLASSES)).split(",") if c)
    codes_c, codes_p = sampled.get("class"), sampled.get("probability")
    if codes_c is not None and "classes" not in tags_c:
        problem = extra_codes_problem(f"--class-cog {class_path}", codes_c, classes,
                                      "the map's _class.tif that isamap-predict wrote")
        if problem:
            return problem
    isa = classes.index("impervious") if "impervious" in classes else None
    if (codes_p is not None and codes_c is not None and isa is not None and codes_c[isa]
            and not codes_p[2:NODATA].any()):
        return (f"--prob-cog {prob_path} holds only the values 0 and 1 (a probability of 0.4 % "
                f"at most) where --class-cog {class_path} maps impervious pixels: it is a class "
                "map, not their probability; give the map's _prob.tif that isamap-predict wrote")
    return None


def _sampled_codes(ds: Any) -> np.ndarray:
    """Pixels per code 0-255 of band 1, read at most 1024 px a side (a COG's overview)."""
    shape = (min(ds.height, 1024), min(ds.width, 1024))
    return np.bincount(ds.read(1, out_shape=shape, resampling=Resampling.nearest).ravel(),
                       minlength=256)


def read_ends(ds: Any) -> None:
    """Read the blocks a truncated raster loses first (a ``RasterioError`` where it is cut).

    Each band's last full-resolution block and its smallest overview (written last by a
    GeoTIFF, first by a COG). A few blocks, not the pixels: a cut copy fails here instead of
    after its upload, or in the ingestion task.
    """
    for band in range(1, ds.count + 1):
        ds.read(band, window=Window(ds.width - 1, ds.height - 1, 1, 1))
        factors = ds.overviews(band)
        if factors:
            ds.read(band, out_shape=(max(1, -(-ds.height // factors[-1])),
                                     max(1, -(-ds.width // factors[-1]))))


def target_uri(path: str, gcs_prefix: str | None, dry_run: bool) -> str:
    """Where a COG is ingested from: itself on gs://, else its upload under ``gcs_prefix``.

    A dry run without a prefix gets a visible placeholder instead of an error, so the printed
    manifest is complete.
    """
    if files.is_gcs(path):
        return path
    if not gcs_prefix and dry_run:  # a placeholder the user sees in the printed manifest
        return f"gs://your-bucket/isamap/{Path(path).name}"
    return f"{check_upload_prefix(gcs_prefix, path)}/{Path(path).name}"


def check_upload_prefix(gcs_prefix: str | None, local: str = "local COGs") -> str:
    """The ``--gcs-prefix`` local COGs are uploaded under, checked; without its last ``/``.

    Args:
        gcs_prefix: the prefix given (None: none).
        local: what would be uploaded, as the message names it (a COG's path).

    Raises:
        ConfigError: no prefix, or one that is not ``gs://bucket[/prefix]`` of a valid bucket
            name (:func:`contract.publishing.check_gcs_prefix`).
    """
    if not gcs_prefix:
        raise ConfigError(f"publishing {local} needs {UPLOAD_PREFIX}")
    return check_gcs_prefix(gcs_prefix)


def cog_uris(cogs: tuple[str, str], gcs_prefix: str | None, dry_run: bool) -> dict[str, str]:
    """Where each of a map's (class, probability) COGs is ingested from, by kind.

    Raises:
        ConfigError: both would be uploaded to one object (local files of one name).
    """
    uris = {kind: target_uri(path, gcs_prefix, dry_run)
            for kind, path in zip(COG_KINDS, cogs, strict=True)}
    if len(set(uris.values())) < len(uris):
        raise ConfigError(f"--class-cog and --prob-cog are both named {Path(cogs[0]).name}: "
                          f"uploaded under --gcs-prefix, one would replace the other at "
                          f"{uris['class']}; give files of their own names")
    return uris


def upload_cogs(cogs: tuple[str, str], uris: Mapping[str, str],
                echo: Callable[[str], None]) -> None:
    """Upload a map's local COGs to their ``uris`` (a COG on ``gs://`` stays where it is)."""
    for kind, path in zip(COG_KINDS, cogs, strict=True):
        if not files.is_gcs(path):
            echo(f"uploading {path} -> {uris[kind]}")
            files.upload_file(Path(path), uris[kind])
