"""Zones that miss the map are refused by their outline, not only by their bounding box."""

from __future__ import annotations

import pytest

from core.errors import InputDataError
from inference.predict.zone_cover import check_zones_touch

#: a 10 km x 8 km map in UTM metres
MAP = (500_000.0, 4_000_000.0, 510_000.0, 4_008_000.0)
CRS = "EPSG:32650"


def _polygon(*rings):
    return {"type": "Polygon", "coordinates": [[list(p) for p in ring] for ring in rings]}


def _box(w, s, e, n):
    return [(w, s), (e, s), (e, n), (w, n), (w, s)]


def test_a_ring_around_the_map_and_an_l_beside_it_are_refused():
    # both boxes overlap the map's; neither outline reaches it
    ring = _polygon(_box(490_000, 3_990_000, 520_000, 4_018_000),
                    _box(499_000, 3_999_000, 511_000, 4_009_000))
    ell = _polygon([(511_000, 3_990_000), (520_000, 3_990_000), (520_000, 4_018_000),
                    (495_000, 4_018_000), (495_000, 4_009_000), (511_000, 4_009_000),
                    (511_000, 3_990_000)])
    for zones in ([ring], [ell], [ring, ell]):
        with pytest.raises(InputDataError, match=r"no zone of --zones z\.geojson touches the map"):
            check_zones_touch(zones, MAP, CRS, "--zones z.geojson")


def test_a_zone_over_one_corner_pixel_or_the_whole_map_passes():
    corner = _polygon(_box(509_990, 4_007_990, 530_000, 4_030_000))  # one 10 m pixel inside
    thin = _polygon(_box(505_000, 3_990_000, 505_001, 4_018_000))  # 1 m wide, across the map
    ring = _polygon(_box(490_000, 3_990_000, 520_000, 4_018_000),
                    _box(499_000, 3_999_000, 511_000, 4_009_000))
    for zones in ([corner], [thin], [ring, corner], [None], []):
        check_zones_touch(zones, MAP, CRS, "--zones z.geojson")  # no error
