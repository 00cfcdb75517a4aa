import copy

import pytest

from core.errors import ConfigError
from inference.publish.asset_manifest import (
    asset_name,
    build_manifest,
    validate_manifest,
)
from inference.publish.code_editor import code_editor_script

URIS = {"class": "gs://maps-bucket/isa/w_class.tif", "probability": "gs://maps-bucket/isa/w_prob.tif"}
NAME = "projects/my-project/assets/isamap/wuhan_2023-06"


def manifest(mode="ingest"):
    return build_manifest(NAME, URIS, month="2023-06", mode=mode,
                          properties={"model": "unet", "metrics": {"iou": 0.8}, "n": 3})


def test_ingestion_manifest_has_the_documented_shape():
    m = manifest()
    validate_manifest(m)
    assert m["tilesets"] == [
        {"id": "isa_class", "sources": [{"uris": [URIS["class"]]}]},
        {"id": "isa_probability", "sources": [{"uris": [URIS["probability"]]}]}]
    assert [(b["id"], b["pyramidingPolicy"], b["missingData"]) for b in m["bands"]] == [
        ("isa_class", "MODE", {"values": [255]}), ("isa_probability", "MEAN", {"values": [255]})]
    assert all(b["tilesetBandIndex"] == 0 for b in m["bands"])
    assert (m["startTime"], m["endTime"]) == ("2023-06-01T00:00:00Z", "2023-07-01T00:00:00Z")
    assert m["properties"] == {"model": "unet", "metrics_iou": 0.8, "n": 3}


def test_external_manifest_leaves_pyramids_to_the_cogs():
    m = manifest("external")
    validate_manifest(m, "external")
    assert all("pyramidingPolicy" not in b for b in m["bands"])


@pytest.mark.parametrize(("change", "message"), [
    (lambda m: m.update(name="users/me/x"), "name"),
    (lambda m: m["bands"][0].update(pyramidingPolicy="AVERAGE"), "pyramidingPolicy"),
    (lambda m: m["bands"][1].update(tilesetId="nope"), "names no tileset"),
    (lambda m: m["bands"][1].update(id="isa_class"), "not unique"),
    (lambda m: m["bands"][0].update(tilesetBandIndex=-1), "tilesetBandIndex"),
    (lambda m: m["bands"][0].update(missingData={"values": ["255"]}), "list of numbers"),
    (lambda m: m["bands"][0].update(nodata=255), "does not define"),
    (lambda m: m["tilesets"][0]["sources"][0].update(uris=["/tmp/a.tif"]), "gs://"),
    (lambda m: m["tilesets"][0].update(dataType="BYTE"), "dataType"),
    (lambda m: m.update(startTime="2023-06-01"), "RFC 3339"),
    (lambda m: m.update(endTime="2023-05-01T00:00:00Z"), "after startTime"),
    (lambda m: m["properties"].update({"system:time_start": 1}), "deprecated"),
    (lambda m: m["properties"].update(nested={"a": 1}), "string, number"),
    (lambda m: m.update(tilesets=[]), "non-empty"),
    (lambda m: m.update(pyramidPolicy="MODE"), "does not define"),
])
def test_validator_rejects_departures_from_the_schema(change, message):
    m = copy.deepcopy(manifest())
    change(m)
    with pytest.raises(ConfigError, match=message):
        validate_manifest(m)


def test_external_images_take_one_cog_per_tileset():
    m = manifest("external")
    m["tilesets"][0]["sources"].append({"uris": [URIS["probability"]]})
    with pytest.raises(ConfigError, match="one COG"):
        validate_manifest(m, "external")


def test_asset_names():
    assert asset_name("isamap/x", "proj-1") == "projects/proj-1/assets/isamap/x"
    assert asset_name("users/me/x").startswith("projects/earthengine-legacy/assets/users/me")
    with pytest.raises(ConfigError, match="--project"):
        asset_name("isamap/x")


def test_code_editor_script_names_the_asset_and_its_bands():
    m = manifest()
    script = code_editor_script(NAME, [b["id"] for b in m["bands"]])
    assert f"ee.Image(\"{NAME}\")" in script
    assert "Map.centerObject(image" in script
    assert "image.select(\"isa_class\")" in script and "image.select(\"isa_probability\")" in script
    assert script.count("Map.addLayer(") == 2 and "palette" in script
    only_class = code_editor_script(NAME, ["isa_class"])
    assert "isa_probability" not in only_class


@pytest.mark.parametrize(("asset_id", "says"), [
    ("projects/my-proj/assets/my maps/isa", "the name 'my maps' holds a space; asset and "
     "folder names take only letters, digits, '_' and '-'"),
    ("projects/My-Proj/assets/maps/isa", "the project 'My-Proj' has upper-case letters"),
    ("projects/my-proj/assets/maps//isa", "it has an empty folder name ('//'"),
    ("projects/" + "a" * 70 + "/assets/x", "is 70 characters long; project ids have 5 to 63"),
    ("users/me/isa map", "the name 'isa map' holds a space"),
    ("projects/my-proj/assets/isa:2019", "holds ':'"),
])
def test_asset_ids_name_the_rule_they_break(asset_id, says):
    """Each of these was 'is not projects/<project>/assets/<path>', or passed (legacy ids)."""
    with pytest.raises(ConfigError) as err:
        asset_name(asset_id)
    assert says in str(err.value)
    assert asset_name("projects/my-proj/assets/Maps/ISA_2019-06") == \
        "projects/my-proj/assets/Maps/ISA_2019-06"  # upper case is fine in the path
