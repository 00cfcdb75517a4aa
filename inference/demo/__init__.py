"""The whole chain on a SYNTHETIC scene, offline: the library of ``isamap-demo`` (cli/demo.py).

``steps`` (the steps, from the scene to the assessment, and :func:`~inference.demo.steps.run_demo`),
``context`` (what the steps share, and when a step's work is stale), ``training`` (a
reduced-width CroFuseNet trained and evaluated on the demo's patches), ``assess`` (blind
samples of the demo's maps labelled with the scene's truth, scored) and ``figures`` (its
assessment's figures that docs/accuracy.md quotes, ``make accuracy-figures``).

May import: every layer below (``gee_export``, ``training``, ``inference.mapping``,
``inference.publish``, ``inference.assess``); nothing above (``cli``).
"""
