"""``--normalise-to`` brings radiances onto the earlier date and leaves class codes alone."""

from __future__ import annotations

import numpy as np
from affine import Affine

from contract.geotiff import write_geotiff
from inference.predict.change.inputs import normalised_source

BANDS = ["B4", "B8", "product"]


def test_the_product_codes_are_read_as_they_are(tmp_path):
    rng = np.random.default_rng(0)
    radiance = rng.uniform(0.02, 0.4, (2, 64, 64)).astype(np.float32)
    codes = rng.choice([11, 23, 41, 82], (1, 64, 64)).astype(np.float32)
    transform = Affine(10, 0, 500000, 0, -10, 3400000)

    def stack(name, bands):
        return str(write_geotiff(tmp_path / name, np.concatenate([bands, codes]), transform,
                                 "EPSG:32650", None, descriptions=BANDS))

    later = stack("later.tif", radiance)
    earlier = stack("earlier.tif", radiance * 1.2 + 0.01)  # another gain and offset
    source, record = normalised_source(later, earlier, BANDS)
    read = source.read([1, 2, 3])
    np.testing.assert_array_equal(read[2], codes[0])  # codes, not a fitted line of them
    np.testing.assert_allclose(read[:2], radiance * 1.2 + 0.01, rtol=1e-3, atol=1e-4)
    assert record["bands"] == ["B4", "B8"]
