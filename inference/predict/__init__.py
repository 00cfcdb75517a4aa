"""Predicting a raster: a stack (or any source) and a model -> COGs, quick-looks, zone areas.

The streaming sliding window (``raster``, ``config``, ``sliding_window`` with its ``panels``,
``reader``, ``writer``, ``checkpoints`` and ``stages``; the tiles' ``lattice`` and
``blending``), the model runtime (``runtime``; the tiles' normalisation, ``normalise``; its int8
patches, ``calibration``), what is read (``input_stack``: the input opened once; ``sources``,
``expected_inputs``), post-processing (``postprocess``; a coarse product's impervious class kept
unless green: :mod:`inference.predict.keep`), zone statistics and change maps (``stats``; pixel
areas, ``pixel_area``), how change between dates is decided and a series made consistent
(:mod:`inference.predict.change`) and the model-file workflow (``job``: one prediction's
options; ``workflow``). The COGs are written by :mod:`inference.cog`.

May import: ``gee_export``, ``training``, ``inference.cog``; never ``inference.mapping``,
``inference.publish`` or ``inference.assess``. Its ``change`` and ``keep`` rooms never import
each other.
"""
