"""A stacked scene named with B2/B4 or B3/B8 swapped is refused by its spectra.

The band-name check of the local backend once passed a blue/red swap (the correlations of
the visible bands hold either way round). The real L2A tiles of the sample data, read with
their right names, pass; read with blue and red (or green and near infrared) swapped, every
clear tile is refused, naming ``--trust-band-names``.
"""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

from core.errors import InputDataError
from gee_export.local import plausibility
from gee_export.local.scenes import S2_L2A_ORDER

TILES = (("dynamicworld_s2", "java_s2l2a.tif"), ("terramesh_s1s2", "282D_485L_3_3_S2L2A.tif"),
         ("terramesh_s1s2", "38D_378R_2_3_S2L2A.tif"),
         ("terramesh_s1s2", "433D_629L_3_1_S2L2A.tif"))


def _samples(path, names):
    with rasterio.open(path) as src:
        data = src.read(out_shape=(src.count, 128, 128)).astype(np.float64)
    data[data == 0] = np.nan
    return {name: data[i] / 10000.0 for i, name in enumerate(names)}


@pytest.mark.parametrize("tile", TILES)
@pytest.mark.parametrize(("swap", "words"), [(("B2", "B4"), "B2 and B4 are swapped"),
                                             (("B3", "B8"), "B3 and B8 are swapped")])
def test_swapped_names_are_refused_and_the_right_ones_pass(tile, swap, words, shared_data):
    path = shared_data.joinpath(*tile)
    plausibility.check_s2_band_names(_samples(path, S2_L2A_ORDER), "right")
    a, b = swap
    swapped = tuple({a: b, b: a}.get(n, n) for n in S2_L2A_ORDER)
    with pytest.raises(InputDataError) as refused:
        plausibility.check_s2_band_names(_samples(path, swapped), "S2 stack")
    # B2/B4: the correlations hold either way, the spectra refuse; B3/B8: either may first
    assert words in str(refused.value) or (a == "B3" and "correlate" in str(refused.value))
    assert "--trust-band-names" in str(refused.value)
