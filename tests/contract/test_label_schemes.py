"""The land-cover label tables: every code of every source mapped or ignored on purpose."""

from __future__ import annotations

import numpy as np
import pytest

from contract.bands import LABEL_NODATA
from contract.label_schemes import (
    LANDCOVER_CLASSES,
    SCHEMES,
    get_landcover_scheme,
    isa_class_of,
)
from core.errors import ConfigError

# Each product's published legend, written out independently of the tables: (code, class or
# None when the paper's scheme ignores it). A table that forgets, adds or moves a code fails.
LEGENDS = {
    "worldcover": {0: None, 10: "woodland", 20: "woodland", 30: "grassland", 40: "cropland",
                   50: "impervious", 60: "bare_land", 70: "snow_ice", 80: "water", 90: None,
                   95: None, 100: None},
    "dynamicworld": {0: "water", 1: "woodland", 2: "grassland", 3: None, 4: "cropland",
                     5: "woodland", 6: "impervious", 7: "bare_land", 8: "snow_ice"},
    "fromglc10": {0: None, 10: "cropland", 20: "woodland", 30: "grassland", 40: "woodland",
                  50: None, 60: "water", 70: None, 80: "impervious", 90: "bare_land",
                  100: "snow_ice"},
    "eolearn_lulc": {0: None, 1: "cropland", 2: "woodland", 3: "grassland", 4: "woodland",
                     5: "water", 6: None, 7: None, 8: "impervious", 9: "bare_land",
                     10: "snow_ice"},
    "chesapeake": {0: None, 1: "water", 2: "woodland", 3: "grassland", 4: "bare_land",
                   5: "impervious", 6: "impervious", 15: None},
    # NLCD legend (USGS): 11 open water, 12 ice/snow, 21-24 developed open space / low /
    # medium / high intensity, 31 barren, 41-43 deciduous / evergreen / mixed forest, 51 dwarf
    # scrub, 52 shrub, 71 grassland, 72 sedge, 73 lichens, 74 moss, 81 pasture, 82 crops, 90
    # woody wetlands, 95 emergent herbaceous wetlands
    "nlcd": {0: None, 11: "water", 12: "snow_ice", 21: "grassland", 22: "impervious",
             23: "impervious", 24: "impervious", 31: "bare_land", 41: "woodland",
             42: "woodland", 43: "woodland", 51: "woodland", 52: "woodland", 71: "grassland",
             72: "grassland", 73: None, 74: None, 81: "grassland", 82: "cropland", 90: None,
             95: None},
}
IGNORED_NAMES = ("wetland", "flooded", "mangrove", "tundra", "moss", "no data")


def test_the_seven_classes_of_the_paper():
    assert LANDCOVER_CLASSES == ("cropland", "woodland", "grassland", "water", "impervious",
                                 "bare_land", "snow_ice")
    assert isa_class_of(SCHEMES["worldcover"].manifest_classes()) == 4
    assert isa_class_of({"0": "pervious", "1": "impervious"}) == 1


@pytest.mark.parametrize("source", sorted(LEGENDS))
def test_every_code_is_mapped_or_ignored_on_purpose(source):
    scheme = SCHEMES[source]
    legend = LEGENDS[source]
    assert {c.code for c in scheme.codes} == set(legend)
    table = scheme.lookup_table()
    for code in scheme.codes:
        want = legend[code.code]
        assert code.target == want, code
        assert table[code.code] == (LABEL_NODATA if want is None
                                    else LANDCOVER_CLASSES.index(want))
        # ignoring is only ever for wetland, tundra and no data
        assert (want is None) == any(w in code.name for w in IGNORED_NAMES), code
    # codes outside the legend are never mapped to a class by accident
    others = np.setdiff1d(np.arange(256), list(legend))
    assert (table[others] == LABEL_NODATA).all()
    frm, to = scheme.remap_lists()
    assert dict(zip(frm, to, strict=True)) == {k: int(table[k]) for k in legend}


def test_apply_maps_rasters_of_any_integer_type():
    scheme = get_landcover_scheme("landcover:chesapeake")
    codes = np.array([[0, 1, 2, 3], [4, 5, 6, 15], [-1, 300, 7, 255]], dtype=np.int64)
    assert scheme.apply(codes).tolist() == [[255, 3, 1, 2], [5, 4, 4, 255],
                                            [255, 255, 255, 255]]
    assert scheme.apply(codes.astype(np.int16)).dtype == np.uint8
    with pytest.raises(ConfigError, match="landcover:worldcover"):
        get_landcover_scheme("landcover:osm")


def test_real_eolearn_land_use_raster(shared_data):
    """The eo-learn example's LULC (FROM-GLC-style codes) maps with nothing left over."""
    lulc = np.load(shared_data / "eolearn_slovenia" / "LULC.npy")[..., 0]
    mapped = SCHEMES["eolearn_lulc"].apply(lulc)
    assert set(np.unique(lulc)) <= set(LEGENDS["eolearn_lulc"])
    assert ((lulc == 8) == (mapped == LANDCOVER_CLASSES.index("impervious"))).all()
    assert (mapped[lulc == 0] == LABEL_NODATA).all()
    assert set(np.unique(mapped)) - {LABEL_NODATA} <= set(range(7))


def test_only_nlcds_developed_classes_are_impervious_fractions_inside_their_ranges():
    """NLCD defines developed open space, low, medium and high intensity as under 20 %,
    20-49 %, 50-79 % and 80-100 % impervious; each fraction is its range's middle, and no
    other source's code is a share of impervious surface."""
    from contract.label_schemes import NLCD_IMPERVIOUS, PRODUCT_CHANNELS

    ranges = {21: (0.0, 0.2), 22: (0.2, 0.5), 23: (0.5, 0.8), 24: (0.8, 1.0)}
    assert dict(SCHEMES["nlcd"].impervious) == dict(NLCD_IMPERVIOUS)
    assert all(lo < NLCD_IMPERVIOUS[c] < hi for c, (lo, hi) in ranges.items())
    assert all(not s.impervious for name, s in SCHEMES.items() if name != "nlcd")
    classes, fractions = SCHEMES["nlcd"].input_tables()
    assert classes[22] == LANDCOVER_CLASSES.index("impervious") and classes[95] == 255
    assert classes[200] == 255 and fractions[23] == np.float32(0.65) and fractions[41] == 0
    assert PRODUCT_CHANNELS[-1] == "impervious_fraction" and len(PRODUCT_CHANNELS) == 8
