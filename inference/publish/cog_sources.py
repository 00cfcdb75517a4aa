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

from core.errors import ConfigError, StorageError
from core.storage import files

logger = logging.getLogger(__name__)

# image:importExternal reads COGs in place. Earth Engine serves them only from the US
# multi-region, a US dual-region including US-CENTRAL1 (NAM4 is the predefined one), or
# US-CENTRAL1 itself; the Standard storage class is recommended, not required.
EXTERNAL_REGION = "US-CENTRAL1"
EXTERNAL_STORAGE_CLASS = "STANDARD"
COG_KINDS = ("class", "probability")
"""The two COGs of a map, as the manifest names their tilesets."""


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


def target_uri(path: str, gcs_prefix: str | None, dry_run: bool) -> str:
    """Where a COG is ingested from: itself on gs://, else its upload under ``gcs_prefix``.

    A dry run without a prefix gets a visible placeholder instead of an error, so the printed
    manifest is complete.
    """
    if files.is_gcs(path):
        return path
    if not gcs_prefix:
        if dry_run:  # a placeholder the user sees in the printed manifest
            return f"gs://your-bucket/isamap/{Path(path).name}"
        raise ConfigError(f"{path} is local; pass --gcs-prefix gs://bucket/prefix to upload it "
                          "(Earth Engine ingests only from Cloud Storage)")
    files.split_gcs(gcs_prefix.rstrip("/") + "/x")
    return f"{gcs_prefix.rstrip('/')}/{Path(path).name}"


def cog_uris(cogs: tuple[str, str], gcs_prefix: str | None, dry_run: bool) -> dict[str, str]:
    """Where each of a map's (class, probability) COGs is ingested from, by kind."""
    return {kind: target_uri(path, gcs_prefix, dry_run)
            for kind, path in zip(COG_KINDS, cogs, strict=True)}


def upload_cogs(cogs: tuple[str, str], uris: Mapping[str, str],
                echo: Callable[[str], None]) -> None:
    """Upload a map's local COGs to their ``uris`` (a COG on ``gs://`` stays where it is)."""
    for kind, path in zip(COG_KINDS, cogs, strict=True):
        if not files.is_gcs(path):
            echo(f"uploading {path} -> {uris[kind]}")
            files.upload_file(Path(path), uris[kind])
