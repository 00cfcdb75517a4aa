"""Runner options of the Beam pipelines: the request budget and offline checks of a job."""

from __future__ import annotations

import argparse
import re
import threading
import time

import pytest

from core.errors import ConfigError
from core.pipeline_options import (
    DEFAULT_MAX_CONCURRENT,
    RunnerConfig,
    WorkerRequests,
    add_runner_arguments,
    runner_config,
    worker_semaphore,
)

DATAFLOW = {"runner": "dataflow", "project": "isamap-test", "region": "us-central1",
            "temp_location": "gs://bucket/tmp", "setup_file": "pyproject.toml"}


@pytest.mark.parametrize(("workers", "limit", "threads"), [(1, 40, 40), (8, 40, 5), (3, 40, 13),
                                                           (40, 40, 1), (2, 5, 2)])
def test_workers_times_threads_stay_within_the_quota(workers, limit, threads):
    config = RunnerConfig("dataflow", max_workers=workers, max_concurrent=limit)
    assert config.threads == threads
    assert config.workers * config.threads <= limit


def test_more_workers_than_requests_is_refused():
    with pytest.raises(ConfigError, match="--max-workers 41 is more workers than "
                                          "--max-concurrent 40") as err:
        RunnerConfig("dataflow", max_workers=41)
    assert "use --max-workers 40 or fewer" in str(err.value)
    assert "only if the project's Earth Engine quota allows" in str(err.value)


@pytest.mark.parametrize("workers", [0, -3])
def test_no_worker_at_all_is_refused_as_such(workers):
    """'leaves no request thread per worker; use at most 40' was no advice for 0 workers."""
    with pytest.raises(ConfigError, match=f"--max-workers must be at least 1 .*got {workers}"):
        RunnerConfig("dataflow", max_workers=workers)
    assert RunnerConfig().max_concurrent == DEFAULT_MAX_CONCURRENT == 40


def test_dataflow_needs_project_region_and_a_gs_temp_location():
    with pytest.raises(ConfigError, match="--project, --dataflow-region, --temp-location"):
        RunnerConfig("dataflow").check()
    with pytest.raises(ConfigError, match="must be a gs:// folder"):
        RunnerConfig(**{**DATAFLOW, "temp_location": "/tmp/x"}).check()
    with pytest.raises(ConfigError, match="must be a gs:// folder"):  # "b": no such bucket name
        RunnerConfig(**{**DATAFLOW, "temp_location": "gs://b/tmp"}).check()
    # Cloud Storage's own rule, as --gcs-prefix applies it (one owner: a review found the
    # Dataflow check took goog- and IP-address names and refused long dotted ones)
    for bucket in ("goog-tmp", "192.168.1.1"):
        with pytest.raises(ConfigError, match=f"bucket name '{bucket}'"):
            RunnerConfig(**{**DATAFLOW, "temp_location": f"gs://{bucket}/tmp"}).check()
    dotted = "a" * 40 + "." + "b" * 40
    RunnerConfig(**{**DATAFLOW, "temp_location": f"gs://{dotted}/tmp"}).check()
    RunnerConfig(**DATAFLOW).check()
    with pytest.raises(ConfigError, match="workers need isamap itself"):
        RunnerConfig(**{**DATAFLOW, "setup_file": None}).check()


def test_mapping_workers_need_torch_and_gpus_need_a_container():
    with pytest.raises(ConfigError, match="need torch"):
        RunnerConfig(**DATAFLOW).check(needs_torch=True)
    RunnerConfig(**DATAFLOW, requirements_file="req.txt").check(needs_torch=True)
    with pytest.raises(ConfigError, match="GPU workers need --container"):
        RunnerConfig(**DATAFLOW, requirements_file="req.txt", gpu="nvidia-tesla-t4").check(
            needs_torch=True)
    with pytest.raises(ConfigError, match="needs --runner dataflow"):
        RunnerConfig("direct", gpu="nvidia-tesla-t4").check()
    with pytest.raises(ConfigError, match="TYPE\\[:COUNT\\]"):
        RunnerConfig(**DATAFLOW, gpu="t4")


@pytest.mark.parametrize(("gpu", "machine", "message"), [
    ("nvidia-tesla-t4", None, None),  # Dataflow's default n1-standard-1 takes a T4
    ("nvidia-tesla-t4", "g2-standard-4", "attaches only to N1 machines"),
    ("nvidia-l4", None, "not the default machine type n1-standard-1; pass --machine-type "
                        "g2-standard-4"),
    ("nvidia-l4", "g2-standard-8", None),
    ("nvidia-l4", "n1-standard-8", "attaches only to G2 machines"),
    ("nvidia-tesla-a100", "a2-highgpu-1g", None),
    ("nvidia-tesla-a100", "n1-standard-8", "pass --machine-type a2-highgpu-1g"),
    ("nvidia-rtx-9000", "n1-standard-8", "not a GPU type Dataflow offers"),
])
def test_gpu_type_and_machine_family_are_checked_together(gpu, machine, message):
    config = RunnerConfig(**DATAFLOW, container="us-docker.pkg.dev/p/r/isamap:1", gpu=gpu,
                          machine_type=machine)
    if message is None:
        config.check(needs_torch=True)
    else:
        with pytest.raises(ConfigError, match=re.escape(message)):
            config.check(needs_torch=True)


def test_beam_arguments_of_a_dataflow_gpu_job():
    config = RunnerConfig(**DATAFLOW, machine_type="n1-standard-8", max_workers=4,
                          container="us-docker.pkg.dev/p/r/isamap:1", gpu="nvidia-tesla-t4:2",
                          job_name="isamap-map-yreb", extra=("--disk_size_gb=50",), dry_run=True)
    args = config.beam_args()
    assert args[0] == "--runner=DataflowRunner"
    assert {"--max_num_workers=4", "--setup_file=pyproject.toml", "--project=isamap-test",
            "--region=us-central1",
            "--temp_location=gs://bucket/tmp", "--machine_type=n1-standard-8",
            "--sdk_container_image=us-docker.pkg.dev/p/r/isamap:1",
            "--job_name=isamap-map-yreb", "--experiments=no_use_multiple_sdk_containers",
            "--dataflow_service_options=worker_accelerator=type:nvidia-tesla-t4;count:2;"
            "install-nvidia-driver", "--disk_size_gb=50"} <= set(args)
    pytest.importorskip("apache_beam")
    from apache_beam.options.pipeline_options import GoogleCloudOptions, WorkerOptions

    options = config.pipeline_options()
    assert options.view_as(WorkerOptions).max_num_workers == 4
    assert options.view_as(GoogleCloudOptions).dataflow_service_options == [
        "worker_accelerator=type:nvidia-tesla-t4;count:2;install-nvidia-driver"]


def test_direct_runner_arguments():
    args = RunnerConfig("direct", max_workers=3).beam_args()
    assert args == ["--runner=DirectRunner", "--direct_num_workers=3",
                    "--direct_running_mode=multi_threading"]


def test_command_line_flags_make_the_config():
    parser = argparse.ArgumentParser()
    parser.add_argument("--project")
    add_runner_arguments(parser, gpu=True)
    assert runner_config(parser.parse_args([])) is None
    args = parser.parse_args(["--runner", "dataflow", "--project", "p", "--dataflow-region",
                              "europe-west1", "--temp-location", "gs://b/t", "--max-workers",
                              "20", "--gpu", "nvidia-l4", "--beam-option=--disk_size_gb=80"])
    config = runner_config(args)
    assert (config.project, config.region, config.workers, config.threads, config.gpu,
            config.extra) == ("p", "europe-west1", 20, 2, "nvidia-l4", ("--disk_size_gb=80",))
    with pytest.raises(ConfigError, match="--beam-option takes Beam options"):
        runner_config(parser.parse_args(["--runner", "direct", "--beam-option", "disk=1"]))


def test_worker_semaphore_bounds_requests_across_threads():
    gate = worker_semaphore("test-requests", 3)
    assert worker_semaphore("test-requests", 3) is gate, "one semaphore per process"
    lock, state = threading.Lock(), {"now": 0, "peak": 0}

    def request() -> None:
        with gate:
            with lock:
                state["now"] += 1
                state["peak"] = max(state["peak"], state["now"])
            time.sleep(0.01)
            with lock:
                state["now"] -= 1

    threads = [threading.Thread(target=request) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert state["peak"] == 3


class _Counter:  # a Beam counter's interface (Metrics.counter needs a running pipeline)
    def __init__(self) -> None:
        self.value = 0

    def inc(self, n: int = 1) -> None:
        self.value += n


def test_worker_requests_stream_across_elements_and_drain_at_the_bundle_end():
    """An element's slow request does not hold the next element's requests back: the
    threads stay busy across elements, and only the bundle's end waits for everything."""
    from gee_export.ee.session import EESession

    session = EESession(transport=None, sleep=lambda s: None)
    requests = WorkerRequests(session, 2, "test-stream", _Counter())
    slow_done, started = threading.Event(), []

    def work(name: str) -> str:
        started.append(name)
        if name == "slow":
            slow_done.wait(2)
        return name

    try:
        requests.start()
        for name in ("slow", "a"):  # first element
            requests.submit(work, name)
        first = list(requests.finished())  # two queued, backlog 4: no wait for the slow one
        for name in ("b", "c"):  # second element, while "slow" still holds a thread
            requests.submit(work, name)
        second = list(requests.finished())
        deadline = time.monotonic() + 2
        while len(started) < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sorted(started) == ["a", "b", "c", "slow"], "b and c ran beside the slow one"
        slow_done.set()
        rest = list(requests.drain())
        assert sorted(first + second + rest) == ["a", "b", "c", "slow"]
        assert "slow" in rest  # only the bundle's end waited for it

        def fail() -> None:
            raise RuntimeError("injected")

        requests.submit(fail)
        with pytest.raises(RuntimeError, match="injected"):
            list(requests.drain())
        assert list(requests.drain()) == []  # a failed bundle leaves nothing queued
    finally:
        slow_done.set()
        requests.close()


def test_a_budget_above_the_earth_engine_quota_is_stated():
    from core.pipeline_options import RunnerConfig

    above = RunnerConfig("direct", max_workers=2, max_concurrent=80)
    assert "--max-concurrent 80 is above Earth Engine's quota of about 40" in above.describe()
    assert "HTTP 429" in above.quota_note()
    within = RunnerConfig("direct", max_workers=2, max_concurrent=40)
    assert within.quota_note() is None and "quota" not in within.describe()
