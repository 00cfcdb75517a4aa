"""Benchmark: the export's cost per patch against the patches already in the month's folder.

A month's patch folder grows to hundreds of thousands of files for a province, so writing one
more patch must cost the same whatever is already there. For each N of ``--sizes`` this fills
a month folder with N empty files named as patches (image and label names alternating), then
writes ``--patches`` patches into it through the export's own writer
(:class:`contract.patch_writer.PatchWriter`: label and image GeoTIFFs, tags and
index record, each file through the one atomic writer), and removes them again. The sizes take
turns over ``--rounds`` rounds; it prints the process CPU-ms and wall-ms per patch (median of
the rounds) and the CPU ratio of each size to the smallest (1.0: independent of the folder).

Run: ``.venv/bin/python benchmarks/bench_export_scaling.py [--sizes 1000,100000]
[--patches 60] [--rounds 3]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

MONTH = "2019-06"


def fill(folder: Path, count: int) -> None:
    """``count`` empty files named as patches of rows far from the written ones.

    A listing's cost is the folder's entries, whatever their size; empty files are also quick
    to delete again (freeing their blocks is what makes deleting small files slow on disks
    mounted with ``discard``).
    """
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        row, col = divmod(i // 2, 1000)
        name = f"r{100000 + row}_c{col}{'_label' if i % 2 else ''}.tif"
        os.close(os.open(folder / name, os.O_CREAT | os.O_WRONLY, 0o644))


def write_patches(writer, positions, image, label) -> tuple[float, float]:
    """(process CPU s, wall s) of writing every position once."""
    cpu, wall = time.process_time(), time.perf_counter()
    for row, col in positions:
        writer.write(row, col, image, label)
    return time.process_time() - cpu, time.perf_counter() - wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,100000",
                        help="files already in the month's folder, comma-separated")
    parser.add_argument("--patches", type=int, default=60, help="patches written per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    from contract.bands import DEFAULT_IMAGE_BANDS
    from contract.grid import Grid
    from contract.patch_writer import PatchWriter, patch_rel_paths

    side = 16  # patch positions per grid side: 256 positions
    grid = Grid("EPSG:32650", 238000.0, 3385000.0, 80 * (side - 1) + 128,
                80 * (side - 1) + 128)
    positions = list(grid.iter_patches())[:args.patches]
    if len(positions) < args.patches:
        parser.error(f"--patches at most {len(positions)}")
    splits = {rc: "train" for rc in grid.iter_patches()}
    rng = np.random.default_rng(0)
    image = rng.random((len(DEFAULT_IMAGE_BANDS), 128, 128), dtype=np.float32)
    label = (rng.random((128, 128)) > 0.5).astype(np.uint8)

    cpu: dict[int, list[float]] = {n: [] for n in sizes}
    wall: dict[int, list[float]] = {n: [] for n in sizes}
    with tempfile.TemporaryDirectory(prefix="isamap-scaling-") as tmp:
        roots = {n: Path(tmp) / f"n{n}" for n in sizes}
        started = time.perf_counter()
        for n, root in roots.items():
            fill(root / "patches" / MONTH, n)
        print(f"{len(sizes)} month folders filled ({', '.join(f'{n:,}' for n in sizes)} files)"
              f" in {time.perf_counter() - started:.1f} s; {args.patches} patches of "
              f"{len(DEFAULT_IMAGE_BANDS)} bands x 128 px per round, {args.rounds} rounds")
        writers = {n: PatchWriter(root, grid, DEFAULT_IMAGE_BANDS, MONTH, splits=splits,
                                  clean_up=False) for n, root in roots.items()}
        write_patches(writers[sizes[0]], positions[:5], image, label)  # warm GDAL up
        started = time.perf_counter()
        for round_ in range(args.rounds):
            for n in sizes if round_ % 2 == 0 else reversed(sizes):
                c, w = write_patches(writers[n], positions, image, label)
                cpu[n].append(c)
                wall[n].append(w)
                for row, col in positions:  # back to N files for the next round
                    for rel in patch_rel_paths(MONTH, f"r{row}_c{col}").values():
                        (roots[n] / rel).unlink(missing_ok=True)
        print(f"rounds written in {time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
    print(f"folders removed in {time.perf_counter() - started:.1f} s")
    base = statistics.median(cpu[sizes[0]])
    print(f"{'files already there':>20} {'CPU-ms/patch':>13} {'wall-ms/patch':>14} "
          f"{'CPU vs smallest':>16}")
    for n in sizes:
        c, w = statistics.median(cpu[n]), statistics.median(wall[n])
        print(f"{n:>20,} {1000 * c / args.patches:>13.2f} {1000 * w / args.patches:>14.2f} "
              f"{c / base:>16.3f}")


if __name__ == "__main__":
    main()
