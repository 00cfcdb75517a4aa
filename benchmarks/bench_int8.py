"""Benchmark: int8 inference (``--precision int8``) next to bf16 and fp32, in one run.

Measured side by side on the CPU, at the papers' widths and the bench's patch size:
- the machine's peak: fp32, bf16 (where native) and int8 GEMM and 3x3-convolution rates
  (``peak.measure_peak``);
- for each model (BatchNorm folded into its convolutions, as ``isamap-predict`` runs it): fp32
  and bf16 autocast in NHWC (in turns, as ``bench_models.time_settings`` times them) and the
  int8 model of ``engine.quantize`` (export, calibration, conversion, inductor compilation with
  frozen weights) timed after them on the same batch;
- patches/s, GFLOP/s (int8: G operations/s) and the fraction of the peak of each one's own
  precision, int8's speed as a multiple of bf16's, the seconds quantizing and compiling took,
  and int8's agreement with fp32 on check batches other than the calibration ones (class
  agreement and impervious-class F1 against the fp32 map).

The models have random weights and the inputs are Gaussian noise: the agreement figures say
how much int8 changes *these* outputs (near-tied logits of an untrained network flip easily),
not what a trained model's map loses; ``isamap-predict --precision int8`` checks the trained
model on its own validation split before it maps.

Run: ``.venv/bin/python benchmarks/bench_int8.py`` (``--quick``: unet at 32 px). Compilation
is cached (``engine.quantize.inductor_cache_dir``): run it twice to see the second
process's compile time. Absolute numbers depend on the machine's load; the ratios are
measured side by side in one run.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from copy import deepcopy as copy_module
from pathlib import Path

import torch
from model_cases import PATCH, build
from peak import count_flops, measure_peak, native_precisions

from engine import quantize
from engine.execution import Setting
from engine.outputs import main_output
from training.models.blocks import fold_batchnorm


def bench(name: str, args: argparse.Namespace, peak) -> dict:
    cpu = torch.device("cpu")
    patch = 32 if args.quick else PATCH[name]
    model, x, _ = build(name, args.batch, patch, cpu)
    model = fold_batchnorm(model.eval())
    flops = count_flops(model, x)
    compiled, quantize_s, compile_s, figures, check = quantized(model, x, args.calibration)
    reference = quantize.logits(model, check)
    calls = {}
    for p in native_precisions(cpu):
        setting = Setting(p, True)
        calls[(setting.label, p)] = float_call(model, x, setting)
    calls[("int8 (compiled)", "int8")] = lambda: compiled(x)
    best = best_in_turns(calls, args.rounds)
    bf16_agree = None
    if "bf16" in native_precisions(cpu):
        with torch.no_grad(), torch.autocast("cpu", torch.bfloat16):
            bf16 = [main_output(model(b)).float() for b in check]
        bf16_agree = quantize.agreement(reference, bf16, isa_class=1).class_agreement
    rows = {}
    for (label, precision), t in best.items():
        gflops = flops / t / 1e9
        rows[label] = {"patches_per_s": args.batch / t, "gflops": gflops,
                       "peak_fraction": gflops / peak.of(precision), "seconds": t}
    bf16 = rows.get("bf16/nhwc", rows["fp32/nhwc"])
    return {"patch": patch, "batch": args.batch, "gflop_per_patch": flops / args.batch / 1e9,
            "rows": rows, "int8_vs_bf16": bf16["seconds"] / rows["int8 (compiled)"]["seconds"],
            "bf16_class_agreement": bf16_agree,
            "quantize_s": quantize_s, "compile_s": compile_s,
            "class_agreement": figures.class_agreement,
            "isa_f1_vs_fp32": figures.isa_f1_vs_fp32, "check_pixels": figures.pixels}


def quantized(model: torch.nn.Module, x: torch.Tensor, calibration: int):
    """``model`` (batch norms folded) quantized on noise batches shaped like ``x``, compiled.

    Returns the compiled int8 model, the seconds quantizing and compiling took, its
    agreement with fp32 on as many other noise batches, and those check batches.
    """
    g = torch.Generator().manual_seed(1)
    batches = [torch.randn(x.shape, generator=g) for _ in range(2 * calibration)]
    calibrate, check = batches[:calibration], batches[calibration:]
    t0 = time.perf_counter()
    graph = quantize.quantize(model, calibrate)
    quantize_s = time.perf_counter() - t0
    figures = quantize.agreement(quantize.logits(model, check), quantize.logits(graph, check),
                                 isa_class=1)
    compiled, compile_s = quantize.compile_int8(graph, x)
    return compiled, quantize_s, compile_s, figures, check


def best_in_turns(calls: dict, rounds: int) -> dict:
    """Each call's best time over ``rounds``, one call each per round (a busy machine slows
    them alike), after one untimed call each; in inference mode, as int8 was compiled."""
    best = dict.fromkeys(calls, float("inf"))
    with torch.inference_mode():
        for call in calls.values():
            call()
        for _ in range(rounds):
            for key, call in calls.items():
                t0 = time.perf_counter()
                call()
                best[key] = min(best[key], time.perf_counter() - t0)
    return best


def float_call(model: torch.nn.Module, x: torch.Tensor, setting: Setting):
    """One forward of ``model`` in ``setting``'s precision and layout (on its own copy)."""
    copy = copy_module(model).to(memory_format=setting.memory_format)
    xs = x.contiguous(memory_format=setting.memory_format)

    def call() -> None:
        with setting.autocast("cpu"):
            copy(xs)
    return call


def show(name: str, r: dict) -> None:
    print(f"\n{name}  ({r['patch']} px patches, batch {r['batch']}; "
          f"{r['gflop_per_patch']:.2f} GFLOP/patch)")
    print(f"  {'config':<18}{'patch/s':>9}{'GFLOP/s':>9}{'%peak':>7}")
    for label, row in r["rows"].items():
        print(f"  {label:<18}{row['patches_per_s']:>9.2f}{row['gflops']:>9.0f}"
              f"{100 * row['peak_fraction']:>7.0f}")
    bf16 = r["bf16_class_agreement"]
    bf16_text = "-" if bf16 is None else f"{100 * bf16:.2f} %"
    print(f"  int8 / bf16 speed {r['int8_vs_bf16']:.2f}x; quantized in {r['quantize_s']:.1f} s, "
          f"compiled in {r['compile_s']:.1f} s; against fp32 on {r['check_pixels']} pixels: "
          f"class agreement {100 * r['class_agreement']:.2f} % (bf16: {bf16_text}), "
          f"impervious F1 {r['isa_f1_vs_fp32']:.4f} (random weights, noise inputs)")


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default="unet,crofusenet")
    p.add_argument("--batch", type=int, default=4, help="patches per call")
    p.add_argument("--rounds", type=int, default=5, help="timed calls per configuration")
    p.add_argument("--calibration", type=int, default=4,
                   help="calibration batches (as many again check the agreement)")
    p.add_argument("--quick", action="store_true", help="unet at 32 px: a smoke run")
    p.add_argument("--out", type=Path, default=Path("bench_output"))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    cpu = torch.device("cpu")
    quantize.check_int8(cpu)
    peak = measure_peak(cpu, [*native_precisions(cpu), "int8"], seconds=0.3 if args.quick
                        else 1.0)
    print(f"peak (measured now): {peak.summary()}")
    models = ["unet"] if args.quick else [m.strip() for m in args.models.split(",")]
    results = {"device": peak.device, "peak_gemm": peak.gemm, "peak_conv": peak.conv,
               "models": {}}
    for name in models:
        results["models"][name] = r = bench(name, args, peak)
        show(name, r)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_int8.json").write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
