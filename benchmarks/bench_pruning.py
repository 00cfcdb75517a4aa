"""Benchmark: FPGM-pruned vs unpruned HRNet inference on this CPU, side by side.

Measured in one run:
- parameters and forward FLOPs (``torch.utils.flop_counter``) of the land-cover HRNet
  (C = 18, the default) before and after 40 % FPGM pruning of its prunable convolutions;
- inference patches/s of both networks in every setting ``--precision auto`` chooses among
  on this device (``engine.autotune.candidates``: fp32 / bf16 autocast x NCHW / NHWC),
  each as trained and with its batch norms folded into the convolutions
  (``training.models.blocks.fold_batchnorm``, an inference-only transformation both networks
  get alike); the two networks run back to back, round after round: patches/s is each
  network's best round, and the speed-up is the **median over rounds of the paired ratio**
  (unpruned time / pruned time of the same round), which a burst of load on a shared machine
  moves far less than a ratio of best times;
- where the time goes at the fastest setting with folded batch norms: each part's time
  (convolutions, norms, ReLUs, sums) and convolution FLOPs in both networks; and the
  bilinear up-sampling alone, PyTorch's bf16 kernel against ``blocks.resize_bilinear``;
  and what the fused residual block ends (``training.models.fused``) give each network
  there, against the same networks on the plain ops;
- the setting ``engine.autotune.choose`` (what ``isamap-predict --precision auto`` runs,
  measured afresh, cache off) picks for each network; the headline compares the two at the
  unpruned network's choice, the fastest precision and layout (bar: pruned >= 1.5x faster),
  and the fastest setting of all, ``torch.compile`` included, is printed too;
- the accuracy change that pruning costs, from the real-data experiment
  (``python -m experiments.landcover_pruning``; read from its ``metrics.json`` when present,
  else run here with one seed and a short budget, and labelled so).

Weights: the speed does not depend on their values; the pruned network is the compact
model that ``training.pruning.compact_model`` builds from an FPGM-masked copy.

Run: ``.venv/bin/python benchmarks/bench_pruning.py``: 512 px patches in batches of 8, what
``isamap-predict`` runs by default, 5 paired rounds (``--size 128 --batch 2`` for a quick
look).
One torch thread by default: on a shared 2-core machine two OpenMP threads per process spin
against other jobs and make every convolution tens of times slower, for both networks.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from engine import autotune
from engine.execution import Setting
from experiments.srcompare import default_data_dir
from gee_export.contract.label_schemes import LANDCOVER_CLASSES
from training.modelfile import ModelMeta
from training.models import create_model, fused
from training.models.blocks import fold_batchnorm
from training.pruning import (
    PRUNING_RULE,
    compact_model,
    flop_count,
    fpgm_step,
    parameter_count,
)

ROOT = Path(__file__).resolve().parent.parent

BANDS = ("Red", "Green", "Blue", "NearInfrared")


def networks(width: int, rate: float) -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    full = create_model("hrnet", len(BANDS), len(LANDCOVER_CLASSES), width=width).eval()
    masked = create_model("hrnet", len(BANDS), len(LANDCOVER_CLASSES), width=width).eval()
    masked.load_state_dict(full.state_dict())
    fpgm_step(masked, rate)
    meta = ModelMeta("hrnet", len(BANDS), len(LANDCOVER_CLASSES), BANDS, (0.0,) * 4,
                     (1.0,) * 4, "landcover", LANDCOVER_CLASSES, model_kwargs={"width": width})
    small, _ = compact_model(masked, meta)
    return full, small.eval()


CPU = torch.device("cpu")


def configurations() -> list[tuple[str, Setting, bool]]:
    """(name, autotune setting, BN folded) of every eager configuration to time."""
    return [(config_name(s, fold), s, fold) for fold in (False, True)
            for s in autotune.candidates(CPU, "auto", "auto")]


def config_name(setting: Setting, fold: bool) -> str:
    return f"{setting.label}{'/BN folded' if fold else ''}"


def one_pass(net: torch.nn.Module, x: torch.Tensor, setting: Setting) -> float:
    with torch.inference_mode(), setting.autocast("cpu"):
        start = time.perf_counter()
        net(x)
        return time.perf_counter() - start


def auto_choices(full, small, batch: int, size: int) -> tuple[str, str]:
    """What ``isamap-predict`` (``--precision auto --channels-last auto``) runs for each
    network: its batch norms folded (``inference.predict.runtime.TilePredictor`` folds them), the
    setting measured afresh (cache off)."""
    x = torch.randn(batch, len(BANDS), size, size)
    labels = []
    for net in (full, small):
        setting = autotune.choose(fold_batchnorm(net), x, CPU, cache=False).setting
        labels.append(config_name(Setting(setting.precision, setting.channels_last), True))
    return labels[0], labels[1]


def time_pair(name: str, nets, setting: Setting, batch: int, size: int, rounds: int,
              rates: dict[str, tuple[float, float, float]]) -> None:
    """Best patches/s of both networks and the median paired speed-up, into ``rates``."""
    fmt = setting.memory_format
    x = torch.randn(batch, len(BANDS), size, size).contiguous(memory_format=fmt)
    for net in nets:
        one_pass(net, x, setting)  # warm-up: oneDNN primitive creation (or compilation)
    times = [(one_pass(nets[0], x, setting), one_pass(nets[1], x, setting))
             for _ in range(rounds)]
    ratio = float(np.median([a / b for a, b in times]))
    rates[name] = (batch / min(a for a, _ in times), batch / min(b for _, b in times), ratio)
    print(f"  {name:<39} unpruned {rates[name][0]:7.2f} patches/s   pruned "
          f"{rates[name][1]:7.2f} patches/s   speed-up x{ratio:.2f} (median of "
          f"{rounds} paired rounds)", flush=True)


def speed(full, small, batch: int, size: int, rounds: int, compiled: int
          ) -> dict[str, tuple[float, float, float]]:
    """Per configuration: best patches/s of each network and the median paired speed-up.

    Every eager setting, as trained and with batch norms folded; then the ``compiled``
    fastest folded settings again under ``torch.compile`` (``isamap-predict --compile``),
    which fuses element-wise work into the convolutions; measured, that helps the unpruned
    network more (a lower speed-up compiled than eager: docs/landcover.md).
    """
    rates: dict[str, tuple[float, float, float]] = {}
    folded = (fold_batchnorm(full), fold_batchnorm(small))
    for name, setting, fold in configurations():
        nets = [net.to(memory_format=setting.memory_format)
                for net in (folded if fold else (full, small))]
        time_pair(name, nets, setting, batch, size, rounds, rates)
    by_label = {name: (setting, fold) for name, setting, fold in configurations()}
    eager_folded = sorted((k for k in rates if "folded" in k), key=lambda k: -rates[k][1])
    for name in eager_folded[:compiled]:
        setting, _ = by_label[name]
        nets = [torch.compile(net.to(memory_format=setting.memory_format)) for net in folded]
        time_pair(f"{name}/compiled", nets, setting, batch, size, rounds, rates)
    return rates


def parts(net: torch.nn.Module) -> dict[str, str]:
    """``{module name: part}`` for the disjoint HRNet modules the breakdown times."""
    found = {"stem": "stem", "layer1": "stage 1 bottlenecks", "head": "head"}
    for s in ("stage2", "stage3", "stage4"):
        found[f"{s}.transition"] = "transitions"
        for m, module in enumerate(net.get_submodule(s).modules_):
            found[f"{s}.modules_.{m}.fuse"] = "fusions"
            for b, branch in enumerate(module.branches):
                for k in range(len(branch)):
                    found[f"{s}.modules_.{m}.branches.{b}.{k}"] = (
                        "blocks read by a fusion" if k == len(branch) - 1
                        else "blocks followed by a block")
    return found


def part_flops(net: torch.nn.Module, size: int) -> dict[str, float]:
    """Convolution GFLOPs per patch of each part (an NCHW pass, so every conv is a module call)."""
    from collections import defaultdict

    owner = parts(net)
    flops: dict[str, float] = defaultdict(float)
    hooks = []
    for name, m in net.named_modules():
        if isinstance(m, torch.nn.Conv2d):
            part = next((p for prefix, p in owner.items() if name.startswith(prefix + ".")),
                        "everything else")
            hooks.append(m.register_forward_hook(
                lambda m, i, out, part=part, flops=flops: flops.__setitem__(
                    part, flops[part] + 2 * out[0].numel() * m.weight[0].numel() / 1e9)))
    with torch.inference_mode():
        net.to(memory_format=torch.contiguous_format)(torch.zeros(1, len(BANDS), size, size))
    for h in hooks:
        h.remove()
    return flops


def breakdown(full, small, batch: int, size: int, rounds: int, name: str) -> None:
    """Time and convolution FLOPs per part of both networks at one setting.

    Forward hooks time each part (stem, stage 1, transitions, residual blocks, fusions,
    head: their convolutions, norms, ReLUs and sums), best of ``rounds``; "everything else" is
    the pass's best time minus the parts (the final up-sampling, autocast's casts). Says
    where the speed-up stops following the FLOPs.
    """
    import time
    from collections import defaultdict

    setting = next(s for label, s, _ in configurations() if label == name.split("/BN")[0])
    fmt = setting.memory_format
    x = torch.randn(batch, len(BANDS), size, size).contiguous(memory_format=fmt)
    table = []
    for net in (full, small):
        flops = part_flops(net, size)
        net = (fold_batchnorm(net) if "folded" in name else net).to(memory_format=fmt)
        times: dict[str, list[float]] = defaultdict(list)
        started: dict[str, float] = {}
        hooks = []
        for module in parts(net):
            m = net.get_submodule(module)
            hooks.append(m.register_forward_pre_hook(
                lambda m, i, module=module, started=started: started.__setitem__(
                    module, time.perf_counter())))
            hooks.append(m.register_forward_hook(
                lambda m, i, out, module=module, started=started, times=times:
                times[module].append(time.perf_counter() - started[module])))
        one_pass(net, x, setting)
        passes = [one_pass(net, x, setting) for _ in range(rounds)]
        for h in hooks:
            h.remove()
        ms: dict[str, float] = defaultdict(float)
        for module, part in parts(net).items():
            ms[part] += 1e3 * min(times[module][1:])
        ms["everything else"] = 1e3 * min(passes) - sum(ms.values())
        table.append((ms, flops))
    print(f"where the time goes at {name} (ms per batch; conv GFLOPs per patch):")
    for part in table[0][0]:
        tu, tp = table[0][0][part], table[1][0][part]
        fu, fp = table[0][1].get(part, 0.0), table[1][1].get(part, 0.0)
        flops_text = f"   {fu:5.2f} -> {fp:5.2f} G (x{fu / fp:.2f})" if fu and fp else ""
        print(f"  {part:<28} {tu:7.1f} -> {tp:7.1f} ms (x{tu / tp:.2f}){flops_text}")


def fused_ends(full, small, batch: int, size: int, rounds: int, name: str) -> None:
    """What the fused residual block ends give each network (``training.models.fused``).

    At one folded setting, paired as above: the networks as ``isamap-predict`` runs them
    (each residual block's last convolution, sum and ReLU in one oneDNN pass writing into the
    stream; a pruned block's sum into its kept channels as an exact one-hot 1x1 convolution
    fused the same way, or an in-place scatter where that measured faster for the shape)
    and the same networks on the plain ops (``fused.disabled()``: the
    convolution, a sum or a scatter-add, a ReLU). Only channels-last settings fuse.
    """
    setting = next(s for label, s, _ in configurations() if label == name.split("/BN")[0])
    if not setting.channels_last:
        print(f"fused block ends: not used at {name} (NCHW keeps the plain ops)")
        return
    nets = [fold_batchnorm(n).to(memory_format=setting.memory_format) for n in (full, small)]
    rates: dict[str, tuple[float, float, float]] = {}
    print(f"fused residual block ends at {name}:")
    time_pair("fused (as built)", nets, setting, batch, size, rounds, rates)
    with fused.disabled():
        time_pair("plain ops", nets, setting, batch, size, rounds, rates)
    (fu, fp, fr), (pu, pp, pr) = rates["fused (as built)"], rates["plain ops"]
    print(f"  fusing makes the unpruned network x{fu / pu:.2f} and the pruned one x{fp / pp:.2f} "
          f"faster (best rounds); the speed-up goes from x{pr:.2f} to x{fr:.2f}")


def _best_ms(fn, reps: int = 15) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * min(times)


def resize_costs(batch: int, size: int, width: int) -> None:
    """Bilinear up-sampling at this run's shapes (bf16/NHWC), timed alone: PyTorch's bf16
    kernel against ``blocks.resize_bilinear`` (fp32 inside, rounded once), for the head's
    logits to the patch size and two of the fusions' up-samplings to the finest branch."""
    from training.models.blocks import resize_bilinear

    side = size // 4  # the finest branch
    print("bilinear up-sampling alone (bf16/nhwc, ms):")
    with torch.inference_mode():
        for shape, to in (((batch, len(LANDCOVER_CLASSES), side, side), (size, size)),
                          ((batch, width, side // 2, side // 2), (side, side)),
                          ((batch, width, side // 8, side // 8), (side, side))):
            x = torch.randn(shape).bfloat16().contiguous(memory_format=torch.channels_last)
            kernel = _best_ms(lambda x=x, to=to: torch.nn.functional.interpolate(
                x, size=to, mode="bilinear", align_corners=False))
            ours = _best_ms(lambda x=x, to=to: resize_bilinear(x, to))
            print(f"  {tuple(shape)} -> {to}: bf16 kernel {kernel:.2f}, resize_bilinear "
                  f"{ours:.2f} (x{kernel / ours:.2f})")


def accuracy_changes(folders: list[Path], data_dir: str) -> list[tuple[str, dict]]:
    """OA of hrnet and pruned hrnet from each experiment folder (mean ± std over seeds).

    Results made with an earlier pruning rule (``training.pruning.PRUNING_RULE``) say so.
    Folders without results are skipped; with none at all, a one-seed, 60-iteration run is
    made in the first (a quick look, labelled so, not the documented result).
    """
    from experiments.landcover_pruning import LandCoverCompareConfig, run_experiment

    found = []
    for folder in folders:
        path = folder / "metrics.json"
        if path.exists():
            report = json.loads(path.read_text())
            stem = report["config"]["model"].get("stem_norm", "instance")
            rule = report.get("pruning_rule", 1)
            older = "" if rule == PRUNING_RULE else (
                f"; pruned with rule {rule}, before residual outputs were pruned: re-run "
                "python -m experiments.landcover_pruning for the current one")
            found.append((f"{path} ({stem} stem{older})", report))
    if not found:  # in a folder of its own: never over a documented experiment's results
        quick = Path("bench_output") / "lccompare_quick"
        cfg = LandCoverCompareConfig(data_dir=data_dir, seeds=(0,), iterations=60,
                                     prune_iterations=20)
        report = run_experiment(cfg, quick)
        found.append((f"{quick / 'metrics.json'}, run now: one seed, 60 iterations "
                      "(a quick look, not the result)", report))
    return [(source, {m: r["summary"][m]["OA"] for m in ("hrnet", "hrnet pruned")})
            for source, r in found]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--width", type=int, default=18,
                   help="HRNet C (18: HRNetV2-W18, the documented figures; 24: what "
                   "isamap-train --model hrnet builds)")
    p.add_argument("--rate", type=float, default=0.4)
    p.add_argument("--size", type=int, default=512,
                   help="patch side in pixels (512: isamap-predict's --tile; the paper crops 513)")
    p.add_argument("--batch", type=int, default=8, help="8: isamap-predict's --batch-size")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    p.add_argument("--compiled", type=int, default=1,
                   help="also time the n fastest folded settings under torch.compile (0: none)")
    p.add_argument("--results", nargs="+", default=[str(ROOT / "lccompare_output"),
                                                     str(ROOT / "lccompare_output_bn"),
                                                     str(ROOT / "lccompare_output_bn_x3")],
                   help="experiments.landcover_pruning output folders with metrics.json")
    p.add_argument("--data-dir", default=str(default_data_dir()))
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    warnings.filterwarnings("ignore")
    full, small = networks(a.width, a.rate)
    pf, ps = parameter_count(full), parameter_count(small)
    ff, fs = flop_count(full, len(BANDS), a.size), flop_count(small, len(BANDS), a.size)
    print(f"hrnet C={a.width}, FPGM {100 * a.rate:g} % of prunable filters, {a.size} px "
          f"patches, batch {a.batch}, {torch.get_num_threads()} threads")
    print(f"parameters  {pf:>12,} -> {ps:>12,}  ({100 * (1 - ps / pf):.1f} % fewer)")
    print(f"FLOPs/patch {ff / 1e9:>10.2f} G -> {fs / 1e9:>10.2f} G  (x{ff / fs:.2f} fewer)")
    auto_full, auto_small = auto_choices(full, small, a.batch, a.size)
    print(f"isamap-predict --precision auto runs {auto_full} (unpruned) and {auto_small} "
          "(pruned)")
    rates = speed(full, small, a.batch, a.size, a.rounds, a.compiled)
    u, pr, ratio = rates[auto_full]
    print(f"as isamap-predict runs them, at auto's choice of precision and layout for the "
          f"unpruned network ({auto_full}): {u:.2f} -> {pr:.2f} patches/s, pruned "
          f"x{ratio:.2f} faster (bar: >= 1.5x)")
    best_u = max(rates, key=lambda k: rates[k][0])
    best_p = max(rates, key=lambda k: rates[k][1])
    same = f"both at {best_u}, paired" if best_u == best_p else (
        f"unpruned at {best_u}, pruned at {best_p}, ratio of best times")
    speedup = rates[best_u][2] if best_u == best_p else rates[best_p][1] / rates[best_u][0]
    print(f"each network at its fastest setting, torch.compile included ({same}): "
          f"{rates[best_u][0]:.2f} -> {rates[best_p][1]:.2f} patches/s, pruned "
          f"x{speedup:.2f} faster")
    fastest = max((k for k in rates if k.endswith("folded")), key=lambda k: rates[k][0])
    breakdown(full, small, a.batch, a.size, a.rounds, fastest)
    resize_costs(a.batch, a.size, a.width)
    fused_ends(full, small, a.batch, a.size, a.rounds, fastest)
    for source, oa in accuracy_changes([Path(r) for r in a.results], a.data_dir):
        h, q = oa["hrnet"], oa["hrnet pruned"]
        print(f"accuracy (OA at 1 m, mean ± std over seeds) from {source}:\n"
              f"  hrnet {100 * h['mean']:.2f} ± {100 * h['std']:.2f} %, pruned "
              f"{100 * q['mean']:.2f} ± {100 * q['std']:.2f} %, change "
              f"{100 * (q['mean'] - h['mean']):+.2f} points")


if __name__ == "__main__":
    main()
