"""The per-project asset caps a publication must fit in: 10,000 assets and 250 GB.

A publication that would overflow them fails at its last ingestions, after the uploads; the
plan checks what it adds against the caps (and, on a real run, against what the project
already holds, read from its asset root) before anything is uploaded. A COG-backed
(``--mode external``) asset stores no pixels in Earth Engine: its COGs stay in Cloud Storage,
so it counts against the asset count only, never the 250 GB.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from core.errors import ConfigError
from core.storage import files

MAX_ASSETS = 10_000
MAX_BYTES = 250_000_000_000  # 250 GB


@dataclass(frozen=True)
class Footprint:
    """What a publication adds to its project: assets, and bytes of ingested pixels."""

    assets: int
    nbytes: int
    unmeasured: int = 0  # COGs on Cloud Storage or not written yet (a dry run's plan)
    external: bool = False  # COG-backed: the pixels stay in Cloud Storage


def footprint(new_assets: int, cogs: Iterable[str], mode: str = "ingest") -> Footprint:
    """The footprint of ``new_assets`` assets made from the COG files ``cogs``.

    An ingested image stores about its COG's size; local files are measured, ``gs://``
    objects and files not written yet are counted as unmeasured. A COG-backed image
    (``mode="external"``) stores none: no bytes.
    """
    if mode == "external":
        return Footprint(new_assets, 0, external=True)
    paths = list(cogs)
    local = [c for c in paths if not files.is_gcs(c) and os.path.isfile(c)]
    return Footprint(new_assets, sum(os.path.getsize(c) for c in local),
                     len(paths) - len(local))


def check_caps(adds: Footprint, quota: Mapping[str, Any] | None = None) -> str:
    """One line saying how ``adds`` fits the project's caps; ConfigError when it does not.

    Args:
        adds: what the publication creates.
        quota: ``ee.data.getAssetRootQuota``'s answer for the project's asset root (usage
            and limits), or None where it could not be read (the job alone is checked).
    """
    count = dict((quota or {}).get("asset_count") or {})
    size = dict((quota or {}).get("asset_size") or {})
    max_assets = int(count.get("limit") or MAX_ASSETS)
    max_bytes = int(size.get("limit") or MAX_BYTES)
    used_assets, used_bytes = int(count.get("usage") or 0), int(size.get("usage") or 0)
    held = (f"; the project holds {used_assets:,} assets and {used_bytes / 1e9:,.1f} GB"
            if quota else "")
    problems = []
    if used_assets + adds.assets > max_assets:
        problems.append(f"{used_assets + adds.assets:,} assets (cap {max_assets:,})")
    if used_bytes + adds.nbytes > max_bytes:
        problems.append(f"{(used_bytes + adds.nbytes) / 1e9:,.1f} GB (cap "
                        f"{max_bytes / 1e9:,.0f} GB)")
    if problems:
        raise ConfigError(
            f"publishing would bring the project to {' and '.join(problems)}{held}; delete "
            "old assets, publish fewer dates, or publish as COG-backed assets")
    unmeasured = (f" (+{adds.unmeasured} COGs on Cloud Storage or not yet written, not "
                  "measured)"
                  if adds.unmeasured else
                  " (COG-backed: the pixels stay in Cloud Storage)" if adds.external else "")
    return (f"adds {adds.assets:,} assets and {adds.nbytes / 1e9:,.2f} GB{unmeasured}{held}; "
            f"per-project caps {max_assets:,} assets and {max_bytes / 1e9:,.0f} GB")
