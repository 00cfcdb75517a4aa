"""Sentinel-1/Sentinel-2 composites and co-registered patch export (Earth Engine or local)."""

from gee_export.version import code_version

__all__ = ["code_version"]
