"""``--scl-mask``: the SCL classes a local composite leaves out, as the user writes them."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import ConfigError
from gee_export.local.sentinel2 import SCL_MASKED_CLASSES, clear_from_scl
from gee_export.local.stack import scl_mask_classes


def test_classes_are_read_sorted_and_none_masks_nothing_but_nodata():
    assert scl_mask_classes("11, 3") == (3, 11)
    assert scl_mask_classes("3,8,9,10,11") == SCL_MASKED_CLASSES
    assert scl_mask_classes("none") == ()
    scl = np.array([0, 3, 8, 10, 4])
    assert clear_from_scl(scl, scl_mask_classes("none")).tolist() == [False, True, True, True,
                                                                       True]
    assert clear_from_scl(scl, scl_mask_classes("3,11")).tolist() == [False, False, True, True,
                                                                       True]


@pytest.mark.parametrize("text", ["", "0", "12", "3,x", "cloud"])
def test_anything_but_classes_1_to_11_is_refused_with_the_default_shown(text):
    with pytest.raises(ConfigError, match="3,8,9,10,11"):
        scl_mask_classes(text)
