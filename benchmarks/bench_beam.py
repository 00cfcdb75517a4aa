"""Benchmark: the Beam pipelines on the DirectRunner (2 workers) vs the single-process commands.

Same input for both sides: a synthetic scene's stack served by the fake Earth Engine pixel
server (``testing.fake_server``) with a fixed simulated latency per request, the real
recipe graph built offline, and the same total number of concurrent requests (the single
process gets ``--workers`` = the pipeline's 2 workers x threads). Each case runs in its own
Python process so that its peak RSS (``ru_maxrss``) is its own; the table gives throughput,
the Beam/single-process throughput ratio, peak RSS and CPU seconds per unit (process start,
imports and the fake server's own work included: an upper bound of a worker's CPU cost, used
for the Dataflow estimate in the README). No bar: the ratio says what the
DirectRunner's start-up and shuffle cost on one machine (Dataflow's gain is more workers, not a
faster worker).

The mapping pair maps one date of a smooth synthetic stack with a small U-Net: ``isamap-map``'s
streaming predictor vs its Beam pipeline of tiles (units: tiles of 512 px).

Run: ``.venv/bin/python benchmarks/bench_beam.py [--latency 0.2] [--size 608] [--map-size 1536]``
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MONTH = "2019-06"
CASES = ("export-single", "export-beam", "map-single", "map-beam")
BANDS = ("B2", "B3", "B4", "B8", "VV", "VH")


def _stack_spec(stack) -> dict:
    return {"grid": stack.grid.to_dict(), "bands": list(stack.bands), "image": stack.image,
            "label": stack.label}


def _map_inputs(tmp: Path, size: int) -> tuple[str, str]:
    """A smooth 6-band stack GeoTIFF (UTM 50N) and a small U-Net model file recording it."""
    import numpy as np
    import rasterio

    from contract.geotiff import write_geotiff
    from contract.grid import Grid
    from training.modelfile import ModelMeta, save_model_file
    from training.models import create_model

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    data = np.stack([np.sin(rng.uniform(0.01, 0.08) * yy + rng.uniform(0, 6))
                     * np.cos(rng.uniform(0.01, 0.08) * xx) for _ in BANDS]).astype(np.float32)
    image = str(tmp / f"stack_{MONTH}.tif")
    write_geotiff(image, data, rasterio.Affine(10, 0, 500000, 0, -10, 3400000), "EPSG:32650",
                  float("nan"), descriptions=list(BANDS))
    grid = Grid("EPSG:32650", 500000.0, 3400000.0, size, size, 10.0, 64, 32)
    kwargs = {"widths": [8, 16, 16, 32, 32]}
    meta = ModelMeta("unet", len(BANDS), 2, BANDS, (0.0,) * 6, (1.0,) * 6, model_kwargs=kwargs,
                     extra={"dataset": {"root": "/nowhere", "backend": "ee", "months": [MONTH],
                                        "bands": list(BANDS), "grid": grid.to_dict(),
                                        "recipe": {"s1": {"speckle": "boxcar"},
                                                   "s2": {"cloud_mask": "scl"}}}})
    model = str(tmp / "unet.pt")
    save_model_file(model, create_model("unet", len(BANDS), 2, **kwargs), meta)
    return image, model


def _map_child(args: argparse.Namespace) -> dict:
    import ee
    from pyproj import Transformer

    from contract.grid import Grid
    from contract.regions import Region
    from contract.stack import StackPaths
    from core.pipeline_options import RunnerConfig
    from gee_export.ee.session import EESession
    from inference.mapping.region import map_region
    from inference.mapping.request import MapExtent, MapInputs, MapOutputs, MapRequest, map_window
    from inference.predict.runtime import RuntimeOptions
    from testing.fake_server import StackSessions, StackTransport, initialize_offline
    from training.modelfile import load_model

    initialize_offline(ee)
    spec = json.loads(args.stack)
    grid = Grid.from_dict(spec["grid"])
    stack = StackPaths(grid, BANDS, MONTH, spec["image"], spec["image"] + ".nolabel")
    west, south, east, north = grid.bounds
    box = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True).transform_bounds(
        west + 200, south + 200, east - 200, north - 200)
    runner = RunnerConfig("direct", max_workers=2, max_concurrent=args.concurrent)
    request = MapRequest(MapExtent(Region("bench", tuple(box)), (MONTH,)), MapOutputs(args.out),
                         MapInputs(workers=runner.workers * runner.threads),
                         map_window(tile=512, overlap=64), RuntimeOptions(precision="fp32"),
                         progress=False, runner=runner if args.case == "map-beam" else None)
    launcher = EESession(transport=StackTransport(stack, info=lambda text: 5,
                                                  latency=args.latency))
    result = map_region(request, load_model(spec["model"]), session=launcher,
                        echo=lambda _: None,
                        worker_sessions=StackSessions(stack, latency=args.latency))
    prediction = result.dates[0].outputs.prediction
    return {"units": prediction.tiles, "concurrent": runner.workers * runner.threads,
            "km2": result.grid.area_km2}


def _child(args: argparse.Namespace) -> None:
    """One case, in this process; prints one JSON line."""
    if args.case.startswith("map"):
        t0 = time.perf_counter()
        result = _map_child(args)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        print(json.dumps({"case": args.case, **result, "seconds": time.perf_counter() - t0,
                          "rss_mb": usage.ru_maxrss / 1024,
                          "cpu_s": usage.ru_utime + usage.ru_stime}))
        return
    import ee

    from contract.bands import DEFAULT_IMAGE_BANDS
    from contract.dataset import DatasetSpec
    from contract.grid import Grid
    from contract.stack import StackPaths
    from core.pipeline_options import RunnerConfig
    from gee_export.ee.beam_export import export_pipeline
    from gee_export.ee.export import ExportJob, export_pixels
    from gee_export.ee.labels import parse_label_source
    from gee_export.ee.recipe import EERecipe, build_stack
    from gee_export.ee.sentinel2 import month_window
    from gee_export.ee.session import EESession
    from testing.fake_server import StackSessions, StackTransport, initialize_offline

    initialize_offline(ee)
    spec = json.loads(args.stack)
    stack = StackPaths(Grid.from_dict(spec["grid"]), tuple(spec["bands"]), MONTH, spec["image"],
                       spec["label"])
    region = ee.Geometry.Rectangle([114.2, 30.5, 114.25, 30.55])
    recipe = EERecipe(bands=DEFAULT_IMAGE_BANDS, label=parse_label_source("worldcover"))
    image = build_stack(stack.grid, month_window(MONTH), recipe, region)
    job = ExportJob(DatasetSpec(stack.grid, DEFAULT_IMAGE_BANDS, backend="ee",
                                region="synthetic", min_valid_fraction=0.0), MONTH)
    runner = RunnerConfig("direct", max_workers=2, max_concurrent=args.concurrent)
    t0 = time.perf_counter()
    if args.case == "export-single":
        session = EESession(transport=StackTransport(stack, latency=args.latency))
        summary = export_pixels(session, image, job, args.out,
                                workers=runner.workers * runner.threads, progress=False)
    else:
        sessions = StackSessions(stack, latency=args.latency)
        summary = export_pipeline(sessions, image, job, args.out, runner)
    seconds = time.perf_counter() - t0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"case": args.case, "units": summary.written, "seconds": seconds,
                      "rss_mb": usage.ru_maxrss / 1024, "cpu_s": usage.ru_utime + usage.ru_stime,
                      "concurrent": runner.workers * runner.threads}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.2, help="seconds per request")
    parser.add_argument("--size", type=int, default=608, help="scene side in pixels")
    parser.add_argument("--map-size", type=int, default=1536, help="map stack side in pixels")
    parser.add_argument("--concurrent", type=int, default=8,
                        help="requests in flight (Beam: 2 workers x concurrent/2 threads)")
    parser.add_argument("--case", choices=CASES, help=argparse.SUPPRESS)
    parser.add_argument("--stack", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        _child(args)
        return

    from gee_export.local.stack import build_local_stack
    from gee_export.local.synthetic import generate_scene

    with tempfile.TemporaryDirectory() as tmp:
        scene = generate_scene(Path(tmp) / "scene", width=args.size, height=args.size)
        stack = build_local_stack(Path(tmp) / "scene", scene.grid, MONTH, speckle="boxcar",
                                  out_dir=Path(tmp) / "stack", progress=False)
        print(f"scene {args.size} x {args.size} px, {scene.grid.patch_count} patch positions, "
              f"simulated latency {args.latency * 1000:.0f} ms/request, "
              f"{args.concurrent} requests in flight on both sides")
        image, model = _map_inputs(Path(tmp), args.map_size)
        map_spec = {"grid": {**stack.grid.to_dict(), "x0": 500000.0, "y0": 3400000.0,
                             "crs": "EPSG:32650", "width": args.map_size,
                             "height": args.map_size},
                    "image": image, "model": model}
        print(f"map: {args.map_size} x {args.map_size} px stack, U-Net (widths 8-32), 512 px "
              "tiles with 64 px overlap; units are tiles")
        print(f"{'case':<16} {'units':>6} {'seconds':>8} {'units/s':>8} {'peak RSS':>9} "
              f"{'CPU s/unit':>10}")
        results = {}
        for case in CASES:
            spec = map_spec if case.startswith("map") else _stack_spec(stack)
            proc = subprocess.run(
                [sys.executable, __file__, "--case", case, "--stack",
                 json.dumps(spec), "--out", str(Path(tmp) / case),
                 "--latency", str(args.latency), "--concurrent", str(args.concurrent)],
                capture_output=True, text=True, check=False)
            if proc.returncode:
                sys.exit(f"{case} failed:\n{proc.stderr[-3000:]}")
            result = json.loads(proc.stdout.strip().splitlines()[-1])
            results[case] = result
            rate = result["units"] / result["seconds"]
            print(f"{case:<16} {result['units']:>6} {result['seconds']:>8.2f} {rate:>8.2f} "
                  f"{result['rss_mb']:>6.0f} MB {result['cpu_s'] / result['units']:>10.3f}")
        for what in ("export", "map"):
            single, beam = results[f"{what}-single"], results[f"{what}-beam"]
            ratio = (beam["units"] / beam["seconds"]) / (single["units"] / single["seconds"])
            print(f"{what}: Beam DirectRunner (2 workers) / single process throughput = "
                  f"{ratio:.2f}x, peak RSS {beam['rss_mb']:.0f} MB vs {single['rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
