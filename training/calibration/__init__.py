"""The calibration temperature: fitted after training, recorded, applied by every prediction.

:mod:`~training.calibration.temperature` is the math (probabilities at a temperature, the fit,
the expected calibration error); :mod:`~training.calibration.pixels` gathers the validation
split's labelled pixels for the fit in bounded memory; :mod:`~training.calibration.record` runs
the kept weights over the split and records the fitted temperature in the model file.

May import: ``core``, ``contract``, ``engine`` and the rest of ``training`` below the training
run (config, data, loader, models, model files).
"""
