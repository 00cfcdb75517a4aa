"""Zone names from the zones' own properties: GADM's NAME_<n>, --zones-name, repeated names."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from core.errors import InputDataError
from inference.predict.stats import load_zones, zone_name
from inference.predict.zone_names import zone_names

UTM = "EPSG:32650"
GADM = {"GID_0": "CHN", "NAME_0": "China", "GID_1": "CHN.13_1", "NAME_1": "Hubei",
        "GID_2": "CHN.13.16_1", "NAME_2": "Jiang'an", "TYPE_2": "Qu"}


def _box(west: float, east: float, south: float, north: float,
         properties: dict) -> dict:
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    return {"type": "Feature", "properties": properties,
            "geometry": {"type": "Polygon", "coordinates": [ring]}}


def _districts(path: Path) -> Path:
    """Two GADM level-2 districts of one province over the test stack (in UTM 50N)."""
    path.write_text(json.dumps({
        "type": "FeatureCollection", "crs": {"type": "name", "properties": {"name": UTM}},
        "features": [_box(500000, 500750, 3398800, 3400000, GADM),
                     _box(500750, 501500, 3398800, 3400000,
                          {**GADM, "GID_2": "CHN.13.16_2", "NAME_2": "Jianghan"})]}))
    return path


def test_the_finest_gadm_level_names_a_zone_unless_a_field_is_given():
    assert zone_name(GADM) == "Jiang'an"
    assert zone_name({**GADM, "NAME_10": "ward 3"}) == "ward 3"  # by number, not as text
    assert zone_name({**GADM, "name": "own"}) == "own"
    assert zone_name(GADM, "NAME_1") == "Hubei"
    assert zone_name({"NAME_0": "", "id": 3}) is None


def test_a_missing_field_names_those_there_and_a_repeated_name_stays_apart(tmp_path):
    path = _districts(tmp_path / "gadm.geojson")
    with pytest.raises(InputDataError, match=r"no property 'NAME_3'.*'NAME_2'.*--zones-name"):
        load_zones(path, UTM, "NAME_3")
    assert [z.name for z in load_zones(path, UTM)] == ["Jiang'an", "Jianghan"]
    assert [z.name for z in load_zones(path, UTM, "NAME_1")] == ["Hubei", "Hubei (feature 1)"]


def test_a_feature_without_the_name_the_others_have_is_refused(tmp_path):
    """Three features named by `name` and one not: the map went on with a row `feature_3`
    (a new user's walk); docs/mapping.md promises a feature without the field is refused."""
    path = tmp_path / "zones.geojson"
    named = [_box(500000 + 200 * i, 500200 + 200 * i, 3398800, 3400000, {"name": f"z{i}"})
             for i in range(3)]
    path.write_text(json.dumps({
        "type": "FeatureCollection", "crs": {"type": "name", "properties": {"name": UTM}},
        "features": [*named, _box(500600, 500800, 3398800, 3400000, {"id": 7})]}))
    with pytest.raises(InputDataError, match=r"^feature 3 of --zones .* has no name \('name', "
                       r"'NAME' or 'NAME_<n>'\) and other features have one \(it has 'id'\); "
                       r"name it, or give --zones-name"):
        load_zones(path, UTM)
    # a file that names none of its zones keeps the generated names
    path.write_text(json.dumps({
        "type": "FeatureCollection", "crs": {"type": "name", "properties": {"name": UTM}},
        "features": [_box(500000, 500200, 3398800, 3400000, {"id": i}) for i in range(2)]}))
    assert [z.name for z in load_zones(path, UTM)] == ["feature_0", "feature_1"]


def test_isamap_predict_tables_name_the_districts(tmp_path, capsys):
    from cli.predict import predict_main
    from tests.support.rasters import BANDS, smooth_stack, write_stack
    from training.modelfile import ModelMeta, save_model_file
    from training.models import create_model

    kwargs = {"widths": [4, 8, 8, 16, 16]}
    meta = ModelMeta("unet", len(BANDS), 2, BANDS, (0.0,) * 6, (1.0,) * 6, model_kwargs=kwargs)
    model = save_model_file(tmp_path / "unet.pt", create_model("unet", len(BANDS), 2, **kwargs),
                            meta)
    stack = write_stack(tmp_path / "stack.tif", smooth_stack(120, 150))
    zones = _districts(tmp_path / "gadm.geojson")
    common = ["--model", str(model), "--input", str(stack), "--tile", "64", "--overlap", "16",
              "--quiet", "--precision", "fp32", "--zones", str(zones)]
    assert predict_main([*common, "--out", str(tmp_path / "a" / "isa")]) == 0
    with open(tmp_path / "a" / "isa_area.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["zone"] for r in rows] == ["Jiang'an", "Jianghan"]
    valid = np.array([float(r["valid_km2"]) for r in rows])
    assert valid == pytest.approx([0.75 * 1.2, 0.75 * 1.2])
    assert predict_main([*common, "--out", str(tmp_path / "b" / "isa"),
                         "--zones-name", "TYPE_3"]) == 2
    assert "no property 'TYPE_3'" in capsys.readouterr().err
    assert not (tmp_path / "b" / "isa_class.tif").exists()  # refused before predicting


def test_features_named_at_two_gadm_levels_are_refused_naming_the_mix():
    """A province's row (NAME_1) beside its districts' (NAME_2) was tabled as one more
    district; a --zones-name naming every feature is the way to table them anyway."""
    rows = [{**GADM, "NAME_2": "Hefei"}, {"NAME_0": "China", "NAME_1": "Hubei"},
            {**GADM, "NAME_2": "Feidong"}]
    with pytest.raises(InputDataError) as error:
        zone_names(rows, None, "--zones z.geojson")
    assert str(error.value) == (
        "the features of --zones z.geojson are named at different levels: NAME_1 (feature 1) "
        "and NAME_2 (features 0, 2), and one table would mix them; give a file of one level, "
        "or --zones-name a property naming every feature at one level")
    assert len(zone_names(rows, "NAME_1", "--zones z.geojson")) == 3  # one level named: kept
