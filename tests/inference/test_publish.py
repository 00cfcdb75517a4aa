import json

import pytest

from gee_export.core.errors import AuthenticationError, ConfigError, EarthEngineError
from inference.publish import (
    EarthEngineAssets,
    PublishRequest,
    check_external_bucket,
    connect,
    external_bucket_problems,
    publish,
    wait_for_task,
)


def request(cogs, **kw):
    return PublishRequest(cogs.class_path, cogs.prob_path, "isamap/wuhan_2023-06",
                          project="my-project", **kw)


def test_dry_run_prints_and_saves_a_valid_manifest_and_script(cogs, tmp_path):
    lines = []
    result = publish(request(cogs, gcs_prefix="gs://maps-bucket/isa"), tmp_path / "pub",
                     dry_run=True, echo=lines.append)
    assert result.state == "DRY_RUN" and result.task_id is None
    saved = json.loads(result.manifest_path.read_text())
    assert saved == result.manifest
    assert saved["name"] == "projects/my-project/assets/isamap/wuhan_2023-06"
    assert saved["tilesets"][0]["sources"][0]["uris"] == [
        "gs://maps-bucket/isa/wuhan_2023-06_class.tif"]
    props = saved["properties"]
    assert props["model"] == "unet" and props["metric_iou"] == 0.8 and props["month"] == "2023-06"
    assert saved["startTime"] == "2023-06-01T00:00:00Z"
    printed = "\n".join(lines)
    assert "projects/my-project/assets/isamap/wuhan_2023-06" in printed
    assert result.script_path.read_text() == result.script and result.script in printed


def test_unauthenticated_publish_fails_clearly_before_any_upload(
        cogs, tmp_path, ee_offline, gcs_emulator, gcs_bucket):
    req = request(cogs, gcs_prefix=f"gs://{gcs_bucket}/isa", public=True)
    with pytest.raises(AuthenticationError, match="earthengine authenticate"):
        publish(req, tmp_path / "pub", assets=connect("my-project", ee_offline),
                echo=lambda _: None)
    # authentication is checked first: nothing was uploaded for an asset that cannot be made
    assert list(gcs_emulator.client().list_blobs(gcs_bucket)) == []


def test_external_mode_checks_the_bucket_before_calling_earth_engine(
        cogs, tmp_path, ee_offline, gcs_emulator, gcs_bucket):
    client = gcs_emulator.client()
    check_external_bucket(f"gs://{gcs_bucket}/x.tif", client)  # emulator: US, STANDARD
    bucket = client.get_bucket(gcs_bucket)
    bucket.storage_class = "COLDLINE"
    bucket.patch()
    req = request(cogs, gcs_prefix=f"gs://{gcs_bucket}/isa", mode="external")
    with pytest.raises(ConfigError, match="STANDARD"):  # not the AuthenticationError of the call
        publish(req, tmp_path / "pub", assets=connect("my-project", ee_offline),
                echo=lambda _: None)


@pytest.mark.parametrize(("location", "members", "cls", "ok"), [
    ("US", None, "STANDARD", True), ("US-CENTRAL1", None, "STANDARD", True),
    ("NAM4", None, "STANDARD", True), ("US", ["US-CENTRAL1", "US-EAST4"], "STANDARD", True),
    ("EU", None, "STANDARD", False), ("US-EAST1", None, "STANDARD", False),
    ("US", None, "NEARLINE", False),
])
def test_external_bucket_rules(location, members, cls, ok):
    assert (external_bucket_problems(location, members, cls) == []) is ok


def test_local_cogs_need_an_upload_prefix_and_readers_a_kind(cogs, tmp_path, ee_offline):
    with pytest.raises(ConfigError, match="--gcs-prefix"):
        publish(request(cogs), tmp_path, assets=connect("p", ee_offline), echo=lambda _: None)
    with pytest.raises(ConfigError, match="kind prefix"):
        publish(request(cogs, readers=("a@b.com",)), tmp_path, dry_run=True, echo=print)
    dry = publish(request(cogs), tmp_path, dry_run=True, echo=lambda _: None)
    assert dry.manifest["tilesets"][0]["sources"][0]["uris"][0].startswith("gs://your-bucket/")


class ScriptedTasks(EarthEngineAssets):
    """Task states as the Earth Engine task API reports them, in order (no server exists here)."""

    def __init__(self, states):
        self.states = list(states)

    def task_status(self, task_id):
        state, progress = self.states.pop(0)
        return {"id": task_id, "state": state, "progress": progress,
                "error_message": "Cannot read gs://x: permission denied"}


def test_waiting_follows_the_task_to_its_end():
    done = ScriptedTasks([("READY", 0.0), ("RUNNING", 0.4), ("COMPLETED", 1.0)])
    assert wait_for_task(done, "T1", poll_seconds=0) == "COMPLETED" and not done.states
    failed = ScriptedTasks([("RUNNING", 0.2), ("FAILED", 0.2)])
    with pytest.raises(EarthEngineError, match="permission denied"):
        wait_for_task(failed, "T2", poll_seconds=0)
