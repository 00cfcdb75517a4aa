"""Sentinel-1/Sentinel-2 composites and co-registered patch export (Earth Engine or local).

The two export backends sit on the project's foundation (``tests/test_layers.py`` enforces
the order): :mod:`core` (errors, retry, storage, months) and :mod:`contract` (the data
contract: grid, bands, regions, splits, GeoTIFFs, patch datasets, stacks).

- :mod:`gee_export.ee`: the Earth Engine recipe, its session and the names it sends (the one
  seam to Earth Engine); :mod:`gee_export.local`: the same recipe in numpy/rasterio. Side by
  side: each imports ``core`` and ``contract``, never the other.
- :mod:`cli.export` (``isamap-export``) drives both backends.

May import: core, contract.

``training`` sits on top of these and ``inference`` on top of ``training``. See
docs/architecture.md.
"""
