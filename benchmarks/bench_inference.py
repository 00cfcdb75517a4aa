"""Benchmark: streaming inference over a 16,384 x 16,384 six-band raster.

Measured in one run, side by side:
- the whole pipeline (read -> normalise -> forward -> blend -> strips -> two COGs with
  overviews, written by GDAL from the strips at the end), as km²/s of 10 m pixels, with the
  time of each stage (stages in different threads overlap);
- the model's forward pass alone on the same tiles: every 4th batch is replayed through the
  model right after the pipeline's call (same tiles, same machine load; the replay's time is
  taken out of the pipeline's), and the time per tile, times all tiles, gives km²/s; and the
  same forward timed with nothing else running, right before and right after the pipeline
  (the mean of the two: this shared machine's speed drifts over minutes). The replay is
  slowed by the pipeline's own helper threads, so it flatters the ratio; the model alone is
  the stricter ceiling, and both ratios are printed;
- the forward time accumulated inside the pipeline run itself;
- peak RSS of the pipeline, next to what a whole-array approach would need.

Model: the training package's U-Net (``create_model("unet", widths=...)``), narrow widths so
that a CPU run finishes in minutes (and the model is fast, so the pipeline's own costs show);
random weights (speed does not depend on them). Precision and layout: ``auto`` by default,
settled on a real batch before the pipeline starts (its measuring time is reported apart).

Run: ``.venv/bin/python benchmarks/bench_inference.py`` (``--size 2048`` for a quick look;
``--size W --height H`` for a rectangle). ``--rss-sweep`` runs whole pipelines at 4096²,
16384² and a 65,536 x 4,096 strip, each in a process of its own, and prints their peak RSS,
which must not grow with the raster (``--quick``: 1024², 2048², 4096 x 512).
``--vs-checkout DIR --size 8192 --rounds N`` runs the pipeline from another checkout's code
(the peer, e.g. an export of main) and from this one in turn and prints the km²/s ratio per
pair.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
from affine import Affine
from peak_memory import peak_rss_gib
from rasterio.windows import Window

from inference.cog.maps import OutputInfo
from inference.predict.raster import PredictConfig, predict_raster
from inference.predict.runtime import RuntimeOptions, TilePredictor
from training.models import create_model

BANDS = ("B2", "B3", "B4", "B8", "VV", "VH")


def generate(path: Path, size: int, block: int = 512, height: int | None = None) -> None:
    """A tiled float32 stack written block row by block row (never whole in memory).

    ``size`` wide and ``height`` (default ``size``) high.
    """
    height = size if height is None else height
    if path.exists():
        with rasterio.open(path) as ds:
            if ds.width == size and ds.height == height and ds.count == len(BANDS):
                return
    tmp = path.with_suffix(".tmp.tif")
    profile = dict(driver="GTiff", width=size, height=height, count=len(BANDS), dtype="float32",
                   crs="EPSG:32650", transform=Affine(10, 0, 500000, 0, -10, 3500000),
                   nodata=float("nan"), tiled=True, blockxsize=512, blockysize=512,
                   BIGTIFF="YES", interleave="band")
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 0.05, (len(BANDS), block, 1024)).astype(np.float32)
    xx = np.arange(size, dtype=np.float32)
    with rasterio.open(tmp, "w", **profile) as dst:
        dst.descriptions = BANDS
        for row in range(0, height, block):
            rows = min(block, height - row)
            yy = np.arange(row, row + rows, dtype=np.float32)[:, None]
            data = np.empty((len(BANDS), rows, size), dtype=np.float32)
            for b in range(len(BANDS)):
                data[b] = np.sin(yy * (0.003 + 0.001 * b)) * np.cos(xx * (0.002 + 0.0007 * b))
                data[b] += np.tile(noise[b, :rows], (1, size // 1024 + 1))[:, :size]
            if row == block * 4:
                data[2, :100, 1000:1400] = np.nan  # a nodata hole
            dst.write(data, window=Window(0, row, size, rows))
    tmp.rename(path)


class ReplayingPredictor(TilePredictor):
    """Replays every ``every``-th batch through the forward pass alone, right after the
    pipeline's own call, so the model-only figure is taken on the same tiles under the same
    (shared, noisy) machine load; the replay's wall time is subtracted from the pipeline's."""

    def __init__(self, *args, every: int = 4, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.every, self.calls = every, 0
        self.replay_wall = self.replay_forward = self.replay_cpu = 0.0
        self.replay_tiles = 0

    @classmethod
    def wrapping(cls, predictor: TilePredictor, every: int) -> ReplayingPredictor:
        """A replaying twin of an existing predictor (same model and settings, fresh counts)."""
        twin = cls.__new__(cls)
        twin.__dict__.update(predictor.__dict__)
        twin.every, twin.calls = every, 0
        twin.replay_wall = twin.replay_forward = twin.replay_cpu = 0.0
        twin.replay_tiles = 0
        return twin

    def __call__(self, tiles, compact: bool = False, *,
                 finite: bool | None = None) -> np.ndarray:
        out = super().__call__(tiles, compact, finite=finite)
        self.calls += 1
        if self.calls % self.every == 0:
            start, before = time.perf_counter(), self.forward_seconds
            cpu = time.process_time()  # every thread's: the helpers' too while it runs
            super().__call__(tiles, compact, finite=finite)
            self.replay_cpu += time.process_time() - cpu
            self.replay_wall += time.perf_counter() - start
            self.replay_forward += self.forward_seconds - before
            self.replay_tiles += len(tiles)
            self.forward_seconds = before  # keep the pipeline's own forward time clean
        return out


def isolated_seconds_per_tile(predictor: TilePredictor, batch: int, tile: int, bands: int,
                              calls: int = 9) -> float:
    """The model's forward time per tile with nothing else running (median of ``calls``).

    The replayed figure is taken under the pipeline's own load (its helper threads slow the
    replay as they slow the pipeline); this one is the model on a quiet machine, the stricter
    ceiling. Calls the plain predictor, so a replaying one neither counts nor replays these.
    """
    x = np.random.default_rng(0).standard_normal((batch, bands, tile, tile), dtype=np.float32)
    TilePredictor.__call__(predictor, x, compact=True)  # warm-up
    seconds = []
    for _ in range(calls):
        before = predictor.forward_seconds
        TilePredictor.__call__(predictor, x, compact=True)
        seconds.append(predictor.forward_seconds - before)
    return float(np.median(seconds)) / batch


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, default=16384, help="width (and height) in px")
    p.add_argument("--height", type=int, help="height in px (default: --size)")
    p.add_argument("--rss-sweep", action="store_true",
                   help="peak RSS (and km²/s) of whole runs at 4096², 16384² and a 65,536 x "
                        "4,096 strip, each in a process of its own; with --quick at 1024², "
                        "2048² and 4096 x 512")
    p.add_argument("--quick", action="store_true", help="small sizes (tests)")
    p.add_argument("--vs-checkout", type=Path, metavar="DIR",
                   help="a checkout of the earlier code (e.g. main): runs --size there and "
                        "here in turn, --rounds pairs, and prints here / there in km²/s")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--tile", type=int, default=512)
    p.add_argument("--overlap", type=int, default=32)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--widths", default="8,16,32,64,128")
    p.add_argument("--precision", default="auto")
    p.add_argument("--channels-last", default="auto", choices=("auto", "on", "off"))
    p.add_argument("--device", default="cpu",
                   help="cpu (the bar is for a CPU machine) or cuda: with a GPU model, the CPU "
                        "side of the pipeline is what limits it")
    p.add_argument("--replay-every", type=int, default=4,
                   help="replay every n-th batch through the model alone")
    p.add_argument("--out", type=Path, default=Path("bench_output"))
    p.add_argument("--generate-only", action="store_true")
    return p


def main(argv: list[str] | None = None) -> dict:
    args = parser().parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    argv = sys.argv[1:] if argv is None else argv
    if args.rss_sweep:
        return rss_sweep(args, argv)
    if args.vs_checkout:
        return versus(args, argv)
    height = args.height or args.size
    name = str(args.size) if height == args.size else f"{args.size}x{height}"
    src = args.out / f"bench_stack_{name}.tif"
    if args.generate_only:
        generate(src, args.size, height=height)
        return {}
    t0 = time.perf_counter()
    # in a child process, so its buffers never count towards this process's peak RSS
    subprocess.run([sys.executable, __file__, "--generate-only", "--size", str(args.size),
                    "--height", str(height), "--out", str(args.out)], check=True)
    print(f"input {src} ({src.stat().st_size / 2**30:.2f} GiB) ready in "
          f"{time.perf_counter() - t0:.0f} s")
    figures = measure(args, src, height)
    report(figures)
    (args.out / f"bench_inference_{name}.json").write_text(json.dumps(figures, indent=1))
    return figures


def measure(args: argparse.Namespace, src: Path, height: int) -> dict:
    """One whole pipeline over ``src`` beside the model alone: the figures, as a dict."""
    widths = tuple(int(w) for w in args.widths.split(","))
    torch.manual_seed(0)
    model = create_model("unet", len(BANDS), 2, widths=widths)
    predictor = ReplayingPredictor(model, np.zeros(len(BANDS)), np.ones(len(BANDS)),
                                   options=RuntimeOptions(device=args.device,
                                                          precision=args.precision,
                                                          channels_last=args.channels_last),
                                   every=args.replay_every)
    config = PredictConfig(tile=args.tile, overlap=args.overlap, batch_size=args.batch)
    with rasterio.open(src) as ds:  # settle 'auto' on a real batch of the pipeline's shape
        block = ds.read(window=Window(0, 0, args.tile * args.batch, args.tile),
                        boundless=True, fill_value=0.0)
    first = np.stack([block[:, :, i * args.tile:(i + 1) * args.tile] for i in range(args.batch)])
    choice = predictor.resolve(first)
    predictor(first)  # warm-up at the pipeline's batch shape
    before = isolated_seconds_per_tile(predictor, args.batch, args.tile, len(BANDS))
    predictor.forward_seconds = 0.0
    predictor.calls = 0
    rss_before = peak_rss_gib()
    out_prefix = args.out / "bench_isa"
    for suffix in ("_class.tif", "_prob.tif"):  # measure a full run, never a resumed one
        Path(f"{out_prefix}{suffix}").unlink(missing_ok=True)
    shutil.rmtree(args.out / f".{out_prefix.name}.partial", ignore_errors=True)
    result = predict_raster(str(src), str(out_prefix), predictor,
                            OutputInfo("unet" + args.widths, BANDS), config, restart=True)
    peak_rss = peak_rss_gib()
    after = isolated_seconds_per_tile(predictor, args.batch, args.tile, len(BANDS))
    if not predictor.replay_tiles:
        raise SystemExit(f"no batch was replayed ({predictor.calls} batches); use a larger "
                         "--size or a smaller --replay-every")
    return figures_of(args, height, widths, predictor, choice, result,
                      (before, after), peak_rss, rss_before)


def figures_of(args: argparse.Namespace, height: int, widths: tuple[int, ...],
               predictor: ReplayingPredictor, choice: Any, result: Any,
               isolated: tuple[float, float], peak_rss: float, rss_before: float) -> dict:
    """The run's figures: km²/s of the pipeline and of the model, the stages, peak RSS."""
    pipeline_s = result.seconds - predictor.replay_wall
    per_tile = predictor.replay_forward / predictor.replay_tiles
    area = args.size * height * 100 / 1e6  # 10 m pixels
    model_seconds = per_tile * result.tiles
    isolated_seconds = sum(isolated) / 2 * result.tiles  # the machine's speed drifts
    k, bands, px = 2, len(BANDS), args.size * height
    whole_array_gib = (bands * 4 + k * 4 * 2 + widths[0] * 4 * 3) * px / 2**30
    return {
        "size": args.size, "height": height, "tiles": result.tiles, "tile": args.tile,
        "overlap": args.overlap,
        "batch": args.batch, "model": f"training unet widths={widths}",
        "runtime": predictor.description, "threads": torch.get_num_threads(),
        "autotune": {"seconds": round(predictor.tune_seconds, 2),
                     "ms_per_tile": dict(choice.ms_per_sample)},
        "area_km2": area, "pipeline_s": round(pipeline_s, 1),
        "pipeline_km2_per_s": round(area / pipeline_s, 3),
        "replayed_tiles": predictor.replay_tiles,
        "model_only_s_extrapolated": round(model_seconds, 1),
        "model_only_km2_per_s": round(area / model_seconds, 3),
        "ratio_pipeline_vs_model_only": round(model_seconds / pipeline_s, 3),
        "model_isolated_s": round(isolated_seconds, 1),
        "model_isolated_km2_per_s": round(area / isolated_seconds, 3),
        "isolated_ms_per_tile_before_after": [round(1e3 * t, 1) for t in isolated],
        "ratio_pipeline_vs_model_isolated": round(isolated_seconds / pipeline_s, 3),
        "forward_s_inside_pipeline": round(result.forward_seconds, 1),
        "ratio_forward_share_of_pipeline": round(result.forward_seconds / pipeline_s, 3),
        "stages_s": {k: round(v, 2) for k, v in result.stages.items()},
        "stages_cpu_s": {k: round(v, 2) for k, v in result.stages_cpu.items()},
        "peak_rss_gib": round(peak_rss, 3), "rss_before_pipeline_gib": round(rss_before, 3),
        "whole_array_estimate_gib": round(whole_array_gib, 1),
        "ms_per_tile_replayed": round(per_tile * 1000), "bands": bands, "pixels": px,
    }


def report(f: dict) -> None:
    """The figures as the lines a reader compares."""
    print(json.dumps(f, indent=1))
    area, pipeline_s = f["area_km2"], f["pipeline_s"]
    before, after = f["isolated_ms_per_tile_before_after"]
    px, bands, k = f["pixels"], f["bands"], 2
    print(f"\npipeline   {f['pipeline_km2_per_s']:8.3f} km²/s  ({pipeline_s:.0f} s)")
    print(f"model only {f['model_only_km2_per_s']:8.3f} km²/s  "
          f"({f['model_only_s_extrapolated']:.0f} s, {f['ms_per_tile_replayed']} ms/tile over "
          f"{f['replayed_tiles']} replayed tiles)")
    print(f"model alone {area / f['model_isolated_s']:7.3f} km²/s  (timed with nothing else "
          f"running right before / after: {before:.1f} / {after:.1f} ms/tile)")
    print(f"ratio      {f['ratio_pipeline_vs_model_only']:8.3f} replayed, "
          f"{f['ratio_pipeline_vs_model_isolated']:.3f} alone (bar >= 0.9) at {f['runtime']}")
    print("stages     " + ", ".join(f"{k} {v:.1f} s" for k, v in f["stages_s"].items()))
    print("stage CPU  " + ", ".join(f"{k} {v:.1f} s" for k, v in f["stages_cpu_s"].items())
          + "  (CPU time of the stage's own thread)")
    widths0 = int(f["model"].split("(")[1].split(",")[0])
    print(f"peak RSS   {f['peak_rss_gib']:8.3f} GiB (bar < 1.5); a whole-array run would hold "
          f"about {f['whole_array_estimate_gib']:.1f} GiB (input {bands * 4 * px / 2**30:.1f} + "
          f"probabilities and weights {k * 8 * px / 2**30:.1f} + 3 first-level activations "
          f"{widths0 * 12 * px / 2**30:.1f})")


def _child(args: argparse.Namespace, argv: list[str], width: int, height: int,
           checkout: Path | None = None) -> dict:
    """One whole run in a process of its own (from ``checkout``'s code when given)."""
    import os

    skip = {"--rss-sweep", "--quick", "--vs-checkout", "--rounds", "--size", "--height"}
    rest, i = [], 0
    while i < len(argv):  # the options every run shares, without the driver's own
        if argv[i] in skip:
            i += 1 if argv[i] in ("--rss-sweep", "--quick") else 2
            continue
        rest.append(argv[i])
        i += 1
    env = dict(os.environ)
    if checkout is not None:
        env["PYTHONPATH"] = str(checkout.resolve())
        env["PYTHONDONTWRITEBYTECODE"] = "1"  # nothing written into that checkout
    subprocess.run([sys.executable, __file__, *rest, "--size", str(width), "--height",
                    str(height), "--out", str(args.out)], check=True, env=env)
    name = str(width) if height == width else f"{width}x{height}"
    return json.loads((args.out / f"bench_inference_{name}.json").read_text())


def rss_sweep(args: argparse.Namespace, argv: list[str]) -> dict:
    """Peak RSS of whole runs at three sizes, each in its own process: flat in both sides."""
    sizes = ([(1024, 1024), (2048, 2048), (4096, 512)] if args.quick else
             [(4096, 4096), (16384, 16384), (65536, 4096)])
    if args.quick and "--replay-every" not in argv:  # a quick run has few batches to replay
        argv = [*argv, "--replay-every", "1"]
    rows = {f"{w}x{h}": _child(args, argv, w, h) for w, h in sizes}
    print("\nsize            tiles  km²/s   peak RSS (GiB)")
    for key, f in rows.items():
        print(f"{key:14s} {f['tiles']:6d} {f['pipeline_km2_per_s']:7.3f} {f['peak_rss_gib']:8.3f}")
    out = {k: {"tiles": f["tiles"], "peak_rss_gib": f["peak_rss_gib"],
               "pipeline_km2_per_s": f["pipeline_km2_per_s"], "runtime": f["runtime"]}
           for k, f in rows.items()}
    (args.out / "bench_inference_rss.json").write_text(json.dumps(out, indent=1))
    return out


def versus(args: argparse.Namespace, argv: list[str]) -> dict:
    """This checkout against another at --size: alternating whole runs, km²/s ratios per pair."""
    pairs = []
    for _ in range(args.rounds):
        theirs = _child(args, argv, args.size, args.size, args.vs_checkout)
        mine = _child(args, argv, args.size, args.size)
        pairs.append({"here_km2_per_s": mine["pipeline_km2_per_s"],
                      "there_km2_per_s": theirs["pipeline_km2_per_s"],
                      "here_tiles": mine["tiles"], "there_tiles": theirs["tiles"],
                      "here_rss_gib": mine["peak_rss_gib"],
                      "there_rss_gib": theirs["peak_rss_gib"],
                      "ratio": round(mine["pipeline_km2_per_s"]
                                     / theirs["pipeline_km2_per_s"], 3)})
    ratios = [p["ratio"] for p in pairs]
    print(json.dumps(pairs, indent=1))
    print(f"\nhere / there km²/s at {args.size}²: median {statistics.median(ratios):.3f} "
          f"(pairs {min(ratios):.3f}-{max(ratios):.3f}) over {len(pairs)} pair(s) (there: "
          f"{args.vs_checkout})")
    result = {"pairs": pairs, "median_ratio": round(statistics.median(ratios), 3)}
    (args.out / "bench_inference_versus.json").write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
