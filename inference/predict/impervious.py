"""What "impervious" means in every table and map of a date and of a pair of dates.

One definition: a pixel is impervious at a date where that date's class map holds the
impervious class (the argmax of the calibrated probabilities, after any post-processing), never
where it is nodata. The area table counts it (:func:`inference.predict.stats.isa_area`), the
built-up polygons outline it (:mod:`inference.predict.vectors`), and a change map's codes are
made to agree with it (:func:`agreeing_codes`), so a change table's stable impervious area can
never exceed either date's impervious area and, where each flip of the class maps is confirmed,
``isa_from = stable + loss`` and ``isa_to = stable + gain`` hold to the pixel.

A change rule on probabilities (:func:`inference.predict.change.arrays.margin_change`,
:func:`inference.predict.change.arrays.spectral_change`) decides *whether* a pixel changed; the
class maps decide what it is at each date:

- stable impervious (1) where both class maps are impervious;
- gain (2) where the rule calls gain and the class maps go from pervious to impervious, loss
  (3) the other way round;
- stable pervious (0) everywhere else valid: pervious at both dates, a flip of the class maps
  the rule does not confirm (counted in neither date's stable area: the change table's
  ``isa_from_km2``/``isa_to_km2`` show it), or a rule's change the class maps do not make.

Pure functions of arrays (the change map streams them block by block).
"""

from __future__ import annotations

import numpy as np

from inference.predict.change.arrays import GAIN, LOSS, NODATA, STABLE_ISA, STABLE_PERVIOUS


def impervious(classes: np.ndarray, isa_class: int) -> np.ndarray:
    """Where a class map says impervious (the one definition; nodata never is).

    Args:
        classes: class map values (uint8, 255 for nodata).
        isa_class: the impervious class's value.
    """
    if isa_class == NODATA:
        raise ValueError(f"the impervious class cannot be the nodata value {NODATA}")
    return np.asarray(classes) == isa_class


def agreeing_codes(rule: np.ndarray, classes_from: np.ndarray, classes_to: np.ndarray,
                   isa_class: int) -> np.ndarray:
    """A change rule's codes made to agree with the two dates' class maps (module docstring).

    Args:
        rule: the rule's codes (0-3, :data:`NODATA`).
        classes_from: the earlier date's class map on the same pixels.
        classes_to: the later date's.
        isa_class: the impervious class's value.

    Returns:
        uint8 codes; nodata where the rule's code or either class map is nodata.
    """
    rule = np.asarray(rule)
    if not rule.shape == np.shape(classes_from) == np.shape(classes_to):
        raise ValueError(f"the change codes {rule.shape} and class maps {np.shape(classes_from)}"
                         f", {np.shape(classes_to)} differ in shape")
    was, now = impervious(classes_from, isa_class), impervious(classes_to, isa_class)
    code = np.where(was & now, STABLE_ISA, STABLE_PERVIOUS).astype(np.uint8)
    code[(rule == GAIN) & ~was & now] = GAIN
    code[(rule == LOSS) & was & ~now] = LOSS
    code[(rule == NODATA) | (np.asarray(classes_from) == NODATA)
         | (np.asarray(classes_to) == NODATA)] = NODATA
    return code
