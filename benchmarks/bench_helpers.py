"""Benchmark: the CPU the prediction pipeline's helpers cost per km², stage by stage.

On a CPU the model and the helpers share the cores, so every CPU-second a helper spends is
taken from the model. This runs the sliding window over the 16,384 x 16,384 six-band stack of
``bench_inference.py`` (same U-Net, same tiling) and reports, per stage, the CPU time of the
thread that ran it (``PredictionResult.stages_cpu``), in CPU-seconds and CPU-ms per km² of
10 m pixels, the model excluded:

- reader thread: ``read`` (the tile row into its buffer), ``mask`` (nodata mask);
- writer thread: ``blend`` (weighted tiles into the accumulator), ``take`` (finished strips
  out, classes and stored probability), ``checkpoint`` (the strip file the COGs are made
  from, and a resumed run starts from);
- ``cog`` (both COGs written by GDAL's COG driver from the strips at the end);
- ``main``: the main thread outside the forward (normalising the tiles into the model's
  batch, probabilities back, handing work over): its ``predict`` stage minus the CPU the main
  thread spent inside the model's forward (timed by a wrapper around the model).

CPU time hardly depends on how busy the machine is (wall time does), so these figures can be
compared across runs on a shared machine; the load average is printed with them. The stack is
dropped from the page cache and read back before the run (:func:`cache_input`), so each run
starts from the same cached state.

Run: ``.venv/bin/python benchmarks/bench_helpers.py`` (``--size 4096`` for a quick look).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from bench_inference import BANDS

from inference.cog.maps import OutputInfo
from inference.predict.raster import PredictConfig, predict_raster
from inference.predict.runtime import RuntimeOptions, TilePredictor
from training.models import create_model

HELPER_STAGES = ("read", "mask", "blend", "take", "encode", "checkpoint", "postprocess", "cog")


def cache_input(path: Path) -> None:
    """Drop the stack from the page cache and read it back with ``read()``.

    Every run then starts from the same state: the whole stack cached by plain reads, as a
    stack a user has just written or read is.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)  # pages still to be written back would stay cached as they are
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        while os.read(fd, 16 << 20):
            pass
    finally:
        os.close(fd)


class CpuTimedModel(torch.nn.Module):
    """The model, with the CPU time of the calling thread inside its forward summed."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self.cpu = 0.0

    def forward(self, x: torch.Tensor):
        start = time.thread_time()
        try:
            return self.model(x)
        finally:
            self.cpu += time.thread_time() - start


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=16384)
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--overlap", type=int, default=32)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--widths", default="8,16,32,64,128")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--channels-last", default="auto", choices=("auto", "on", "off"))
    parser.add_argument("--out", type=Path, default=Path("bench_output"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    src = args.out / f"bench_stack_{args.size}.tif"
    subprocess.run([sys.executable, str(Path(__file__).with_name("bench_inference.py")),
                    "--generate-only", "--size", str(args.size), "--out", str(args.out)],
                   check=True)
    widths = tuple(int(w) for w in args.widths.split(","))
    torch.manual_seed(0)
    model = create_model("unet", len(BANDS), 2, widths=widths)
    predictor = TilePredictor(model, np.zeros(len(BANDS)), np.ones(len(BANDS)),
                              options=RuntimeOptions(device="cpu", precision=args.precision,
                                                     channels_last=args.channels_last))
    first = np.random.default_rng(0).standard_normal(
        (args.batch, len(BANDS), args.tile, args.tile), dtype=np.float32)
    predictor.resolve(first)
    timed = CpuTimedModel(predictor.model)
    predictor.model = timed
    prefix = args.out / "bench_helpers"
    for suffix in ("_class.tif", "_prob.tif"):  # a full run, never a resumed one
        Path(f"{prefix}{suffix}").unlink(missing_ok=True)
    shutil.rmtree(args.out / f".{prefix.name}.partial", ignore_errors=True)
    cache_input(src)
    load_before = os.getloadavg()
    cpu0 = time.process_time()
    result = predict_raster(str(src), str(prefix), predictor,
                            OutputInfo("unet" + args.widths, BANDS),
                            PredictConfig(tile=args.tile, overlap=args.overlap,
                                          batch_size=args.batch), restart=True)
    process_cpu = time.process_time() - cpu0
    load_after = os.getloadavg()
    area = args.size**2 * 100 / 1e6
    cpu = dict(result.stages_cpu)
    stages = {k: cpu[k] for k in HELPER_STAGES if k in cpu}
    stages["main"] = cpu.get("predict", 0.0) - timed.cpu
    total = sum(stages.values())
    sizes = {kind: Path(f"{prefix}{suffix}").stat().st_size
             for kind, suffix in (("class", "_class.tif"), ("probability", "_prob.tif"))}
    figures = {
        "size": args.size, "area_km2": area, "tiles": result.tiles,
        "runtime": predictor.description, "threads": torch.get_num_threads(),
        "helper_cpu_s": {k: round(v, 3) for k, v in stages.items()},
        "helper_cpu_ms_per_km2": {k: round(1e3 * v / area, 4) for k, v in stages.items()},
        "helper_cpu_s_total": round(total, 2),
        "helper_cpu_ms_per_km2_total": round(1e3 * total / area, 4),
        "forward_main_thread_cpu_s": round(timed.cpu, 2),
        "process_cpu_s": round(process_cpu, 1), "wall_s": round(result.seconds, 1),
        "cog_bytes": sizes,
        "load_average_before_after": [round(load_before[0], 2), round(load_after[0], 2)],
    }
    print(json.dumps(figures, indent=1))
    print(f"\nhelper CPU per stage, {args.size}² ({area:,.0f} km²), model excluded, "
          f"at {predictor.description}:")
    for k, v in stages.items():
        print(f"  {k:>10} {v:7.2f} CPU-s  {1e3 * v / area:7.4f} CPU-ms/km²")
    print(f"  {'total':>10} {total:7.2f} CPU-s  {1e3 * total / area:7.4f} CPU-ms/km²")
    print(f"process {process_cpu:.1f} CPU-s in {result.seconds:.1f} s; COGs "
          f"{sizes['class'] / 2**20:.1f} + {sizes['probability'] / 2**20:.1f} MiB; load average "
          f"{load_before[0]:.2f} before, {load_after[0]:.2f} after")
    (args.out / f"bench_helpers_{args.size}.json").write_text(json.dumps(figures, indent=1))
    return figures


if __name__ == "__main__":
    main()
