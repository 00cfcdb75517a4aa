"""PyTorch training of the papers' models on isamap patch datasets.

Floors, each importing only those below it: :mod:`engine` (how a model runs on this
machine: devices, precision, threads, autotuning, distributed set-up, seeds), then
:mod:`training.losses` and :mod:`training.models` (the papers' losses and networks, merged
into explicit registries), then the rest (data, metrics, calibration, model files), then
:mod:`training.run` (one training run: its inputs, the loop, its folder, ``--members``), and
above it pruning and noisy-label filtering; the point classifier needs no run.

May import: ``core``, ``contract`` (and the backends, though nothing here
needs them); never ``inference`` or ``experiments``.
"""
