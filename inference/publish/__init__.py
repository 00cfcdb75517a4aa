"""Publishing maps to Earth Engine: image assets, ImageCollections, manifests, Code Editor apps.

``image`` (one map as an image asset: upload, ingestion, ACL), ``collection`` (a series as
an ImageCollection), ``asset_manifest`` (the ImageManifest and its checks), ``properties``
(the one builder of an asset's properties) and ``code_editor`` (the scripts that show them).

May import: ``gee_export``, ``training``, ``inference.predict``; never ``inference.mapping``
(which publishes its series through this package) or ``inference.assess``.
"""
