"""Benchmark: the papers' models at their widths, training and inference, ``auto`` next to every
fixed configuration, as GFLOP/s and a fraction of this machine's measured peak.

Measured in one run, side by side:
- the machine's peak: fp32 (and bf16/fp16 where native) GEMM and 3x3-convolution rates
  (``peak.measure_peak``);
- each model's FLOPs per patch (``torch.utils.flop_counter``), forward and forward+backward;
- for unet, crofusenet, runetpp and srseg (x10), inference and training steps (forward, loss,
  backward, Adam) of every fixed configuration (CPU: fp32/bf16 x NCHW/NHWC; CUDA: also fp16
  and cudnn.benchmark) timed in turns, and the configuration ``auto`` picks
  (``engine.autotune.choose``, measured afresh, cache off) on the same batch;
- with ``--compile``, the fastest fixed inference configuration compiled as well
  (``engine.compiled``: inductor, frozen weights), with its compile time, and ``auto``'s
  choice run compiled (``--compile`` compiles whatever runs; it is not measured);
- with ``--int8`` (CPU), each model quantized to int8 as ``--precision int8`` runs it (batch
  norms folded, calibrated, compiled), timed in turns with ``auto``'s choice on the folded
  model, with its agreement with fp32 (``auto`` never takes int8);
- patches/s, km²/s of 10 m input, GFLOP/s and % of the peak for each, and auto's speed as a
  fraction of the fastest fixed configuration (the bar: >= 0.9).

Run: ``.venv/bin/python benchmarks/bench_models.py`` (``--quick`` for a smoke run,
``--device cuda`` on a GPU, ``--compile`` for the compiled rows, ``--int8`` for the int8 rows,
``--patch 512`` for the prediction tile). Absolute numbers depend on the machine's load; the
ratios are measured side by side in one run. Compile times depend on inductor's cache
(``TORCHINDUCTOR_CACHE_DIR``, else ``isamap/inductor`` in the user cache): the first run fills
it.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

import torch
from model_cases import PATCH, build
from peak import count_flops, measure_peak, native_precisions

from engine import autotune, quantize
from engine.compiled import CompileError, compile_for_inference
from engine.devices import resolve_device
from engine.measuring import borrowed_runner
from engine.setting import Mode, Setting, TrainStep
from training.models.blocks import fold_batchnorm


def time_settings(model: torch.nn.Module, example: torch.Tensor, device: torch.device,
                  settings: Iterable[Setting], *, mode: Mode = "inference",
                  step: TrainStep | None = None, rounds: int = 3) -> dict[Setting, float]:
    """Seconds per call of each setting on the whole ``example``, measured as ``auto`` does.

    Every setting runs once untimed, then ``rounds`` times in turns (so a busy machine slows
    them alike), keeping its best time: what this benchmark puts next to ``auto``'s choice;
    the model and the process's threads and cuDNN flags are left as they were
    (:func:`engine.measuring.borrowed_runner`).
    """
    settings = list(settings)
    with borrowed_runner(model, example, device, mode, step) as runner:
        for s in settings:
            runner.call(s, runner.example)()
        best = dict.fromkeys(settings, math.inf)
        for _ in range(max(rounds, 1)):
            for s in settings:
                run = runner.call(s, runner.example)
                t0 = time.perf_counter()
                run()
                best[s] = min(best[s], time.perf_counter() - t0)
    return best


def bench(name: str, args: argparse.Namespace, device: torch.device, peak) -> dict:
    patch = 32 if args.quick else args.patch or PATCH[name]
    model, x, step = build(name, args.batch, patch, device)
    area = (patch * 10.0) ** 2 / 1e6  # km² of 10 m input per patch
    out: dict = {"patch": patch, "batch": args.batch}
    for mode in args.modes.split(","):
        flops = count_flops(model, x, None if mode == "inference" else (
            lambda o: step.loss(o, {**step.targets, "image": x})))
        t0 = time.perf_counter()
        choice = autotune.choose(model, x, device, mode=mode, step=step, cache=False,
                                 compile=args.compile and mode == "inference",
                                 budget_s=args.budget)
        tune_s = time.perf_counter() - t0
        fixed = autotune.candidates(device, "auto", "auto")
        settings = fixed + ([choice.setting] if choice.setting not in fixed else [])
        times = time_settings(model, x, device, settings, mode=mode, step=step,
                              rounds=args.rounds)
        best = min(fixed, key=times.__getitem__)
        compile_s = {}
        if args.compile and mode == "inference":
            # the fastest fixed configuration compiled, timed beside the eager ones
            fast = replace(best, compile=True)
            compile_s[fast] = compile_seconds(model, x, fast)
            if compile_s[fast] is not None:
                again = time_settings(model, x, device, [best, fast, *(
                    [choice.setting] if choice.setting not in (best, fast) else [])],
                                      mode=mode, rounds=args.rounds)
                times.update(again)
                settings += [fast] if fast not in settings else []
        rows = {}
        for s in settings:
            t = times[s]
            gflops = flops / t / 1e9
            rows[s.label] = {"patches_per_s": args.batch / t, "km2_per_s": args.batch * area / t,
                             "gflops": gflops, "peak_fraction": gflops / peak.of(s.precision)}
            if s.compile and (s in compile_s or s == choice.setting):
                rows[s.label]["compile_s"] = compile_s.get(s) or choice.compile_seconds
        out[mode] = {"gflop_per_patch": flops / args.batch / 1e9, "auto": choice.label,
                     "auto_source": choice.source, "tune_s": round(tune_s, 2),
                     "best_fixed": best.label,
                     "auto_vs_best": times[best] / times[choice.setting], "rows": rows}
        if args.int8 and mode == "inference":
            out[mode]["int8"] = int8_row(model, x, choice.setting, flops, area, args, peak)
            rows[INT8] = out[mode]["int8"].pop("row")
    return out


#: the label of the int8 row
INT8 = "int8 (compiled)"


def int8_row(model, x: torch.Tensor, auto: autotune.Setting, flops: float, area: float,
             args: argparse.Namespace, peak) -> dict:
    """int8 as ``isamap-predict`` runs it, timed in turns with ``auto``'s choice.

    Both run the model with its batch norms folded (what the predictor runs); ``auto`` never
    takes int8 (``--precision int8`` does). Agreement: against fp32, on noise batches
    other than the calibration ones (random weights: near-tied logits flip easily).
    """
    from bench_int8 import best_in_turns, float_call, quantized  # int8's bench builds on this

    folded = fold_batchnorm(copy.deepcopy(model).eval())
    compiled, quantize_s, compile_s, figures, _ = quantized(folded, x, args.calibration)
    best = best_in_turns({"auto": float_call(folded, x, auto), "int8": lambda: compiled(x)},
                         args.rounds)
    t = best["int8"]
    ops = flops / t / 1e9
    return {"row": {"patches_per_s": args.batch / t, "km2_per_s": args.batch * area / t,
                    "gflops": ops, "peak_fraction": ops / peak.of("int8"),
                    "compile_s": compile_s},
            "vs_auto_folded": best["auto"] / t,
            "quantize_s": quantize_s, "compile_s": compile_s,
            "class_agreement": figures.class_agreement,
            "isa_f1_vs_fp32": figures.isa_f1_vs_fp32, "check_pixels": figures.pixels}


def compile_seconds(model, x: torch.Tensor, setting: autotune.Setting) -> float | None:
    """Seconds to compile ``model`` for ``x`` in ``setting`` (None: it failed, logged).

    The graph is kept for this model and shape, so the timing that follows does not compile
    again (``engine.compiled``).
    """
    model.eval().to(memory_format=setting.memory_format)
    try:
        return compile_for_inference(model, x.contiguous(memory_format=setting.memory_format),
                                     autocast=setting.autocast_dtype).compile_seconds
    except CompileError as exc:
        print(f"  {setting.label}: {exc}")
        return None


def show(name: str, r: dict) -> None:
    none = {"gflop_per_patch": 0.0, "rows": {}, "auto": "", "auto_vs_best": float("nan"),
            "best_fixed": "-", "tune_s": 0.0}
    inf, tr = r.get("inference", none), r.get("training", none)
    print(f"\n{name}  ({r['patch']} px patches, batch {r['batch']}; "
          f"{inf['gflop_per_patch']:.2f} GFLOP/patch inference, "
          f"{tr['gflop_per_patch']:.2f} training)")
    print(f"  {'config':<22}{'inference: patch/s':>19}{'km²/s':>8}{'GFLOP/s':>9}{'%peak':>7}"
          f"{'training: patch/s':>19}{'km²/s':>8}{'GFLOP/s':>9}{'%peak':>7}"
          f"{'compile s':>10}")
    labels = list(dict.fromkeys([*inf["rows"], *tr["rows"]]))
    for label in labels:
        cells = []
        for m in (inf, tr):
            row = m["rows"].get(label)
            cells.append("".join(f"{v:>{w}}" for v, w in (
                (f"{row['patches_per_s']:.2f}", 19), (f"{row['km2_per_s']:.2f}", 8),
                (f"{row['gflops']:.0f}", 9), (f"{100 * row['peak_fraction']:.0f}", 7)))
                         if row else " " * 43)
        marks = "".join(f" <- auto {m}" for m, d in (("inference", inf), ("training", tr))
                        if d["auto"] == label)
        compiled = inf["rows"].get(label, {}).get("compile_s")
        compiled = f"{compiled:>10.1f}" if compiled else " " * 10
        print(f"  {label:<22}{cells[0]}{cells[1]}{compiled}{marks}")
    q = inf.get("int8")
    if q:
        print(f"  int8: {q['vs_auto_folded']:.2f}x auto's choice (both folded); "
              f"quantized in {q['quantize_s']:.1f} s, compiled in {q['compile_s']:.1f} s; "
              f"against fp32: class agreement {100 * q['class_agreement']:.2f} %, impervious "
              f"F1 {q['isa_f1_vs_fp32']:.4f} (random weights, noise inputs)")
    print(f"  auto / fastest fixed: inference {inf['auto_vs_best']:.2f} ({inf['auto']} vs "
          f"{inf['best_fixed']}, measured in {inf['tune_s']:.1f} s), training "
          f"{tr['auto_vs_best']:.2f} ({tr['auto']} vs {tr['best_fixed']}, "
          f"{tr['tune_s']:.1f} s)   (bar >= 0.9)")


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default="unet,crofusenet,runetpp,srseg")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch", type=int, help="patches per call (default 4 CPU, 32 GPU)")
    p.add_argument("--rounds", type=int, default=3, help="timed calls per configuration")
    p.add_argument("--budget", type=float, default=autotune.DEFAULT_BUDGET_S,
                   help="auto's measuring budget (s)")
    p.add_argument("--compile", action="store_true",
                   help="time the fastest fixed inference configuration compiled too (inductor, "
                        "frozen weights), and let auto try it")
    p.add_argument("--int8", action="store_true",
                   help="CPU: also run each model quantized to int8 (--precision int8), with "
                        "its agreement with fp32 and whether auto would take it")
    p.add_argument("--calibration", type=int, default=4,
                   help="with --int8: calibration batches (as many again check agreement)")
    p.add_argument("--modes", default="inference,training",
                   help="inference, training or both (comma-separated)")
    p.add_argument("--patch", type=int, help="input patch side for every model (default: "
                   "128 px, srseg 64 px)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 32 px patches, batch 2, one round, short peak")
    p.add_argument("--out", type=Path, default=Path("bench_output"))
    args = p.parse_args(argv)
    device = resolve_device(args.device)
    if args.quick:
        args.batch, args.rounds = args.batch or 2, 1
    args.batch = args.batch or (32 if device.type == "cuda" else 4)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    if args.int8:
        quantize.check_int8(device)  # a CUDA device, no VNNI, no torchao: said before any work
    precisions = [*native_precisions(device), "int8"] if args.int8 else None
    peak = measure_peak(device, precisions, seconds=0.2 if args.quick else 1.0)
    print(f"peak  {peak.summary()}  (measured in {peak.seconds:.0f} s)")
    results = {"device": peak.device, "torch": torch.__version__,
               "peak_gflops": {"gemm": peak.gemm, "conv3x3": peak.conv}, "models": {}}
    for name in args.models.split(","):
        results["models"][name] = bench(name, args, device, peak)
        show(name, results["models"][name])
    worst = min(r[m]["auto_vs_best"] for r in results["models"].values()
                for m in args.modes.split(","))
    print(f"\nworst auto / fastest fixed over all models and modes: {worst:.2f} (bar >= 0.9)")
    args.out.mkdir(parents=True, exist_ok=True)
    name = f"bench_models_{device.type}{'_quick' if args.quick else ''}.json"
    (args.out / name).write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
