"""The local backend: the same monthly recipe in numpy/scipy/rasterio over scenes on disk.

Also holds the deterministic SYNTHETIC scene generator of the demo. May import:
``core``, ``contract``.
"""
