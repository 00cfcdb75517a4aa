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

``--json PATH`` also writes everything printed, with every round's paired ratio, the machine,
the date, the wall time and the load average before and after, as one JSON file (atomically;
a refused run writes nothing). docs/landcover.md's tables are rendered from it by
``python -m experiments.landcover_figures PATH --bench-pruning``
(:func:`experiments.landcover_figures.bench_block`).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from benchmarks.pruning_parts import breakdown, one_pass, resize_costs
from contract.label_schemes import LANDCOVER_CLASSES
from core.commands import (
    add_logging_arguments,
    check_range,
    check_writable,
    configure_logging,
    run_command,
)
from core.errors import ConfigError
from core.storage import atomic_write
from engine import autotune
from engine.execution import Setting
from training.modelfile import ModelMeta
from training.models import create_model
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

#: the committed reports of ``experiments.landcover_pruning`` the page's accuracy changes quote
COMMITTED_RESULTS = tuple(str(ROOT / "docs" / "figures" / f"landcover_pruning_{name}.json")
                          for name in ("in", "bn", "bn_x3"))


def configurations() -> list[tuple[str, Setting, bool]]:
    """(name, autotune setting, BN folded) of every eager configuration to time."""
    return [(config_name(s, fold), s, fold) for fold in (False, True)
            for s in autotune.candidates(CPU, "auto", "auto")]


def config_name(setting: Setting, fold: bool) -> str:
    return f"{setting.label}{'/BN folded' if fold else ''}"


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
              rates: dict[str, dict]) -> None:
    """Best patches/s of both networks, every round's paired ratio and their median, into
    ``rates[name]`` (keys ``unpruned``, ``pruned``, ``ratios``, ``speedup``)."""
    fmt = setting.memory_format
    x = torch.randn(batch, len(BANDS), size, size).contiguous(memory_format=fmt)
    for net in nets:
        one_pass(net, x, setting)  # warm-up: oneDNN primitive creation (or compilation)
    times = [(one_pass(nets[0], x, setting), one_pass(nets[1], x, setting))
             for _ in range(rounds)]
    ratios = [a / b for a, b in times]
    rates[name] = {"unpruned": batch / min(a for a, _ in times),
                   "pruned": batch / min(b for _, b in times),
                   "ratios": ratios, "speedup": float(np.median(ratios))}
    r = rates[name]
    print(f"  {name:<39} unpruned {r['unpruned']:7.2f} patches/s   pruned "
          f"{r['pruned']:7.2f} patches/s   speed-up x{r['speedup']:.2f} (median of "
          f"{rounds} paired rounds, x{min(ratios):.2f}-{max(ratios):.2f})", flush=True)


def speed(full, small, batch: int, size: int, rounds: int, compiled: int) -> dict[str, dict]:
    """Per configuration: :func:`time_pair`'s figures, in the order timed.

    Every eager setting, as trained and with batch norms folded; then the ``compiled``
    fastest folded settings again under ``torch.compile`` (``isamap-predict --compile``),
    which fuses element-wise work into the convolutions; measured, that helps the unpruned
    network more (a lower speed-up compiled than eager: docs/landcover.md).
    """
    rates: dict[str, dict] = {}
    folded = (fold_batchnorm(full), fold_batchnorm(small))
    for name, setting, fold in configurations():
        nets = [net.to(memory_format=setting.memory_format)
                for net in (folded if fold else (full, small))]
        time_pair(name, nets, setting, batch, size, rounds, rates)
    by_label = {name: (setting, fold) for name, setting, fold in configurations()}
    eager_folded = sorted((k for k in rates if "folded" in k), key=lambda k: -rates[k]["pruned"])
    for name in eager_folded[:compiled]:
        setting, _ = by_label[name]
        nets = [torch.compile(net.to(memory_format=setting.memory_format)) for net in folded]
        time_pair(f"{name}/compiled", nets, setting, batch, size, rounds, rates)
    return rates


def _report_file(given: Path) -> Path:
    """A results path: an ``experiments.landcover_pruning`` folder's report, or a report file."""
    return given / "metrics.json" if given.is_dir() else given


def accuracy_changes(results: Sequence[Path], data_dir: str | None) -> list[dict]:
    """OA of hrnet and pruned hrnet from each ``experiments.landcover_pruning`` report.

    ``results``: report files (the committed ``docs/figures/landcover_pruning_*.json``) or the
    experiment's output folders. Results made with an earlier pruning rule
    (``training.pruning.PRUNING_RULE``) say so. Missing ones are skipped; with none at all, a
    one-seed, 60-iteration run is made in a folder of its own (a quick look, labelled so, not
    the documented result). Each entry: ``source``, ``stem`` (the stem's norm),
    ``iterations``, ``pruning_rule``, ``quick`` and the OA ``hrnet`` / ``pruned`` as
    ``{"mean", "std"}`` fractions.
    """
    from experiments.landcover_pruning import LandCoverCompareConfig, run_experiment

    found = []
    for path in map(_report_file, results):
        if path.is_file():
            name = path.resolve().relative_to(ROOT) if path.resolve().is_relative_to(ROOT) else path
            found.append((str(name), json.loads(path.read_text(encoding="utf-8")), False))
    if not found:  # in a folder of its own: never over a documented experiment's results
        quick = Path("bench_output") / "lccompare_quick"
        cfg = LandCoverCompareConfig(seeds=(0,), iterations=60, prune_iterations=20,
                                     **({"data_dir": data_dir} if data_dir else {}))
        found.append((str(quick / "metrics.json"), run_experiment(cfg, quick), True))
    changes = []
    for source, report, quick in found:
        oa = {m: report["summary"][m]["OA"] for m in ("hrnet", "hrnet pruned")}
        changes.append({"source": source, "quick": quick,
                        "stem": report["config"]["model"].get("stem_norm", "instance"),
                        "iterations": report["config"]["iterations"],
                        "pruning_rule": report.get("pruning_rule", 1),
                        **{k: {s: oa[m][s] for s in ("mean", "std")}
                           for k, m in (("hrnet", "hrnet"), ("pruned", "hrnet pruned"))}})
    return changes


def print_accuracy(change: dict) -> None:
    h, q = change["hrnet"], change["pruned"]
    notes = [f"{change['stem']} stem, {change['iterations']} iterations"]
    if change["quick"]:
        notes.append("run now: one seed, 60 iterations (a quick look, not the result)")
    if change["pruning_rule"] != PRUNING_RULE:
        notes.append(f"pruned with rule {change['pruning_rule']}, before residual outputs "
                     "were pruned: re-run python -m experiments.landcover_pruning")
    print(f"accuracy (OA at 1 m, mean ± std over seeds) from {change['source']} "
          f"({'; '.join(notes)}):\n"
          f"  hrnet {100 * h['mean']:.2f} ± {100 * h['std']:.2f} %, pruned "
          f"{100 * q['mean']:.2f} ± {100 * q['std']:.2f} %, change "
          f"{100 * (q['mean'] - h['mean']):+.2f} points")


def native_bf16() -> bool:
    """Whether torch reports bf16 dot-product instructions on this CPU (AVX512-BF16 or AMX)."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


def machine() -> dict:
    """The machine in words (``engine.autotune.describe_device``), its cores, native bf16."""
    return {"device": autotune.describe_device(CPU), "cores": os.cpu_count(),
            "native_bf16": native_bf16(),
            "torch": torch.__version__}


def write_json(report: dict, path: str | os.PathLike) -> None:
    """``report`` as indented JSON at ``path``, atomically (readers never see half a file)."""
    text = json.dumps(report, indent=1, ensure_ascii=False) + "\n"
    atomic_write(path, lambda handle: handle.write(text.encode()))


def check_json_path(path: str | None) -> None:
    """Refuse (ConfigError) a ``--json`` that is a folder or lies under a file; check it is
    writable (OSError); before any timing, so a refused run measures and writes nothing."""
    if path is None:
        return
    target = Path(path).absolute()
    existing = target
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if target.is_dir():
        raise ConfigError(f"--json {path} is a folder; give a file name (e.g. "
                          "docs/figures/bench_pruning.json)")
    if existing != target and not existing.is_dir():
        raise ConfigError(f"--json {path} lies under {existing}, which is a file; give a "
                          "path in a folder")
    check_writable(target)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="benchmarks/bench_pruning.py", description=__doc__,
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
    p.add_argument("--results", nargs="+", default=list(COMMITTED_RESULTS),
                   help="experiments.landcover_pruning reports (metrics.json files, or the "
                   "folders holding them) to read the accuracy change from (default: the "
                   "committed docs/figures/landcover_pruning_{in,bn,bn_x3}.json)")
    p.add_argument("--data-dir", default=None,
                   help="Chesapeake tiles for the quick accuracy run made when no --results "
                   "exist (default: the experiment's)")
    p.add_argument("--json", metavar="PATH",
                   help="also write everything printed here as JSON (docs/landcover.md's "
                   "source: docs/figures/bench_pruning.json)")
    add_logging_arguments(p)
    return p


def check_arguments(a: argparse.Namespace) -> None:
    check_range("--width", a.width, 4)
    check_range("--rate", a.rate, 0.01, 0.9)
    check_range("--size", a.size, 64, hint="HRNet halves a patch five times")
    check_range("--batch", a.batch, 1)
    check_range("--rounds", a.rounds, 1)
    check_range("--threads", a.threads, 0)
    check_range("--compiled", a.compiled, 0)
    check_json_path(a.json)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (2: a bad option, refused before any timing)."""
    a = parser().parse_args(argv)
    configure_logging(a.verbose, a.quiet, a.debug)
    return run_command("benchmarks/bench_pruning.py", lambda: measure(a), debug=a.debug,
                       writes_to=[a.json], checks=[lambda: check_arguments(a)])


def measure(a: argparse.Namespace) -> int:
    """Every measurement of the module docstring, printed and, with ``--json``, written."""
    started, load_before = time.perf_counter(), os.getloadavg()
    date = datetime.datetime.now(datetime.UTC).date().isoformat()
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
    r = rates[auto_full]
    print(f"as isamap-predict runs them, at auto's choice of precision and layout for the "
          f"unpruned network ({auto_full}): {r['unpruned']:.2f} -> {r['pruned']:.2f} "
          f"patches/s, pruned x{r['speedup']:.2f} faster (bar: >= 1.5x)")
    best_u = max(rates, key=lambda k: rates[k]["unpruned"])
    best_p = max(rates, key=lambda k: rates[k]["pruned"])
    same = f"both at {best_u}, paired" if best_u == best_p else (
        f"unpruned at {best_u}, pruned at {best_p}, ratio of best times")
    speedup = (rates[best_u]["speedup"] if best_u == best_p
               else rates[best_p]["pruned"] / rates[best_u]["unpruned"])
    print(f"each network at its fastest setting, torch.compile included ({same}): "
          f"{rates[best_u]['unpruned']:.2f} -> {rates[best_p]['pruned']:.2f} patches/s, pruned "
          f"x{speedup:.2f} faster")
    fastest = max((k for k in rates if k.endswith("folded")), key=lambda k: rates[k]["unpruned"])
    setting = next(s for label, s, _ in configurations() if label == fastest.split("/BN")[0])
    parts_table = breakdown(full, small, setting, (a.batch, len(BANDS), a.size), a.rounds,
                            fastest)
    resize = resize_costs(a.batch, a.size, a.width, len(LANDCOVER_CLASSES))
    accuracy = accuracy_changes([Path(r) for r in a.results], a.data_dir)
    for change in accuracy:
        print_accuracy(change)
    seconds = time.perf_counter() - started
    if a.json:
        write_json({
            "command": shlex.join(["benchmarks/bench_pruning.py", *sys.argv[1:]]),
            "settings": {k: getattr(a, k) for k in ("width", "rate", "size", "batch", "rounds",
                                                    "compiled")}
            | {"threads": torch.get_num_threads()},
            "machine": machine(), "date": date, "seconds": seconds,
            "load_average": {"before": list(load_before), "after": list(os.getloadavg())},
            "parameters": {"unpruned": pf, "pruned": ps},
            "flops_per_patch": {"unpruned": ff, "pruned": fs},
            "auto_choice": {"unpruned": auto_full, "pruned": auto_small},
            "speed": rates,
            "fastest": {"unpruned": best_u, "pruned": best_p, "speedup": speedup},
            "breakdown": parts_table, "resize": resize,
            "accuracy": accuracy}, a.json)
        print(f"{a.json} written")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
