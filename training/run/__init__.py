"""One training run: ``isamap-train``'s run on a patch dataset, from its inputs to its model file.

:mod:`training.run.patch_training` wires a run (``train(cfg)``): what it trains on
(:mod:`~training.run.inputs`, :mod:`~training.run.encoder` for a pretrained encoder), the loop
(:mod:`~training.run.trainer` with :mod:`~training.run.optim`,
:mod:`~training.run.step_runtime`, :mod:`~training.run.averaging`,
:class:`~training.run.trainer.LossGuard`), what the run folder holds (:mod:`~training.run.folder`,
:mod:`~training.run.checkpoint`, :mod:`~training.run.history`), and ``--members K``
(:mod:`~training.run.members`, joined by :mod:`~training.run.member_join`).

May import: ``core``, ``contract``, ``engine`` and the rest of ``training`` that other features
share (config, data, loader, sampling, augmentation, models, losses, metrics, calibration, model
files, plots); never pruning or noisy-label filtering (they stand above and import this
room), the point classifier, ``inference`` or ``experiments``.
"""
