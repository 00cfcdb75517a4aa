"""The imported backend: another project's image/mask GeoTIFF pairs as a patch dataset.

``isamap-import-patches`` finds the pairs (:mod:`gee_export.imported.pairs`) and writes them
as one month of a dataset through the contract's writer (:mod:`gee_export.imported.patches`).
May import: ``core``, ``contract``.
"""
