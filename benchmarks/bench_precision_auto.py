"""``isamap-predict --precision auto`` against its plain twin and every fixed choice, whole process.

What a user waits for: the wall time of one ``isamap-predict`` process (imports, model file,
measuring, the map, its quick-looks and tables), on the demo model, at ``auto`` and at each
fixed configuration of the CPU (fp32 / bf16 x ``--channels-last off`` / ``on``). Every run
has a fresh ``XDG_CACHE_HOME`` (no remembered choice, no compiled kernels), and in each
round the runs alternate (auto, the fixed ones, auto again), so a load that drifts slows all
alike. Per size it prints each run's seconds, the choice ``auto`` recorded and the seconds it
spent measuring (its ``-v`` log), then, each the median over the rounds of each round's ratio,
of the wall time and of the process's CPU time (steadier on a loaded machine):

- ``fp32/nchw / auto``: auto against the plain path it replaces (``--precision fp32
  --channels-last off``, the plain twin): above 1 is auto's end-to-end gain;
- ``fastest fixed / auto``: 1 means ``auto`` costs nothing over knowing the answer, above 1
  that it beat every fixed run;
- ``measuring / auto run``: the share of auto's wall time spent measuring, and the measuring
  seconds against auto's budget (``engine.autotune.DEFAULT_BUDGET_S``): the most any fresh
  run took, and in how many runs the budget held;

- **fresh**: ``auto``'s first run, measuring included;
- **warm**: ``auto`` again with the cache its first run left (its second run). A job too short
  for measuring to pay leaves none: its warm run gets the cache the largest size's first
  ``auto`` run left (same model, tiles and device), and the line says so.

Sizes: the demo stack as it is (768², four tiles: a short job) and larger stacks tiled from
it in a temporary folder (``--sizes``). Without ``--model`` / ``--stack`` the demo model is
made first by the demo command (``isamap-demo --until train``) in a temporary folder.

Run: .venv/bin/python benchmarks/bench_precision_auto.py [--sizes 768,4096,8192] [--rounds 2]
Absolute seconds depend on the machine and its load; the ratios are measured side by side.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio

from engine.autotune import DEFAULT_BUDGET_S

FIXED = {"fp32/off": ["--precision", "fp32", "--channels-last", "off"],
         "fp32/on": ["--precision", "fp32", "--channels-last", "on"],
         "bf16/off": ["--precision", "bf16", "--channels-last", "off"],
         "bf16/on": ["--precision", "bf16", "--channels-last", "on"]}
PLAIN = "fp32/off"  # the plain path auto replaces: fp32, NCHW
PREDICT = "import sys; from cli.predict import predict_main; sys.exit(predict_main())"


def demo_model(folder: Path, epochs: int) -> tuple[Path, Path]:
    """The demo's model file and June stack, made by the demo command."""
    from cli.demo import main as demo_main

    if demo_main(["--out", str(folder), "--until", "train", "--epochs", str(epochs),
                  "-q"]) != 0:
        raise SystemExit("the demo could not make its model")
    return (folder / "model" / "train" / "model.pt",
            folder / "stack" / "2019-06" / "stack_2019-06_image.tif")


def tiled_stack(stack: Path, size: int, folder: Path) -> Path:
    """``stack`` repeated to ``size`` x ``size`` (its bands and georeferencing kept)."""
    with rasterio.open(stack) as src:
        if size == src.width == src.height:
            return stack
        data, profile, names = src.read(), src.profile.copy(), src.descriptions
    reps = -(-size // min(data.shape[1:]))
    big = np.tile(data, (1, reps, reps))[:, :size, :size]
    profile.update(width=size, height=size, tiled=True, blockxsize=512, blockysize=512,
                   compress="deflate")
    out = folder / f"stack_{size}.tif"
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(big)
        dst.descriptions = names
    return out


#: auto's ``-v`` summary line: what it chose and the seconds it spent measuring
CHOSE = re.compile(r"autotune inference on .*; chose (\S+) in ([0-9.]+) s")


def predict(model: Path, stack: Path, args: list[str], cache: Path,
            work: Path) -> tuple[float, float, str, float]:
    """Wall and CPU seconds of one ``isamap-predict`` process, the runtime its map records,
    and the seconds ``auto`` spent measuring (0: nothing measured).

    The CPU seconds (user + system, every thread) move less with other work on the machine
    than the wall time: on a loaded machine their ratios are the steadier figure. The run
    logs with ``-v`` (to a file; the measuring line is read back from it).
    """
    out = work / "out"
    shutil.rmtree(out, ignore_errors=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ISAMAP_AUTOTUNE")}
    env["XDG_CACHE_HOME"] = str(cache)
    script = Path(sys.executable).with_name("isamap-predict")
    command = [str(script)] if script.exists() else [sys.executable, "-c", PREDICT]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    log = subprocess.run([*command, "--model", str(model), "--input", str(stack),
                          "--out", str(out / "map"), "-v", *args], env=env, check=True,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True).stderr
    seconds = time.perf_counter() - start
    found = CHOSE.search(log)
    measuring = float(found.group(2)) if found else 0.0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    with rasterio.open(out / "map_class.tif") as ds:
        runtime = ds.tags().get("runtime", "?")
    shutil.rmtree(out)
    return seconds, cpu, runtime, measuring


def load() -> str:
    """The 1, 5 and 15-minute load averages: how busy the machine was (times depend on it)."""
    return "load average " + ", ".join(f"{v:.1f}" for v in os.getloadavg())


def _summary(sizes: list[int], fixed: list[str], rounds: int,
             times: dict[tuple[int, str, str], list[float]],
             ratios: dict[tuple[int, str, str], list[float]],
             measured: tuple[dict[int, list[float]], dict[int, list[float]]]) -> None:
    """Print the medians over rounds: times, ratios to the plain twin and the fastest fixed
    configuration, and auto's measuring against its budget (``measured``: shares, seconds)."""
    shares, spent = measured
    print(f"\nwhole-process seconds, median of {rounds} round(s); fastest fixed / auto "
          "(median of each round's ratio)")
    for size in sizes:
        for clock in ("wall", "cpu"):
            cells = ", ".join(f"{k} {statistics.median(times[(size, k, clock)]):.2f}"
                              for k in ["auto", *fixed, "auto warm"])
            print(f"{size}² {clock}: {cells}")
            print(f"{size}² {clock}: {PLAIN} / auto: fresh cache "
                  f"{statistics.median(ratios[(size, 'plain auto', clock)]):.2f}, warm cache "
                  f"{statistics.median(ratios[(size, 'plain auto warm', clock)]):.2f}; "
                  f"fastest fixed / auto: fresh cache "
                  f"{statistics.median(ratios[(size, 'auto', clock)]):.2f}, warm cache "
                  f"{statistics.median(ratios[(size, 'auto warm', clock)]):.2f}")
        held = sum(t <= DEFAULT_BUDGET_S for t in spent[size])
        print(f"{size}² measuring / auto run (fresh cache): "
              f"{statistics.median(shares[size]):.1%}; measuring {max(spent[size]):.2f} s "
              f"at most against its {DEFAULT_BUDGET_S:g} s budget (held in {held} of "
              f"{len(spent[size])} runs)")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--model", type=Path, help="a model file (default: the demo's, made here)")
    ap.add_argument("--stack", type=Path, help="its input stack (default: the demo's June one)")
    ap.add_argument("--sizes", default="768,4096,8192",
                    help="square sizes in pixels; the stack's own size runs it as it is")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--fixed", default=",".join(FIXED),
                    help="the fixed configurations to run (default: all four; fp32/off, the "
                         "plain twin, always)")
    ap.add_argument("--demo-epochs", type=int, default=15,
                    help="epochs of the demo model when it is made here")
    args = ap.parse_args(argv)
    if (args.model is None) != (args.stack is None):
        ap.error("give both --model and --stack, or neither (the demo's are made)")
    sizes = sorted({int(s) for s in args.sizes.split(",")}, reverse=True)
    fixed = {k: FIXED[k] for k in args.fixed.split(",") if k}
    if PLAIN not in fixed or set(args.fixed.split(",")) - set(FIXED):
        ap.error(f"--fixed takes some of {', '.join(FIXED)}, {PLAIN} (the plain twin) among "
                 "them")
    with tempfile.TemporaryDirectory(prefix="bench_auto_") as tmp:
        work = Path(tmp)
        model, stack = ((args.model, args.stack) if args.model is not None
                        else demo_model(work / "demo", args.demo_epochs))
        stacks = {size: tiled_stack(stack, size, work) for size in sizes}
        times: dict[tuple[int, str, str], list[float]] = {}  # (size, run, wall|cpu)
        shares: dict[int, list[float]] = {}  # auto's measuring / its wall time, by size
        spent: dict[int, list[float]] = {}  # auto's measuring seconds, by size
        ratios: dict[tuple[int, str, str], list[float]] = {}
        for r in range(args.rounds):
            largest: Path | None = None
            for size in sizes:
                fresh = work / f"cache_{r}_{size}"
                row: dict[tuple[str, str], float] = {}
                for name, extra in [("auto", []), *fixed.items(), ("auto warm", [])]:
                    cache = work / f"cache_{r}_{size}_{name.replace('/', '_')}"
                    note = ""
                    if name == "auto":
                        cache = fresh
                    elif name == "auto warm":
                        source = fresh
                        if not (fresh / "isamap" / "autotune.json").exists() and largest:
                            source, note = largest, f" (cache of the {sizes[0]}² run)"
                        if source.exists():
                            shutil.copytree(source, cache)
                    wall, cpu, runtime, measuring = predict(model, stacks[size], extra, cache,
                                                            work)
                    for clock, value in (("wall", wall), ("cpu", cpu)):
                        row[name, clock] = value
                        times.setdefault((size, name, clock), []).append(value)
                    if name == "auto":
                        shares.setdefault(size, []).append(measuring / wall)
                        spent.setdefault(size, []).append(measuring)
                    print(f"round {r + 1} {size}² {name:9s} {wall:7.2f} s wall {cpu:7.2f} s CPU"
                          f"  runtime {runtime}, measuring {measuring:.1f} s{note}; "
                          f"{load()}", flush=True)
                if largest is None:
                    largest = fresh
                for clock in ("wall", "cpu"):
                    fastest = min(row[k, clock] for k in fixed)
                    for kind in ("auto", "auto warm"):
                        ratios.setdefault((size, kind, clock), []).append(
                            fastest / row[kind, clock])
                        ratios.setdefault((size, f"plain {kind}", clock), []).append(
                            row[PLAIN, clock] / row[kind, clock])
        _summary(sizes, list(fixed), args.rounds, times, ratios, (shares, spent))
        print(load())


if __name__ == "__main__":
    main()
