"""Change between dates: how two dates' change is decided, and a series made consistent.

``arrays`` (the rules on arrays: a margin on both probabilities, the spectral rule, the later
date normalised onto the earlier), ``spectral`` (the spectral rule on both dates' stacks),
``encoder`` (the encoder rule: a model's features in place of the bands), ``inputs`` (what a
prediction with a change map needs of the earlier date, checked before the model runs), and
the temporal consistency of a map series: ``consistency`` (the monotone rule, and the
relabelled COGs of any rule) and ``stretches`` (one class where the bands did not change).
:mod:`inference.predict.stats` writes the change maps; :mod:`inference.mapping.series` applies
the rules to a series.

May import: ``gee_export``, ``training``, ``inference.cog`` and the rest of
``inference.predict`` (its sources, inputs and job); never ``inference.predict.keep`` (a
sibling), ``inference.mapping``, ``inference.publish`` or ``inference.assess``.
"""
