"""Where the pruned and unpruned HRNet spend their time: per-part timings and FLOPs.

The breakdown half of ``benchmarks/bench_pruning.py`` (run that script; this module prints
and returns its tables): forward hooks time each HRNet part (stem, stage 1, transitions,
residual blocks, fusions, head) and count its convolution FLOPs, and the bilinear
up-sampling is timed alone, PyTorch's bf16 kernel against ``blocks.resize_bilinear``.
"""

from __future__ import annotations

import time
from collections import defaultdict

import torch

from engine.execution import Setting
from training.models.blocks import fold_batchnorm, resize_bilinear


def one_pass(net: torch.nn.Module, x: torch.Tensor, setting: Setting) -> float:
    """Seconds of one forward pass of ``net`` on ``x`` at ``setting``."""
    with torch.inference_mode(), setting.autocast("cpu"):
        start = time.perf_counter()
        net(x)
        return time.perf_counter() - start


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


def part_flops(net: torch.nn.Module, bands: int, size: int) -> dict[str, float]:
    """Convolution GFLOPs per patch of each part (an NCHW pass, so every conv is a module call)."""
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
        net.to(memory_format=torch.contiguous_format)(torch.zeros(1, bands, size, size))
    for h in hooks:
        h.remove()
    return flops


def breakdown(full, small, setting: Setting, shape: tuple[int, int, int], rounds: int,
              name: str) -> dict:
    """Time and convolution FLOPs per part of both networks at one setting.

    Forward hooks time each part (stem, stage 1, transitions, residual blocks, fusions,
    head: their convolutions, norms, ReLUs and sums), best of ``rounds``; "everything else" is
    the pass's best time minus the parts (the final up-sampling, autocast's casts). Says
    where the speed-up stops following the FLOPs. ``setting`` is the one ``name`` names
    (its batch norms folded where ``name`` says so); ``shape`` is (batch, bands, size).
    Returns ``{"setting": name, "parts": {part: {"ms": [unpruned, pruned],
    "gflops": [unpruned, pruned] or None}}}``.
    """
    batch, bands, size = shape
    fmt = setting.memory_format
    x = torch.randn(batch, bands, size, size).contiguous(memory_format=fmt)
    table = []
    for net in (full, small):
        flops = part_flops(net, bands, size)
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
    out: dict[str, dict] = {}
    for part in table[0][0]:
        tu, tp = table[0][0][part], table[1][0][part]
        fu, fp = table[0][1].get(part, 0.0), table[1][1].get(part, 0.0)
        out[part] = {"ms": [tu, tp], "gflops": [fu, fp] if fu and fp else None}
        flops_text = f"   {fu:5.2f} -> {fp:5.2f} G (x{fu / fp:.2f})" if fu and fp else ""
        print(f"  {part:<28} {tu:7.1f} -> {tp:7.1f} ms (x{tu / tp:.2f}){flops_text}")
    return {"setting": name, "parts": out}


def _best_ms(fn, reps: int = 15) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * min(times)


def resize_costs(batch: int, size: int, width: int, classes: int) -> list[dict]:
    """Bilinear up-sampling at this run's shapes (bf16/NHWC), timed alone: PyTorch's bf16
    kernel against ``blocks.resize_bilinear`` (fp32 inside, rounded once), for the head's
    logits to the patch size and two of the fusions' up-samplings to the finest branch."""
    side = size // 4  # the finest branch
    found = []
    print("bilinear up-sampling alone (bf16/nhwc, ms):")
    with torch.inference_mode():
        for shape, to in (((batch, classes, side, side), (size, size)),
                          ((batch, width, side // 2, side // 2), (side, side)),
                          ((batch, width, side // 8, side // 8), (side, side))):
            x = torch.randn(shape).bfloat16().contiguous(memory_format=torch.channels_last)
            kernel = _best_ms(lambda x=x, to=to: torch.nn.functional.interpolate(
                x, size=to, mode="bilinear", align_corners=False))
            ours = _best_ms(lambda x=x, to=to: resize_bilinear(x, to))
            found.append({"shape": list(shape), "to": list(to), "kernel_ms": kernel,
                          "resize_bilinear_ms": ours})
            print(f"  {tuple(shape)} -> {to}: bf16 kernel {kernel:.2f}, resize_bilinear "
                  f"{ours:.2f} (x{kernel / ours:.2f})")
    return found
