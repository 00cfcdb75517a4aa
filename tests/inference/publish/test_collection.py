"""Publishing a series as an ImageCollection: when its manifests and app are saved.

The Earth Engine calls run through the real earthengine-api client against ``ee_http``, the
uploads through the real Cloud Storage client against the emulator.
"""

import json

import pytest

from contract.publishing import PublishOptions
from core.errors import ConfigError, EarthEngineError
from inference.publish.assets import connect
from inference.publish.collection import SeriesRequest, image_name, publish_series

MONTH = "2023-06"
NAME = "projects/my-project/assets/isamap/isa_wuhan"


def series(cogs, bucket, wait=False):
    return SeriesRequest("isamap/isa_wuhan", {MONTH: (cogs.class_path, cogs.prob_path)}, {},
                         PublishOptions(project="my-project", gcs_prefix=f"gs://{bucket}/isa",
                                        wait=wait))


def publish(request, out, **kw):
    import ee

    return publish_series(request, out, assets=connect("offline", ee), echo=lambda _: None,
                          poll_seconds=0, **kw)


def test_a_refused_series_publication_saves_no_manifest_or_app(
        cogs, tmp_path, ee_http, gcs_emulator, gcs_bucket):
    """isamap-map --publish saved the collection's manifests and app before any Earth Engine
    call: a publication refused (an image of the series already there) left files claiming
    it, and replaced those of an earlier run."""
    ee_http.add_asset(NAME, "IMAGE_COLLECTION")
    ee_http.add_asset(image_name(NAME, MONTH), "IMAGE")
    fresh = tmp_path / "fresh"
    with pytest.raises(ConfigError, match="--overwrite"):
        publish(series(cogs, gcs_bucket), fresh)
    assert not fresh.exists() or list(fresh.iterdir()) == []
    assert not ee_http.calls("POST", "image:import")
    earlier = publish(series(cogs, "another-bucket"), tmp_path / "pub", dry_run=True)
    saved = (earlier.manifest_path.read_bytes(), earlier.script_path.read_bytes())
    with pytest.raises(ConfigError, match="--overwrite"):
        publish(series(cogs, gcs_bucket), tmp_path / "pub")
    assert (earlier.manifest_path.read_bytes(), earlier.script_path.read_bytes()) == saved


def test_the_series_files_are_saved_once_ingestion_started_even_if_the_wait_fails(
        cogs, tmp_path, ee_http, gcs_emulator, gcs_bucket):
    ee_http.add_asset("projects/my-project/assets/isamap")
    ee_http.fail("GET", "/operations/", 403, "The caller does not have permission", times=10)
    with pytest.raises(EarthEngineError):
        publish(series(cogs, gcs_bucket, wait=True), tmp_path / "pub")
    assert ee_http.calls("POST", "image:import")  # the task started
    document = json.loads((tmp_path / "pub" / "isa_wuhan.collection.json").read_text())
    assert document["collection"] == NAME and list(document["images"]) == [MONTH]
    assert NAME in (tmp_path / "pub" / "isa_wuhan.app.js").read_text()
