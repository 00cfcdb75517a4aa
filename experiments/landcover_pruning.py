"""What FPGM pruning and CLAHE cost in accuracy, on real 1 m NAIP tiles.

``python -m experiments.landcover_pruning --out lccompare_output``

The land-cover paper prunes its HRNet with FPGM and sharpens the impervious class with CLAHE.
This measures both on the five GeoBench Chesapeake tiles
(``../shared/data/geobench_chesapeake_naip``, 1 m RGB+NIR with 1 m land cover), with the mode
product as the label (whether a fine map beats a coarse product at all is
:mod:`experiments.landcover`'s question):

- the **imperfect product** is the mode of the true classes (mapped to the paper's seven
  classes by :mod:`contract.label_schemes`) over 10 x 10 m cells, shown at 1 m
  (nearest up-sampling), so it has exactly the blockiness of a 10 m map of a perfect
  classifier and none of its spectral errors;
- ``hrnet`` is trained on the 1 m imagery with that product as its label, with the paper's
  recipe (SGD 0.01, momentum 0.9, poly decay, class-weighted cross-entropy with impervious
  weight 3, random crops) at a small width and iteration budget that runs in minutes on two
  CPU cores;
- a fixed split: the south-east quadrant of every tile (rows and columns from 130 m, on the
  10 m cell lattice so that no coarse cell straddles it) is held out; training crops lie
  entirely in the other three quadrants, so no test pixel, label or image, is ever trained
  on, and every landscape (beach, forest, town, open water) is in both splits;
- the whole tile is predicted (as a map would be) and every model is evaluated at 1 m
  against the **true** classes of the held-out quadrants: (a) the coarse product, (b) hrnet,
  (c) hrnet with the CLAHE post-processing of the impervious probability and (d) hrnet
  pruned by FPGM (fine-tuned with 40 % of the prunable filters zeroed each epoch, then made
  compact);
- overall accuracy and per-class producer's / user's accuracy come from the confusion matrix
  pooled over the five held-out quadrants, one per seed, and are reported as mean ± std
  over seeds.

Per-run results are
kept in ``<out>/runs/`` keyed by the configuration, so an interrupted run resumes and a
finished one is not redone.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from contract.label_schemes import LANDCOVER_CLASSES, SCHEMES
from core.commands import (
    add_logging_arguments,
    check_output_folder,
    configure_logging,
    run_command,
)
from core.digest import json_digest
from core.errors import ConfigError, InputDataError
from core.parsers import CommandParser
from core.storage import atomic_write
from experiments.coarse_products import mode_product
from experiments.data import add_data_root_argument, existing_folder, sample_folder
from experiments.landcover_report import NO_SPREAD_NOTE, cell, seed_stats
from experiments.naip import NAIP_BANDS, NAIP_FOLDER, read_naip_tile
from experiments.threads import add_threads_argument, use_threads
from inference.assess.intervals import notes
from inference.predict.postprocess import ClaheParams, clahe_classes
from training.config import TrainConfig
from training.data import Augment
from training.metrics import compute_metrics, confusion_matrix, json_safe
from training.modelfile import ModelMeta
from training.models import create_model, model_loss, recipe_for
from training.pruning import PRUNING_RULE, compact_model, flop_count, fpgm_step, parameter_count
from training.run.trainer import Trainer

log = logging.getLogger(__name__)
K = len(LANDCOVER_CLASSES)
ISA = LANDCOVER_CLASSES.index("impervious")
METHODS = ("coarse product", "hrnet", "hrnet + CLAHE", "hrnet pruned")


@dataclass(frozen=True)
class LandCoverCompareConfig:
    """Everything that defines the experiment (hashed to reuse finished runs).

    Attributes:
        data_dir: folder of the GeoBench Chesapeake ``id_*.hdf5`` tiles (the command's
            default is the shared data folder found by
            :func:`experiments.data.sample_folder`).
        cell: side of the coarse product's cells in 1 m pixels (10 m).
        seeds: training seeds.
        iterations / batch_size / crop: training budget, batch and random crop (px).
        model: ``hrnet`` keyword arguments (a narrow HRNet for CPU minutes).
        lr: initial SGD learning rate (the paper's 0.01; poly decay to 0 at the budget).
        prune_iterations / prune_epochs / prune_rate: FPGM fine-tuning (filters are zeroed
            after each of the epochs, so more, shorter epochs let the network settle).
        clahe: the post-processing (128 px tiles: two per 256 px tile side).
    """

    data_dir: str = field(default_factory=lambda: str(sample_folder(NAIP_FOLDER)))
    cell: int = 10
    seeds: tuple[int, ...] = (0, 1, 2)
    iterations: int = 300
    batch_size: int = 8
    crop: int = 64
    model: dict = field(default_factory=lambda: {"width": 8, "stem_width": 16,
                                                 "stage1_width": 16, "modules": [1, 1, 1],
                                                 "blocks": 2})
    lr: float = recipe_for("hrnet").lr
    prune_iterations: int = 100
    prune_epochs: int = 10
    prune_rate: float = 0.4
    clahe: ClaheParams = field(default_factory=lambda: ClaheParams(block=128))

    def __post_init__(self) -> None:
        if self.cell < 2 or self.iterations < 1 or self.batch_size < 1 or self.crop < 32:
            raise ConfigError("cell >= 2, iterations >= 1, batch >= 1 and crop >= 32 please")
        if not self.seeds:
            raise ConfigError("give at least one seed")

    def key(self, seed: int) -> str:
        d = asdict(self)
        d.pop("seeds")
        d.update(seed=seed, pruning_rule=PRUNING_RULE)  # a new rule re-runs the seeds
        return json_digest(d, 16)


# ------------------------------------------------------------------ data
@dataclass(frozen=True)
class Tile:
    """One NAIP tile: bands (4, H, W) float32, true classes and coarse product (H, W) uint8.

    ``test_from``: rows and columns from this pixel on form the held-out quadrant.
    """

    id: str
    image: np.ndarray
    truth: np.ndarray
    coarse: np.ndarray
    test_from: int

    @property
    def test_mask(self) -> np.ndarray:
        mask = np.zeros(self.truth.shape, dtype=bool)
        mask[self.test_from:, self.test_from:] = True
        return mask


def load_tiles(folder: str | Path, cell: int) -> list[Tile]:
    """Every tile of ``folder`` with its seven-class truth and coarse product."""
    paths = sorted(Path(folder).glob("id_*.hdf5"))
    if not paths:
        raise InputDataError(f"no id_*.hdf5 NAIP tiles in {folder}; pass --data-dir")
    tiles = []
    for path in paths:
        bands, codes = read_naip_tile(path)
        truth = SCHEMES["chesapeake"].apply(codes)
        half = -(-min(truth.shape) // 2 // cell) * cell  # 130 for 256 px at 10 px cells
        tiles.append(Tile(path.stem, bands, truth, mode_product(truth, cell), half))
    return tiles


class CropDataset(torch.utils.data.Dataset):
    """Random training crops (image normalised, label = the coarse product).

    Item ``i`` of epoch ``e`` is a crop of tile ``i mod n`` drawn from ``(seed, e, i)`` among
    the windows that do not touch the held-out quadrant, then a random flip / quarter turn
    (the trainer's sampler passes ``(epoch, index)`` keys).
    """

    epoch_keys = True

    def __init__(self, tiles: Sequence[Tile], mean: np.ndarray, std: np.ndarray, crop: int,
                 length: int, seed: int) -> None:
        self.images = [((t.image - mean[:, None, None]) / std[:, None, None]).astype(
            np.float32) for t in tiles]
        self.labels = [t.coarse for t in tiles]
        self.test_from = [t.test_from for t in tiles]
        self.crop, self.length, self.seed = crop, length, seed
        if any(f < crop for f in self.test_from):
            raise ConfigError(f"crop {crop} does not fit beside the held-out quadrant")
        self.augment = Augment(blur=0.0)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, key):
        epoch, i = key if isinstance(key, tuple) else (0, key)
        j = i % len(self.images)
        rng = np.random.default_rng([self.seed, int(epoch), int(i)])
        h, w = self.labels[j].shape
        while True:  # a window outside the held-out quadrant (three quarters qualify)
            r, c = int(rng.integers(0, h - self.crop + 1)), int(rng.integers(0, w - self.crop + 1))
            if r + self.crop <= self.test_from[j] or c + self.crop <= self.test_from[j]:
                break
        window = (slice(r, r + self.crop), slice(c, c + self.crop))
        image, label = self.images[j][(slice(None), *window)], self.labels[j][window]
        image, (label,) = self.augment(image, [label], rng)
        return {"image": torch.from_numpy(image),
                "label": torch.from_numpy(label.astype(np.int64))}


# ------------------------------------------------------------------ one fold
def _meta(cfg: LandCoverCompareConfig, mean: np.ndarray, std: np.ndarray) -> ModelMeta:
    return ModelMeta(name="hrnet", in_channels=len(NAIP_BANDS), num_classes=K,
                     bands=NAIP_BANDS, norm_mean=tuple(map(float, mean)),
                     norm_std=tuple(map(float, std)), class_scheme="landcover",
                     class_names=LANDCOVER_CLASSES, model_kwargs=dict(cfg.model),
                     extra={"experiment": "experiments.landcover_pruning"})


def _train_cfg(cfg: LandCoverCompareConfig, run_dir: Path, seed: int, iterations: int,
               lr: float) -> TrainConfig:
    """The run's options; loss, optimiser, momentum and poly decay are left to the recipe.

    No weight decay: the setting of the figures in docs/evidence/landcover.md.
    """
    return TrainConfig.of(out_dir=str(run_dir), model="hrnet", model_kwargs=dict(cfg.model),
                          epochs=1, max_iterations=iterations, batch_size=cfg.batch_size, lr=lr,
                          weight_decay=0.0, crop_size=cfg.crop, seed=seed, num_workers=0,
                          precision="fp32", channels_last="off", device="cpu", progress=False)


@torch.no_grad()
def predict_probs(model: torch.nn.Module, tile: Tile, mean: np.ndarray, std: np.ndarray
                  ) -> np.ndarray:
    """Class probabilities (K, H, W) of a whole tile (the model is fully convolutional)."""
    x = (tile.image - mean[:, None, None]) / std[:, None, None]
    logits = model.eval()(torch.from_numpy(x.astype(np.float32))[None])
    return torch.softmax(logits.float(), dim=1)[0].numpy()


def run_seed(cfg: LandCoverCompareConfig, tiles: Sequence[Tile], seed: int) -> dict:
    """Train on the training quadrants, prune, evaluate the four maps on the held-out ones."""
    pixels = np.concatenate([t.image[:, ~t.test_mask] for t in tiles], axis=1)
    mean, std = pixels.mean(1), np.maximum(pixels.std(1), 1e-6)
    meta = _meta(cfg, mean, std)
    torch.manual_seed(seed)
    model = create_model("hrnet", len(NAIP_BANDS), K, **cfg.model)
    loss = model_loss("hrnet", LANDCOVER_CLASSES)  # weighted CE, impervious x3
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=".lccompare.") as tmp:
        data = CropDataset(tiles, mean, std, cfg.crop, cfg.iterations * cfg.batch_size, seed)
        Trainer(_train_cfg(cfg, Path(tmp) / "train", seed, cfg.iterations, cfg.lr), model,
                loss, data, None, meta, curves=False).fit()  # no curves: a temp folder
        train_s = time.perf_counter() - started
        # FPGM: training goes on "in the regular way" (the paper; same recipe and learning
        # rate, poly decay over the fine-tuning budget), filters zeroed after every epoch
        masked = copy.deepcopy(model)
        per_epoch = max(cfg.prune_iterations // cfg.prune_epochs, 1) * cfg.batch_size
        pdata = CropDataset(tiles, mean, std, cfg.crop, per_epoch, seed + 1000)
        pcfg = _train_cfg(cfg, Path(tmp) / "prune", seed, cfg.prune_iterations,
                          cfg.lr).with_(epochs=cfg.prune_epochs)
        Trainer(pcfg, masked, loss, pdata, None, meta,
                epoch_end=lambda m, e: fpgm_step(m, cfg.prune_rate), curves=False).fit()
    small, _ = compact_model(masked.cpu(), meta)
    confusion = {m: np.zeros((K, K), dtype=np.int64) for m in METHODS}
    for tile in tiles:
        probs = predict_probs(model.cpu(), tile, mean, std)
        maps = {"coarse product": tile.coarse, "hrnet": probs.argmax(0).astype(np.uint8),
                "hrnet + CLAHE": clahe_classes(probs, ISA, cfg.clahe),
                "hrnet pruned": predict_probs(small, tile, mean, std).argmax(0).astype(
                    np.uint8)}
        test = tile.test_mask
        for m in METHODS:
            confusion[m] += confusion_matrix(maps[m][test], tile.truth[test], K)
    return {"seed": seed, "train_seconds": train_s,
            "parameters": {"hrnet": parameter_count(model), "pruned": parameter_count(small)},
            "flops_256": {"hrnet": flop_count(model, len(NAIP_BANDS), 256),
                          "pruned": flop_count(small, len(NAIP_BANDS), 256)},
            "confusion": {m: c.tolist() for m, c in confusion.items()}}


# ------------------------------------------------------------------ the whole experiment
def _write_json(path: Path, data: dict) -> None:
    text = json.dumps(json_safe(data), indent=1, allow_nan=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda fh: fh.write(text.encode()))


def run_experiment(cfg: LandCoverCompareConfig, out: str | Path) -> dict:
    """Every seed's run, reusing finished ones; returns and writes the report."""
    out = Path(out)
    tiles = load_tiles(cfg.data_dir, cfg.cell)
    runs = []
    for n, seed in enumerate(cfg.seeds, 1):
        path = out / "runs" / f"seed{seed}.json"
        key = cfg.key(seed)
        if path.exists() and json.loads(path.read_text()).get("key") == key:
            runs.append(json.loads(path.read_text()))
            continue
        log.info("[%d/%d] seed %d: training, pruning, evaluating", n, len(cfg.seeds), seed)
        record = {"key": key, **run_seed(cfg, tiles, seed)}
        _write_json(path, record)
        runs.append(record)
    report = summarize(cfg, runs, tiles)
    _write_json(out / "metrics.json", report)
    table = (report_table(report) + "\n").encode()
    atomic_write(out / "comparison.md", lambda fh: fh.write(table))
    return report


def summarize(cfg: LandCoverCompareConfig, runs: Sequence[dict], tiles: Sequence[Tile]
              ) -> dict:
    """Metrics of each seed's matrix (pooled over the held-out quadrants), then over seeds.

    Per seed the metrics come from the pooled matrix; the summary holds mean and sample
    standard deviation over seeds of OA and of per-class PA / UA (classes present only).
    """
    per_seed = {r["seed"]: {m: compute_metrics(np.asarray(r["confusion"][m]),
                                                LANDCOVER_CLASSES).to_dict() for m in METHODS}
                for r in runs}
    present = [c for k, c in enumerate(LANDCOVER_CLASSES)
               if any((t.truth[t.test_mask] == k).any() for t in tiles)]
    summary = {}
    for m in METHODS:
        rows = [per_seed[s][m] for s in cfg.seeds]
        summary[m] = {"OA": seed_stats([r["oa"] for r in rows]),
                      "PA": {c: seed_stats([r["pa"][LANDCOVER_CLASSES.index(c)] for r in rows])
                             for c in present},
                      "UA": {c: seed_stats([r["ua"][LANDCOVER_CLASSES.index(c)] for r in rows])
                             for c in present}}
    first = runs[0]
    return {"config": asdict(cfg), "pruning_rule": PRUNING_RULE,
            "tiles": [t.id for t in tiles], "classes_present": present,
            "test_pixels": {c: int(sum((t.truth[t.test_mask] == LANDCOVER_CLASSES.index(c))
                                       .sum() for t in tiles)) for c in present},
            "summary": summary, "per_seed": {str(s): v for s, v in per_seed.items()},
            "parameters": first["parameters"], "flops_256": first["flops_256"],
            "train_seconds_mean": float(np.mean([r["train_seconds"] for r in runs]))}


def report_table(report: dict) -> str:
    """Markdown tables: OA and per-class PA, then per-class UA (mean ± std over seeds, %)."""
    present = report["classes_present"]
    lines = []
    for what in ("PA", "UA"):
        head = ["method", "OA"] + [f"{what} {c}" for c in present]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for m, s in report["summary"].items():
            row = [m, cell(s["OA"])] + [cell(s[what][c]) for c in present]
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
    lines += notes(lines, NO_SPREAD_NOTE)
    return "\n".join(lines).rstrip()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m experiments.landcover_pruning``; returns the exit status."""
    p = CommandParser(  # exact option names only
        allow_abbrev=False, prog="python -m experiments.landcover_pruning", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    d = LandCoverCompareConfig()
    p.add_argument("--data-dir", help="folder of the GeoBench Chesapeake id_*.hdf5 tiles "
                   f"(default: {NAIP_FOLDER} in the --data-root)")
    add_data_root_argument(p)
    p.add_argument("--out", default="lccompare_output")
    p.add_argument("--seeds", type=int, nargs="+", default=list(d.seeds))
    p.add_argument("--iterations", type=int, default=d.iterations)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--crop", type=int, default=d.crop)
    p.add_argument("--width", type=int, default=d.model["width"], help="HRNet C")
    p.add_argument("--lr", type=float, default=d.lr, help="initial SGD learning rate")
    p.add_argument("--stem-norm", choices=("instance", "batch"), default="instance")
    p.add_argument("--prune-iterations", type=int, default=d.prune_iterations)
    add_threads_argument(p)
    add_logging_arguments(p)
    a = p.parse_args(argv)
    configure_logging(a.verbose, a.quiet, a.debug)
    return run_command("python -m experiments.landcover_pruning", lambda: _run(a, d), debug=a.debug,
                       writes_to=[a.out])


def _run(a: argparse.Namespace, d: LandCoverCompareConfig) -> int:
    use_threads(a.threads)
    data_dir = existing_folder(a.data_dir or sample_folder(NAIP_FOLDER, a.data_root),
                               "GeoBench Chesapeake NAIP", "--data-dir")
    cfg = LandCoverCompareConfig(data_dir=str(data_dir), seeds=tuple(a.seeds),
                                 iterations=a.iterations, batch_size=a.batch_size, crop=a.crop,
                                 model={**d.model, "width": a.width,
                                        **({"stem_norm": "batch"} if a.stem_norm == "batch"
                                           else {})},
                                 lr=a.lr, prune_iterations=a.prune_iterations)
    check_output_folder("--out", a.out)
    started = time.perf_counter()
    report = run_experiment(cfg, a.out)
    print(report_table(report))
    print(f"{time.perf_counter() - started:.0f} s; report: {Path(a.out) / 'metrics.json'}, "
          f"{Path(a.out) / 'comparison.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
