"""Fine-scale throughput of srseg on CPU (km^2 of 1 m map per second) next to its baselines.

Run: .venv/bin/python benchmarks/bench_srseg.py [--tile 64] [--reps 3] [--threads 0]

A 10 m input tile of ``tile x tile`` pixels covers ``(tile * 10 m)^2`` of ground whatever the
output scale, so km^2/s is comparable across factors; the fine output has ``(tile * k)^2``
pixels. All models are timed in the same run, so the ratios are meaningful on a shared machine.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from training.models import create_model


def km2_per_s(name: str, scale: int, tile: int, reps: int, batch: int) -> tuple[float, float]:
    torch.manual_seed(0)
    model = create_model(name, in_channels=4, num_classes=2, scale=scale).eval()
    x = torch.randn(batch, 4, tile, tile)
    with torch.inference_mode():
        model(x)  # warm-up (allocator, kernels)
        start = time.perf_counter()
        for _ in range(reps):
            out = model(x)
        seconds = (time.perf_counter() - start) / reps
    logits = out["out"] if isinstance(out, dict) else out
    assert logits.shape[-1] == tile * scale
    area_km2 = batch * (tile * 10.0) ** 2 / 1e6
    return area_km2 / seconds, seconds


def pipeline_km2_per_s(scale: int, size: int, tile: int) -> tuple[float, float]:
    """Whole sliding-window pipeline (read, tile, blend, fine COG) vs the forward passes alone."""
    import tempfile

    import numpy as np
    import rasterio
    from affine import Affine

    from inference.cog.maps import OutputInfo
    from inference.predict.raster import PredictConfig, predict_raster
    from inference.predict.runtime import RuntimeOptions, TilePredictor

    torch.manual_seed(0)
    model = create_model("srseg", in_channels=4, num_classes=2, scale=scale)
    bands = ("B2", "B3", "B4", "B8")
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "stack.tif"
        data = np.random.default_rng(0).random((4, size, size), dtype=np.float32)
        with rasterio.open(src, "w", driver="GTiff", width=size, height=size, count=4,
                           dtype="float32", crs="EPSG:32650",
                           transform=Affine(10, 0, 500000, 0, -10, 3400000)) as dst:
            dst.write(data)
            dst.descriptions = bands
        predictor = TilePredictor(model, np.zeros(4), np.ones(4), scale=scale,
                                  options=RuntimeOptions(precision="fp32", channels_last="on"))
        result = predict_raster(str(src), str(Path(tmp) / "out"), predictor,
                                OutputInfo("srseg", bands),
                                PredictConfig(tile=tile, overlap=8, batch_size=2,
                                              strip_rows=tile * scale), progress=False)
    area = (size * 10.0) ** 2 / 1e6
    return area / result.seconds, area / result.forward_seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--tile", type=int, default=64, help="10 m input tile size (pixels)")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--pipeline-size", type=int, default=96,
                   help="10 m raster size for the whole-pipeline run (0 skips it)")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    runs = [("srseg", 8), ("srseg", 10), ("bilinear-unet", 8), ("unet-upsample", 8),
            ("bilinear-unet", 10)]
    print(f"CPU, {torch.get_num_threads()} threads, 10 m tile {a.tile}x{a.tile} "
          f"({(a.tile * 10) ** 2 / 1e6:.3f} km2), batch {a.batch}, fp32 eager")
    print(f"{'model':<15}{'x':>4}{'fine px/tile':>14}{'s/batch':>10}{'km2/s':>10}"
          f"{'fine Mpx/s':>12}{'vs srseg x8':>13}")
    results = {}
    for name, k in runs:
        rate, sec = km2_per_s(name, k, a.tile, a.reps, a.batch)
        results[(name, k)] = rate
        ref = results[("srseg", 8)]
        mpx = a.batch * (a.tile * k) ** 2 / sec / 1e6
        print(f"{name:<15}{k:>4}{(a.tile * k) ** 2:>14}{sec:>10.3f}{rate:>10.3f}{mpx:>12.2f}"
              f"{rate / ref:>12.2f}x")
    if a.pipeline_size:
        for k in (8, 10):
            pipe, fwd = pipeline_km2_per_s(k, a.pipeline_size, a.tile)
            print(f"fine COG pipeline srseg x{k}: {pipe:.3f} km2/s, forward passes alone "
                  f"{fwd:.3f} km2/s (pipeline/model {pipe / fwd:.2f}x; "
                  f"{a.pipeline_size}x{a.pipeline_size} px at 10 m, tiles {a.tile}, overlap 8)")


if __name__ == "__main__":
    main()
