"""The Beam export pipeline on the DirectRunner against the fake pixel server.

One single-process export (``export_pixels``) is the reference; the pipeline runs on the same
local stack, recipe and job, and must leave the same files (byte for byte), the same index and
the same manifest (but for its timestamps). Faults are injected at one patch's request window:
a 503 is retried by the session inside the run, a 400 fails the run, and the next run fetches
only what is missing. As Dataflow runs it (pickled DoFns in worker processes, a failed bundle
retried with its outputs discarded), a bundle that fails once leaves the same dataset. A
Dataflow job is built and validated offline with Beam's dry run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from core.errors import ConfigError
from core.pipeline_options import (
    PipelineFailedError,
    RunnerConfig,
    pipeline_counters,
)
from core.storage.base import TEMP_MARK
from gee_export.ee.beam_export import (
    EarthEngineProject,
    SerializedImages,
    export_pipeline,
    plan_export,
)
from testing.fake_server import StackSessions, request_origin
from tests.support.killed_export import MONTH, export_job

pytest.importorskip("apache_beam", reason="the beam extra is not installed (make setup does)")
dataflow_like = pytest.importorskip("tests.support.dataflow_like")

DIRECT = RunnerConfig("direct", max_workers=2, max_concurrent=4)
TIMESTAMPS = ("created", "updated")
# the synthetic stack, its recipe images and the reference export are built once (conftest)
pytestmark = pytest.mark.xdist_group("ee_stack")


@pytest.fixture(scope="module")
def built() -> dict:
    """What the module's tests share, built by the first test that needs it."""
    return {}


@pytest.fixture
def setting(built, tmp_path_factory, local_stack, recipe_images, reference_export):
    """Stack, recipe, job and the single-process reference dataset (built once per module).

    The stack (a 288 px synthetic scene's, x2 fine label, boxcar speckle), its recipe images
    and the single-process export of it (``export_pixels``, four workers) are conftest's,
    shared with test_export.py; function-scoped because ``ee_offline`` is (it re-initialises
    Earth Engine when another test reset it); the expensive parts are kept in ``built``.
    """
    if "setting" not in built:
        built["setting"] = _build_setting(tmp_path_factory, local_stack, recipe_images,
                                          reference_export)
    return built["setting"]


def _build_setting(tmp_path_factory, stack, recipe_images, reference_export) -> dict:
    root = tmp_path_factory.mktemp("beam_export")
    image, fine = recipe_images
    job = export_job(stack.grid)
    reference, summary, _ = reference_export
    assert summary.written > 2 and summary.invalid >= 1  # both outcomes are exercised
    serialized = SerializedImages.of(image, fine)
    return {"root": root, "stack": stack, "image": image, "fine": fine, "job": job,
            "reference": reference, "recipe": (serialized.image, serialized.fine_label)}


def sessions(setting, **faults) -> StackSessions:
    return StackSessions(setting["stack"], recipe=setting["recipe"], **faults)


def origin_of(setting, row: int, col: int) -> str:
    west, _, _, north = setting["job"].spec.grid.patch_bounds(row, col)
    return request_origin(west, north)


def files(root: Path) -> dict[str, bytes]:
    """The dataset's files; the profiles a single process measured are its own state."""
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != "profiled.json"}


def assert_same_dataset(got: Path, want: Path) -> None:
    mine, theirs = files(got), files(want)
    assert sorted(mine) == sorted(theirs)
    differ = [rel for rel in theirs if rel != "manifest.json" and mine[rel] != theirs[rel]]
    assert not differ, f"files differ from the single-process export: {differ}"
    manifest, reference = (json.loads(m["manifest.json"]) for m in (mine, theirs))
    for key in TIMESTAMPS:
        manifest.pop(key), reference.pop(key)
    assert manifest == reference


@pytest.fixture
def beam_run(built, setting):
    """One pipeline run with a transient failure (HTTP 503) at one patch's request window."""
    if "beam_run" not in built:
        built["beam_run"] = _run_with_a_transient_failure(setting)
    return built["beam_run"]


def _run_with_a_transient_failure(setting):
    flaky = setting["reference"].joinpath("index.jsonl").read_text().splitlines()
    victim = json.loads(flaky[len(flaky) // 2])
    out = setting["root"] / "beam"
    fail_at = {origin_of(setting, victim["row"], victim["col"]): [503]}
    summary = export_pipeline(sessions(setting, fail_at=fail_at),
                              setting["image"], setting["job"], str(out), DIRECT,
                              fine_label=setting["fine"], shard_size=1)
    return out, summary


def test_pipeline_writes_what_the_single_process_export_writes(setting, beam_run):
    out, summary = beam_run
    assert_same_dataset(out, setting["reference"])
    records = [json.loads(line) for line in (out / "index.jsonl").read_text().splitlines()]
    assert summary.method == "beam" and summary.written == len(records)
    assert summary.retries == 1, "the injected 503 must be retried once by the session"
    assert not (out / "state" / MONTH / "index-shards").exists(), "shards are merged, then gone"


@pytest.mark.slow
def test_pipeline_as_dataflow_runs_it_retries_a_failed_bundle(setting, tmp_path, monkeypatch):
    """Worker processes, pickled DoFns, setup() there; one bundle fails and is retried whole.

    The failed attempt wrote some of its patches before failing and its outputs (their index
    records) are discarded, as Dataflow discards them: the retry finds those patches finished,
    and the commit indexes them from their own tags. Nothing is indexed twice, no temporary
    is left.
    """
    dataflow_like.worker_path(monkeypatch)
    reference = [json.loads(line) for line in
                 (setting["reference"] / "index.jsonl").read_text().splitlines()]
    out = tmp_path / "dataflow"
    marker = tmp_path / "failed-once"
    images = {origin_of(setting, r, c): str(out / f"patches/{MONTH}/r{r}_c{c}.tif")
              for r, c in setting["job"].spec.grid.iter_patches()}
    workers = dataflow_like.FailOnce(sessions(setting), images, str(marker))
    summary = export_pipeline(workers, setting["image"], setting["job"], str(out),
                              dataflow_like.dataflow_like(), fine_label=setting["fine"],
                              shard_size=1)
    retried = dataflow_like.RetryingDirectRunner.retried
    assert marker.exists() and len(retried) == 1 and "injected worker failure" in retried[0]
    assert f"in process {os.getpid()} " not in retried[0], "it failed in a worker process"
    counters = pipeline_counters(dataflow_like.RetryingDirectRunner.last_result,
                                 "isamap.export")
    assert counters["skipped"] >= 1, "the retry found what the failed attempt wrote"
    assert counters["written"] < len(reference), "their records came from their tags"
    assert_same_dataset(out, setting["reference"])
    ids = [json.loads(line)["id"] for line in (out / "index.jsonl").read_text().splitlines()]
    assert len(ids) == len(set(ids)) == len(reference), "each patch indexed once"
    assert summary.written == len(reference) and summary.already_done == 0
    assert not [p for p in out.rglob("*") if TEMP_MARK in p.name], "a temporary was left"
    assert not (out / "state" / MONTH / "index-shards").exists()


def test_rerun_of_a_finished_month_does_no_work(setting, beam_run):
    out, _ = beam_run
    before = {rel: (out / rel).stat().st_mtime_ns for rel in files(out)}
    grid = setting["job"].spec.grid
    # every request of this factory fails at once: a run that fetched anything would raise
    refusing = sessions(setting, attempts=1, fail_at={
        origin_of(setting, r, c): [400] for r, c in grid.iter_patches()})
    summary = export_pipeline(refusing, setting["image"], setting["job"], str(out), DIRECT,
                              fine_label=setting["fine"])
    indexed = (out / "index.jsonl").read_text().splitlines()
    assert (summary.written, summary.requests, summary.already_done) == (0, 0, len(indexed))
    assert {rel: (out / rel).stat().st_mtime_ns for rel in files(out)} == before


@pytest.mark.slow
def test_failed_tile_fails_the_run_and_the_rerun_fetches_only_what_is_missing(setting):
    out = setting["root"] / "failing"
    reference = [json.loads(line) for line in
                 (setting["reference"] / "index.jsonl").read_text().splitlines()]
    victim = reference[0]
    fail_at = {origin_of(setting, victim["row"], victim["col"]): [400]}
    with pytest.raises(PipelineFailedError, match="injected failure") as failed:
        export_pipeline(sessions(setting, fail_at=fail_at),
                        setting["image"], setting["job"], str(out), DIRECT,
                        fine_label=setting["fine"])
    assert "\n" not in str(failed.value) and "run the same command again" in str(failed.value)
    assert failed.value.exit_code == 1, "an Earth Engine fault is the environment's"
    assert not (out / f"patches/{MONTH}/{victim['id']}.tif").exists()
    assert not (out / "manifest.json").exists(), "a failed run must not commit the month"
    summary = export_pipeline(sessions(setting), setting["image"], setting["job"], str(out),
                              DIRECT, fine_label=setting["fine"])
    assert 1 <= summary.written < len(reference)
    assert summary.written + summary.already_done == len(reference)
    assert_same_dataset(out, setting["reference"])


@pytest.mark.slow
def test_dataflow_job_builds_and_validates_offline(setting, gcs_bucket):
    """DataflowRunner options, dry run: the job is built (graph, options, environment), not sent."""
    from apache_beam.runners.dataflow.internal import apiclient

    runner = RunnerConfig("dataflow", project="isamap-test", region="us-central1",
                          temp_location=f"gs://{gcs_bucket}/tmp", machine_type="n1-standard-4",
                          max_workers=8, max_concurrent=40, container="gcr.io/p/isamap:1",
                          job_name="isamap-export-test", dry_run=True)
    assert runner.threads == 5  # 8 workers x 5 requests = 40
    out = f"gs://{gcs_bucket}/dataset"
    plan = plan_export(EarthEngineProject("isamap-test", application_default=True),
                       setting["image"], setting["job"], out, runner,
                       fine_label=setting["fine"])
    assert plan.todo == plan.before.candidates
    job = plan.pipeline.run().job  # dry run: built and returned, never submitted
    assert job.proto.name == "isamap-export-test"
    names = {t.unique_name.split("/")[0]
             for t in job.proto_pipeline.components.transforms.values()}
    assert {"TodoRows", "Spread", "FetchAndWrite", "ByShard", "IndexShards",
            "Commit"} <= names
    images = {e.payload for e in job.proto_pipeline.components.environments.values()}
    assert any(b"gcr.io/p/isamap:1" in p for p in images), "workers run the custom container"
    env = apiclient.Environment([], job.options, "8", f"gs://{gcs_bucket}/tmp/pipeline.pb",
                                job.proto_pipeline).proto
    pool = env.worker_pools[0]
    assert (pool.machine_type, pool.autoscaling_settings.max_num_workers) == (
        "n1-standard-4", 8)
    assert "no_use_multiple_sdk_containers" in env.experiments  # one process per worker VM
    from google.cloud import storage

    assert not list(storage.Client().list_blobs(gcs_bucket)), "a dry run writes nothing"


def test_dataflow_options_beam_would_refuse_fail_before_any_work(setting, gcs_bucket):
    runner = RunnerConfig("dataflow", project="Not A Project", region="us-central1",
                          temp_location=f"gs://{gcs_bucket}/tmp", container="isamap:1",
                          dry_run=True)
    with pytest.raises(ConfigError, match="Dataflow would refuse"):
        plan_export(EarthEngineProject("x"), setting["image"], setting["job"],
                    f"gs://{gcs_bucket}/dataset", runner, fine_label=setting["fine"])


def test_dataflow_job_refuses_a_local_output(setting):
    runner = RunnerConfig("dataflow", project="p", region="us-central1",
                          temp_location="gs://b/tmp", container="isamap:1", dry_run=True)
    with pytest.raises(ConfigError, match="give --out gs://bucket/"):
        export_pipeline(EarthEngineProject("p"), setting["image"], setting["job"],
                        str(setting["root"] / "local"), runner, fine_label=setting["fine"])


@pytest.mark.slow
def test_max_eecu_hours_stops_the_pipeline_resumably_and_a_higher_bound_finishes_it(setting):
    """The launcher admits only the patches the bound allows (Dataflow's workers share no
    state): the month is committed open, the run exits 1 with one line, the same bound stops
    at once, and a higher one resumes to the single-process dataset."""
    from core.commands import run_command
    from core.errors import ComputeBudgetError
    from gee_export.ee.budget import ComputeBudget
    from gee_export.ee.export import planned_requests

    out = setting["root"] / "bounded"
    per_request = 0.5  # EECU-seconds charged per request
    bound_h = 3 * planned_requests(setting["job"]) * per_request / 3600.0  # three patches

    def bounded(hours: float):
        return export_pipeline(sessions(setting), setting["image"], setting["job"], str(out),
                               DIRECT, fine_label=setting["fine"],
                               budget=ComputeBudget(hours, per_request))

    with pytest.raises(ComputeBudgetError, match="higher --max-eecu-hours") as info:
        bounded(bound_h)
    assert info.value.exit_code == 1 and "\n" not in str(info.value)
    manifest = json.loads((out / "manifest.json").read_text())
    assert not manifest["complete"].get(MONTH), "the month stays open"
    indexed = (out / "index.jsonl").read_text().splitlines()
    before = plan_export(sessions(setting), setting["image"], setting["job"], str(out),
                         DIRECT, fine_label=setting["fine"]).before
    assert before.already_done == len(indexed) > 0
    assert before.already_done + before.invalid == 3, "exactly the three admitted patches"
    assert run_command("isamap-export", lambda: bounded(bound_h)) == 1  # nothing left to spend
    assert (out / "index.jsonl").read_text().splitlines() == indexed
    done = bounded(1.0)  # a higher bound resumes
    assert done.already_done == len(indexed)
    assert_same_dataset(out, setting["reference"])
    assert not [p for p in out.rglob("*") if TEMP_MARK in p.name]
