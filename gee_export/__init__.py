"""The backends that make patch datasets: Sentinel-1/2 export (Earth Engine or local), import.

The backends sit on the project's foundation (``tests/test_layers.py`` enforces the order):
:mod:`core` (errors, retry, storage, months) and :mod:`contract` (the data contract: grid,
bands, regions, splits, GeoTIFFs, patch datasets, stacks).

- :mod:`gee_export.ee`: the Earth Engine recipe, its session and the names it sends (the one
  seam to Earth Engine); :mod:`gee_export.local`: the same recipe in numpy/rasterio;
  :mod:`gee_export.imported`: another project's image/mask pairs. Side by side: each imports
  ``core`` and ``contract``, never another.
- :mod:`cli.export` (``isamap-export``) drives the two export backends,
  :mod:`cli.import_patches` (``isamap-import-patches``) the import.

May import: core, contract.

``training`` sits on top of these and ``inference`` on top of ``training``. See
docs/architecture.md.
"""
