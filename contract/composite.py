"""Choices a monthly composite is made with that both backends implement alike.

The Earth Engine recipe (:mod:`gee_export.ee.speckle`) and the local numpy recipe
(:mod:`gee_export.local.speckle`) implement the same Sentinel-1 speckle filters under the same
names; the names live here so the command line, both backends and the manifest agree on them.
"""

from __future__ import annotations

from typing import Literal, get_args

from core.errors import ConfigError

SpeckleFilter = Literal["none", "boxcar", "lee", "gamma_map", "refined_lee", "lee_sigma"]
SPECKLE_FILTERS: tuple[str, ...] = get_args(SpeckleFilter)
DEFAULT_SPECKLE: SpeckleFilter = "refined_lee"


def check_speckle_filter(name: str) -> SpeckleFilter:
    """Return ``name`` if it is a speckle filter both backends know; ConfigError otherwise."""
    if name not in SPECKLE_FILTERS:
        raise ConfigError(f"unknown speckle filter {name!r}; choose one of "
                          f"{', '.join(SPECKLE_FILTERS)} (--speckle)")
    return name  # type: ignore[return-value]
