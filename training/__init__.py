"""PyTorch training of the papers' models on isamap patch datasets.

May import: ``gee_export.core``, ``gee_export.contract`` (and the backends, though nothing here
needs them); never ``inference``.
"""
