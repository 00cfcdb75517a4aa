"""Sentinel-1/Sentinel-2 composites and co-registered patch export (Earth Engine or local).

Layers, each importing only those below it (``tests/test_layers.py`` enforces this):

- :mod:`core`: errors, retry, version, months, JSON, storage, the Earth Engine session.
- :mod:`contract`: the data contract (grid, bands, regions, splits, GeoTIFFs, patch
  datasets, stacks); imports ``core`` only.
- :mod:`gee_export.ee` and :mod:`gee_export.local`: the two backends, side by side; each
  imports ``core`` and ``contract``, never the other.
- :mod:`gee_export.cli` (``isamap-export``) drives both backends.

``training`` sits on top of these and ``inference`` on top of ``training``. See
docs/architecture.md.
"""

from core.version import code_version

__all__ = ["code_version"]
