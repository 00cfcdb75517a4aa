import json

import pytest

from contract import regions
from core.errors import ConfigError, UnknownRegionError

REQUIRED = ["wuhan", "nanjing", "suzhou", "shanghai", "beijing", "baoding", "langfang", "urumqi",
            "harbin", "taiyuan", "ganzi", "zhaotong"]


def test_wuhan_is_the_papers_study_area():
    r = regions.get_region("Wuhan")
    assert r.bbox == pytest.approx((113 + 41 / 60, 29 + 58 / 60, 115 + 5 / 60, 31 + 22 / 60))


@pytest.mark.parametrize("name", REQUIRED)
def test_required_regions_exist_and_are_plausible(name):
    r = regions.get_region(name)
    lon, lat = r.centroid
    assert 73 < lon < 135 and 18 < lat < 54  # inside China's extent


def test_unknown_region_lists_known_ones():
    with pytest.raises(UnknownRegionError) as err:
        regions.get_region("atlantis")
    assert "wuhan" in str(err.value) and "--region-file" in str(err.value)


def test_bbox_parsing_and_errors():
    r = regions.parse_bbox("114.2, 30.4,114.5,30.7")
    assert r.bbox == (114.2, 30.4, 114.5, 30.7)
    for bad in ("1,2,3", "a,b,c,d", "114.5,30.4,114.2,30.7"):
        with pytest.raises(ConfigError):
            regions.parse_bbox(bad)


def test_geojson_feature_collection(tmp_path):
    poly = {"type": "Polygon", "coordinates": [[[114, 30], [114.5, 30], [114.5, 30.6], [114, 30]]]}
    path = tmp_path / "aoi.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": poly}]}))
    r = regions.load_geojson(path)
    assert r.name == "aoi" and r.bbox == (114, 30, 114.5, 30.6) and r.to_geojson() == poly


def test_geojson_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        regions.load_geojson(tmp_path / "missing.geojson")
    bad = tmp_path / "bad.geojson"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match=f"^--region-file {bad} is not GeoJSON"):
        regions.load_geojson(bad)
    with pytest.raises(ConfigError, match=f"^--zones {tmp_path} is not GeoJSON: it is a folder"):
        regions.read_geojson(tmp_path, "--zones")
    projected = tmp_path / "utm.geojson"
    projected.write_text(json.dumps({"type": "Polygon", "coordinates": [
        [[500000, 3300000], [510000, 3300000], [510000, 3310000], [500000, 3300000]]]}))
    with pytest.raises(ConfigError, match="projected"):
        regions.load_geojson(projected)


def test_resolve_region_requires_exactly_one():
    with pytest.raises(ConfigError, match="exactly one"):
        regions.resolve_region()
    with pytest.raises(ConfigError):
        regions.resolve_region("wuhan", bbox="1,2,3,4")
    assert regions.resolve_region(bbox="1,2,3,4").bbox == (1, 2, 3, 4)


def test_projected_geojson_that_names_its_crs_is_reprojected(tmp_path):
    utm = tmp_path / "utm.geojson"
    utm.write_text(json.dumps({
        "type": "Polygon", "crs": {"type": "name", "properties": {"name": "EPSG:32650"}},
        "coordinates": [[[238000, 3385000], [248000, 3385000], [248000, 3395000],
                         [238000, 3395000], [238000, 3385000]]]}))
    region = regions.load_geojson(utm)
    west, south, east, north = region.bbox
    assert 114.2 < west < east < 114.4 and 30.5 < south < north < 30.7  # central Wuhan


def test_yangtze_river_economic_belt_holds_the_papers_cities():
    belt = regions.get_region("yreb")
    west, south, east, north = belt.bbox
    for name in ("wuhan", "nanjing", "suzhou", "shanghai", "ganzi", "zhaotong"):
        w, s, e, n = regions.get_region(name).bbox
        assert west <= w and s >= south and e <= east and n <= north, name
    assert not west <= regions.get_region("beijing").centroid[0] <= east or \
        regions.get_region("beijing").centroid[1] > north  # Beijing is north of the belt


@pytest.mark.parametrize("bbox,says", [
    ("170,10,-170,11", "the box crosses the antimeridian (west 170 lies east of east -170), "
     "which isamap does not support: split it at 180 degrees into --bbox=170,10,180,11 and "
     "--bbox=-180,10,-170,11, each with its own --out"),
    ("10,60,11,55", "south 60 is not below north 55; the box is WEST,SOUTH,EAST,NORTH"),
    ("10,95,11,96", "south 95 is no latitude (they run from -90 to 90)"),
    ("10,-20,11,91", "north 91 is no latitude"),
    ("-200,10,-199,11", "west -200 is no longitude (they run from -180 to 180); give it as 160"),
    ("10,10,10,11", "west and east are both 10: the box has no width"),
    # west and east swapped: not a box round the world across 180 degrees (a new user's walk)
    ("114.35,30.5,114.2,30.62", "west 114.35 lies east of east 114.2; the box is "
     "WEST,SOUTH,EAST,NORTH: did you mean --bbox=114.2,30.5,114.35,30.62?"),
])
def test_each_broken_bbox_rule_is_named(bbox, says):
    """A latitude error spoke of west < east; an antimeridian box got no advice."""
    with pytest.raises(ConfigError) as err:
        regions.parse_bbox(bbox)
    assert says in str(err.value)
    if "latitude" in says or "south" in says:
        assert "west <" not in str(err.value)


def test_a_region_file_with_latitude_first_is_said_to_be_swapped_not_projected(tmp_path):
    ring = [[30.5, 114.2], [30.5, 114.35], [30.62, 114.35], [30.62, 114.2], [30.5, 114.2]]
    path = tmp_path / "swapped.geojson"
    path.write_text(json.dumps({"type": "Polygon", "coordinates": [ring]}))
    with pytest.raises(ConfigError, match=r"latitudes beyond 90 degrees \(up to 114.35\) and "
                                          r"longitudes within 90: its coordinates look swapped"):
        regions.load_geojson(path)


def test_a_region_file_across_the_antimeridian_is_refused_not_mapped_round_the_world(tmp_path):
    """Fiji's polygon became a box from -179.9 to 179.9 degrees (only a UTM warning)."""
    ring = [[179.9, -16.9], [-179.9, -16.9], [-179.9, -16.7], [179.9, -16.7], [179.9, -16.9]]
    path = tmp_path / "fiji.geojson"
    path.write_text(json.dumps({"type": "Polygon", "coordinates": [ring]}))
    with pytest.raises(ConfigError) as err:
        regions.load_geojson(path)
    assert "spans longitudes -179.9 to 179.9, so it crosses the antimeridian" in str(err.value)
    assert "--bbox=179.9,-16.9,180,-16.7 and --bbox=-180,-16.9,-179.9,-16.7" in str(err.value)
