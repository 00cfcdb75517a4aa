"""Mapping a region over dates: the model's recipe per date, fetched tiles, the series products.

``request`` (what to map, checked before work), ``plan`` (the dry run), ``dates`` (one
prediction per date from Earth Engine or local scenes), ``fetched`` (computePixels tiles
streamed to the predictor), ``tiles`` and ``beam_map`` (a date as independent tiles, as an
Apache Beam pipeline), ``series`` (change and area over time), ``stac``, ``publication``
(what ``--publish`` publishes, settled before the first date) and ``region``
(:func:`~inference.mapping.region.map_region`, the library function of ``isamap-map``: the
dates mapped, then the series published).

May import: ``gee_export``, ``training``, ``inference.predict``, ``inference.publish``,
``inference.assess``.
"""
