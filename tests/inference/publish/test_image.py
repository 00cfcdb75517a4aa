"""Publishing: manifest, upload, and the Earth Engine calls as the service receives them.

The Earth Engine calls run through the real earthengine-api client against ``ee_http`` (its
HTTP layer answers as the REST reference documents: operations, assets, IAM policies, errors),
the uploads through the real Cloud Storage client against the emulator.
"""

import base64
import hashlib
import json
from pathlib import Path

import pytest
import requests

from contract.publishing import PublishOptions
from core.errors import AuthenticationError, ConfigError, EarthEngineError
from inference.publish.assets import acl_ch_arguments, connect, wait_for_ingestion, with_readers
from inference.publish.cog_sources import check_external_bucket, judge_external_bucket
from inference.publish.image import PublishRequest, publish

NAME = "projects/my-project/assets/isamap/wuhan_2023-06"


def request(cogs, mode="ingest", **kw):
    return PublishRequest(cogs.class_path, cogs.prob_path, "isamap/wuhan_2023-06",
                          PublishOptions(project="my-project", **kw), mode=mode)


def run(req, tmp_path, **kw):
    import ee

    lines: list[str] = []
    result = publish(req, tmp_path / "pub", assets=connect("offline", ee), echo=lines.append,
                     poll_seconds=0, sleep=lambda _: None, **kw)
    return result, lines


def test_publish_opens_each_cog_once(cogs, tmp_path, caplog):
    """The class COG was opened twice (its pair check, then its tags for the properties): GDAL's
    own debug lines, through a real rasterio Env, count the openings."""
    import logging

    import rasterio

    with caplog.at_level(logging.DEBUG, logger="rasterio"), rasterio.Env(CPL_DEBUG=True):
        result = publish(request(cogs), tmp_path / "pub", dry_run=True, echo=lambda _: None)
    opened = [r.getMessage() for r in caplog.records if "GDALOpen(" in r.getMessage()]
    assert [sum(f"GDALOpen({path}," in m for m in opened) for path in (cogs.class_path,
                                                                  cogs.prob_path)] == [1, 1], opened
    assert result.manifest["properties"]["model"] == "unet"  # the tags of that one opening


def test_dry_run_prints_and_saves_a_valid_manifest_and_script(cogs, tmp_path):
    lines = []
    result = publish(request(cogs, gcs_prefix="gs://maps-bucket/isa"), tmp_path / "pub",
                     dry_run=True, echo=lines.append)
    assert result.state == "DRY_RUN" and result.task_id is None
    saved = json.loads(result.manifest_path.read_text())
    assert saved == result.manifest
    assert saved["name"] == NAME
    assert saved["tilesets"][0]["sources"][0]["uris"] == [
        "gs://maps-bucket/isa/wuhan_2023-06_class.tif"]
    props = saved["properties"]
    assert props["model"] == "unet" and props["metric_iou"] == 0.8 and props["month"] == "2023-06"
    assert saved["startTime"] == "2023-06-01T00:00:00Z"
    printed = "\n".join(lines)
    assert NAME in printed
    assert result.script_path.read_text() == result.script and result.script in printed
    # the per-project caps are checked in the single image's plan too
    assert "# assets: adds 1 assets" in printed and "per-project caps 10,000 assets" in printed


def test_unauthenticated_publish_fails_clearly_before_any_upload(
        cogs, tmp_path, ee_offline, gcs_emulator, gcs_bucket):
    req = request(cogs, gcs_prefix=f"gs://{gcs_bucket}/isa", public=True)
    with pytest.raises(AuthenticationError, match="earthengine authenticate"):
        publish(req, tmp_path / "pub", assets=connect("my-project", ee_offline),
                echo=lambda _: None)
    # Earth Engine access is the first thing checked: nothing was uploaded for an asset that
    # cannot be made
    assert list(gcs_emulator.client().list_blobs(gcs_bucket)) == []


def test_a_failed_publish_leaves_the_saved_manifest_and_script_alone(
        cogs, tmp_path, ee_offline, gcs_emulator, gcs_bucket):
    """A run refused at authentication rewrote the manifest and script a dry run had saved
    (with its own --month), and from scratch left a script of an asset that does not exist."""
    fresh = tmp_path / "fresh"
    with pytest.raises(AuthenticationError):
        publish(request(cogs, gcs_prefix=f"gs://{gcs_bucket}/isa"), fresh,
                assets=connect("my-project", ee_offline), echo=lambda _: None)
    assert not fresh.exists() or list(fresh.iterdir()) == []  # no script of a missing asset
    dry = publish(request(cogs), tmp_path / "pub", dry_run=True, echo=lambda _: None)
    saved = (dry.manifest_path.read_bytes(), dry.script_path.read_bytes())
    later = PublishRequest(cogs.class_path, cogs.prob_path, "isamap/wuhan_2023-06",
                           PublishOptions(project="my-project",
                                          gcs_prefix=f"gs://{gcs_bucket}/isa"), month="2020-01")
    with pytest.raises(AuthenticationError):
        publish(later, tmp_path / "pub", assets=connect("my-project", ee_offline),
                echo=lambda _: None)
    assert (dry.manifest_path.read_bytes(), dry.script_path.read_bytes()) == saved
    assert b"2020-01" not in saved[0]


def test_uploads_are_verified(cogs, tmp_path, ee_http, gcs_emulator, gcs_bucket):
    run(request(cogs, gcs_prefix=f"gs://{gcs_bucket}/isa"), tmp_path)
    blobs = {b.name: b for b in gcs_emulator.client().list_blobs(gcs_bucket)}
    assert set(blobs) == {"isa/wuhan_2023-06_class.tif", "isa/wuhan_2023-06_prob.tif"}
    for local in (cogs.class_path, cogs.prob_path):  # each object holds its own COG's bytes
        blob = blobs["isa/" + Path(local).name]
        data = Path(local).read_bytes()
        assert blob.md5_hash == base64.b64encode(hashlib.md5(data).digest()).decode()
        assert blob.download_as_bytes() == data


# ---------------------------------------------------------------- ingestion (issue items 1, 2, 8)
def test_ingestion_is_followed_under_the_id_the_server_returned(
        cogs, tmp_path, ee_http, gcs_emulator, gcs_bucket):
    service = ee_http
    service.add_asset("projects/my-project/assets/isamap")
    result, lines = run(request(cogs, gcs_prefix=f"gs://{gcs_bucket}/isa", wait=True,
                                public=True), tmp_path)
    (start,) = service.calls("POST", "image:import")
    assert start.body["imageManifest"]["name"] == NAME
    (operation,) = service.operations.values()
    assert result.operation == operation.name
    assert result.task_id == operation.name.split("/")[-1]
    polls = service.calls("GET", "/operations/")  # PENDING at the start, then one per step
    assert len(polls) == len(service.steps) - 1 and {p.path for p in polls} == {operation.name}
    assert result.state == "COMPLETED"
    assert f"started ingestion task {result.task_id}" in "\n".join(lines)
    assert service.calls("POST", ":setIamPolicy")  # --public applied once it finished


def test_the_script_is_saved_once_ingestion_started_even_if_the_wait_fails(
        cogs, tmp_path, ee_http, gcs_emulator, gcs_bucket):
    """With --wait the manifest and script were saved only after the wait: a poll error (or a
    Ctrl-C) once the ingestion task had started left a running asset without its script."""
    service = ee_http
    service.add_asset("projects/my-project/assets/isamap")
    service.fail("GET", "/operations/", 403, "The caller does not have permission", times=10)
    with pytest.raises(EarthEngineError):
        run(request(cogs, gcs_prefix=f"gs://{gcs_bucket}/isa", wait=True), tmp_path)
    assert service.calls("POST", "image:import")  # the task started
    manifest = tmp_path / "pub" / "wuhan_2023-06.manifest.json"
    assert json.loads(manifest.read_text())["name"] == NAME
    assert NAME in (tmp_path / "pub" / "wuhan_2023-06.js").read_text()


def test_missing_parent_folders_are_created_before_ingestion(
        cogs, tmp_path, ee_http, gcs_emulator, gcs_bucket):
    service = ee_http
    req = PublishRequest(cogs.class_path, cogs.prob_path, "isamap/maps/2023/wuhan",
                         PublishOptions(project="my-project", gcs_prefix=f"gs://{gcs_bucket}/isa"))
    result, lines = run(req, tmp_path)
    creates = service.calls("POST", "projects/my-project/assets$")
    assert [r.query["assetId"] for r in creates] == ["isamap", "isamap/maps",
                                                     "isamap/maps/2023"]
    assert {r.body["type"] for r in creates} == {"FOLDER"}
    assert result.created == ("projects/my-project/assets/isamap",
                              "projects/my-project/assets/isamap/maps",
                              "projects/my-project/assets/isamap/maps/2023")
    assert "created folder projects/my-project/assets/isamap/maps/2023" in lines
    assert service.requests[-1].path.endswith("image:import")  # after the folders
    assert result.state == "SUBMITTED"

    service.requests.clear()  # a second publish into the same folder: one read, no create
    run(PublishRequest(cogs.class_path, cogs.prob_path, "isamap/maps/2023/wuhan_b",
                       PublishOptions(project="my-project", gcs_prefix=f"gs://{gcs_bucket}/isa")),
        tmp_path)
    assert [(r.method, r.path) for r in service.requests] == [
        ("GET", "projects/my-project/assets/isamap/maps/2023"),
        ("POST", "projects/offline/image:import")]


def test_parents_can_be_an_image_collection_and_races_are_harmless(ee_http):
    import ee

    service = ee_http
    assets = connect("offline", ee)
    service.add_asset("projects/proj-one/assets/isamap")  # as if made by another run meanwhile
    created = assets.ensure_parents("projects/proj-one/assets/isamap/wuhan/2023-06",
                                    parent_type="IMAGE_COLLECTION")
    # creating "isamap" is answered 409 (it exists): not ours, not an error
    assert [r.query["assetId"] for r in service.calls("POST", "assets$")] == [
        "isamap", "isamap/wuhan"]
    assert created == ["projects/proj-one/assets/isamap/wuhan"]
    assert service.assets["projects/proj-one/assets/isamap/wuhan"]["type"] == "IMAGE_COLLECTION"
    assert assets.ensure_parents("projects/earthengine-legacy/assets/users/me/x") == []
    service.add_asset("projects/proj-one/assets/img", "IMAGE")
    with pytest.raises(ConfigError, match="is an IMAGE"):
        assets.ensure_parents("projects/proj-one/assets/img/x")


def test_waiting_shows_the_progress_the_operation_reports(cogs, tmp_path, ee_http, capsys,
                                                         monkeypatch):
    import ee

    # a terminal: the bar is drawn (off a terminal it is a log line every 30 s)
    monkeypatch.setattr("core.progress.live_terminal", lambda stream=None: True)

    service = ee_http
    service.steps = (("PENDING", 0.0), ("RUNNING", 0.4), ("RUNNING", 0.8), ("SUCCEEDED", 1.0))
    service.add_asset("projects/my-project/assets/isamap")
    assets = connect("offline", ee)
    ingestion = assets.start_ingestion({"name": NAME, "tilesets": []}, False)
    readings = [assets.operation_status(ingestion.operation)["progress"] for _ in range(2)]
    assert readings == [0.4, 0.8]  # what the service reported, not 0
    assert wait_for_ingestion(assets, ingestion.operation, 0, sleep=lambda _: None) == \
        "COMPLETED"
    assert "100/100" in capsys.readouterr().err  # the bar ends where the task ended


def test_a_failed_ingestion_surfaces_the_server_message(ee_http):
    import ee

    service = ee_http
    service.steps = (("PENDING", 0.0), ("FAILED", 0.1))
    service.add_asset("projects/my-project/assets/isamap")
    assets = connect("offline", ee)
    ingestion = assets.start_ingestion({"name": NAME, "tilesets": []}, False)
    service.operations[ingestion.operation].error = "Cannot read gs://x: permission denied."
    with pytest.raises(EarthEngineError, match="FAILED: Cannot read gs://x: permission denied"):
        wait_for_ingestion(assets, ingestion.operation, 0, sleep=lambda _: None,
                           progress=False)


def test_an_ambiguous_ingestion_failure_is_not_repeated(ee_http):
    import ee

    service = ee_http
    service.add_asset("projects/my-project/assets/isamap")
    service.fail("POST", "image:import", 503, "The service is currently unavailable.")
    with pytest.raises(EarthEngineError, match="Tasks tab"):
        connect("offline", ee).start_ingestion({"name": NAME, "tilesets": []}, False)
    assert len(service.calls("POST", "image:import")) == 1  # it may have started a task
    service.fail("POST", "image:import", 429, "Too many requests.")
    connect("offline", ee).start_ingestion({"name": NAME, "tilesets": []}, False)
    assert len(service.calls("POST", "image:import")) == 3  # a 429 did nothing: retried


# ---------------------------------------------------------------- sharing (issue item 7)
def test_sharing_adds_readers_and_keeps_every_other_binding(ee_http):
    import ee

    service = ee_http
    bindings = [{"role": "roles/owner", "members": ["user:owner@example.com"]},
                {"role": "roles/editor", "members": ["group:lab@example.com"]},
                {"role": "roles/viewer", "members": ["user:early@example.com"]}]
    service.add_asset(NAME, "IMAGE", bindings)
    service.fail("POST", ":setIamPolicy", 409, "There were concurrent policy changes.",
                 rpc_status="ABORTED")
    connect("offline", ee).share(NAME, ["user:a@b.com"], public=True)
    policy = {b["role"]: b["members"] for b in service.policies[NAME]["bindings"]}
    assert policy == {"roles/owner": ["user:owner@example.com"],
                      "roles/editor": ["group:lab@example.com"],
                      "roles/viewer": ["user:early@example.com", "user:a@b.com", "allUsers"]}
    sets = service.calls("POST", ":setIamPolicy")
    assert len(service.calls("POST", ":getIamPolicy")) == len(sets) == 2  # re-read, re-written
    assert sets[-1].body["policy"]["etag"]  # written with the etag it read

    service.requests.clear()
    connect("offline", ee).share(NAME, ["user:a@b.com"], public=True)  # nothing to add
    assert not service.calls("POST", ":setIamPolicy")


def test_reader_helpers():
    assert with_readers({"bindings": []}, [], False) == {"bindings": []}
    assert with_readers({}, ["user:a@b.com"], False)["bindings"] == [
        {"role": "roles/viewer", "members": ["user:a@b.com"]}]
    assert acl_ch_arguments(["user:a@b.com", "group:g@b.com"], True) == \
        "-u a@b.com:R -g g@b.com:R -u allUsers:R"


# ---------------------------------------------------------------- COG-backed assets (item 9)
@pytest.mark.parametrize(("location", "members", "kind", "ok"), [
    ("US", None, "multi-region", True), ("US-CENTRAL1", None, "region", True),
    ("NAM4", None, "dual-region", True),
    ("US", ["US-CENTRAL1", "US-EAST4"], "dual-region", True),
    ("US", ["US-EAST1", "US-EAST4"], "dual-region", False),  # a US dual-region without it
    ("US", None, "dual-region", False),  # regions unknown: cannot be vouched for
    ("EU", None, "multi-region", False), ("US-EAST1", None, "region", False),
    ("EUR4", None, "dual-region", False),
])
def test_external_bucket_location_rule(location, members, kind, ok):
    check = judge_external_bucket(location, members, "STANDARD", kind)
    assert (check.problems == ()) is ok and check.advice == ()


def test_external_bucket_storage_class_is_advice_not_refusal():
    check = judge_external_bucket("US", None, "NEARLINE", "multi-region")
    assert check.problems == () and "recommends STANDARD" in check.advice[0]


def test_external_mode_checks_the_bucket_then_creates_the_asset(
        cogs, tmp_path, ee_http, gcs_emulator, gcs_bucket):
    service = ee_http
    service.add_asset("projects/my-project/assets/isamap")
    client = gcs_emulator.client()
    check_external_bucket(f"gs://{gcs_bucket}/x.tif", client)  # emulator: US, STANDARD
    bucket = client.get_bucket(gcs_bucket)
    bucket.storage_class = "COLDLINE"
    bucket.patch()
    req = request(cogs, gcs_prefix=f"gs://{gcs_bucket}/isa", mode="external",
                  readers=("user:a@b.com",))
    result, lines = run(req, tmp_path)
    assert any("recommends STANDARD" in line for line in lines)  # warned, not refused
    (create,) = service.calls("POST", "image:importExternal")
    assert create.body["imageManifest"]["name"] == NAME
    assert result.state == "COMPLETED" and service.assets[NAME]["type"] == "IMAGE"
    assert service.calls("POST", ":setIamPolicy")


class BucketMetadataHttp(requests.Session):
    """The HTTP session of a real storage client, answering buckets.get with a documented
    Bucket resource (the emulator ignores locations and placements)."""

    is_mtls = False

    def __init__(self, resource: dict) -> None:
        super().__init__()
        self.resource, self.seen = resource, []

    def request(self, method, url, *args, **kwargs):
        self.seen.append((method, url))
        response = requests.Response()
        response.status_code, response.url = 200, url
        response._content = json.dumps(self.resource).encode()
        response.headers["Content-Type"] = "application/json"
        return response


def storage_client(**resource):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    http = BucketMetadataHttp({"kind": "storage#bucket", "name": "maps", **resource})
    return storage.Client(project="p", credentials=AnonymousCredentials(), _http=http)


def test_external_bucket_check_reads_the_bucket_resource():
    east = storage_client(location="US", locationType="dual-region", storageClass="STANDARD",
                          customPlacementConfig={"dataLocations": ["US-EAST1", "US-EAST4"]})
    with pytest.raises(ConfigError, match=r"location is US \(US-EAST1, US-EAST4\)"):
        check_external_bucket("gs://maps/x.tif", east)
    central = storage_client(location="US", locationType="dual-region", storageClass="NEARLINE",
                             customPlacementConfig={"dataLocations": ["US-CENTRAL1",
                                                                      "US-EAST1"]})
    warnings: list[str] = []
    check_external_bucket("gs://maps/x.tif", central, warn=warnings.append)
    assert len(warnings) == 1 and "NEARLINE" in warnings[0]


def test_local_cogs_need_an_upload_prefix_and_readers_a_kind(cogs, tmp_path, ee_offline):
    with pytest.raises(ConfigError, match="--gcs-prefix"):
        publish(request(cogs), tmp_path, assets=connect("p", ee_offline), echo=lambda _: None)
    with pytest.raises(ConfigError, match="kind prefix"):
        publish(request(cogs, readers=("a@b.com",)), tmp_path, dry_run=True, echo=print)
    dry = publish(request(cogs), tmp_path, dry_run=True, echo=lambda _: None)
    assert dry.manifest["tilesets"][0]["sources"][0]["uris"][0].startswith("gs://your-bucket/")


def test_two_cogs_that_are_not_one_maps_pair_are_refused_before_any_output(cogs, tmp_path):
    """A new user's walk published a 2021 class map with a 2019 probability, a change map as
    the class map and a six-band stack as the probability, each with exit 0; two files of one
    name were both sent to one gs:// object."""
    import shutil

    import rasterio

    from core.errors import InputDataError
    from tests.support.rasters import smooth_stack, write_stack

    def refused(class_path, prob_path, error, says, **kw):
        with pytest.raises(error, match=says):  # the options' own checks come first
            req = PublishRequest(str(class_path), str(prob_path), "isamap/x",
                                 PublishOptions(project="my-project", **kw))
            publish(req, tmp_path / "pub", dry_run=True, echo=lambda _: None)
        assert not (tmp_path / "pub").exists()

    c, p = cogs.class_path, cogs.prob_path
    refused(c, c, ConfigError, "--class-cog and --prob-cog are one file")
    refused(p, c, InputDataError, "--class-cog .* is an isamap isa_probability map, not isa_class")
    stack = write_stack(tmp_path / "stack.tif", smooth_stack(90, 110))
    refused(c, stack, InputDataError, r"--prob-cog .* holds 6 float32 band\(s\)")
    later = tmp_path / "later_prob.tif"
    shutil.copy(p, later)
    with rasterio.open(later, "r+", IGNORE_COG_LAYOUT_BREAK="YES") as ds:
        ds.update_tags(month="2025-06")
    refused(c, later, InputDataError, r"are of two months \(2023-06, 2025-06\)")
    for folder, path in (("a", c), ("b", p)):
        (tmp_path / folder).mkdir()
        shutil.copy(path, tmp_path / folder / "map.tif")
    refused(tmp_path / "a" / "map.tif", tmp_path / "b" / "map.tif", ConfigError,
            "both named map.tif: uploaded under --gcs-prefix, one would replace the other",
            gcs_prefix="gs://bucket/isamap")
    refused(c, p, ConfigError, "--gcs-prefix /local/path is not a Cloud Storage address",
            gcs_prefix="/local/path")
    assert publish(request(cogs), tmp_path / "pub", dry_run=True, echo=lambda _: None)  # the pair


def test_publishing_past_the_monthly_allowance_is_not_stopped(
        cogs, tmp_path, ee_http, gcs_emulator, gcs_bucket):
    """Restricted mode slows a project's computations; publishing computes nothing, yet the
    first answer carrying the header (reading the parent folder) stopped it with "the
    monthly Earth Engine quota is spent". It publishes, and the ingestion is followed."""
    service = ee_http
    service.headers["x-earth-engine-quota-status"] = "parallelism_restricted=true"
    service.add_asset("projects/my-project/assets/isamap")
    result, _ = run(request(cogs, gcs_prefix=f"gs://{gcs_bucket}/isa", wait=True), tmp_path)
    assert len(service.calls("POST", "image:import")) == 1 and result.state == "COMPLETED"
