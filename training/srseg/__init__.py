"""Joint super-resolution + segmentation (srseg): cross-resolution data, losses, evaluation.

The model itself is registered in :mod:`training.models.srseg`; this package holds what trains
and measures it (fine-grid data, the joint loss, boundary F1, the fixed-budget comparison).
May import: ``gee_export.core``, ``gee_export.contract``, ``training``.
"""
