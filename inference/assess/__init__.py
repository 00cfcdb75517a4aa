"""Accuracy assessment of maps and models: sample designs, scoring with intervals, comparisons.

``strata`` (a class or change COG read as strata: classes, sizes, values at points),
``design_file`` (each point's stratum, inclusion probability and map class, kept from the
interpreter and read by the scorer), ``ceo`` (Collect Earth Online plot files and exports),
``figures`` (a docs page's generated figures, rewritten from their JSON), ``intervals`` (the
one rule for writing an estimate ± its spread),
``design`` (a stratified random sample of pixel centres, reproducible from its seed),
``point_files`` (the blind sample as CSV, GeoJSON, KML, Collect Earth Online plot files; reading a
labelled reference file), ``reference_records`` (a reference file's text, rows and positions),
``labelling_app`` (the Code Editor app that walks the points),
``products`` (other maps on the same points: rasters, and Earth Engine products sampled
through the one Earth Engine seam), ``estimators`` (the Olofsson/Stehman stratified estimators
of accuracy and area, sample sizes, points drawn from arrays), ``report`` (their estimates for
the map and every product, as JSON, Markdown and a PNG) and ``evaluate`` (``isamap-evaluate``: a
model file scored on a patch dataset's split).

May import: ``gee_export``, ``training``, ``inference.predict``; never ``inference.mapping``
or ``inference.publish``.
"""
