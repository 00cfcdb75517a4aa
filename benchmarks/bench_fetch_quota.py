"""Benchmark: the fetch against a project quota shared with other load, static vs adaptive.

An Earth Engine project's concurrent-request quota is shared by everything that uses the
project, so the share left to one job moves while it runs. This sends thousands of small
computePixels requests through the real request path (``EESession``: the one retry loop and
the concurrency limit of :mod:`core.concurrency`) to the fake server's simulated
shared quota (:mod:`testing.fake_quota`: a cap of concurrent requests drawn anew every
period, HTTP 429 above it, lognormal latency, occasional 503s and time-outs, all seeded), with
``--max-concurrent`` request threads, once with the static budget (the limit held at
``--max-concurrent``) and once with the adaptive one (AIMD), and prints for each:

- ``busy``: the share of the available cap kept busy, i.e. the time-integral of the requests
  the service is serving (at most the cap) over the integral of the cap, from the start
  until the last request is sent;
- ``429/ok``: refused requests per successful request (each one a wasted round trip);
- ``lost``: requests that failed for good after the retry budget (a lost patch; must be 0);
- the wall time and the requests per second.

The latency is a few milliseconds (instead of the service's seconds) so that thousands of
requests take seconds; the retry backoff is scaled the same way (first wait up to one median
latency, at most sixty), as the product's (1 s, 60 s) are to the service's latency.

``--beam`` runs the same requests a second time through an Apache Beam pipeline under the
DirectRunner in ``multi_processing`` mode (``--beam-workers`` processes, each with
``--max-concurrent / --beam-workers`` request threads): each worker process sends through its
own session with the product's worker request path (``WorkerRequests``: the per-process
bound, the requests streamed through the bundle and, for the adaptive budget, one adaptive
limit per process), to one simulated quota served from the benchmark's process (a
``multiprocessing`` manager), so the processes share the cap as Dataflow workers share a
project's quota. Its busy share is measured until all but ``--max-concurrent`` requests are
served. Each request is one call to the manager's process, a local round trip that the
service never sees as busy: on a machine whose cores are shared with other work it is a
visible share of the scaled-down 10 ms latency (the real service's seconds make the network's
share smaller): the Beam figures understate what the same policy keeps busy without it.

``--via-manager`` runs the single process once more against the quota served that way.

Run: ``.venv/bin/python benchmarks/bench_fetch_quota.py`` (``--requests 2000`` for a quick look;
``--beam`` adds the multi-process runs).
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from dataclasses import asdict, dataclass
from multiprocessing.managers import BaseManager

from core.concurrency import RequestLimit
from core.errors import IsamapError
from gee_export.ee.session import EESession, RetryPolicy
from testing.fake_quota import (
    QuotaModel,
    QuotaTransport,
    SharedQuota,
    serve_shared,
    served_quota,
)

REQUEST = {"expression": None, "fileFormat": "NUMPY_NDARRAY", "bandIds": ["b1", "b2"],
           "grid": {"dimensions": {"width": 8, "height": 8}}}


@dataclass(frozen=True)
class Result:
    """One run's figures (see the module docstring)."""

    mode: str
    requests: int
    busy: float
    throttled_per_ok: float
    lost: int
    seconds: float
    per_second: float
    served: int
    throttled: int
    errors: int
    timeouts: int
    retries: int


def run(mode: str, model: QuotaModel, requests: int, ceiling: int,
        via_manager: bool = False) -> Result:
    """Send ``requests`` requests with ``ceiling`` threads; ``mode`` static or adaptive.

    ``via_manager``: the quota served from another process, as in :func:`run_beam` (each
    request a call to it), to tell its cost from the workers' own.
    """
    manager = None
    if via_manager:
        manager = QuotaManager(address=("127.0.0.1", 0), authkey=b"bench-fetch-quota")
        manager.start(serve_shared, (model,))
    quota = manager.quota() if manager is not None else SharedQuota(model)
    policy = RetryPolicy(max_attempts=6, base_delay=model.latency_s,
                         max_delay=60 * model.latency_s)
    session = EESession(transport=QuotaTransport(quota), retry=policy, seed=model.seed)
    session.limit = RequestLimit(ceiling, adaptive=mode == "adaptive")
    lock = threading.Lock()
    state = {"next": 0, "lost": 0, "ok": 0}

    def worker() -> None:
        while True:
            with lock:
                index = state["next"]
                state["next"] += 1
                if index == requests - 1:
                    quota.stop_measuring()  # the last request is sent: the drain is not measured
            if index >= requests:
                return
            try:
                session.compute_pixels(REQUEST)
                with lock:
                    state["ok"] += 1
            except IsamapError:
                with lock:
                    state["lost"] += 1

    started = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(ceiling)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.monotonic() - started
    stats = quota.stats()
    if manager is not None:
        manager.shutdown()
    return Result(f"manager {mode}" if via_manager else mode, requests, round(stats["busy"], 3),
                  round(stats["throttled"] / max(state["ok"], 1), 3), state["lost"],
                  round(seconds, 2), round(requests / seconds, 1), int(stats["served"]),
                  int(stats["throttled"]), int(stats["errors"]), int(stats["timeouts"]),
                  session.retries)


class QuotaManager(BaseManager):
    """Serves one :class:`SharedQuota` to the Beam worker processes."""


QuotaManager.register("quota", callable=served_quota)


def run_beam(mode: str, model: QuotaModel, requests: int, ceiling: int, workers: int,
             batch: int = 500) -> Result:
    """The same requests from ``workers`` Beam worker processes (multi_processing)."""
    import apache_beam as beam
    from apache_beam.metrics import Metrics
    from apache_beam.options.pipeline_options import PipelineOptions

    from core.pipeline_options import pipeline_counters

    manager = QuotaManager(address=("127.0.0.1", 0), authkey=b"bench-fetch-quota")
    manager.start(serve_shared, (model, requests - ceiling))
    address = manager.address
    threads = ceiling // workers

    class Send(beam.DoFn):
        """Send ``n`` requests through this worker's session and request threads."""

        def setup(self) -> None:
            from core.pipeline_options import WorkerRequests

            remote = QuotaManager(address=address, authkey=b"bench-fetch-quota")
            remote.connect()
            policy = RetryPolicy(max_attempts=6, base_delay=model.latency_s,
                                 max_delay=60 * model.latency_s)
            self.session = EESession(transport=QuotaTransport(remote.quota()), retry=policy)
            self.requests = WorkerRequests(self.session, threads, "bench",
                                           Metrics.counter("bench", "retries"))
            if mode == "static":
                self.session.limit = RequestLimit(threads, adaptive=False)
            self.ok = Metrics.counter("bench", "ok")
            self.lost = Metrics.counter("bench", "lost")

        def _one(self) -> bool:
            try:
                with self.requests.gate:
                    self.session.compute_pixels(REQUEST)
                return True
            except IsamapError:
                return False

        def start_bundle(self) -> None:
            self.requests.start()

        def _count(self, results) -> None:
            for ok in results:
                (self.ok if ok else self.lost).inc()

        def process(self, n: int):
            for _ in range(n):
                self.requests.submit(self._one)
            self._count(self.requests.finished())
            return []

        def finish_bundle(self) -> None:
            self._count(self.requests.drain())

        def teardown(self) -> None:
            self.requests.close()

    options = PipelineOptions(["--runner=DirectRunner", f"--direct_num_workers={workers}",
                               "--direct_running_mode=multi_processing"])
    started = time.monotonic()
    try:
        with beam.Pipeline(options=options) as pipeline:
            _ = (pipeline | beam.Create([batch] * (requests // batch)) | beam.Reshuffle()
                 | beam.ParDo(Send()))
        seconds = time.monotonic() - started
        counters = pipeline_counters(pipeline.result, "bench") if hasattr(
            pipeline, "result") else {}
        stats = manager.quota().stats()
    finally:
        manager.shutdown()
    ok = counters.get("ok", int(stats["served"]))
    sent = requests // batch * batch
    return Result(f"beam {mode}", sent, round(stats["busy"], 3),
                  round(stats["throttled"] / max(ok, 1), 3), counters.get("lost", 0),
                  round(seconds, 2), round(sent / seconds, 1), int(stats["served"]),
                  int(stats["throttled"]), int(stats["errors"]), int(stats["timeouts"]),
                  counters.get("retries", 0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=12000, help="requests per mode")
    parser.add_argument("--max-concurrent", type=int, default=40,
                        help="request threads, the budget's ceiling")
    parser.add_argument("--cap", default="8:40", help="LOW:HIGH of the moving cap")
    parser.add_argument("--period", type=float, default=0.5, help="seconds one cap holds")
    parser.add_argument("--latency", type=float, default=0.01, help="median seconds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--modes", default="static,adaptive")
    parser.add_argument("--json", action="store_true", help="one JSON line per mode")
    parser.add_argument("--beam", action="store_true",
                        help="also run Beam's DirectRunner in multi_processing mode")
    parser.add_argument("--beam-workers", type=int, default=2)
    parser.add_argument("--via-manager", action="store_true",
                        help="also run one process against the quota served as --beam serves it")
    args = parser.parse_args()
    low, high = (int(x) for x in args.cap.split(":"))
    model = QuotaModel(cap_low=low, cap_high=high, period_s=args.period,
                       latency_s=args.latency, reject_s=args.latency / 10,
                       timeout_s=args.latency * 20, seed=args.seed)
    print(f"# {args.requests} requests per mode, {args.max_concurrent} threads, cap "
          f"{low}..{high} redrawn every {args.period:g} s, median latency "
          f"{args.latency * 1000:g} ms (lognormal, sigma {model.sigma:g}), "
          f"{model.error_rate:.1%} 503, {model.timeout_rate:.1%} time-outs; "
          f"{os.cpu_count()} cores")
    if not args.json:
        print(f"{'mode':<16}{'busy':>7}{'429/ok':>9}{'lost':>6}{'seconds':>9}{'req/s':>8}"
              f"{'429s':>7}{'5xx':>6}{'t-outs':>8}{'retries':>9}")
    runs = [(run, mode) for mode in args.modes.split(",")]
    if args.via_manager:
        runs += [(run, f"{mode}+manager") for mode in args.modes.split(",")]
    if args.beam:
        runs += [(run_beam, mode) for mode in args.modes.split(",")]
    for fn, mode in runs:
        extra = (args.beam_workers,) if fn is run_beam else (True,) if "+" in mode else ()
        mode = mode.split("+")[0]
        r = fn(mode, model, args.requests, args.max_concurrent, *extra)
        if args.json:
            print(json.dumps(asdict(r)))
        else:
            print(f"{r.mode:<16}{r.busy:>7.3f}{r.throttled_per_ok:>9.3f}{r.lost:>6}"
                  f"{r.seconds:>9.2f}{r.per_second:>8.0f}{r.throttled:>7}{r.errors:>6}"
                  f"{r.timeouts:>8}{r.retries:>9}")


if __name__ == "__main__":
    main()
