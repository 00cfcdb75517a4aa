"""Benchmark: built-up polygons (``--vectors``) of the demo town's map, area and peak memory.

The demo scene's town (SYNTHETIC: ``gee_export.local.synthetic``) is drawn as a class map and
a probability map (impervious where roads and buildings cover half a 10 m pixel) of
``--width`` x each of ``--heights`` pixels, written as map COGs. For each, a child process runs
:func:`inference.predict.vectors.write_vectors` alone and reports the polygons, the raster's
built area, the polygons' ``area_m2`` and outline areas, seconds and peak RSS, so the peak
belongs to the polygons, not to drawing the map. The same width at several heights shows how
memory follows the map's height (strips are as wide as the map).

Run: ``.venv/bin/python benchmarks/bench_vectors.py`` (``--width 1100 --heights 1100`` is the
test's map; ``GDAL_CACHEMAX=8`` takes GDAL's block cache out of the peak).
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

import numpy as np
import rasterio
from affine import Affine


def make_maps(folder: Path, width: int, height: int) -> None:
    """The demo town's class and probability COGs (``c.tif``, ``p.tif``) in ``folder``."""
    from contract.grid import Grid
    from gee_export.local.synthetic import (
        DEFAULT_CRS,
        DEFAULT_ORIGIN,
        ISA_CLASSES,
        class_fractions,
        draw_class_map,
    )
    from inference.cog import maps

    grid = Grid(DEFAULT_CRS, *DEFAULT_ORIGIN, width, height, 10.0)
    shares = class_fractions(draw_class_map(grid, 2, seed=0), 2)[list(ISA_CLASSES)].sum(0)
    for name, data, kind in (("c", (shares >= 0.5).astype(np.uint8), "class"),
                             ("p", np.round(shares * maps.PROB_SCALE).astype(np.uint8),
                              "probability")):
        plain = folder / f"{name}.plain.tif"
        with rasterio.open(plain, "w", driver="GTiff", width=width, height=height, count=1,
                           dtype="uint8", crs=DEFAULT_CRS, nodata=maps.NODATA, tiled=True,
                           transform=Affine(10, 0, DEFAULT_ORIGIN[0], 0, -10,
                                            DEFAULT_ORIGIN[1])) as dst:
            dst.write(data, 1)
        maps.write_cog(plain, folder / f"{name}.tif", kind, {})


def measure(folder: Path) -> dict:
    """write_vectors on ``folder``'s maps, in this process (run it in a child)."""
    import pyogrio
    import shapely

    from inference.predict import stats
    from inference.predict.vectors import VectorOptions, write_vectors

    start = time.perf_counter()
    result = write_vectors(str(folder / "c.tif"), str(folder / "p.tif"), 1, folder / "v",
                           VectorOptions(min_area_m2=0.0))
    seconds = time.perf_counter() - start
    peak = _high_water_mb()
    _, _, wkb, _ = pyogrio.raw.read(str(folder / "v.gpkg"))
    raster = stats.isa_area(str(folder / "c.tif"), [stats.Zone("all", None)])[0].isa_km2
    return {"polygons": result.polygons, "raster_km2": raster,
            "area_m2_km2": result.area_m2 / 1e6,
            "outlines_km2": float(sum(g.area for g in shapely.from_wkb(wkb))) / 1e6,
            "seconds": round(seconds, 2), "peak_rss_mb": round(peak, 1)}


def _high_water_mb() -> float:
    """This process's peak resident memory (MB): VmHWM, which, unlike getrusage's ru_maxrss,
    is not carried over from the parent across exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=4096)
    parser.add_argument("--heights", default="1024,4096")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(Path(args.measure))))
        return
    load = Path("/proc/loadavg").read_text().split()[:3]
    print(f"load average {' '.join(load)}")
    for height in (int(h) for h in args.heights.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            make_maps(Path(tmp), args.width, height)
            done = subprocess.run([sys.executable, __file__, "--measure", tmp], check=True,
                                  capture_output=True, text=True)
            row = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"{args.width} x {height}: {row['polygons']} polygons, raster "
                  f"{row['raster_km2']:.4f} km², area_m2 {row['area_m2_km2']:.4f} km², outlines "
                  f"{row['outlines_km2']:.4f} km², {row['seconds']} s, peak RSS "
                  f"{row['peak_rss_mb']} MB")


if __name__ == "__main__":
    main()
