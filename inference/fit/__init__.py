"""``isamap-fit``: a map model from labelled points.

:mod:`inference.fit.job` runs a fit (``run_fit``) of an :mod:`inference.fit.request`
(``FitJob``): the points read by :mod:`inference.fit.inputs` (an assessment design's
refused), the stacks under them, made by :mod:`inference.fit.sources` where none is given,
and an ``--out`` holding another fit's model refused (:func:`inference.fit.job.check_out`);
the arrays (blocks, head, cross-validation) are :mod:`training.points`'.

May import: :mod:`inference.predict`, :mod:`inference.assess` and every layer below; nothing
of :mod:`inference.mapping` or above.
"""
