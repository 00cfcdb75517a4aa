"""Inference by job: predicting a stack, mapping a region over dates, publishing to Earth Engine.

Sub-packages, each importing only those before it: :mod:`inference.predict` (a stack or a
source -> class and probability COGs, quick-looks, zone statistics), :mod:`inference.publish`
(Earth Engine image assets and ImageCollections, manifests, Code Editor scripts) and, beside
it, :mod:`inference.assess` (reference samples, accuracy and area with confidence
intervals), then :mod:`inference.mapping` (a region and dates -> a map series: fetched tiles,
the Beam map pipeline, change, STAC, and its publication) and :mod:`inference.demo` (the
whole chain on a synthetic scene) and :mod:`inference.fit` (a map model from labelled points,
``isamap-fit``); the console scripts that call them live in ``cli``, above.

May import: every layer below (``gee_export``, ``training``); nothing above (``experiments``,
``benchmarks``).
"""
