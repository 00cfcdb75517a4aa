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


def test_zones_reaching_past_the_map_are_told_once_with_the_largest_share(caplog):
    """A district cut by the map's edge kept its row with km² of the mapped part only and
    nodata_km2 0, so its ISA total read as the district's: it is now said, naming the zone."""
    import logging

    from inference.predict.stats import Zone
    from inference.predict.zone_cover import check_zones, share_outside

    half = _polygon(_box(505_000, 4_000_000, 515_000, 4_008_000))  # its east half outside
    quarter = _polygon(_box(502_500, 4_000_000, 512_500, 4_008_000))  # a quarter outside
    inside = _polygon(_box(501_000, 4_001_000, 509_000, 4_007_000))
    assert share_outside(half, MAP) == pytest.approx(0.5, abs=0.01)
    assert share_outside(quarter, MAP) == pytest.approx(0.25, abs=0.01)
    assert share_outside(inside, MAP) == 0.0
    zones = [Zone("east", half), Zone("mid", quarter), Zone("core", inside)]
    with caplog.at_level(logging.WARNING, logger="inference.predict.zone_cover"):
        check_zones(zones, MAP, CRS, "--zones z.geojson")
        check_zones(zones, MAP, CRS, "--zones z.geojson", tell=False)  # a series' date
        check_zones([Zone("core", inside), Zone("all", None)], MAP, CRS, "--zones z.geojson")
    assert [r.getMessage() for r in caplog.records] == [
        "2 of the 3 zones of --zones z.geojson reach past the map (most: east, 50 % of it "
        "outside): their rows count the mapped part only"]
