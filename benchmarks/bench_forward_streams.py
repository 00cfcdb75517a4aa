"""Benchmark: one forward pass on all cores vs one single-thread forward per core, side by side.

The sliding window runs one batch at a time through the model with every core (torch's
intra-op threads). The alternative measured here runs as many batches at once as there are
cores, each forward single-threaded in its own Python thread (torch releases the GIL inside
its operators). Both are timed alone and next to a helper thread that keeps part of one core
busy compressing incompressible bytes (``--helper-duty``, the share of one core), as the
pipeline's encoder does, or copying float32 arrays far larger than the caches
(``--helper-kinds compress,copy``), as the pipeline's reader, decoder and accumulator do. The
questions: are
the streams faster, do they lose less to such a helper (a preempted intra-op thread makes its
partner wait at the next barrier; independent streams have no barrier), and how much of the model's
speed a helper of each kind takes for the share of a core it uses.

Model: the training package's U-Net at the pipeline benchmark's narrow widths, batch norms
folded, bf16 autocast and channels-last (what ``auto`` picks on a CPU with native bf16), random
weights and inputs. Tiles per second, best of ``--rounds`` for each arrangement.

Run: ``.venv/bin/python benchmarks/bench_forward_streams.py``.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
import zlib
from typing import Literal

import numpy as np
import torch

from training.models import create_model
from training.models.blocks import fold_batchnorm

BANDS = 6


HelperKind = Literal["compress", "copy"]


class Helper:
    """A thread busy ``duty`` of the time (0: no thread), as the pipeline's helpers are.

    ``compress``: DEFLATE level 1 of 2 MB of random bytes (compute-bound, cache-sized);
    ``copy``: a 32 MB float32 array copied (memory-bound, past the caches).
    """

    def __init__(self, duty: float, kind: HelperKind = "compress") -> None:
        self.duty, self.kind, self.stop = duty, kind, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True) if duty > 0 else None

    def _run(self) -> None:
        rng = np.random.default_rng(0)
        data = rng.integers(0, 256, 2_000_000, dtype=np.uint8).tobytes()
        src = rng.random(8_000_000, dtype=np.float32)
        dst = np.empty_like(src)
        while not self.stop.is_set():
            start = time.perf_counter()
            if self.kind == "compress":
                zlib.compress(data, 1)
            else:
                np.copyto(dst, src)
            time.sleep((time.perf_counter() - start) * (1 - self.duty) / self.duty)

    def __enter__(self) -> Helper:
        if self.thread:
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        if self.thread:
            self.thread.join()


def forward(model: torch.nn.Module, x: torch.Tensor) -> None:
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        model(x)


def batch(size: int, tile: int) -> torch.Tensor:
    return torch.randn(size, BANDS, tile, tile).contiguous(memory_format=torch.channels_last)


def one_forward(model, cores: int, batches: int, size: int, tile: int) -> float:
    """Seconds for ``batches`` batches, one at a time, ``cores`` intra-op threads."""
    torch.set_num_threads(cores)
    x = batch(size, tile)
    forward(model, x)
    start = time.perf_counter()
    for _ in range(batches):
        forward(model, x)
    return time.perf_counter() - start


def streams(model, cores: int, batches: int, size: int, tile: int) -> float:
    """Seconds for ``batches`` batches over ``cores`` single-thread streams."""
    ready, spans = threading.Barrier(cores), []

    def stream(n: int) -> None:
        torch.set_num_threads(1)  # this thread's parallel regions only
        x = batch(size, tile)
        forward(model, x)
        ready.wait()
        start = time.perf_counter()
        for _ in range(n):
            forward(model, x)
        spans.append((start, time.perf_counter()))

    threads = [threading.Thread(target=stream, args=(batches // cores,)) for _ in range(cores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return max(e for _, e in spans) - min(s for s, _ in spans)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cores", type=int, default=torch.get_num_threads())
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--batches", type=int, default=12, help="per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--helper-duty", type=float, default=0.3)
    parser.add_argument("--helper-kinds", default="compress",
                        help="comma-separated: compress (DEFLATE of cache-sized data), copy "
                             "(memory-bound copies)")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    model = create_model("unet", BANDS, 2, widths=(8, 16, 32, 64, 128)).eval()
    model = fold_batchnorm(model).to(memory_format=torch.channels_last)
    tiles = args.batches * args.batch
    figures: dict = {"cores": args.cores, "batch": args.batch, "tile": args.tile}
    print(f"U-Net widths 8-128, bf16/nhwc, batch {args.batch} of {args.tile} px, "
          f"{args.cores} cores (tiles/s, best of {args.rounds})")
    kinds = [k.strip() for k in args.helper_kinds.split(",")]
    if unknown := set(kinds) - {"compress", "copy"}:
        parser.error(f"unknown helper kind(s) {', '.join(sorted(unknown))}: use compress, copy")
    quiet = None
    for duty, kind in [(0.0, "compress")] + [(args.helper_duty, k) for k in kinds]:
        with Helper(duty, kind):  # duty 0: no helper thread at all
            rates = {}
            for name, run in (("one forward", one_forward), ("streams", streams)):
                best = min(run(model, args.cores, args.batches, args.batch, args.tile)
                           for _ in range(args.rounds))
                rates[name] = tiles / best
        torch.set_num_threads(args.cores)
        quiet = quiet or rates
        key = "no helper" if not duty else f"{kind} helper at {duty:g}"
        figures[key] = {k: round(v, 2) for k, v in rates.items()}
        kept = rates["one forward"] / quiet["one forward"]
        print(f"  {key:24s}: one {args.cores}-thread forward {rates['one forward']:6.2f} "
              f"({kept:.2f} of quiet), {args.cores} single-thread streams "
              f"{rates['streams']:6.2f} (x{rates['streams'] / rates['one forward']:.2f})")
    print(json.dumps(figures, indent=1))
    return figures


if __name__ == "__main__":
    main()
