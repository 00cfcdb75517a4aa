"""Benchmark: computePixels export throughput against the size of the thread pool.

A real Earth Engine request for one 128 px patch spends most of its time waiting on the
service, so throughput should grow with concurrent requests until the 40-request quota. This
runs the real export orchestration (recipe graph built offline, session with retries, patch
writer, index) against the test transport that serves the local backend's stack from a
synthetic scene, with a fixed simulated service latency per request, for several ``--workers``
values side by side, and prints patches/s and the speed-up over one worker. It also times one
run with 20 % of requests failing with HTTP 429 to show the cost of the backoff.

Run: ``.venv/bin/python benchmarks/bench_ee_export.py [--latency 0.4] [--size 448]``
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.4, help="seconds per request")
    parser.add_argument("--size", type=int, default=448, help="scene side in pixels")
    parser.add_argument("--workers", default="1,4,16,40")
    args = parser.parse_args()

    import ee

    from contract.bands import DEFAULT_IMAGE_BANDS
    from contract.dataset import DatasetSpec
    from gee_export.ee.export import ExportJob, export_pixels
    from gee_export.ee.labels import parse_label_source
    from gee_export.ee.recipe import EERecipe, build_stack
    from gee_export.ee.sentinel2 import month_window
    from gee_export.ee.session import EESession, RetryPolicy
    from gee_export.local.stack import build_local_stack
    from gee_export.local.synthetic import generate_scene
    from testing.fake_server import HttpError, StackTransport, initialize_offline

    initialize_offline(ee)

    class Slow(StackTransport):
        def compute_pixels(self, request):
            time.sleep(args.latency)
            return super().compute_pixels(request)

    with tempfile.TemporaryDirectory() as tmp:
        scene = generate_scene(Path(tmp) / "scene", width=args.size, height=args.size,
                               fine_scale=2)
        stack = build_local_stack(Path(tmp) / "scene", scene.grid, "2019-06",
                                  speckle="boxcar", out_dir=Path(tmp) / "stack", progress=False)
        region = ee.Geometry.Rectangle([114.2, 30.5, 114.25, 30.55])
        recipe = EERecipe(bands=DEFAULT_IMAGE_BANDS, label=parse_label_source("worldcover"))
        image = build_stack(scene.grid, month_window("2019-06"), recipe, region)
        job = ExportJob(DatasetSpec(scene.grid, DEFAULT_IMAGE_BANDS, backend="ee",
                                    region="synthetic", min_valid_fraction=0.0), "2019-06")
        print(f"scene {args.size} x {args.size} px, {scene.grid.patch_count} patch positions, "
              f"simulated service latency {args.latency * 1000:.0f} ms/request")
        print(f"{'workers':>8} {'patches':>8} {'seconds':>8} {'patches/s':>10} {'speed-up':>9}")
        base = None
        for i, workers in enumerate(int(w) for w in args.workers.split(",")):
            session = EESession(transport=Slow(stack), sleep=time.sleep)
            t0 = time.perf_counter()
            summary = export_pixels(session, image, job, f"{tmp}/out{i}", workers=workers,
                                    progress=False)
            dt = time.perf_counter() - t0
            rate = summary.written / dt
            base = base or rate
            print(f"{workers:>8} {summary.written:>8} {dt:>8.2f} {rate:>10.1f} "
                  f"{rate / base:>8.1f}x")
        flaky = Slow(stack, fail_every=5, fault=HttpError(429, "Too Many Requests"))
        session = EESession(transport=flaky, sleep=time.sleep,
                            retry=RetryPolicy(max_attempts=6, base_delay=0.05, max_delay=1.0))
        t0 = time.perf_counter()
        summary = export_pixels(session, image, job, f"{tmp}/flaky", workers=16, progress=False)
        dt = time.perf_counter() - t0
        print(f"16 workers with every 5th request refused (429): {summary.written} patches in "
              f"{dt:.2f} s ({summary.written / dt:.1f} patches/s), {summary.retries} retries")


if __name__ == "__main__":
    main()
