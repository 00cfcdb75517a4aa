"""Benchmark: what the sliding window's helpers cost per output strip, side by side.

The writer and reader threads share the cores with the model, so their CPU time per strip is
what the pipeline loses (``bench_inference.py`` prints the same stages summed over a run).
Measured on one 512-row strip of a ``--width`` wide map, CPU time of this thread, median of
``--rounds``:

- two overlapping tile rows of an uncompressed stack from the file into the model's batches
  (the reader's part, then the tiles normalised): through GDAL's block cache or past it
  (``GTIFF_DIRECT_IO``, what the pipeline does) into a row buffer;
- taking a strip from the accumulator and encoding it (class + stored probability);
- both maps' strips through their streaming COG encoders (``inference.cog.stream``: level-0
  tiles compressed, every overview reduced and compressed), and the 2x overview reduction
  alone;
- the predictor's time outside the forward pass for one batch of tile views (normalising into
  the batch, probabilities back): the main thread's cost between forwards; and the process
  CPU of those two passes on all threads against the calling thread alone;
- a mapping fetch thread's decoding of one computePixels answer (``--answer-width`` px by
  640 rows, six float32 bands, pixel-interleaved) into band-planar float32 with nodata NaN:
  one transposing copy then a nodata pass (what ``decode`` did until 2026-11-23) next to
  ``pixels.planar`` at several block sizes (its default 1 MiB);
- the mapping reader's copy of one fetched 512-row tile row (``--width`` px, six bands) into
  its reused row buffer (``FetchedSource.read``, the answers already in memory) next to the
  copy it made until 2026-11-23 (the row filled with NaN first, each answer's bands taken
  through a list index, i.e. copied twice).

The probability strip is noise around 0.5 (as an untrained or uncertain model gives).

Run: ``.venv/bin/python benchmarks/bench_encoder.py`` (``--width 4096`` for a quick look).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from affine import Affine

from engine.allocator import keep_freed_memory
from gee_export.ee.pixels import FLOAT_NODATA_BELOW, PLANAR_BLOCK_BYTES, planar
from inference.cog.maps import PROB_SCALE
from inference.cog.stream import CogStream, reduce2
from inference.predict.blending import Accumulator, encode

ROWS = 512


def cpu_ms(fn: Callable[[], object], rounds: int) -> float:
    fn()  # warm-up (lookup tables, first-touch pages)
    times = []
    for _ in range(rounds):
        start = time.thread_time()
        fn()
        times.append(time.thread_time() - start)
    return float(np.median(times)) * 1000


def strips(width: int) -> np.ndarray:
    """A probability strip: noise around 0.5."""
    rng = np.random.default_rng(0)
    return np.clip(0.5 + 0.2 * rng.standard_normal((ROWS, width)), 0, 1).astype(np.float32)


def stream_ms(rows: np.ndarray, resampling: str, rounds: int) -> tuple[float, int]:
    """CPU ms per strip through a :class:`CogStream` (4 strips per stream), and its bytes."""
    with tempfile.TemporaryDirectory() as tmp:
        times, size = [], 0
        for r in range(rounds):
            encoder = CogStream(Path(tmp), f"s{r}", rows.shape[1], 4 * ROWS,
                                Affine(10, 0, 500_000, 0, -10, 3_500_000), "EPSG:32650",
                                resampling, {}, "bench")  # type: ignore[arg-type]
            start = time.thread_time()
            for _ in range(4):
                encoder.add(rows)
            encoder.close()
            times.append((time.thread_time() - start) / 4)
            size = sum(level.data_path.stat().st_size for level in encoder.levels) // 4
            encoder.remove()
    return float(np.median(times)) * 1000, size


def read_ms(width: int, rounds: int) -> dict[str, dict[str, float]]:
    """CPU ms of two overlapping tile rows (rows 0-511, then 448-959, as 512 px tiles with
    64 px overlap ask) of an uncompressed tiled six-band float32 stack from the file to the
    model's batches: the reader's part, then its 512 px tiles normalised into batches of four
    (bf16/NHWC's layout, each tile checked for NaN as the pipeline does). Through GDAL's block
    cache (at the pipeline's 512 MB cap) or past it (``GTIFF_DIRECT_IO``, what the pipeline
    does) into a row buffer; a fresh dataset each round, the stack dropped from the page cache
    and read back first (``bench_helpers.cache_input``)."""
    import rasterio
    import torch
    from bench_helpers import cache_input
    from rasterio.windows import Window

    from engine.execution import calling_thread_only
    from inference.predict.normalise import BatchNormaliser
    from inference.predict.raster import GDAL_CACHE_MB, INPUT_GDAL_OPTIONS

    normaliser = BatchNormaliser(np.zeros(6), np.ones(6))
    starts = list(range(0, width - 512 + 1, 448))
    out = np.empty((6, ROWS, width), np.float32)
    figures = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "stack.tif"
        height = 2 * ROWS
        with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=6,
                           dtype="float32", tiled=True, blockxsize=512, blockysize=512,
                           interleave="band", crs="EPSG:32650",
                           transform=Affine(10, 0, 500_000, 0, -10, 3_500_000)) as dst:
            for band in range(1, 7):
                dst.write(np.random.default_rng(band).random((height, width), np.float32),
                          band, window=Window(0, 0, width, height))
        cache_input(path)  # cached as bench_helpers.py caches its stack
        for label, options in (("block cache", {"GDAL_CACHEMAX": GDAL_CACHE_MB * 2**20}),
                               ("direct", INPUT_GDAL_OPTIONS)):
            reads, tiles = [], []
            for _ in range(rounds + 1):  # the first round warms the page cache
                with rasterio.Env(**options), rasterio.open(path) as ds, \
                        torch.inference_mode(), calling_thread_only():
                    read = normalise = 0.0
                    for row in (0, ROWS - 64):
                        start = time.thread_time()
                        block = ds.read(list(range(1, 7)), window=Window(0, row, width, ROWS),
                                        out_dtype="float32", out=out)
                        read += time.thread_time() - start
                        views = [block[:, :, x:x + 512] for x in starts]
                        start = time.thread_time()
                        for b in range(0, len(views) - 3, 4):
                            normaliser(views[b:b + 4], torch.channels_last)
                        normalise += time.thread_time() - start
                    reads.append(read)
                    tiles.append(normalise)
            read, ms = float(np.median(reads[1:])), float(np.median(tiles[1:]))
            figures[label] = {"read": read * 1000, "normalise": ms * 1000,
                              "total": (read + ms) * 1000}
    return figures


def predictor_outside_forward_ms(batch: int, tile: int, rounds: int) -> tuple[float, str]:
    import torch

    from inference.predict.runtime import RuntimeOptions, TilePredictor
    from training.models import create_model

    torch.manual_seed(0)
    model = create_model("unet", 6, 2, widths=(8, 16, 32, 64, 128))
    predictor = TilePredictor(model, np.zeros(6), np.ones(6), options=RuntimeOptions())
    row = np.random.default_rng(0).standard_normal((6, tile, tile * batch), dtype=np.float32)
    views = [row[:, :, i * tile:(i + 1) * tile] for i in range(batch)]
    predictor(views, compact=True, finite=True)  # settles 'auto'
    outside = []
    for _ in range(rounds):
        before, start = predictor.forward_seconds, time.perf_counter()
        predictor(views, compact=True, finite=True)
        outside.append(time.perf_counter() - start - (predictor.forward_seconds - before))
    return float(np.median(outside)) * 1000, predictor.description


def around_forward_cpu_ms(batch: int, tile: int, rounds: int) -> dict[str, dict[int, float]]:
    """Process CPU ms of the passes around the forward (normalising the batch, probabilities
    back) on the process's threads and on the calling thread alone (what the predictor
    does: ``engine.execution.calling_thread_only``), bf16/NHWC."""
    import torch

    from engine.execution import set_threads
    from inference.predict.runtime import RuntimeOptions, TilePredictor
    from training.models import create_model

    torch.manual_seed(0)
    model = create_model("unet", 6, 2, widths=(8, 16, 32, 64, 128))
    predictor = TilePredictor(model, np.zeros(6), np.ones(6), options=RuntimeOptions(
        precision="bf16", channels_last="on"))
    row = np.random.default_rng(0).standard_normal((6, tile, tile * batch), dtype=np.float32)
    views = [row[:, :, i * tile:(i + 1) * tile] for i in range(batch)]
    predictor(views, compact=True, finite=True)
    with torch.inference_mode():
        x = predictor._normalise(views, torch.channels_last, True)
        with torch.autocast("cpu", torch.bfloat16):
            logits = predictor.model(x)
    passes = {"normalise": lambda: predictor._normalise(views, torch.channels_last, True),
              "probabilities": lambda: predictor._probabilities(logits, x.shape, True)}
    full = torch.get_num_threads()
    figures: dict[str, dict[int, float]] = {name: {} for name in passes}
    for threads in sorted({full, 1}, reverse=True):
        set_threads(threads)
        for name, fn in passes.items():
            with torch.inference_mode():
                fn()
                times = []
                for _ in range(rounds):
                    start = time.process_time()
                    fn()
                    times.append(time.process_time() - start)
            figures[name][threads] = float(np.median(times)) * 1000
    set_threads(full)
    return figures


def decode_ms(width: int, rounds: int) -> dict[str, float]:
    """CPU ms to make one answer band-planar: whole-array copy + nodata pass vs blocked."""
    rng = np.random.default_rng(0)
    pixels = rng.standard_normal((640, width, 6), dtype=np.float32)

    def whole() -> np.ndarray:
        out = np.ascontiguousarray(pixels.transpose(2, 0, 1))
        out[out <= FLOAT_NODATA_BELOW] = np.nan
        return out

    times = {"whole copy + nodata pass": cpu_ms(whole, rounds)}
    for block in (1 << 18, PLANAR_BLOCK_BYTES, 1 << 22):
        times[f"blocked {block >> 10} KiB"] = cpu_ms(lambda b=block: planar(pixels, b), rounds)
    return times


def fetched_row_ms(width: int, rounds: int) -> dict[str, float]:
    """CPU ms of the mapping reader's copy of one fetched tile row: now vs before."""
    from rasterio.windows import Window as RioWindow

    from contract.grid import Grid
    from inference.mapping.fetched import FetchedSource

    bands = ("B2", "B3", "B4", "B8", "VV", "VH")
    answer = np.random.default_rng(0).random((len(bands), ROWS, width), dtype=np.float32)
    grid = Grid("EPSG:32650", 500_000.0, 3_500_000.0, width, ROWS, 10.0)
    src = FetchedSource(lambda w: answer[:, :w.height, w.col_off:w.col_end].copy(), grid,
                        bands, tile=ROWS, overlap=64, workers=4)
    answers = [(r.window, answer[:, :, r.window.col_off:r.window.col_end].copy())
               for r in src.requests[0]]
    out = np.empty((len(bands), ROWS, width), np.float32)
    pick = list(range(len(bands)))

    def before() -> None:
        out.fill(np.nan)
        for w, data in answers:
            out[:, :, w.col_off:w.col_end] = data[pick, :, :]

    times = {"before": cpu_ms(before, rounds)}
    now = []
    for _ in range(rounds + 1):  # a fresh source each time: a row is read once
        src.close()
        src = FetchedSource(lambda w: answer[:, :w.height, w.col_off:w.col_end].copy(), grid,
                            bands, tile=ROWS, overlap=64, workers=4)
        src.read(range(1, 7), RioWindow(0, 0, width, 1), out=out[:, :1])  # starts the fetch
        time.sleep(0.5)  # every answer in memory: only the copy is timed
        start = time.thread_time()
        src.read(range(1, 7), RioWindow(0, 0, width, ROWS), out=out)
        now.append(time.thread_time() - start)
    src.close()
    times["now"] = float(np.median(now[1:])) * 1000
    return times


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--width", type=int, default=16384)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--answer-width", type=int, default=2560,
                        help="width of the decoded computePixels answer (px; 640 rows)")
    args = parser.parse_args(argv)
    keep_freed_memory()  # as every CPU run of the pipeline does (engine.autotune.apply)
    p1 = strips(args.width)
    figures: dict = {"width": args.width, "rows": ROWS}
    print(f"one {ROWS}-row strip, {args.width} px wide (CPU ms of this thread, median of "
          f"{args.rounds})")
    reads = read_ms(args.width, args.rounds)
    figures["read_two_rows_ms"] = {k: {n: round(v, 1) for n, v in by.items()}
                                   for k, by in reads.items()}
    print(f"  two overlapping {ROWS}-row tile rows of an uncompressed six-band stack into the "
          "model's batches (reader + normalising):")
    for label, by in (("through the block cache", reads["block cache"]),
                      ("past it", reads["direct"])):
        print(f"    {label:>23}: {by['read']:6.1f} + {by['normalise']:6.1f} = "
              f"{by['total']:6.1f} ms")
    acc = Accumulator(1, 2 * ROWS, args.width, 0)

    def take() -> None:
        acc.add(p1[None], np.ones((ROWS, args.width), np.float32), acc.row0, 0)
        encode(*acc.take_probs(ROWS), 1)

    figures["take_encode_ms"] = round(cpu_ms(take, args.rounds), 1)
    print(f"  accumulate + take + encode a strip: {figures['take_encode_ms']:6.1f} ms")
    classes, prob = (p1 > 0.5).astype(np.uint8), np.rint(p1 * PROB_SCALE).astype(np.uint8)
    for name, rows, resampling in (("class", classes, "mode"), ("probability", prob, "average")):
        reduce_ms = cpu_ms(lambda r=rows, s=resampling: reduce2(r, s), args.rounds)
        ms, size = stream_ms(rows, resampling, args.rounds)
        figures[f"cog_stream_{name}"] = {"ms": round(ms, 1), "mib": round(size / 2**20, 2),
                                         "reduce2_ms": round(reduce_ms, 1)}
        print(f"  {name:>11} strip through its COG encoder: {ms:6.1f} ms "
              f"({size / 2**20:5.2f} MiB); overview 2x: {reduce_ms:6.1f} ms")
    outside, runtime = predictor_outside_forward_ms(args.batch, args.tile, args.rounds * 4)
    figures["predictor_outside_forward_ms"] = round(outside, 1)
    print(f"  predictor outside the forward, {args.batch} tiles of {args.tile} px at {runtime}: "
          f"{outside:6.1f} ms per batch")
    around = around_forward_cpu_ms(args.batch, args.tile, args.rounds * 4)
    figures["around_forward_process_cpu_ms"] = {
        name: {str(t): round(v, 1) for t, v in by.items()} for name, by in around.items()}
    for name, by in around.items():
        print(f"  {name} of {args.batch} tiles of {args.tile} px (bf16/nhwc), process CPU: "
              + ", ".join(f"{t} thread{'s' if t > 1 else ''} {v:.1f} ms" for t, v in by.items()))
    decoded = decode_ms(args.answer_width, args.rounds * 2)
    figures["decode_answer_ms"] = {k: round(v, 1) for k, v in decoded.items()}
    base = decoded["whole copy + nodata pass"]
    print(f"  decoding a 640 x {args.answer_width} x 6 computePixels answer: "
          + ", ".join(f"{k} {v:.1f} ms (x{base / v:.2f})" for k, v in decoded.items()))
    row = fetched_row_ms(args.width, args.rounds)
    figures["fetched_row_copy_ms"] = {k: round(v, 1) for k, v in row.items()}
    print(f"  mapping reader, one fetched {ROWS}-row tile row into its buffer: "
          f"{row['now']:.1f} ms, as before {row['before']:.1f} ms "
          f"(x{row['before'] / row['now']:.2f})")
    return figures


if __name__ == "__main__":
    main()
