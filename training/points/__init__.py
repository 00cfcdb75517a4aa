"""A per-pixel classifier fitted on labelled points, cross-validated by spatial blocks.

What ``isamap-fit`` runs between reading the points (:mod:`inference.fit.job`) and saving
the model file: the checks a set of points must pass (:mod:`~training.points.checks`), the
spatial blocks and folds (:mod:`~training.points.blocks`), the head fitted on the points'
features and its regularisation chosen by cross-validation (:mod:`~training.points.head`,
:mod:`~training.points.crossval`), and the model and its description assembled
(:mod:`~training.points.model`). The model is
:class:`training.models.points.PixelClassifier`. docs/points.md shows the command.

May import: ``core``, ``contract``, :mod:`engine`, :mod:`training.losses`,
:mod:`training.models`, the rest of ``training``, torch, numpy.
"""
