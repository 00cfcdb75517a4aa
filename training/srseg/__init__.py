"""Joint super-resolution + segmentation (srseg): cross-resolution data and evaluation.

The models are defined in :mod:`training.models.srseg` and their joint loss in
:mod:`training.losses.srseg` (both below this package); this package holds what feeds and
measures them (fine-grid data, boundary F1, fine-scale evaluation).
May import: ``core``, ``contract``, ``training``.
"""
