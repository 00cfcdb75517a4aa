"""Benchmark: a full 10,980 x 10,980 tile through build_local_stack in bounded memory.

Writes a SYNTHETIC tile-sized scene set into a temporary folder (Sentinel-2 L2A: B02, B03, B04,
B08 at 10 m and SCL at 20 m for two dates, one of them half cloudy; Sentinel-1: VV and VH in
linear power for one date), then builds the monthly stack (S2 median + clear count, S1 refined
Lee + mean in dB + scene count) block by block, and reports seconds and the peak RSS of the
build (measured in a child process, so the scene writing does not count). The output alone
(8 float32 bands) would be 3.9 GB in memory; the windowed build must stay far below that.

Run: ``.venv/bin/python benchmarks/bench_local_stack.py [--size 10980] [--block 1024]``
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine

from contract.grid import Grid

CRS = "EPSG:32633"
X0, Y0 = 300_000.0, 5_100_000.0
STRIP = 1024


def _write(path: Path, size: int, res: float, dtype: str, nodata, make) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {"driver": "GTiff", "width": size, "height": size, "count": 1, "dtype": dtype,
               "nodata": nodata, "crs": CRS, "transform": Affine(res, 0, X0, 0, -res, Y0),
               "tiled": True, "blockxsize": 512, "blockysize": 512, "compress": "deflate",
               "BIGTIFF": "IF_SAFER"}
    with rasterio.open(path, "w", **profile) as dst:
        for r0 in range(0, size, STRIP):
            h = min(STRIP, size - r0)
            dst.write(make(r0, h)[np.newaxis], window=((r0, r0 + h), (0, size)))


def write_scenes(root: Path, size: int) -> None:
    rng = np.random.default_rng(0)
    for d, date in enumerate(("20210605", "20210615")):
        product = f"S2A_MSIL2A_{date}T101031_N0300_R022_T33TUM_SYNTHETIC"
        folder = root / "S2" / product
        for b, band in enumerate(("B02", "B03", "B04", "B08")):
            _write(folder / f"{product}_{band}.tif", size, 10.0, "uint16", 0,
                   lambda r0, h, b=b: (800 + 300 * b + rng.integers(0, 400, (h, size)))
                   .astype(np.uint16))
        half = size // 2

        def scl(r0, h, d=d, half=half):
            block = np.full((h, half), 4, np.uint8)
            if d == 1:
                block[:, : half // 2] = 9  # cloud over the western half on the second date
            return block

        _write(folder / f"{product}_SCL.tif", half, 20.0, "uint8", 0, scl)
    product = "S1A_IW_GRDH_1SDV_20210610T050000_SYNTHETIC"
    for pol, level in (("VV", 0.1), ("VH", 0.02)):
        _write(root / "S1" / product / f"{product}_{pol}.tif", size, 10.0, "float32", None,
               lambda r0, h, level=level: (level * rng.gamma(4.4, 1 / 4.4, (h, size)))
               .astype(np.float32))


def _build(root: str, size: int, block: int, queue) -> None:
    from gee_export.local.stack import plan_local_stack, write_local_stack

    grid = Grid(CRS, X0, Y0, size, size, 10.0)
    bands = ("B2", "B3", "B4", "B8", "VV", "VH", "s2_clear_count", "s1_scene_count")
    out = Path(root) / "out"
    out.mkdir()
    start = time.perf_counter()
    plan = plan_local_stack(Path(root) / "scenes", grid, "2021-06", bands, out_dir=out)
    digest_cold = time.perf_counter() - start
    stack = write_local_stack(plan, block=block, progress=False)
    seconds = time.perf_counter() - start
    again = time.perf_counter()
    assert plan_local_stack(Path(root) / "scenes", grid, "2021-06", bands,
                            out_dir=out).fingerprint == plan.fingerprint
    digest_warm = time.perf_counter() - again
    source_bytes = sum(p.stat().st_size for p in (Path(root) / "scenes").rglob("*.tif"))
    with rasterio.open(stack.image) as src:
        count = src.read(7, window=((0, 256), (0, 256)))
        east = src.read(7, window=((0, 256), (size - 256, size)))
    queue.put({"seconds": seconds, "digest_cold_s": digest_cold, "digest_warm_s": digest_warm,
               "source_gb": source_bytes / 1e9,
               "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2,
               "clear_west": float(count.mean()), "clear_east": float(east.mean())})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10980)
    parser.add_argument("--block", type=int, default=1024)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="isamap-bench-") as tmp:
        start = time.perf_counter()
        write_scenes(Path(tmp) / "scenes", args.size)
        print(f"wrote the synthetic scenes ({args.size} x {args.size}) in "
              f"{time.perf_counter() - start:.0f} s")
        queue: mp.Queue = mp.get_context("fork").Queue()
        proc = mp.get_context("fork").Process(target=_build,
                                              args=(tmp, args.size, args.block, queue))
        proc.start()
        result = queue.get()
        proc.join()
    full_gb = 8 * args.size * args.size * 4 / 1e9
    print(json.dumps(result))
    print(f"build_local_stack, {args.size} x {args.size}, 8 output bands, block {args.block}: "
          f"{result['seconds']:.0f} s, peak RSS {result['peak_rss_gb']:.2f} GB "
          f"(the output array alone would be {full_gb:.1f} GB)")
    hashing = max(result["digest_cold_s"] - result["digest_warm_s"], 1e-9)
    share = 100 * result["digest_cold_s"] / result["seconds"]
    print(f"source digests: planning with {result['source_gb']:.2f} GB of scenes to hash took "
          f"{result['digest_cold_s']:.1f} s ({share:.1f} % of plan + build), "
          f"{result['digest_warm_s']:.2f} s with the digests cached "
          f"(hashing alone {hashing:.1f} s, {result['source_gb'] / hashing:.2f} GB/s)")
    print(f"clear count west/east: {result['clear_west']:.0f}/{result['clear_east']:.0f} "
          "(expected 1/2: the western half is cloudy on one date)")
    ok = result["peak_rss_gb"] < 3.0 and result["clear_west"] == 1 and result["clear_east"] == 2
    print("PASS" if ok else "FAIL", "(bar: peak RSS < 3 GB for a full tile)")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
