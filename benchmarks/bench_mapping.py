"""Benchmark: mapping a region from tiles fetched with computePixels, against the model alone.

The fetch is the real path of ``isamap-map --backend ee`` (recipe graph built offline, the EE
session with retries, ``computePixels`` requests split to the service limits, decoding), served
by the fake pixel server (``testing.fake_server.StackTransport``) with a simulated service
latency per request (400 ms by default), into the streaming predictor through
``inference.mapping.fetched.FetchedSource`` (bounded pool, tile rows fetched ahead).

Measured side by side in one run:
- pipeline throughput (km²/s of 10 m pixels: fetch -> predict -> strips -> two COGs) with 1, 16
  and 40 concurrent requests, on a ``--size`` region (default 16,384², the issue's region;
  there one request at a time is latency-bound by construction and takes minutes: one-tile
  requests alone wait 1,369 x 0.4 s, so ``--workers 16,40`` skips it);
- the model's forward pass alone on the same tiles: every ``--replay-every``-th batch is run
  through the model again right after the pipeline's own call (same tiles, same moment, same
  machine load; the replay's time is taken out of the pipeline's), and its time per tile times
  all tiles is the ceiling the pipeline can reach; and the same forward timed alone right
  before and right after each run, with nothing else running, the mean of the two (the
  stricter ceiling: the replay is slowed by the pipeline's own threads as the pipeline is;
  this shared machine's speed drifts over minutes, so both timings are printed).
  The ratio pipeline / model-only, both ways (bar: >= 0.8 at 16 workers);
- the pipeline's own forwards (the replays excluded) against the same tiles timed alone (how
  much the helper threads slow the model), the process's CPU time less what it spent while
  replaying (that includes the helpers' CPU in those moments, so it is a slight
  underestimate), and each helper stage's CPU;
- peak RSS of the whole pipeline on a ``--rss-size`` region (default 16,384², bar: < 2 GB), in
  a child process so nothing else counts towards it (the fake service's reads included; the
  child's own high-water mark, see ``peak_memory.py``).

The simulated latency is 400 ms per request (the issue's simulation); with ``--latency-per
tile`` it grows with the request instead, 400 ms per 512 px tile's worth of pixels, so requests
that carry several neighbouring tiles wait as much longer (then the fetch, not the model,
limits the pipeline: 16 requests in flight bring at most 40 tiles a second).
The service's own work (checking the expression, reading the stack,
building the response) is done once, in untimed prefill runs (the same pipeline with a
per-pixel model: the requests depend on the layout, not the model), and remembered (equal
responses kept once: the stack repeats one tile): the real
service computes pixels on Google's machines, not on the cores that run the model, so the
timed runs pay the client's whole side (graph serialisation, retries, decoding) and the
latency, not the fake server's reads (the RSS run keeps nothing). The stack served is a VRT
repeating one smooth 1,024² tile, so a 16,384² region needs no disk. Model: the training
package's U-Net at narrow widths, random weights.

Run: ``.venv/bin/python benchmarks/bench_mapping.py`` (``--size 1856 --rss-size 4096`` for a
quick look; ``--rss-widths 4,8,8,16,16`` makes the 16,384² RSS run faster on a small CPU). The
16,384² throughput runs hold the service's answers in memory: about 10 GB for 16 and 40
workers.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from peak_memory import peak_rss_gib

BANDS = ("B2", "B3", "B4", "B8", "VV", "VH")
MONTH = "2019-06"
X0, Y0 = 500_000.0, 3_400_000.0
BLOCK = 1024
TILE_PIXELS = 512 * 512  # the simulated latency is per 512 px tile's worth of pixels


def write_stack(folder: Path, size: int) -> Path:
    """A ``size``² six-band stack: a VRT repeating one smooth float32 tile (no big file)."""
    import rasterio
    from affine import Affine

    from contract.vrt import Piece, VrtBand, mosaic_vrt

    tile = folder / "tile.tif"
    yy, xx = np.mgrid[0:BLOCK, 0:BLOCK].astype(np.float32)
    data = np.stack([np.sin(yy * (0.01 + 0.003 * b)) * np.cos(xx * (0.008 + 0.002 * b))
                     for b in range(len(BANDS))]).astype(np.float32)
    profile = {"driver": "GTiff", "width": BLOCK, "height": BLOCK, "count": len(BANDS),
               "dtype": "float32", "crs": "EPSG:32650", "nodata": float("nan"),
               "transform": Affine(10, 0, X0, 0, -10, Y0), "tiled": True, "blockxsize": 256,
               "blockysize": 256}
    with rasterio.open(tile, "w", **profile) as dst:
        dst.write(data)
    pieces = [Piece(tile.name, r, c, min(BLOCK, size - r), min(BLOCK, size - c))
              for r in range(0, size, BLOCK) for c in range(0, size, BLOCK)]
    vrt = folder / f"stack_{size}.vrt"
    vrt.write_text(mosaic_vrt(size, size, Affine(10, 0, X0, 0, -10, Y0), "EPSG:32650",
                              [VrtBand(i, "float32", float("nan"), b)
                               for i, b in enumerate(BANDS, start=1)], pieces))
    return vrt


def setup(folder: Path, size: int, latency: float, widths: tuple[int, ...], precision: str,
          remote: bool = False, latency_per: str = "request"):
    """Grid, fake-server session, recipe image and predictor for a ``size``² region.

    ``remote``: the service's own work (checking the expression, reading the stack, building
    the response) is done once per distinct request and remembered, so that timed runs that
    ask again spend only the client's side and the simulated latency on this machine -- as
    with the real service, whose pixels are computed on Google's machines, not on the two
    cores that run the model. Runs must be prefilled (an untimed run of the same requests).
    """
    import ee
    import torch
    from ee import apitestcase

    from contract.grid import Grid
    from contract.patches import StackPaths
    from gee_export.ee.prediction_stack import DateRecipe, prediction_image, recipe_for_month
    from gee_export.ee.sentinel2 import month_window
    from gee_export.ee.session import EESession
    from inference.predict.runtime import RuntimeOptions, TilePredictor
    from testing.fake_server import StackTransport
    from training.models import create_model

    ee.Reset()
    ee.data._install_cloud_api_resource = lambda: None
    ee.data.getAlgorithms = apitestcase.GetAlgorithms
    ee.Initialize(None, "", project="offline")
    vrt = write_stack(folder, size)
    grid = Grid("EPSG:32650", X0, Y0, size, size, 10.0, 128, 80)
    stack = StackPaths(grid, BANDS, MONTH, str(vrt), str(folder / "no_label.tif"))
    responses: dict[str, np.ndarray] = {}
    distinct: dict[tuple, np.ndarray] = {}

    class Service(StackTransport):
        """The service answers after ``latency`` (per request, or per tile's worth of pixels)."""

        def compute_pixels(self, request):
            dims = request["grid"]["dimensions"]
            scale = (dims["width"] * dims["height"] / TILE_PIXELS if latency_per == "tile"
                     else 1.0)
            time.sleep(latency * scale)
            if not remote:
                return super().compute_pixels(request)
            key = json.dumps([request["grid"], list(request["bandIds"])], sort_keys=True)
            if key not in responses:
                response = super().compute_pixels(request)
                response.flags.writeable = False  # the client must copy, never write
                # the stack repeats one tile, so many responses are equal: keep one of each
                digest = hashlib.blake2b(response.tobytes(), digest_size=16).digest()
                responses[key] = distinct.setdefault(
                    (response.dtype, response.shape, digest), response)
            return responses[key]

    session = EESession(transport=Service(stack), sleep=time.sleep)
    date = recipe_for_month({"s1": {}, "s2": {}}, BANDS, MONTH)
    date = DateRecipe(date.recipe, month_window(MONTH), date.s1_window)
    image = prediction_image(grid, date, ee.Geometry.Rectangle([117.0, 30.6, 117.1, 30.7]))
    torch.manual_seed(0)
    model = create_model("unet", len(BANDS), 2, widths=widths)
    predictor = TilePredictor(model, np.zeros(len(BANDS)), np.ones(len(BANDS)),
                              options=RuntimeOptions(precision=precision))
    return grid, session, image, predictor


def run_pipeline(folder: Path, grid, session, image, predictor, workers: int, tile: int,
                 overlap: int, batch: int, progress: bool = False,
                 request_bytes: int | None = None):
    from gee_export.ee.export import fetch_window
    from inference.cog.maps import OutputInfo
    from inference.mapping.fetched import DEFAULT_REQUEST_BYTES, FetchedSource
    from inference.predict.raster import PredictConfig, predict_raster

    source = FetchedSource(lambda w: fetch_window(session, image, grid, w, BANDS)[0], grid,
                           BANDS, tile=tile, overlap=overlap, workers=workers,
                           identity=f"bench-{workers}-{request_bytes}",
                           max_request_bytes=request_bytes or DEFAULT_REQUEST_BYTES)
    out = folder / f"map_w{workers}"
    try:
        started = time.perf_counter()
        result = predict_raster(source, str(out / "isa"), predictor, OutputInfo("unet", BANDS),
                                PredictConfig(tile=tile, overlap=overlap, batch_size=batch),
                                restart=True, progress=progress)
        return result, time.perf_counter() - started, source.stats
    finally:
        source.close()


def rss_child(args: argparse.Namespace) -> dict:
    """The whole pipeline on a ``--rss-size`` region; its own peak RSS (run as a child)."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        grid, session, image, predictor = setup(folder, args.rss_size, args.latency,
                                                args.rss_widths, args.precision,
                                                latency_per=args.latency_per)
        before = peak_rss_gib()
        result, seconds, stats = run_pipeline(folder, grid, session, image, predictor, 40,
                                              args.tile, args.overlap, args.batch,
                                              progress=True)
        peak = peak_rss_gib()
    area = args.rss_size**2 * 100 / 1e6
    return {"rss_size": args.rss_size, "rss_model_widths": list(args.rss_widths),
            "rss_tiles": result.tiles, "rss_requests": stats.fetched,
            "rss_seconds": round(seconds, 1), "rss_km2_per_s": round(area / seconds, 3),
            "peak_rss_gib": round(peak, 3), "rss_before_pipeline_gib": round(before, 3),
            "whole_region_input_gib": round(args.rss_size**2 * len(BANDS) * 4 / 2**30, 2)}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=16384,
                        help="throughput region side (px; the issue's 16,384², where the "
                             "first round trip no longer dominates; 3,648 for a quicker look)")
    parser.add_argument("--rss-size", type=int, default=16384, help="RSS region side (px)")
    parser.add_argument("--latency", type=float, default=0.4,
                        help="simulated computePixels latency in seconds")
    parser.add_argument("--latency-per", choices=("request", "tile"), default="request",
                        help="the latency is per request (the issue's simulation), or per 512 "
                             "px tile's worth of pixels (larger requests wait longer)")
    parser.add_argument("--workers", default="1,16,40")
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--overlap", type=int, default=64)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--widths", default="8,16,32,64,128")
    parser.add_argument("--rss-widths", default=None,
                        help="U-Net widths of the RSS run (default: --widths)")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--replay-every", type=int, default=1,
                        help="replay every n-th batch through the model alone")
    parser.add_argument("--rss-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--skip-rss", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> dict:
    args = _parser().parse_args(argv)
    args.widths = tuple(int(w) for w in args.widths.split(","))
    args.rss_widths = (tuple(int(w) for w in args.rss_widths.split(","))
                       if args.rss_widths else args.widths)
    if args.rss_only:
        print("RSS-JSON " + json.dumps(rss_child(args)))
        return {}
    import torch

    from inference.predict.runtime import RuntimeOptions, TilePredictor

    area = args.size**2 * 100 / 1e6
    figures: dict = {"size": args.size, "latency_s": args.latency,
                     "latency_per": args.latency_per, "tile": args.tile,
                     "overlap": args.overlap, "batch": args.batch,
                     "model": f"training unet widths={args.widths}",
                     "threads": torch.get_num_threads(), "area_km2": area}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        grid, session, image, predictor = setup(folder, args.size, args.latency, args.widths,
                                                args.precision, remote=True,
                                                latency_per=args.latency_per)
        worker_counts = [int(w) for w in args.workers.split(",")]
        one_tile = args.tile * args.tile * len(BANDS) * 4  # request bytes of a single tile
        # the service computes every response once, untimed, asked by the same pipeline with
        # a per-pixel model (the requests depend on the layout and --workers, not the model)
        prefill = TilePredictor(torch.nn.Conv2d(len(BANDS), 2, 1), np.zeros(len(BANDS)),
                                np.ones(len(BANDS)), options=RuntimeOptions(precision="fp32"))
        for grouped in (True, False):
            for workers in worker_counts:
                run_pipeline(folder, grid, session, image, prefill, workers, args.tile,
                             args.overlap, args.batch,
                             request_bytes=None if grouped else one_tile)
                shutil.rmtree(folder / f"map_w{workers}")  # the timed run starts afresh
        runs = {}
        for grouped in (True, False):
            for workers in worker_counts:
                key = f"{workers} workers, {'grouped' if grouped else 'one tile'} requests"
                runs[key] = _timed_run(args, (folder, grid, session, image), predictor, workers,
                                       None if grouped else one_tile, key)
    # what ``auto`` settled on, once the first isolated timing has measured it
    figures["runtime"] = predictor.description
    print(f"runtime: {predictor.description}", flush=True)
    figures["pipeline"] = runs
    if not args.skip_rss:
        figures.update(_rss(args))
    print(json.dumps(figures, indent=1))
    return figures


def _timed_run(args: argparse.Namespace, where: tuple, predictor, workers: int,
               request_bytes: int | None, key: str) -> dict:
    """One timed pipeline run against the model alone (replayed and isolated), printed."""
    # the same replay and isolated timing as the pipeline bench
    from bench_inference import ReplayingPredictor, isolated_seconds_per_tile

    folder, grid, session, image = where
    area = args.size**2 * 100 / 1e6
    before = isolated_seconds_per_tile(predictor, args.batch, args.tile, len(BANDS))
    # (after the first call settled ``auto``: the twin copies the settled choice)
    replay = ReplayingPredictor.wrapping(predictor, args.replay_every)
    cpu0 = time.process_time()
    result, seconds, stats = run_pipeline(
        folder, grid, session, image, replay, workers, args.tile, args.overlap,
        args.batch, request_bytes=request_bytes)
    cpu = time.process_time() - cpu0 - replay.replay_cpu
    after = isolated_seconds_per_tile(predictor, args.batch, args.tile, len(BANDS))
    alone = (before + after) / 2  # this machine's speed drifts over minutes
    if not replay.replay_tiles:
        raise SystemExit("no batch was replayed: use a larger --size or a smaller "
                         "--replay-every")
    pipeline = seconds - replay.replay_wall
    model = replay.replay_forward / replay.replay_tiles * result.tiles
    isolated = alone * result.tiles
    print(f"{key:>32}: {result.tiles} tiles, {stats.fetched} requests in "
          f"{pipeline:6.1f} s = {area / pipeline:7.3f} km²/s; model alone "
          f"{area / model:7.3f} km²/s replayed, {area / isolated:7.3f} isolated ("
          f"{1e3 * before:.1f} / {1e3 * after:.1f} ms per tile before / after); "
          f"ratio {model / pipeline:.3f} / {isolated / pipeline:.3f}"
          + ("  (bar >= 0.8)" if workers == 16 else ""), flush=True)
    print(f"{'':>34}its forwards {result.stages['forward']:.1f} s against "
          f"{isolated:.1f} s alone (x{result.stages['forward'] / isolated:.2f}); "
          f"process CPU {cpu:.1f} s (replays taken out); helper stages' CPU "
          + ", ".join(f"{k} {v:.1f} s" for k, v in result.stages_cpu.items()
                      if v and k != "predict"), flush=True)
    return {"seconds": round(pipeline, 2),
            "km2_per_s": round(area / pipeline, 3), "tiles": result.tiles,
            "requests": stats.fetched, "replayed_tiles": replay.replay_tiles,
            "model_only_s": round(model, 2),
            "model_only_km2_per_s": round(area / model, 3),
            "ratio_vs_model_only": round(model / pipeline, 3),
            "model_isolated_s": round(isolated, 2),
            "ratio_vs_model_isolated": round(isolated / pipeline, 3),
            "isolated_ms_per_tile_before_after": [round(1e3 * before, 1),
                                                  round(1e3 * after, 1)],
            # the pipeline's own forwards (replays excluded) against the
            # same tiles timed alone: how much the helpers slow the model
            "forward_in_pipeline_s": round(result.stages["forward"], 2),
            "forward_slowdown": round(result.stages["forward"] / isolated, 3),
            "process_cpu_s_without_replays": round(cpu, 2),
            "stages_cpu_s": {k: round(v, 2) for k, v in result.stages_cpu.items() if v}}


def _rss(args: argparse.Namespace) -> dict:
    """The peak-RSS run, in a fresh process (``--rss-only``), printed; its figures."""
    done = subprocess.run([sys.executable, __file__, "--rss-only", "--rss-size",
                           str(args.rss_size), "--latency", str(args.latency),
                           "--latency-per", args.latency_per, "--tile", str(args.tile),
                           "--overlap", str(args.overlap), "--batch",
                           str(args.batch), "--widths", ",".join(map(str, args.widths)),
                           "--rss-widths", ",".join(map(str, args.rss_widths)),
                           "--precision", args.precision],
                          check=True, capture_output=True, text=True)
    line = next(ln for ln in done.stdout.splitlines() if ln.startswith("RSS-JSON "))
    figures = json.loads(line.removeprefix("RSS-JSON "))
    print(f"peak RSS on {args.rss_size}² ({figures['rss_tiles']} tiles, 40 workers): "
          f"{figures['peak_rss_gib']:.3f} GiB (bar < 2; the region's input alone is "
          f"{figures['whole_region_input_gib']} GiB) in {figures['rss_seconds']} s")
    return figures


if __name__ == "__main__":
    main()
