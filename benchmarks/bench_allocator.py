"""Benchmark: a model's forward with freed memory kept for reuse vs given back, in one process.

``isamap-predict``, ``isamap-map``, ``isamap-evaluate`` and ``isamap-train`` keep freed memory
on CPU (``engine.allocator.keep_freed_memory``, applied by ``engine.autotune``).
This measures what that buys, side by side in one run, for each model at the shape the
predictors run it:

- first the C library's start-up defaults, untouched (``pristine``: glibc's mmap threshold
  still rising by itself), in a fresh child process per model;
- then, in the same child, rounds alternating ``given back`` (both thresholds at glibc's
  start-up 128 KiB, free heap released:
  :func:`~engine.allocator.give_back_freed_memory`) and ``kept``;

each with the forward's best time, its minor page faults per call (``getrusage``) and the
ratio given back / kept. Peak RSS of whole runs with and without the setting is a question
for ``bench_inference.py`` and ``bench_mapping.py`` (``ISAMAP_KEEP_FREED_MEMORY=off``).

Run: ``.venv/bin/python benchmarks/bench_allocator.py`` (about a minute on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch
from peak import native_precisions

from engine import allocator
from engine.execution import Setting
from training.models import create_model
from training.models.blocks import fold_batchnorm

MODELS = {  # name: (registry name, bands, classes, kwargs, batch, tile: None = --tile)
    "unet (bench_inference's)": ("unet", 6, 2, {"widths": (8, 16, 32, 64, 128)}, 4, None),
    "unet": ("unet", 6, 2, {}, 1, None),
    "hrnet": ("hrnet", 4, 7, {}, 1, None),
    # 10 m input, outputs 10x finer: bench_models' patch (64 px in, 640 px out)
    "srseg x10": ("srseg", 6, 2, {"scale": 10, "bands": ["B2", "B3", "B4", "B8", "VV", "VH"]},
                  4, 64),
}


def one_call(net: torch.nn.Module, x: torch.Tensor, setting: Setting) -> tuple[float, int]:
    """Seconds and minor page faults of one forward."""
    with torch.inference_mode(), setting.autocast("cpu"):
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        start = time.perf_counter()
        net(x)
        seconds = time.perf_counter() - start
        return seconds, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults


def best(calls: list[tuple[float, int]]) -> tuple[float, int]:
    """Best time and the median fault count of ``calls``."""
    faults = sorted(f for _, f in calls)
    return min(t for t, _ in calls), faults[len(faults) // 2]


def measure(name: str, tile: int, rounds: int, setting: Setting) -> dict:
    """Best time and median faults of one model's forward: untouched defaults first, then
    rounds alternating given back / kept (this process has run nothing else before)."""
    arch, bands, classes, kwargs, batch, own_tile = MODELS[name]
    tile = own_tile or tile
    torch.manual_seed(0)
    net = fold_batchnorm(create_model(arch, bands, classes, **kwargs).eval())
    net = net.to(memory_format=torch.channels_last)
    x = torch.randn(batch, bands, tile, tile).contiguous(memory_format=torch.channels_last)
    one_call(net, x, setting)
    results = {"pristine": best([one_call(net, x, setting) for _ in range(rounds)])}
    calls: dict[str, list] = {"given back": [], "kept": []}
    for _ in range(rounds):
        for mode in calls:
            if mode == "kept":
                allocator.keep_freed_memory()
            else:
                allocator.give_back_freed_memory()
            one_call(net, x, setting)  # the first call after a switch
            calls[mode].append(one_call(net, x, setting))
    results.update({mode: best(c) for mode, c in calls.items()})
    return results


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tile", type=int, default=512)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--precision", choices=("fp32", "bf16"), default=None,
                   help="default: bf16 where this CPU computes it natively, else fp32")
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated, from: "
                   + ", ".join(MODELS))
    p.add_argument("--json", help="also write the results here")
    p.add_argument("--child", help=argparse.SUPPRESS)  # measure one model, print JSON
    a = p.parse_args(argv)
    if a.child:
        print(json.dumps(measure(a.child, a.tile, a.rounds, Setting(a.precision, True))))
        return {}
    precision = a.precision or ("bf16" if "bf16" in native_precisions(torch.device("cpu"))
                                else "fp32")
    setting = Setting(precision, channels_last=True)
    names = [n.strip() for n in a.models.split(",")]
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        p.error(f"--models: unknown {unknown}; choose from {', '.join(MODELS)}")

    results = {}
    for name in names:  # one child per model: each starts from the C library's defaults
        proc = subprocess.run([sys.executable, __file__, "--child", name, "--tile",
                               str(a.tile), "--rounds", str(a.rounds), "--precision", precision],
                              capture_output=True, text=True, check=True)
        results[name] = {mode: tuple(v) for mode, v in
                         json.loads(proc.stdout.strip().splitlines()[-1]).items()}

    print(f"forward of one batch at {setting.label}, {torch.get_num_threads()} threads, "
          f"best of {a.rounds}")
    for name, r in results.items():
        batch, tile = MODELS[name][4], MODELS[name][5] or a.tile
        row = "   ".join(f"{mode} {t * 1e3:7.1f} ms {f:6d} faults" for mode, (t, f) in r.items())
        print(f"  {name:<25} {batch} x {tile} px   {row}   given back / kept "
              f"x{r['given back'][0] / r['kept'][0]:.2f}, pristine / kept "
              f"x{r['pristine'][0] / r['kept'][0]:.2f}")
    out = {"setting": setting.label, "threads": torch.get_num_threads(), "tile": a.tile,
           "models": {n: {m: {"seconds": t, "minor_faults": f} for m, (t, f) in r.items()}
                      for n, r in results.items()}}
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)
    return out


if __name__ == "__main__":
    main()
