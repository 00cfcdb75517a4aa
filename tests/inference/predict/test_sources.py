"""The bands a model reads, found in a stack by name (inference.predict.sources)."""

from __future__ import annotations

import pytest

from core.errors import InputDataError
from inference.predict.sources import select_bands
from tests.support.rasters import BANDS


def test_bands_are_found_by_name_and_a_missing_or_twice_named_band_is_refused():
    """ESA's zero-padded names are isamap's own; a missing band and a band named twice (which
    of the two a model would read is unknown) are refused, saying what the stack holds."""
    assert select_bands(("VV", "VH", "B02", "B03", "B04", "B08"), BANDS) == [3, 4, 5, 6, 1, 2]
    with pytest.raises(InputDataError) as missing:
        select_bands(BANDS[:4], BANDS)
    assert str(missing.value) == ("the input stack lacks band(s) ['VV', 'VH'] the model needs; "
                                  "it has ['B2', 'B3', 'B4', 'B8']. Export those bands or use a "
                                  "model trained on these.")
    with pytest.raises(InputDataError) as twice:
        select_bands(("B2", "B02", "B3", "B4", "B8", "VV", "VH"), BANDS)
    assert str(twice.value) == ("the input names band B2 twice (B2 and B02); give a stack with "
                                "one band of each name")
