"""Benchmark: one epoch of each training config (``configs/train-*.yaml``) on 2 CPU threads.

Each config runs as written, but for one epoch of one training (``--members 1``: a recipe
that joins several, ``unet-s2``'s three, costs that many times the figure) on ``--data``
(default the demo's patches, ``make demo``) with two torch threads, in a child process; the
child reports its CPU time (user + system, the whole command: start-up, the epoch, validation
and the model file) and wall time. CPU time hardly depends on other work on the machine,
wall time does: on 2 free cores the epoch's wall time lies between half the CPU time (both
threads busy) and all of it. The figures are what the configs' ``CPU budget`` comments quote.

Run: ``.venv/bin/python benchmarks/config_epochs.py`` (``--only train-unet`` for one).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def one_epoch(config: str, data: str, out: str) -> dict:
    """Run ``config`` for one epoch in this process; CPU and wall seconds (run in a child)."""
    import torch

    from cli.train import train_main

    torch.set_num_threads(2)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu0, wall0 = usage.ru_utime + usage.ru_stime, time.perf_counter()
    code = train_main(["--config", config, "--data", data, "--out", out, "--epochs", "1",
                       "--members", "1", "--workers", "0", "--no-progress", "-q"])
    usage = resource.getrusage(resource.RUSAGE_SELF)
    rows = ([json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]
            if code == 0 else [])
    return {"rc": code, "cpu_s": round(usage.ru_utime + usage.ru_stime - cpu0, 1),
            "wall_s": round(time.perf_counter() - wall0, 1),
            "epoch_wall_s": round(rows[0]["seconds"], 1) if rows else None,
            "runtime": rows[0].get("runtime") if rows else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(REPO / "demo_output" / "patches"))
    parser.add_argument("--only", help="one config's name, e.g. train-unet")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(one_epoch(args.child[0], args.data, args.child[1])))
        return
    configs = sorted((REPO / "configs").glob("train-*.yaml"))
    for config in configs:
        if args.only and config.stem != args.only:
            continue
        with tempfile.TemporaryDirectory() as out:
            env = {**os.environ, "OMP_NUM_THREADS": "2"}
            done = subprocess.run([sys.executable, __file__, "--data", args.data, "--child",
                                   str(config), out], capture_output=True, text=True, env=env)
            last = (done.stdout.strip().splitlines() or ["{}"])[-1]
            load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
            print(f"{config.stem}: {last} (load {load})", flush=True)


if __name__ == "__main__":
    main()
