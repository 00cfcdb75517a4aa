"""The local backend: the monthly Sentinel-1/2 recipe in numpy/scipy/rasterio over local scenes.

Entry point: :func:`gee_export.local.stack.build_local_stack`. Modules: ``scenes`` (discovery),
``warp`` (one source band onto a grid window, resampled once), ``speckle`` (filters),
``sentinel1``/``sentinel2`` (per-sensor composites), ``labels`` (class mapping + mode/nearest).
"""
