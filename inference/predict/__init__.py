"""Predicting a raster: a stack (or any source) and a model -> COGs, quick-looks, zone areas.

The streaming sliding window (``raster``, ``sliding_window``, ``blending``), the model runtime
(``runtime``, ``normalise``; its int8 patches, ``calibration``), what is read (``sources``,
``expected_inputs``) and written (``cog``), post-processing (``postprocess``), zone
statistics (``stats``) and the model-file workflow (``workflow``).

May import: ``gee_export``, ``training``; never ``inference.mapping`` or ``inference.publish``.
"""
