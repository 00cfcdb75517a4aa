"""Benchmark: what ``isamap-map --change-rule encoder`` spends on the encoder's features.

The rule computes Presto's 128 features of every block of both dates of every pair
(:func:`inference.predict.change.encoder.encoder_features`: fp32 on the CPU), so a series
of ``n`` dates computes each middle date's features twice (once per pair it belongs to). This
times that call on one ``--side`` x ``--side`` block of six bands (B2, B3, B4, B8, VV, VH:
smooth noise, the published Presto weights) at 1 and 2 threads (``--threads``), best of
``--rounds``, and prints ms per call and per 100 px, and what a 10,000 x 10,000 px pair
(both dates) costs at that rate.

Run: ``.venv/bin/python benchmarks/bench_encoder_change.py`` (about a minute on 2 cores;
``--weights`` the Presto file, default ``../shared/weights/presto/default_model.pt``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from inference.predict.change.encoder import encoder_features
from training.models import create_model
from training.models.encoders.fused import MODULE, NAME, EncoderUNet
from training.models.encoders.registry import PRESTO, load_encoder

ROOT = Path(__file__).resolve().parents[1]
BANDS = ("B2", "B3", "B4", "B8", "VV", "VH")
PAIR_PX = 10_000 * 10_000


def network(weights: Path) -> EncoderUNet:
    """A Presto concat model on six bands, as ``isamap-train --encoder presto=PATH`` makes."""
    kwargs = {"bands": list(BANDS), "encoder": PRESTO.name, "encoder_sha256": PRESTO.sha256,
              "input_mean": [0.0] * len(BANDS), "input_std": [1.0] * len(BANDS),
              "latlon": [0.0, 0.0], "month": 0, "fusion": "concat", "frozen": True}
    torch.manual_seed(0)
    model = create_model(NAME, len(BANDS), 2, module=MODULE, **kwargs)
    assert isinstance(model, EncoderUNet)
    model.encoder.load_state_dict(load_encoder(PRESTO, weights).state_dict())
    return model.eval()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--weights", type=Path,
                   default=ROOT.parent / "shared" / "weights" / "presto" / "default_model.pt")
    p.add_argument("--side", type=int, default=256)
    p.add_argument("--threads", default="1,2")
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    if not args.weights.is_file():
        print(f"skipped: no Presto weights at {args.weights} (give --weights PATH; "
              "../shared/weights/README.md says where they come from)")
        return
    model = network(args.weights)
    rng = np.random.default_rng(0)
    bands = (0.1 + 0.05 * rng.random((len(BANDS), args.side, args.side))).astype(np.float32)
    stats = ((0.0,) * len(BANDS), (1.0,) * len(BANDS))
    px = args.side * args.side
    print(f"encoder_features of a {args.side} x {args.side} block ({px} px), best of "
          f"{args.rounds}")
    for threads in (int(t) for t in args.threads.split(",")):
        torch.set_num_threads(threads)
        encoder_features(model, bands, stats)  # warm-up
        best = float("inf")
        for _ in range(args.rounds):
            start = time.perf_counter()
            encoder_features(model, bands, stats)
            best = min(best, time.perf_counter() - start)
        per_100 = best / px * 100 * 1e3
        pair_h = 2 * best / px * PAIR_PX / 3600
        print(f"{threads} thread(s): {best * 1e3:.0f} ms per block, {per_100:.1f} ms per "
              f"100 px; a 10,000 x 10,000 px pair (both dates): {pair_h:.1f} h")


if __name__ == "__main__":
    main()
