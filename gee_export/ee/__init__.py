"""The Earth Engine backend: recipe graphs, computePixels and batch-task export, Code Editor.

Builds the monthly recipe as Earth Engine graphs (no server needed to build them) and exports
it through the one session in :mod:`gee_export.ee.session`; :mod:`.fake_server` is a
transport serving a local stack, shipped for tests and benchmarks as earthengine-api ships
``ee.apitestcase``. May import: ``core``, ``contract``.
"""
