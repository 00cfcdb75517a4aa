"""The Earth Engine backend: recipe graphs, computePixels and batch-task export, Code Editor.

Builds the monthly recipe as Earth Engine graphs (no server needed to build them) and exports
it through the one session in :mod:`gee_export.ee.session` (its retries, the names
it sends in :mod:`gee_export.ee.names`). The fake pixel server that tests and benchmarks plug
in as its transport lives in ``testing/``, which is not installed. May import: ``core``,
``contract``.
"""
