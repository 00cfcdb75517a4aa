"""The data contract: grid, bands, regions, splits, GeoTIFFs, datasets, stacks, publishing.

Everything downstream (the backends, training, inference) agrees through these types and file
formats (docs/data-contract.md). May import: ``core``.
"""
