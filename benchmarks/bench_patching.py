"""Benchmark: patch a 10,000 x 10,000 x 7-band float32 stack; patches/s and peak RSS.

The bar: peak RSS under 1.5 GB, because patching reads one strip of patch rows at a
time instead of the whole raster. For comparison the same run measures, in a separate process,
what reading the whole stack into memory costs.

    .venv/bin/python benchmarks/bench_patching.py            # full size (about 3 GB on disk)
    .venv/bin/python benchmarks/bench_patching.py --size 2000 --keep /tmp/bench

Each measurement runs in its own child process so its peak RSS is its own (the child's own
high-water mark, ``peak_memory.py``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from peak_memory import peak_rss_gib
from rasterio.windows import Window

from contract.grid import Grid
from contract.patches import patch_stack
from contract.stack import StackPaths

BANDS = ("B2", "B3", "B4", "B8", "B11", "VV", "VH")
RSS_BAR_GB = 1.5


def make_stack(folder: Path, size: int, rows_per_block: int = 256) -> StackPaths:
    """Write the image stack and label block by block (tiled, uncompressed GeoTIFFs)."""
    grid = Grid("EPSG:32650", 238000.0, 3385000.0, size, size)
    common = {"driver": "GTiff", "width": size, "height": size, "crs": grid.crs,
              "transform": grid.transform, "tiled": True, "blockxsize": 256, "blockysize": 256,
              "BIGTIFF": "IF_SAFER"}
    rng = np.random.default_rng(0)
    x = np.linspace(0, 20 * np.pi, size, dtype=np.float32)
    image_path, label_path = folder / "image.tif", folder / "label.tif"
    with rasterio.open(image_path, "w", dtype="float32", count=len(BANDS), nodata=float("nan"),
                       **common) as img, \
            rasterio.open(label_path, "w", dtype="uint8", count=1, nodata=255, **common) as lab:
        for i, name in enumerate(BANDS, 1):
            img.set_band_description(i, name)
        for row in range(0, size, rows_per_block):
            h = min(rows_per_block, size - row)
            y = np.linspace(row, row + h, h, dtype=np.float32)[:, None] / size * 20 * np.pi
            smooth = 0.1 + 0.05 * np.sin(x)[None, :] * np.cos(y)
            block = np.empty((len(BANDS), h, size), np.float32)
            for b in range(len(BANDS)):
                block[b] = smooth * (1 + 0.1 * b) + rng.normal(0, 0.005, (h, size))
            block[:, :, : size // 20] = np.nan  # a no-data margin, as at a scene edge
            label = (smooth > 0.1).astype(np.uint8)
            img.write(block, window=Window(0, row, size, h))
            lab.write(label, 1, window=Window(0, row, size, h))
    return StackPaths(grid, BANDS, "2019-06", str(image_path), str(label_path))


def child_patch(stack_dir: Path, out: Path, size: int, workers: int, compress: str) -> dict:
    grid = Grid("EPSG:32650", 238000.0, 3385000.0, size, size)
    stack = StackPaths(grid, BANDS, "2019-06", str(stack_dir / "image.tif"),
                       str(stack_dir / "label.tif"))
    started = time.perf_counter()
    summary = patch_stack(stack, out, workers=workers, compress=compress, progress=True)
    seconds = time.perf_counter() - started
    return {"patches": summary.written, "invalid": summary.invalid, "seconds": seconds,
            "patches_per_s": summary.written / seconds, "peak_rss_gb": peak_rss_gib()}


def child_whole_read(stack_dir: Path) -> dict:
    started = time.perf_counter()
    with rasterio.open(stack_dir / "image.tif") as src:
        data = src.read()
    with rasterio.open(stack_dir / "label.tif") as src:
        label = src.read(1)
    return {"seconds": time.perf_counter() - started, "peak_rss_gb": peak_rss_gib(),
            "array_gb": (data.nbytes + label.nbytes) / 1024**3}


def run_child(*args: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True,
                          check=False)
    if proc.returncode != 0:
        raise SystemExit(f"child {args} failed with exit code {proc.returncode}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--compress", default="deflate", help="patch GeoTIFF compression")
    parser.add_argument("--keep", help="work folder to keep (default: a temporary one)")
    parser.add_argument("--skip-whole-read", action="store_true")
    parser.add_argument("--child", choices=["patch", "whole"], help=argparse.SUPPRESS)
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "patch":
        print(json.dumps(child_patch(Path(args.dir), Path(args.dir) / "patches", args.size,
                                     args.workers, args.compress)))
        return
    if args.child == "whole":
        print(json.dumps(child_whole_read(Path(args.dir))))
        return

    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="isamap-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        started = time.perf_counter()
        make_stack(work, args.size)
        stack_gb = args.size**2 * len(BANDS) * 4 / 1024**3
        print(f"stack: {args.size} x {args.size} x {len(BANDS)} float32 ({stack_gb:.2f} GiB) "
              f"written in {time.perf_counter() - started:.0f} s to {work}")
        shutil.rmtree(work / "patches", ignore_errors=True)
        patched = run_child("--child", "patch", "--dir", str(work), "--size", str(args.size),
                            "--workers", str(args.workers), "--compress", args.compress)
        print(f"patching: {patched['patches']} patches written ({patched['invalid']} below the "
              f"valid fraction) in {patched['seconds']:.1f} s = "
              f"{patched['patches_per_s']:.1f} patches/s with {args.workers} workers, "
              f"{args.compress} compression")
        verdict = "PASS" if patched["peak_rss_gb"] < RSS_BAR_GB else "FAIL"
        print(f"patching peak RSS: {patched['peak_rss_gb']:.3f} GiB "
              f"(bar < {RSS_BAR_GB} GB: {verdict})")
        whole_gb = (args.size**2 * (len(BANDS) * 4 + 1)) / 1024**3
        print(f"a whole-array read would hold {whole_gb:.2f} GiB of arrays")
        if not args.skip_whole_read:
            whole = run_child("--child", "whole", "--dir", str(work))
            print(f"whole-array read measured: peak RSS {whole['peak_rss_gb']:.3f} GiB in "
                  f"{whole['seconds']:.1f} s")
            print(f"ratio whole-read / windowed-patching peak RSS: "
                  f"{whole['peak_rss_gb'] / patched['peak_rss_gb']:.1f}x")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
