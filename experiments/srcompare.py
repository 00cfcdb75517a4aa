"""Compare ``srseg`` with its baselines on the same cross-resolution data and write a report.

``python -m experiments.srcompare --data chesapeake --out srcompare_output``
(``--data-dir`` defaults to ``geobench_chesapeake_naip`` in the shared sample data: ``--data-root``,
else ``$ISAMAP_SHARED_DATA``, else ``shared/data`` beside the checkout, so the command works
from any folder)

Every model gets the same training samples, augmentation draws, seed, optimiser, iteration
budget and fine-scale loss (CE + Dice; ``srseg`` adds its own deep-supervision and
reconstruction terms, which are part of the method), and is evaluated by the same function
at the fine scale (:func:`experiments.srseg_evaluate.evaluate_fine`). Outputs in ``--out``:

- ``<model>/model.pt``: the trained model as a model file (training/modelfile.py, output_scale = k);
- ``<model>/metrics.json``: that model's test metrics (the run is resumable: a model whose
  metrics exist for the same configuration is not trained again; the key is the
  configuration, not the code, so use a new ``--out`` after changing a model);
- ``metrics.json`` (all models + configuration), ``comparison.txt`` (a readable table) and
  ``quicklook.png`` (input, reference and each model's 1 m map on the test quadrant with most
  ISA).

Every model is trained by the shared :class:`training.run.trainer.Trainer` (Adam, per-iteration
poly decay, the same loop as ``isamap-train``) with a fixed iteration budget and no validation
split: there is no split to early-stop on with five tiles, and a fixed budget is the fair
comparison. The loss is each model's recipe loss (``training.models.model_loss``:
``SRSegLoss`` for srseg and its baselines), the objective ``isamap-train --model srseg``
optimises too; it asks the trainer for the whole batch, so its reconstruction term gets the
fine image.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from contract.bands import LABEL_NODATA, check_fine_scale
from core.commands import (
    add_logging_arguments,
    check_output_folder,
    configure_logging,
    run_command,
)
from core.digest import json_digest
from core.errors import ConfigError
from core.jsonsafe import dumps, json_safe
from core.parsers import CommandParser, seed
from core.storage import atomic_path, atomic_write
from experiments.data import add_data_root_argument, existing_folder, sample_folder
from experiments.naip import NAIP_BANDS, NAIP_FOLDER, naip_samples
from experiments.srseg_data import CrossResolutionDataset, patch_samples, split_samples
from experiments.srseg_evaluate import evaluate_fine
from experiments.threads import add_threads_argument, use_threads
from training.config import TrainConfig
from training.data import read_manifest
from training.modelfile import ModelMeta, save_model_file
from training.models import create_model, model_loss, recipe_for
from training.run.trainer import Trainer

DEFAULT_MODELS = ("srseg", "bilinear-unet", "unet-upsample")
DataName = Literal["chesapeake", "patches"]


@dataclass(frozen=True)
class CompareConfig:
    """Everything that defines a comparison run (hashed to decide what can be reused)."""

    data: DataName = "chesapeake"
    data_dir: str = field(default_factory=lambda: str(sample_folder(NAIP_FOLDER)))
    scale: int = 8
    models: tuple[str, ...] = DEFAULT_MODELS
    iterations: int = 150
    batch_size: int = recipe_for("srseg").batch_size  # srseg's recipe: what isamap-train uses
    lr: float = recipe_for("srseg").lr
    seed: int = 0
    tolerance: float = 2.0
    widths: tuple[int, ...] = (32, 64, 128, 256)
    reconstruction: bool = True
    deep_supervision: bool = True

    def __post_init__(self) -> None:
        check_fine_scale(self.scale, required=True)
        if self.iterations < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ConfigError("iterations and batch size must be >= 1 and lr > 0")
        if self.data not in ("chesapeake", "patches"):
            raise ConfigError(f"--data must be 'chesapeake' or 'patches', got {self.data!r}")

    def key(self, model: str) -> str:
        """A digest of the configuration as it affects ``model``'s result."""
        d = asdict(self)
        d.pop("models")
        d["model"] = model
        return json_digest(d, 16)


def load_datasets(cfg: CompareConfig) -> tuple[CrossResolutionDataset, CrossResolutionDataset,
                                                tuple[str, ...]]:
    """Training (augmented) and test datasets, normalised with training statistics, and bands."""
    if cfg.data == "chesapeake":
        samples = naip_samples(cfg.data_dir, cfg.scale)
        train, test, bands = split_samples(samples, "train"), split_samples(samples, "test"), \
            NAIP_BANDS
    else:
        train = patch_samples(cfg.data_dir, cfg.scale, ("train",))
        test = patch_samples(cfg.data_dir, cfg.scale, ("test",))
        bands = tuple(read_manifest(cfg.data_dir)["bands"])
    if not train or not test:
        raise ConfigError(f"{cfg.data_dir} has {len(train)} training and {len(test)} test "
                          "samples; both splits are needed")
    train_ds = CrossResolutionDataset(train, augment=True, seed=cfg.seed)
    return train_ds, train_ds.with_samples(test), bands


def model_kwargs(name: str, cfg: CompareConfig) -> dict:
    """Constructor arguments; the srseg ablation switches only apply to srseg."""
    kw: dict = {"scale": cfg.scale, "widths": list(cfg.widths)}
    if name == "srseg":
        kw.update(reconstruction=cfg.reconstruction, deep_supervision=cfg.deep_supervision)
    return kw


def train_fixed_budget(model: torch.nn.Module, dataset: CrossResolutionDataset,
                       meta: ModelMeta, cfg: CompareConfig, run_dir: Path) -> dict[str, float]:
    """Train ``model`` with the shared trainer for ``cfg.iterations`` steps, in place.

    fp32 on the CPU and no loader workers, as the evaluation runs on the CPU and the whole
    dataset is in memory. Returns the loss terms of the last step (``loss`` = their sum) and
    ``seconds``, the time spent in the training epochs (the trainer's per-epoch checkpoints
    and learning-curve plots are left out, so the table compares the models' own cost).
    """
    loss_fn = model_loss(meta.name)  # the recipe's loss: the objective of isamap-train
    tcfg = TrainConfig.of(out_dir=str(run_dir), model=meta.name, epochs=1,
                          max_iterations=cfg.iterations, batch_size=cfg.batch_size, lr=cfg.lr,
                          seed=cfg.seed, num_workers=0, precision="fp32", channels_last=False,
                          device="cpu", augment=True)
    trainer = Trainer(tcfg, model, loss_fn, dataset, None, meta, curves=False)  # temp folder
    trainer.fit()
    model.cpu()
    return {"loss": sum(loss_fn.last_terms.values()), **loss_fn.last_terms,
            "seconds": sum(row["seconds"] for row in trainer.history)}


def _write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda fh: fh.write(text.encode()))


def _write_json(path: Path, data: dict) -> None:
    text = dumps(data, indent=2, default=str)
    atomic_write(path, lambda fh: fh.write(text.encode()))


def run_comparison(cfg: CompareConfig, out: str | Path) -> dict:
    """Train and evaluate every model of ``cfg`` (reusing finished ones); write the report."""
    out = Path(out)
    train_ds, test_ds, bands = load_datasets(cfg)
    results: dict[str, dict] = {}
    for name in cfg.models:
        mdir = out / name
        done = mdir / "metrics.json"
        if done.exists() and (mdir / "model.pt").exists():
            previous = json.loads(done.read_text())
            if previous.get("config_key") == cfg.key(name):
                results[name] = previous
                continue
        torch.manual_seed(cfg.seed)
        model = create_model(name, len(bands), 2, **model_kwargs(name, cfg))
        meta = ModelMeta(name=name, in_channels=len(bands), num_classes=2, bands=bands,
                         norm_mean=train_ds.stats.mean, norm_std=train_ds.stats.std,
                         output_scale=cfg.scale, model_kwargs=model_kwargs(name, cfg),
                         extra={"comparison": asdict(cfg)})
        mdir.mkdir(parents=True, exist_ok=True)
        # The trainer's checkpoint folder is scratch: a model is either finished (its
        # metrics.json exists) or trained again from the start.
        with tempfile.TemporaryDirectory(prefix=".train.", dir=mdir) as run_dir:
            last = train_fixed_budget(model, train_ds, meta, cfg, Path(run_dir))
        train_s = last.pop("seconds")
        evaluation = evaluate_fine(model, test_ds, tolerance=cfg.tolerance)
        record = {
            "model": name, "config_key": cfg.key(name),
            "parameters": sum(p.numel() for p in model.parameters()),
            "train_seconds": train_s, "final_loss": last["loss"],
            "loss_terms": {k: v for k, v in last.items() if k != "loss"},
            **evaluation.to_dict(),
        }
        meta = replace(meta, metrics=json_safe(record))
        save_model_file(mdir / "model.pt", model, meta)
        _write_json(mdir / "metrics.json", json_safe(record))
        results[name] = json_safe(record)
    report = {"config": asdict(cfg), "models": results}
    _write_json(out / "metrics.json", report)
    table = comparison_table(results, cfg)
    _write_text(out / "comparison.txt", table + "\n")
    quicklook(out / "quicklook.png", cfg, test_ds, out)
    return report


def _pct(v) -> str:
    return "n/a" if v is None else f"{100 * v:.2f}"


def comparison_table(results: dict[str, dict], cfg: CompareConfig) -> str:
    """Fixed-width table: ISA IoU/F1/PA/UA, OA, kappa, boundary F1, size and training time."""
    head = (f"{'model':<15}{'ISA IoU':>9}{'ISA F1':>9}{'PA':>8}{'UA':>8}{'OA':>8}{'kappa':>8}"
            f"{'bF1@' + format(cfg.tolerance, 'g') + 'px':>10}{'params':>11}{'train s':>9}")
    lines = [f"test split, fine scale x{cfg.scale}, {cfg.iterations} iterations, "
             f"batch {cfg.batch_size}, seed {cfg.seed}", head, "-" * len(head)]
    for name, r in results.items():
        kappa = "n/a" if r.get("kappa") is None else f"{r['kappa']:.4f}"
        lines.append(
            f"{name:<15}{_pct(r['iou'][1]):>9}{_pct(r['f1'][1]):>9}{_pct(r['pa'][1]):>8}"
            f"{_pct(r['ua'][1]):>8}{_pct(r['oa']):>8}{kappa:>8}"
            f"{_pct(r.get('boundary_f1')):>10}{r['parameters']:>11}{r['train_seconds']:>9.1f}")
    return "\n".join(lines)


def quicklook(path: Path, cfg: CompareConfig, test_ds: CrossResolutionDataset, out: Path) -> None:
    """Input, reference and each model's fine map on the test sample with the most ISA."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from experiments.srseg_evaluate import predict_fine
    from training.modelfile import load_model_file

    index = int(np.argmax([(s.label == 1).mean() for s in test_ds.samples]))
    item = test_ds[index]
    rgb = test_ds.samples[index].image[:3].transpose(1, 2, 0)
    rgb = np.clip((rgb - rgb.min()) / max(float(np.ptp(rgb)), 1e-6), 0, 1)
    panels = [("10 m-like input", rgb), ("reference (1 m)", item["label"].numpy())]
    for name in cfg.models:
        model, _ = load_model_file(out / name / "model.pt", flag="model file")
        panels.append((name, predict_fine(model, item["image"][None])[0].numpy()))
    fig, axes = plt.subplots(1, len(panels), figsize=(3 * len(panels), 3.2))
    for ax, (title, img) in zip(axes, panels, strict=True):
        if img.ndim == 2:
            ax.imshow(np.where(img == LABEL_NODATA, np.nan, img), cmap="gray_r", vmin=0, vmax=1,
                      interpolation="nearest")
        else:
            ax.imshow(img, interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.suptitle(f"test quadrant {test_ds.samples[index].id}: black = impervious, "
                 f"maps at x{cfg.scale}", fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


SUMMARY_METRICS = (("ISA IoU", lambda r: r["iou"][1]), ("ISA F1", lambda r: r["f1"][1]),
                   ("OA", lambda r: r["oa"]), ("bF1", lambda r: r.get("boundary_f1")))


def summarize_seeds(reports: dict[int, dict], cfg: CompareConfig) -> tuple[dict, str]:
    """Mean and sample standard deviation over seeds of the headline metrics, per model.

    Five small tiles make a single run's ranking fragile (initialisation alone moves the ISA
    F1 by tens of points at a short budget), so conclusions are drawn from several seeds.
    """
    summary: dict[str, dict] = {}
    for name in cfg.models:
        row = {}
        for label, get in SUMMARY_METRICS:
            values = [get(r["models"][name]) for r in reports.values()]
            values = np.array([np.nan if v is None else v for v in values], dtype=float)
            ok = values[np.isfinite(values)]
            row[label] = {"mean": float(ok.mean()) if ok.size else math.nan,
                          "std": float(ok.std(ddof=1)) if ok.size > 1 else 0.0,
                          "per_seed": [json_safe(float(v)) for v in values]}
        row["train_seconds"] = float(np.mean([r["models"][name]["train_seconds"]
                                              for r in reports.values()]))
        summary[name] = row
    head = f"{'model':<15}" + "".join(f"{label:>16}" for label, _ in SUMMARY_METRICS) \
        + f"{'train s':>9}"
    lines = [f"mean ± std over seeds {sorted(reports)} (test split, x{cfg.scale}, "
             f"{cfg.iterations} iterations, bF1 tolerance {cfg.tolerance:g} px)", head,
             "-" * len(head)]
    for name, row in summary.items():
        cells = "".join(f"{100 * row[label]['mean']:>9.2f} ±{100 * row[label]['std']:>5.2f}"
                        for label, _ in SUMMARY_METRICS)
        lines.append(f"{name:<15}{cells}{row['train_seconds']:>9.1f}")
    return summary, "\n".join(lines)


def run_seeds(cfg: CompareConfig, seeds: Sequence[int], out: str | Path) -> tuple[dict, str]:
    """``run_comparison`` for every seed in ``out/seed_<s>``, then the across-seed summary."""
    out = Path(out)
    reports = {s: run_comparison(replace(cfg, seed=s), out / f"seed_{s}") for s in seeds}
    summary, table = summarize_seeds(reports, cfg)
    _write_json(out / "summary.json", {"config": asdict(cfg), "seeds": list(seeds),
                                       "models": json_safe(summary)})
    _write_text(out / "summary.txt", table + "\n")
    return summary, table


def main(argv: Sequence[str] | None = None) -> int:
    p = CommandParser(  # exact option names only
        allow_abbrev=False, prog="python -m experiments.srcompare", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", choices=("chesapeake", "patches"), default="chesapeake")
    p.add_argument("--data-dir",
                   help="NAIP hdf5 folder (chesapeake) or a local patch dataset (patches); "
                        f"default: {NAIP_FOLDER} in the --data-root")
    add_data_root_argument(p)
    p.add_argument("--scale", type=int, default=8, help="fine-scale factor (2/4/5/8/10)")
    p.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    p.add_argument("--iterations", type=int, default=150)
    p.add_argument("--batch-size", type=int, default=CompareConfig.batch_size)
    p.add_argument("--lr", type=float, default=CompareConfig.lr)
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--seeds", type=int, nargs="+",
                   help="run every seed (out/seed_<s>/) and write summary.json/.txt")
    p.add_argument("--tolerance", type=float, default=2.0, help="boundary F1 tolerance (px)")
    p.add_argument("--widths", type=int, nargs="+", default=[32, 64, 128, 256])
    p.add_argument("--no-reconstruction", action="store_true",
                   help="ablation: srseg without its reconstruction head / L1 term")
    p.add_argument("--no-deep-supervision", action="store_true",
                   help="ablation: srseg without intermediate-scale outputs")
    add_threads_argument(p)
    p.add_argument("--out", default="srcompare_output")
    add_logging_arguments(p)
    a = p.parse_args(argv)
    configure_logging(a.verbose, a.quiet, a.debug)
    return run_command("python -m experiments.srcompare", lambda: _compare(a), debug=a.debug,
                       writes_to=[a.out])


def _compare(a: argparse.Namespace) -> int:
    if a.data == "patches" and not a.data_dir:
        raise ConfigError("--data patches needs --data-dir PATCH_DATASET (exported by "
                          "isamap-export with --fine-scale)")
    data_dir = existing_folder(a.data_dir or sample_folder(NAIP_FOLDER, a.data_root), "data",
                               "--data-dir")
    check_output_folder("--out", a.out)
    use_threads(a.threads)
    cfg = CompareConfig(data=a.data, data_dir=str(data_dir), scale=a.scale,
                        models=tuple(a.models),
                        iterations=a.iterations, batch_size=a.batch_size, lr=a.lr, seed=a.seed,
                        tolerance=a.tolerance, widths=tuple(a.widths),
                        reconstruction=not a.no_reconstruction,
                        deep_supervision=not a.no_deep_supervision)
    if a.seeds:
        _, table = run_seeds(cfg, a.seeds, a.out)
        print(table)
        print(f"report: {Path(a.out) / 'summary.json'}, {Path(a.out) / 'summary.txt'}")
        return 0
    report = run_comparison(cfg, a.out)
    print(comparison_table(report["models"], cfg))
    print(f"report: {Path(a.out) / 'metrics.json'}, {Path(a.out) / 'comparison.txt'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
