"""Predicting a raster: a stack (or any source) and a model -> COGs, quick-looks, zone areas.

The streaming sliding window (``raster``, ``sliding_window``, ``blending``), the model runtime
and the tiles' normalisation (``runtime``; its int8 patches, ``calibration``), what is read
(``sources``, ``expected_inputs``), post-processing (``postprocess``; a coarse product's
impervious class kept unless green: ``keep``, ``keep_inputs``), zone statistics,
pixel areas and change maps (``stats``; how change is decided: ``change``, on both dates'
stacks ``spectral_stacks``) and the model-file workflow (``workflow``). The COGs are written by
:mod:`inference.cog`.

May import: ``gee_export``, ``training``, ``inference.cog``; never ``inference.mapping`` or
``inference.publish``.
"""
