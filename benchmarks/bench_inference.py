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

Run: ``.venv/bin/python benchmarks/bench_inference.py`` (``--size 2048`` for a quick look).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

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


def generate(path: Path, size: int, block: int = 512) -> None:
    """A tiled float32 stack written block row by block row (never whole in memory)."""
    if path.exists():
        with rasterio.open(path) as ds:
            if ds.width == size and ds.height == size and ds.count == len(BANDS):
                return
    tmp = path.with_suffix(".tmp.tif")
    profile = dict(driver="GTiff", width=size, height=size, count=len(BANDS), dtype="float32",
                   crs="EPSG:32650", transform=Affine(10, 0, 500000, 0, -10, 3500000),
                   nodata=float("nan"), tiled=True, blockxsize=512, blockysize=512,
                   BIGTIFF="YES", interleave="band")
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 0.05, (len(BANDS), block, 1024)).astype(np.float32)
    xx = np.arange(size, dtype=np.float32)
    with rasterio.open(tmp, "w", **profile) as dst:
        dst.descriptions = BANDS
        for row in range(0, size, block):
            rows = min(block, size - row)
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


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=16384)
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--overlap", type=int, default=32)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--widths", default="8,16,32,64,128")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--channels-last", default="auto", choices=("auto", "on", "off"))
    parser.add_argument("--device", default="cpu",
                        help="cpu (the bar is for a CPU machine) or cuda: with a GPU model, "
                             "the CPU side of the pipeline is what limits it")
    parser.add_argument("--replay-every", type=int, default=4,
                        help="replay every n-th batch through the model alone")
    parser.add_argument("--out", type=Path, default=Path("bench_output"))
    parser.add_argument("--generate-only", action="store_true")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    src = args.out / f"bench_stack_{args.size}.tif"
    if args.generate_only:
        generate(src, args.size)
        return {}
    t0 = time.perf_counter()
    # in a child process, so its buffers never count towards this process's peak RSS
    subprocess.run([sys.executable, __file__, "--generate-only", "--size", str(args.size),
                    "--out", str(args.out)], check=True)
    print(f"input {src} ({src.stat().st_size / 2**30:.2f} GiB) ready in "
          f"{time.perf_counter() - t0:.0f} s")

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
        block = ds.read(window=Window(0, 0, args.tile * args.batch, args.tile))
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
    pipeline_s = result.seconds - predictor.replay_wall
    per_tile = predictor.replay_forward / predictor.replay_tiles
    area = args.size**2 * 100 / 1e6  # 10 m pixels
    model_seconds = per_tile * result.tiles
    isolated_seconds = (before + after) / 2 * result.tiles  # the machine's speed drifts
    k, bands, px = 2, len(BANDS), args.size**2
    whole_array_gib = (bands * 4 + k * 4 * 2 + widths[0] * 4 * 3) * px / 2**30
    figures = {
        "size": args.size, "tiles": result.tiles, "tile": args.tile, "overlap": args.overlap,
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
        "isolated_ms_per_tile_before_after": [round(1e3 * before, 1), round(1e3 * after, 1)],
        "ratio_pipeline_vs_model_isolated": round(isolated_seconds / pipeline_s, 3),
        "forward_s_inside_pipeline": round(result.forward_seconds, 1),
        "ratio_forward_share_of_pipeline": round(result.forward_seconds / pipeline_s, 3),
        "stages_s": {k: round(v, 2) for k, v in result.stages.items()},
        "stages_cpu_s": {k: round(v, 2) for k, v in result.stages_cpu.items()},
        "peak_rss_gib": round(peak_rss, 3), "rss_before_pipeline_gib": round(rss_before, 3),
        "whole_array_estimate_gib": round(whole_array_gib, 1),
    }
    print(json.dumps(figures, indent=1))
    print(f"\npipeline   {figures['pipeline_km2_per_s']:8.3f} km²/s  ({pipeline_s:.0f} s)")
    print(f"model only {figures['model_only_km2_per_s']:8.3f} km²/s  ({model_seconds:.0f} s, "
          f"{per_tile * 1000:.0f} ms/tile over {predictor.replay_tiles} replayed tiles)")
    print(f"model alone {area / isolated_seconds:7.3f} km²/s  (timed with nothing else running "
          f"right before / after: {1e3 * before:.1f} / {1e3 * after:.1f} ms/tile)")
    print(f"ratio      {figures['ratio_pipeline_vs_model_only']:8.3f} replayed, "
          f"{figures['ratio_pipeline_vs_model_isolated']:.3f} alone (bar >= 0.9) at "
          f"{predictor.description}")
    print("stages     " + ", ".join(f"{k} {v:.1f} s" for k, v in figures["stages_s"].items()))
    print("stage CPU  " + ", ".join(f"{k} {v:.1f} s" for k, v in figures["stages_cpu_s"].items())
          + "  (CPU time of the stage's own thread)")
    print(f"peak RSS   {peak_rss:8.3f} GiB (bar < 2); a whole-array run would hold about "
          f"{whole_array_gib:.1f} GiB (input {bands * 4 * px / 2**30:.1f} + probabilities "
          f"and weights {k * 8 * px / 2**30:.1f} + 3 first-level activations "
          f"{widths[0] * 12 * px / 2**30:.1f})")
    (args.out / f"bench_inference_{args.size}.json").write_text(json.dumps(figures, indent=1))
    return figures


if __name__ == "__main__":
    main()
