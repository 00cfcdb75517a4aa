"""The keep rule: a coarse product's impervious class kept in a fine map unless green.

``rule`` (the rule on arrays: the green cut, the classes the model never learnt, the
product's class shares per window), ``shares`` (those shares given to each window: prior
matching) and ``inputs`` (what the rule reads: the product on the map's grid, the stack's red
and NIR, the green cut settled before the first tile, and the rule applied strip by strip in
the predictor's writer thread). ``isamap-predict`` and ``isamap-map`` apply it with
``--postprocess keep``.

May import: ``gee_export``, ``training``, ``inference.cog`` and the rest of
``inference.predict`` (its sources, inputs and step proofs); never ``inference.predict.change``
(a sibling), ``inference.mapping``, ``inference.publish`` or ``inference.assess``.
"""
