"""Sliding-window inference to Cloud-Optimized GeoTIFFs, area statistics and publishing to EE.

The top floor: may import every layer below (``gee_export.core``, ``gee_export.contract``, the
backends, ``training``). The whole-chain demo lives here for that reason.
"""
