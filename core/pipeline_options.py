"""Running isamap's Apache Beam pipelines: which runner, its options, and the request budget.

The export and the mapping pipelines (``gee_export.ee.beam_export``, ``inference.mapping.beam_map``)
share this module so that both commands take the same flags (``--runner direct|dataflow``,
``--dataflow-region``, ``--temp-location``, ``--machine-type``, ``--max-workers``,
``--container``/``--requirements-file``/``--setup-file``, ``--gpu``, ``--beam-option``) and
obey the same bound on concurrent Earth Engine requests.

**The request budget.** An Earth Engine project serves about 40 concurrent requests
(``--max-concurrent``, default 40). A Beam job has up to ``max_workers`` workers; each worker
gets ``max_concurrent // max_workers`` request threads (:attr:`RunnerConfig.threads`), and a
process-wide semaphore (:func:`worker_semaphore`) enforces that number in each worker process,
whatever the runner does with bundles and harness threads. On Dataflow every worker VM runs one
SDK process (the ``no_use_multiple_sdk_containers`` experiment is always set), so the whole job
holds at most ``workers x threads <= max_concurrent`` requests in flight. The DirectRunner's
``multi_threading`` mode shares one process (and so one semaphore) between its workers, which
keeps it under the bound too.

Running a job, its counters and the workers' request threads are :mod:`core.pipeline_run`'s
(re-exported here). Nothing here imports Apache Beam at module level: it is an optional extra
(``isamap[beam]``), and the single-process commands must run without it.
"""

from __future__ import annotations

import argparse
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from core.errors import ConfigError, IsamapError
from core.parsers import count
from core.pipeline_run import (
    PipelineFailedError,
    WorkerRequests,
    pipeline_counters,
    run_pipeline,
    worker_semaphore,
)
from core.storage.files import bucket_name_problem
from core.worker_package import write_worker_package

Runner = Literal["direct", "dataflow"]
RUNNERS: tuple[str, ...] = ("direct", "dataflow")
BEAM_RUNNER_NAMES = {"direct": "DirectRunner", "dataflow": "DataflowRunner"}
__all__ = ["BEAM_RUNNER_NAMES", "DEFAULT_MAX_CONCURRENT", "BeamNotInstalledError",
           "PipelineFailedError", "RunnerConfig", "WorkerRequests", "add_runner_arguments",
           "pipeline_counters", "require_beam", "run_pipeline", "runner_config",
           "worker_semaphore"]

log = logging.getLogger(__name__)

DEFAULT_MAX_CONCURRENT = 40  # Earth Engine's concurrent-request quota of one project
DEFAULT_DIRECT_WORKERS = 2
DEFAULT_DATAFLOW_WORKERS = 10
# Dataflow's GPU service option: an accelerator type and count per worker, driver installed.
_GPU = re.compile(r"^(nvidia-[a-z0-9-]+)(?::(\d+))?$")
# The machine family each GPU type attaches to on Compute Engine (and so on Dataflow).
GPU_MACHINE_FAMILY = {"nvidia-tesla-t4": "n1", "nvidia-tesla-p4": "n1",
                      "nvidia-tesla-p100": "n1", "nvidia-tesla-v100": "n1",
                      "nvidia-l4": "g2", "nvidia-tesla-a100": "a2", "nvidia-a100-80gb": "a2",
                      "nvidia-h100-80gb": "a3"}
_JOB_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def _temp_location_problem(location: str) -> str | None:
    """Why ``location`` is no ``gs://BUCKET[/path]`` folder (None: it is one)."""
    if not location.startswith("gs://"):
        return "it does not start with gs://"
    return bucket_name_problem(location[len("gs://"):].split("/", 1)[0])


class BeamNotInstalledError(IsamapError, ImportError):
    """The ``beam`` extra is missing (exit 1: the environment, not the command line)."""

    exit_code = 1


def require_beam() -> Any:
    """The ``apache_beam`` module, or a clear error saying how to install it."""
    try:
        import apache_beam
    except ImportError:
        raise BeamNotInstalledError(
            "--runner needs Apache Beam, which is not installed; run "
            "`pip install 'isamap[beam]'` (or `make setup`) and try again") from None
    return apache_beam


@dataclass(frozen=True)
class RunnerConfig:
    """Where and how a pipeline runs; every field maps to a standard Beam pipeline option.

    Attributes:
        runner: ``direct`` (this machine, threads) or ``dataflow`` (Google Cloud Dataflow).
        project: Google Cloud project of the Dataflow job (and of Earth Engine).
        region: Dataflow region (``--region`` of Beam), e.g. ``us-central1``.
        temp_location: gs:// folder for Dataflow's temporary and staged files.
        machine_type: worker machine type, e.g. ``n1-standard-4``.
        max_workers: most workers of the job (Dataflow autoscaling cap; the DirectRunner's
            ``direct_num_workers``).
        max_concurrent: most Earth Engine requests in flight in the whole job.
        container: custom SDK container image carrying torch and isamap.
        requirements_file: a pip requirements file installed on every worker instead.
        setup_file: the ``pyproject.toml`` of isamap (Beam's ``--setup_file``), staged to the
            workers.
        gpu: ``nvidia-tesla-t4[:COUNT]``: GPU workers through Dataflow's service option.
        job_name: Dataflow job name (lower case letters, digits, hyphens).
        dry_run: build and validate the job without submitting it (Beam's ``--dry_run``).
        extra: further Beam options, passed through verbatim (``--key=value``).
    """

    runner: Runner = "direct"
    project: str | None = None
    region: str | None = None
    temp_location: str | None = None
    machine_type: str | None = None
    max_workers: int | None = None
    max_concurrent: int = DEFAULT_MAX_CONCURRENT
    container: str | None = None
    requirements_file: str | None = None
    setup_file: str | None = None
    gpu: str | None = None
    job_name: str | None = None
    dry_run: bool = False
    extra: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        object.__setattr__(self, "extra", tuple(self.extra))
        if self.runner not in RUNNERS:
            raise ConfigError(f"--runner must be one of {', '.join(RUNNERS)}, got {self.runner!r}")
        if self.max_concurrent < 1:
            raise ConfigError(f"--max-concurrent must be at least 1, got {self.max_concurrent}")
        if self.workers < 1:
            raise ConfigError(f"--max-workers must be at least 1 (the most workers the job may "
                              f"have), got {self.workers}; leave it out for the runner's default")
        if self.workers > self.max_concurrent:
            raise ConfigError(
                f"--max-workers {self.workers} is more workers than --max-concurrent "
                f"{self.max_concurrent} requests in flight, so some would have no request "
                f"thread; use --max-workers {self.max_concurrent} or fewer (each worker then "
                "runs --max-concurrent / --max-workers request threads). Raise --max-concurrent "
                "only if the project's Earth Engine quota allows more than about 40 concurrent "
                "requests")
        if self.gpu is not None and not _GPU.match(self.gpu):
            raise ConfigError(f"--gpu {self.gpu!r} is not TYPE[:COUNT], e.g. nvidia-tesla-t4:1")
        if self.job_name is not None and not _JOB_NAME.match(self.job_name):
            raise ConfigError(f"--job-name {self.job_name!r}: use lower-case letters, digits "
                              "and hyphens, starting with a letter")

    @property
    def workers(self) -> int:
        """How many workers the job may have."""
        if self.max_workers is not None:
            return self.max_workers
        return DEFAULT_DIRECT_WORKERS if self.runner == "direct" else DEFAULT_DATAFLOW_WORKERS

    @property
    def threads(self) -> int:
        """Concurrent requests per worker: ``workers x threads <= max_concurrent``."""
        return self.max_concurrent // self.workers

    def check(self, *, needs_torch: bool = False, cloud: Mapping[str, str] | None = None) -> None:
        """Refuse a Dataflow job that cannot start, before anything expensive happens.

        Args:
            needs_torch: the workers run a model (mapping), so they need a container or a
                requirements file that installs torch.
            cloud: the paths Dataflow's workers read or write, by the flag that gives each
                (``{"--out": out}``): on Cloud Storage, as no worker sees this machine's disk.
        """
        if self.runner != "dataflow":
            if self.gpu:
                raise ConfigError("--gpu asks Dataflow for GPU workers; it needs "
                                  "--runner dataflow (the direct runner uses this machine)")
            return
        local = [flag for flag, path in (cloud or {}).items() if not path.startswith("gs://")]
        if local:
            raise ConfigError(f"Dataflow's workers cannot see this machine's disk: give "
                              f"{' and '.join(f'{flag} gs://bucket/...' for flag in local)}")
        missing = [flag for flag, value in (("--project", self.project),
                                            ("--dataflow-region", self.region),
                                            ("--temp-location", self.temp_location))
                   if not value]
        if missing:
            raise ConfigError(f"--runner dataflow needs {', '.join(missing)} (e.g. --project "
                              "my-project --dataflow-region us-central1 --temp-location "
                              "gs://my-bucket/tmp)")
        problem = _temp_location_problem(str(self.temp_location))
        if problem:  # Beam tries to create a bucket of its own (online) when this is malformed
            raise ConfigError(f"--temp-location {self.temp_location!r} must be a gs:// folder "
                              "in a bucket the Dataflow workers can write to, e.g. "
                              f"gs://my-bucket/tmp ({problem})")
        if not (self.container or self.setup_file or self.requirements_file):
            raise ConfigError("Dataflow workers need isamap itself: pass --container IMAGE (a "
                              "custom SDK container, see README 'Beyond one machine') or "
                              "--setup-file pyproject.toml to stage this checkout")
        if needs_torch and not (self.container or self.requirements_file):
            raise ConfigError("the mapping pipeline's Dataflow workers need torch: pass "
                              "--container IMAGE (a custom SDK container with isamap and torch, "
                              "see README 'Beyond one machine') or --requirements-file FILE")
        if self.gpu and not self.container:
            raise ConfigError("GPU workers need --container IMAGE with CUDA-enabled torch; a "
                              "requirements file cannot install the NVIDIA libraries")
        if self.gpu:
            self._check_gpu_machine()

    def _check_gpu_machine(self) -> None:
        """A GPU type only attaches to one machine family: T4 to N1, L4 to G2, A100 to A2."""
        kind = _GPU.match(str(self.gpu)).group(1)  # type: ignore[union-attr]
        family = GPU_MACHINE_FAMILY.get(kind)
        if family is None:
            raise ConfigError(f"--gpu {kind} is not a GPU type Dataflow offers here; use one "
                              f"of {', '.join(sorted(GPU_MACHINE_FAMILY))}")
        machine = self.machine_type or "n1-standard-1"  # Dataflow's default worker
        if machine.split("-", 1)[0].lower() != family:
            example = {"n1": "n1-standard-4", "g2": "g2-standard-4",
                       "a2": "a2-highgpu-1g", "a3": "a3-highgpu-1g"}[family]
            given = (f"--machine-type {machine}" if self.machine_type
                     else "the default machine type n1-standard-1")
            raise ConfigError(f"--gpu {kind} attaches only to {family.upper()} machines, not "
                              f"{given}; pass --machine-type {example}")

    def for_workers(self, *, needs_torch: bool) -> RunnerConfig:
        """This config with ``--setup-file`` turned into the job's worker package.

        Dataflow workers install the staged package with its dependencies; isamap's own
        would bring torch to an export and ignore ``constraints.txt``, so the package staged
        is :func:`core.worker_package.write_worker_package`'s: the packages the job imports
        and its distributions pinned as tested (torch only where ``needs_torch``).
        """
        if self.runner != "dataflow" or not self.setup_file:
            return self
        setup = write_worker_package(self.setup_file, needs_torch=needs_torch)
        return replace(self, setup_file=str(setup))

    def quota_note(self) -> str | None:
        """What a ``--max-concurrent`` above Earth Engine's quota costs (None within it)."""
        if self.max_concurrent <= DEFAULT_MAX_CONCURRENT:
            return None
        return (f"--max-concurrent {self.max_concurrent} is above Earth Engine's quota of about "
                f"{DEFAULT_MAX_CONCURRENT} concurrent requests per project: the requests beyond "
                "it come back HTTP 429 and are retried with backoff, which slows the job; keep "
                f"{DEFAULT_MAX_CONCURRENT} unless the project's quota was raised")

    def describe(self) -> str:
        """The plan lines: the request budget and the Beam options (what a dry run prints)."""
        note = self.quota_note()
        return (f"  runner      Apache Beam {self.runner}: up to {self.workers} workers x "
                f"{self.threads} requests = {self.workers * self.threads} concurrent "
                f"(--max-concurrent {self.max_concurrent})\n"
                + (f"  quota       {note}\n" if note else "")
                + f"  beam        {' '.join(replace(self, dry_run=False).beam_args())}")

    def beam_args(self) -> list[str]:
        """The pipeline options as Beam command-line arguments (what a user would type)."""
        args = [f"--runner={BEAM_RUNNER_NAMES[self.runner]}"]
        if self.runner == "direct":
            args += [f"--direct_num_workers={self.workers}",
                     "--direct_running_mode=multi_threading"]
        else:
            args += [f"--max_num_workers={self.workers}",
                     # one SDK process per VM: the per-process semaphore then bounds the VM
                     "--experiments=no_use_multiple_sdk_containers"]
            for name, value in (("project", self.project), ("region", self.region),
                                ("temp_location", self.temp_location),
                                ("machine_type", self.machine_type),
                                ("sdk_container_image", self.container),
                                ("job_name", self.job_name)):
                if value:
                    args.append(f"--{name}={value}")
            if self.gpu:
                kind, count = _GPU.match(self.gpu).groups()  # type: ignore[union-attr]
                args.append("--dataflow_service_options=worker_accelerator=type:"
                            f"{kind};count:{count or 1};install-nvidia-driver")
        if self.requirements_file:
            args.append(f"--requirements_file={self.requirements_file}")
        if self.setup_file:
            args.append(f"--setup_file={self.setup_file}")
        if self.dry_run:
            args.append("--dry_run=True")
        args += list(self.extra)
        return args

    def pipeline_options(self) -> Any:
        """Beam ``PipelineOptions`` for :meth:`beam_args`, validated (imports Apache Beam).

        Dataflow options go through Beam's own validator (project id, job name, gs:// paths,
        worker settings) offline, so a job that the service would refuse fails here, before
        any work, with Beam's reasons.
        """
        require_beam()
        from apache_beam.options.pipeline_options import PipelineOptions

        options = PipelineOptions(self.beam_args())
        if self.runner == "dataflow":
            from apache_beam.options.pipeline_options_validator import PipelineOptionsValidator
            from apache_beam.runners.dataflow.dataflow_runner import DataflowRunner

            # Beam leaves the validator and the runner's __init__ unannotated
            runner = DataflowRunner()  # type: ignore[no-untyped-call]
            validator = PipelineOptionsValidator(options, runner)  # type: ignore[no-untyped-call]
            errors = validator.validate()  # type: ignore[no-untyped-call]
            if errors:
                raise ConfigError("Dataflow would refuse these options: "
                                  + "; ".join(" ".join(e.split()) for e in errors))
        return options


def add_runner_arguments(parser: argparse.ArgumentParser, *, gpu: bool = False) -> None:
    """The Beam flags shared by ``isamap-export`` and ``isamap-map``.

    ``--project`` is not added here: both commands already have it (the Earth Engine project,
    also the Dataflow job's).
    """
    g = parser.add_argument_group(
        "Apache Beam (one machine or Dataflow; needs the beam extra)",
        "Without --runner the command runs in this process. Beam options not listed here "
        "pass through with --beam-option=--key=value (repeatable).")
    g.add_argument("--runner", choices=RUNNERS,
                   help="run as an Apache Beam pipeline: 'direct' on this machine, "
                        "'dataflow' on Google Cloud Dataflow")
    g.add_argument("--max-concurrent", type=count, default=DEFAULT_MAX_CONCURRENT,
                   help="most Earth Engine requests in flight in the whole job "
                        "(workers x threads per worker stay below it)")
    g.add_argument("--max-workers", type=count,
                   help=f"most workers (default {DEFAULT_DIRECT_WORKERS} direct, "
                        f"{DEFAULT_DATAFLOW_WORKERS} dataflow)")
    g.add_argument("--dataflow-region", help="Dataflow region, e.g. us-central1")
    g.add_argument("--temp-location", help="gs:// folder for Dataflow's temporary files")
    g.add_argument("--machine-type", help="Dataflow worker machine type, e.g. n1-standard-4")
    g.add_argument("--container", help="custom SDK container image with isamap and torch")
    g.add_argument("--requirements-file", help="pip requirements installed on each worker")
    g.add_argument("--setup-file", help="isamap's pyproject.toml, staged to the workers")
    g.add_argument("--job-name", help="Dataflow job name")
    if gpu:
        g.add_argument("--gpu", help="GPU workers, TYPE[:COUNT], e.g. nvidia-tesla-t4:1")
    g.add_argument("--beam-option", action="append", default=[], metavar="--KEY=VALUE",
                   help="any other Beam pipeline option, passed through verbatim")


def runner_config(args: argparse.Namespace, *, dry_run: bool = False) -> RunnerConfig | None:
    """The :class:`RunnerConfig` of parsed arguments; None when no ``--runner`` was given."""
    if not getattr(args, "runner", None):
        return None
    extra: Sequence[str] = args.beam_option or ()
    bad = [o for o in extra if not o.startswith("--")]
    if bad:
        raise ConfigError(f"--beam-option takes Beam options like --key=value, got {bad}")
    config = RunnerConfig(
        runner=args.runner, project=getattr(args, "project", None), region=args.dataflow_region,
        temp_location=args.temp_location, machine_type=args.machine_type,
        max_workers=args.max_workers, max_concurrent=args.max_concurrent,
        container=args.container, requirements_file=args.requirements_file,
        setup_file=args.setup_file, gpu=getattr(args, "gpu", None), job_name=args.job_name,
        dry_run=dry_run, extra=tuple(extra))
    if config.quota_note() and not dry_run:  # a dry run prints it in its plan
        log.warning("%s", config.quota_note())
    return config
