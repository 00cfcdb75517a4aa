"""Predicting a raster: a stack (or any source) and a model -> COGs, quick-looks, zone areas.

The streaming sliding window (``raster``, ``sliding_window``, ``blending``), the model runtime
(``runtime``; its int8 patches, ``calibration``), what is read (``sources``, ``inputs``) and
written (``cog``, ``cog_stream``),
post-processing (``postprocess``), zone statistics (``stats``) and the model-file workflow
(``workflow``).

May import: ``gee_export``, ``training``; never ``inference.mapping`` or ``inference.publish``.
"""
