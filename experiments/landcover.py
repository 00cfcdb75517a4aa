"""Whether a 1 m map learnt from a coarse land-cover product beats the product (seed 003).

``python -m experiments.landcover --out landcover_output``

The land-cover paper trains HRNet on 3 m imagery with a 10 m product (FROM-GLC10, 72.8 % OA
globally, 81.24 % on its China test points) as the only label, and finds the 3 m map more
accurate than the product (86.34 % against 81.24 % OA). This tests that claim at 1 m in two
settings, each scored at 1 m against a 1 m reference on pixels no model trained on:

- ``nlcd``: a **real coarse product**. The eight Chesapeake patches
  (``../shared/data/chesapeake_nlcd``): 1 m NAIP, the 30 m NLCD (mapped to the seven classes,
  crops merged into grassland: :mod:`experiments.chesapeake_nlcd`) as the only label, the
  1 m land cover as the reference. Whole patches are held out (``--hold-out``, default the
  fourth and seventh), or ``--test DIR`` takes held-out patches in the same format and trains
  on every patch of ``--data-dir``.
- ``naip``: **synthetic products on the five GeoBench NAIP tiles**
  (``../shared/data/geobench_chesapeake_naip``; the south-east quadrant of each tile, from
  130 m on the 10 m cell lattice, is held out): a product with spatially correlated class
  confusion drawn from the paper's Table 2 and calibrated to ``--product-oa`` (default 76 %),
  and the mode of the truth per 10 m cell, the hardest product to beat
  (:mod:`experiments.coarse_products`).

In each setting the same small HRNet (the paper's recipe: weighted cross-entropy with
impervious x3, SGD 0.01, momentum 0.9, weight decay, poly decay; narrow for CPU minutes) is
trained in these arms, three seeds each:

- on the product, with the paper's noisy-sample filter off and on (the unfiltered run is the
  preliminary model; chips of ``--filter-chip`` px whose prediction agrees with the product
  on fewer than 20 % of the pixels lose their label, then the model is trained again);
- with a batch-norm and an instance-norm stem (``nlcd`` only: instance norm is trained on
  crops of at least 256 px and applied in windows of the same size; the NAIP quadrants leave
  no 256 px training crop);
- on the true 1 m labels (the ceiling: what the imagery and budget allow at all).

The coarse product is scored on the same pixels as the models. Overall accuracy and every
present class's producer's / user's accuracy and F1 come from the confusion matrix pooled over
the held-out pixels, per seed, then mean ± sample std over seeds. Every map is also scored on
one stratified random sample of the held-out pixels per setting, the same points for the
models and the product, with 95 % intervals (:mod:`experiments.landcover_points`: strata =
the product's classes, ``--points-per-stratum``, a fixed seed). ``OUT/metrics.json`` holds
everything (its ``test`` block: ``oa_model`` and ``f1_model`` of the paper's method, ``oa_product``
and ``f1_product`` of its product, first setting run; ``test.points`` their OA and F1 from
the points with 95 % half-widths, ``oa_model_ci95`` and so on); ``OUT/comparison.md`` the tables.
Finished (setting, seed) runs are kept in ``OUT/runs/`` keyed by the configuration, so an
interrupted run resumes and a finished one is not redone.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from experiments.chesapeake_nlcd import (
    BANDS,
    CHESAPEAKE_FOLDER,
    patch_files,
    read_patch,
)
from experiments.coarse_products import confusion_product, mode_product
from experiments.data import add_data_root_argument, existing_folder, sample_folder
from experiments.landcover_points import draw_points
from experiments.landcover_report import report_table, summarize
from experiments.naip import NAIP_FOLDER, read_naip_tile
from experiments.threads import add_threads_argument, use_threads
from gee_export.contract.bands import LABEL_NODATA
from gee_export.contract.label_schemes import LANDCOVER_CLASSES, SCHEMES
from gee_export.core.commands import (
    add_logging_arguments,
    check_output_folder,
    configure_logging,
    run_command,
)
from gee_export.core.digest import json_digest
from gee_export.core.errors import ConfigError, InputDataError
from gee_export.core.storage import atomic_write
from training.config import TrainConfig
from training.data import Augment
from training.metrics import confusion_matrix, json_safe
from training.modelfile import ModelMeta
from training.models import create_model, model_loss, recipe_for
from training.noisy import DEFAULT_THRESHOLD, PatchScore, agreement, select_patches
from training.trainer import Trainer

log = logging.getLogger(__name__)
K = len(LANDCOVER_CLASSES)
TRUTH = "true 1 m labels"


@dataclass(frozen=True)
class Arm:
    """One trained model of a setting: its label, stem norm and whether the filter runs."""

    name: str
    label: str  # a product's name, or TRUTH
    stem_norm: str
    filtered: bool = False


@dataclass(frozen=True)
class Setting:
    """A data set, its products and arms; ``headline`` is (the paper's method, its product)."""

    products: tuple[str, ...]
    arms: tuple[Arm, ...]
    headline: tuple[str, str]


SETTINGS: dict[str, Setting] = {
    "nlcd": Setting(("NLCD",), (
        Arm("hrnet IN", "NLCD", "instance"),
        Arm("hrnet IN + filter", "NLCD", "instance", filtered=True),
        Arm("hrnet BN", "NLCD", "batch"),
        Arm("hrnet IN, true labels", TRUTH, "instance"),
    ), ("hrnet IN + filter", "NLCD")),
    "naip": Setting(("confusion product", "mode product"), (
        Arm("hrnet BN, confusion product", "confusion product", "batch"),
        Arm("hrnet BN + filter, confusion product", "confusion product", "batch",
            filtered=True),
        Arm("hrnet BN, mode product", "mode product", "batch"),
        Arm("hrnet BN, true labels", TRUTH, "batch"),
    ), ("hrnet BN + filter, confusion product", "confusion product")),
}


@dataclass(frozen=True)
class LandCoverConfig:
    """Everything that defines the experiment (hashed to reuse finished runs).

    Attributes:
        data_dir: the chesapeake_nlcd ``.npz`` patches.
        naip_dir: the GeoBench ``id_*.hdf5`` NAIP tiles.
        test_dir: held-out ``.npz`` patches (then every patch of ``data_dir`` trains).
        hold_out: without ``test_dir``, positions (0-based, sorted by name) of the patches of
            ``data_dir`` held out.
        settings: which of :data:`SETTINGS` run.
        seeds: training seeds.
        model: ``hrnet`` keyword arguments (a narrow HRNet for CPU minutes).
        nlcd_crop / nlcd_batch / nlcd_iterations: training crops (>= 256 px for instance
            norm; also the inference window), batch and iterations of the ``nlcd`` setting.
        naip_crop / naip_batch / naip_iterations: the same for ``naip``.
        lr: initial SGD learning rate (poly decay to 0 at the budget).
        cell: the synthetic products' cell in 1 m pixels.
        product_oa / product_region / product_seed: the confusion product's calibrated OA,
            mean region spacing (px) and random draws.
        filter_threshold / filter_chip: the noisy-sample filter's agreement threshold and
            the side of the chips it scores (px).
        points_per_stratum / points_seed: the point sample's minimum per stratum (it draws
            that many times the strata in all) and its seed.
    """

    data_dir: str = field(default_factory=lambda: str(sample_folder(CHESAPEAKE_FOLDER)))
    naip_dir: str = field(default_factory=lambda: str(sample_folder(NAIP_FOLDER)))
    test_dir: str | None = None
    hold_out: tuple[int, ...] = (3, 6)
    settings: tuple[str, ...] = ("nlcd", "naip")
    seeds: tuple[int, ...] = (0, 1, 2)
    model: dict = field(default_factory=lambda: {"width": 8, "stem_width": 16,
                                                 "stage1_width": 16, "modules": [1, 1, 1],
                                                 "blocks": 2})
    nlcd_crop: int = 256
    nlcd_batch: int = 1
    nlcd_iterations: int = 200
    naip_crop: int = 64
    naip_batch: int = 8
    naip_iterations: int = 300
    lr: float = recipe_for("hrnet").lr
    cell: int = 10
    product_oa: float = 0.76
    product_region: float = 60.0
    product_seed: int = 0
    filter_threshold: float = DEFAULT_THRESHOLD
    filter_chip: int = 64
    points_per_stratum: int = 50
    points_seed: int = 0

    def __post_init__(self) -> None:
        problems = []
        if not self.seeds:
            problems.append("give at least one seed")
        if not self.settings or set(self.settings) - set(SETTINGS):
            problems.append(f"settings must be among {', '.join(SETTINGS)}")
        if self.nlcd_crop < 256:
            problems.append("the nlcd crop must be >= 256 px (instance norm needs the context)")
        if min(self.nlcd_batch, self.nlcd_iterations, self.naip_batch, self.naip_iterations) < 1:
            problems.append("batches and iterations must be >= 1")
        if not 32 <= self.naip_crop <= 128:
            problems.append("the naip crop must be 32..128 px (it must fit beside the held-out "
                            "quadrant)")
        if not 0.3 <= self.product_oa <= 0.95:
            problems.append("--product-oa must be in 0.3..0.95")
        if not 0 < self.filter_threshold < 1 or self.filter_chip < 8:
            problems.append("the filter threshold must be in (0, 1) and its chip >= 8 px")
        if self.points_per_stratum < 2:
            problems.append("--points-per-stratum must be >= 2 (a variance per stratum)")
        if problems:
            raise ConfigError("; ".join(problems))

    def key(self, setting: str, seed: int) -> str:
        """The digest of what a (setting, seed) run depends on: not the other setting's fields."""
        other = {"nlcd": ("naip_dir", "naip_crop", "naip_batch", "naip_iterations", "cell",
                          "product_oa", "product_region", "product_seed"),
                 "naip": ("data_dir", "test_dir", "hold_out", "nlcd_crop", "nlcd_batch",
                          "nlcd_iterations")}[setting]
        d = {k: v for k, v in asdict(self).items()
             if k not in ("seeds", "settings", *other)}
        d.update(setting=setting, seed=seed)
        return json_digest(d, 16)


# ------------------------------------------------------------------ scenes
@dataclass(frozen=True)
class Scene:
    """One image with its truth, products and held-out pixels (``test``)."""

    id: str
    image: np.ndarray
    truth: np.ndarray
    products: dict
    test: np.ndarray

    def labels(self, source: str) -> np.ndarray:
        return self.truth if source == TRUTH else self.products[source]

    @property
    def scored(self) -> np.ndarray:
        """Held-out pixels where the truth and every product say something."""
        ok = self.test & (self.truth != LABEL_NODATA)
        for p in self.products.values():
            ok &= p != LABEL_NODATA
        return ok

    @property
    def trains(self) -> bool:
        return not self.test.all()


def nlcd_scenes(cfg: LandCoverConfig) -> list[Scene]:
    """The Chesapeake patches: held-out ones (``test_dir`` or ``hold_out``) and the others."""
    files = patch_files(cfg.data_dir)
    if cfg.test_dir:
        test_files = patch_files(cfg.test_dir)
        train = [read_patch(p) for p in files]
        test = [read_patch(p) for p in test_files]
        seen = {_pixels(p.image) for p in train}
        overlap = [p.id for p in test if _pixels(p.image) in seen]
        if overlap:
            raise InputDataError(f"held-out patches {overlap[:3]} are also in --data-dir; give "
                                 "--test a folder of patches that are not trained on")
    else:
        bad = [i for i in cfg.hold_out if not 0 <= i < len(files)]
        if bad or not cfg.hold_out or len(set(cfg.hold_out)) >= len(files):
            raise ConfigError(f"--hold-out takes 1..{len(files) - 1} positions among the "
                              f"{len(files)} patches of {cfg.data_dir} (0-based), got "
                              f"{list(cfg.hold_out)}")
        patches = [read_patch(p) for p in files]
        test = [p for i, p in enumerate(patches) if i in cfg.hold_out]
        train = [p for i, p in enumerate(patches) if i not in cfg.hold_out]
    return ([Scene(p.id, p.image, p.truth, {"NLCD": p.product},
                   np.zeros(p.truth.shape, bool)) for p in train]
            + [Scene(p.id, p.image, p.truth, {"NLCD": p.product},
                     np.ones(p.truth.shape, bool)) for p in test])


def _pixels(image: np.ndarray) -> str:
    return json_digest({"shape": list(image.shape),
                        "sum": float(np.float64(image).sum()),
                        "head": np.round(image.ravel()[:4096].astype(np.float64), 6).tolist()})


def naip_scenes(cfg: LandCoverConfig) -> list[Scene]:
    """The GeoBench tiles, south-east quadrant held out, with both synthetic products."""
    paths = sorted(Path(cfg.naip_dir).glob("id_*.hdf5"))
    if not paths:
        raise InputDataError(f"no id_*.hdf5 NAIP tiles in {cfg.naip_dir}; pass --naip-dir")
    tiles = []
    for path in paths:
        bands, codes = read_naip_tile(path)
        tiles.append((path.stem, bands, SCHEMES["chesapeake"].apply(codes)))
    confused = confusion_product([t for _, _, t in tiles], cfg.product_oa, cfg.cell,
                                 cfg.product_region, cfg.product_seed)
    scenes = []
    for (name, bands, truth), product in zip(tiles, confused.maps, strict=True):
        half = -(-min(truth.shape) // 2 // cfg.cell) * cfg.cell  # 130 for 256 px, 10 px cells
        test = np.zeros(truth.shape, bool)
        test[half:, half:] = True
        scenes.append(Scene(name, bands, truth, {"confusion product": product,
                                                 "mode product": mode_product(truth, cfg.cell)},
                            test))
    return scenes


# ------------------------------------------------------------------ training
class CropDataset(torch.utils.data.Dataset):
    """Random training crops of the scenes' training pixels, then a random flip / quarter turn.

    Item ``i`` of epoch ``e`` is a crop of training scene ``i mod n`` drawn from ``(seed, e,
    i)`` among the windows without a held-out pixel (the trainer passes ``(epoch, index)``).
    """

    epoch_keys = True

    def __init__(self, scenes: Sequence[Scene], labels: Sequence[np.ndarray], mean: np.ndarray,
                 std: np.ndarray, crop: int, length: int, seed: int) -> None:
        keep = [i for i, s in enumerate(scenes) if s.trains]
        self.images = [_normalise(scenes[i].image, mean, std) for i in keep]
        self.labels = [labels[i] for i in keep]
        self.test = [scenes[i].test for i in keep]
        self.crop, self.length, self.seed = crop, length, seed
        for j, t in enumerate(self.test):
            h, w = t.shape
            if crop > min(h, w) or not self._fits(j):
                raise ConfigError(f"a {crop} px crop does not fit in the training pixels of "
                                  f"scene {keep[j]}; use a smaller crop")
        self.augment = Augment(blur=0.0)

    def _fits(self, j: int) -> bool:
        t, c = self.test[j], self.crop
        return any(not t[r:r + c, q:q + c].any() for r in (0, t.shape[0] - c)
                   for q in (0, t.shape[1] - c))

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, key):
        epoch, i = key if isinstance(key, tuple) else (0, key)
        j = i % len(self.images)
        rng = np.random.default_rng([self.seed, int(epoch), int(i)])
        h, w = self.labels[j].shape
        c = self.crop
        while True:  # a window of training pixels only
            r, q = int(rng.integers(0, h - c + 1)), int(rng.integers(0, w - c + 1))
            if not self.test[j][r:r + c, q:q + c].any():
                break
        image = self.images[j][:, r:r + c, q:q + c]
        image, (label,) = self.augment(image, [self.labels[j][r:r + c, q:q + c]], rng)
        return {"image": torch.from_numpy(np.ascontiguousarray(image)),
                "label": torch.from_numpy(label.astype(np.int64))}


def _normalise(image: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    return ((image - mean[:, None, None]) / std[:, None, None]).astype(np.float32)


@torch.no_grad()
def predict_windows(model: torch.nn.Module, image: np.ndarray, window: int) -> np.ndarray:
    """Class map (H, W) predicted in ``window`` px windows (the training crop's size).

    Windows tile the image; the last row and column of windows are moved back inside it (they
    overlap their neighbours, whose pixels they overwrite). An image smaller than the window
    is predicted whole.
    """
    model.eval()
    h, w = image.shape[1:]
    out = np.zeros((h, w), np.uint8)
    rows = sorted({min(r, max(h - window, 0)) for r in range(0, h, window)})
    cols = sorted({min(c, max(w - window, 0)) for c in range(0, w, window)})
    for r in rows:
        for c in cols:
            x = torch.from_numpy(np.ascontiguousarray(image[:, r:r + window, c:c + window]))
            out[r:r + window, c:c + window] = model(x[None])[0].argmax(0).numpy()
    return out


def filter_labels(scenes: Sequence[Scene], labels: Sequence[np.ndarray],
                  preds: Sequence[np.ndarray], chip: int, threshold: float
                  ) -> tuple[list[np.ndarray], int, int]:
    """Labels with every training chip the preliminary model disagrees with set to nodata.

    A chip's agreement (``training.noisy.agreement``) counts its labelled training pixels; the
    chips kept and dropped are decided by ``training.noisy.select_patches``. Returns the new
    labels, the chips dropped and the chips scored.
    """
    scores, where = [], {}
    for n, (scene, label, pred) in enumerate(zip(scenes, labels, preds, strict=True)):
        h, w = label.shape
        for r in range(0, h, chip):
            for c in range(0, w, chip):
                win = (slice(r, r + chip), slice(c, c + chip))
                lab = np.where(scene.test[win], LABEL_NODATA, label[win])
                share, count = agreement(pred[win], lab)
                if count:
                    pid = f"{scene.id}/{r}/{c}"
                    scores.append(PatchScore(pid, share, count))
                    where[pid] = (n, win)
    _, dropped = select_patches(scores, threshold)
    out = [label.copy() for label in labels]
    for s in dropped:
        n, win = where[s.id]
        out[n][win] = np.where(scenes[n].test[win], out[n][win], LABEL_NODATA)
    return out, len(dropped), len(scores)


def _train(cfg: LandCoverConfig, setting: str, arm: Arm, scenes: Sequence[Scene],
           labels: Sequence[np.ndarray], mean: np.ndarray, std: np.ndarray, seed: int,
           tmp: Path) -> torch.nn.Module:
    crop, batch, iterations = ((cfg.nlcd_crop, cfg.nlcd_batch, cfg.nlcd_iterations)
                               if setting == "nlcd" else
                               (cfg.naip_crop, cfg.naip_batch, cfg.naip_iterations))
    kwargs = {**cfg.model, "stem_norm": arm.stem_norm}
    torch.manual_seed(seed)
    model = create_model("hrnet", len(BANDS), K, **kwargs)
    meta = ModelMeta(name="hrnet", in_channels=len(BANDS), num_classes=K, bands=BANDS,
                     norm_mean=tuple(map(float, mean)), norm_std=tuple(map(float, std)),
                     class_scheme="landcover", class_names=LANDCOVER_CLASSES,
                     model_kwargs=kwargs, extra={"experiment": "experiments.landcover"})
    train_cfg = TrainConfig(out_dir=str(tmp), model="hrnet", model_kwargs=kwargs, epochs=1,
                            max_iterations=iterations, batch_size=batch, lr=cfg.lr,
                            crop_size=crop, seed=seed, num_workers=0, precision="fp32",
                            channels_last="off", device="cpu", progress=False)
    data = CropDataset(scenes, labels, mean, std, crop, iterations * batch, seed)
    Trainer(train_cfg, model, model_loss("hrnet", LANDCOVER_CLASSES), data, None, meta).fit()
    return model.cpu().eval()


def run_setting(cfg: LandCoverConfig, setting: str, scenes: Sequence[Scene], seed: int
                ) -> dict:
    """Train every arm of ``setting`` with ``seed``; score on the held-out pixels and points.

    Records each arm's confusion matrix on the held-out pixels and its classes at the
    setting's sample points (:func:`experiments.landcover_points.draw_points`).
    """
    spec = SETTINGS[setting]
    pixels = np.concatenate([s.image[:, ~s.test] for s in scenes], axis=1)
    mean, std = pixels.mean(1), np.maximum(pixels.std(1), 1e-6)
    window = cfg.nlcd_crop if setting == "nlcd" else cfg.naip_crop
    images = [_normalise(s.image, mean, std) for s in scenes]
    preds: dict[str, list[np.ndarray]] = {}
    record: dict = {"confusion": {}, "filter": {}, "seconds": {}, "points": {}}
    points = draw_points(scenes, spec.headline[1], cfg.points_per_stratum, cfg.points_seed)
    for arm in spec.arms:
        labels = [s.labels(arm.label) for s in scenes]
        if arm.filtered:
            prelim = next(a.name for a in spec.arms if not a.filtered and a.label == arm.label
                          and a.stem_norm == arm.stem_norm)
            labels, dropped, scored = filter_labels(scenes, labels, preds[prelim],
                                                    cfg.filter_chip, cfg.filter_threshold)
            record["filter"][arm.name] = {"preliminary": prelim, "dropped_chips": dropped,
                                          "scored_chips": scored}
            log.info("%s: the filter drops %d of %d chips", arm.name, dropped, scored)
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix=".landcover.") as tmp:
            model = _train(cfg, setting, arm, scenes, labels, mean, std, seed, Path(tmp))
        record["seconds"][arm.name] = time.perf_counter() - started
        preds[arm.name] = [predict_windows(model, x, window) for x in images]
        matrix = np.zeros((K, K), np.int64)
        for scene, pred in zip(scenes, preds[arm.name], strict=True):
            ok = scene.scored
            matrix += confusion_matrix(pred[ok], scene.truth[ok], K)
        record["confusion"][arm.name] = matrix.tolist()
        record["points"][arm.name] = points.values(scenes, preds[arm.name]).tolist()
    return record


# ------------------------------------------------------------------ the whole experiment
def _write_json(path: Path, data: dict) -> None:
    text = json.dumps(json_safe(data), indent=1, allow_nan=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda fh: fh.write(text.encode()))


def load_scenes(cfg: LandCoverConfig) -> dict[str, list[Scene]]:
    """Every setting's scenes, read and checked before any training."""
    readers = {"nlcd": nlcd_scenes, "naip": naip_scenes}
    return {s: readers[s](cfg) for s in cfg.settings}


def run_experiment(cfg: LandCoverConfig, out: str | Path) -> dict:
    """Every (setting, seed) run, reusing finished ones; returns and writes the report."""
    out = Path(out)
    started, cpu0 = time.perf_counter(), time.process_time()
    load0 = os.getloadavg()
    scenes = load_scenes(cfg)
    runs: dict[str, list[dict]] = {}
    todo = [(s, seed) for s in cfg.settings for seed in cfg.seeds]
    for n, (setting, seed) in enumerate(todo, 1):
        path = out / "runs" / f"{setting}_seed{seed}.json"
        key = cfg.key(setting, seed)
        if path.exists() and json.loads(path.read_text()).get("key") == key:
            runs.setdefault(setting, []).append(json.loads(path.read_text()))
            continue
        log.info("[%d/%d] %s, seed %d: %d arms", n, len(todo), setting, seed,
                 len(SETTINGS[setting].arms))
        record = {"key": key, "seed": seed, **run_setting(cfg, setting, scenes[setting], seed)}
        _write_json(path, record)
        runs.setdefault(setting, []).append(record)
    report = summarize(asdict(cfg), SETTINGS, scenes, runs)
    report["timing"] = {"wall_seconds": time.perf_counter() - started,
                        "cpu_seconds": time.process_time() - cpu0,
                        "threads": torch.get_num_threads(),
                        "load_average_start": list(load0),
                        "load_average_end": list(os.getloadavg())}
    _write_json(out / "metrics.json", report)
    table = (report_table(report) + "\n").encode()
    atomic_write(out / "comparison.md", lambda fh: fh.write(table))
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m experiments.landcover``; returns the exit status."""
    p = argparse.ArgumentParser(prog="python -m experiments.landcover", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    d = LandCoverConfig.__dataclass_fields__
    p.add_argument("--data-dir", help="folder of the chesapeake_nlcd .npz patches "
                   f"(default: {CHESAPEAKE_FOLDER} in the --data-root)")
    p.add_argument("--naip-dir", help="folder of the GeoBench Chesapeake id_*.hdf5 tiles "
                   f"(default: {NAIP_FOLDER} in the --data-root)")
    add_data_root_argument(p)
    p.add_argument("--test", help="folder of held-out .npz patches in the chesapeake_nlcd "
                   "format (then every --data-dir patch trains)")
    p.add_argument("--hold-out", type=int, nargs="+", default=list(d["hold_out"].default),
                   help="without --test: positions (0-based, by name) of the held-out patches")
    p.add_argument("--settings", nargs="+", choices=list(SETTINGS),
                   default=list(d["settings"].default))
    p.add_argument("--out", default="landcover_output")
    p.add_argument("--seeds", type=int, nargs="+", default=list(d["seeds"].default))
    p.add_argument("--nlcd-iterations", type=int, default=d["nlcd_iterations"].default)
    p.add_argument("--naip-iterations", type=int, default=d["naip_iterations"].default)
    p.add_argument("--width", type=int, default=8, help="HRNet C")
    p.add_argument("--lr", type=float, default=d["lr"].default)
    p.add_argument("--product-oa", type=float, default=d["product_oa"].default,
                   help="overall accuracy of the synthetic confusion product")
    p.add_argument("--points-per-stratum", type=int,
                   default=d["points_per_stratum"].default,
                   help="points per stratum of the point sample (strata: the product's classes)")
    add_threads_argument(p)
    add_logging_arguments(p)
    a = p.parse_args(argv)
    configure_logging(a.verbose, a.quiet, a.debug)
    return run_command("python -m experiments.landcover", lambda: _run(a), debug=a.debug,
                       writes_to=[a.out])


def _run(a: argparse.Namespace) -> int:
    use_threads(a.threads)
    data_dir = existing_folder(a.data_dir or sample_folder(CHESAPEAKE_FOLDER, a.data_root),
                               "chesapeake_nlcd", "--data-dir") if "nlcd" in a.settings else ""
    naip_dir = existing_folder(a.naip_dir or sample_folder(NAIP_FOLDER, a.data_root),
                               "GeoBench Chesapeake NAIP", "--naip-dir") \
        if "naip" in a.settings else ""
    test_dir = existing_folder(a.test, "held-out patches", "--test") if a.test else None
    model = {**LandCoverConfig().model, "width": a.width}
    cfg = LandCoverConfig(data_dir=str(data_dir), naip_dir=str(naip_dir),
                          test_dir=str(test_dir) if test_dir else None,
                          hold_out=tuple(a.hold_out), settings=tuple(a.settings),
                          seeds=tuple(a.seeds), model=model,
                          nlcd_iterations=a.nlcd_iterations, naip_iterations=a.naip_iterations,
                          lr=a.lr, product_oa=a.product_oa,
                          points_per_stratum=a.points_per_stratum)
    check_output_folder("--out", a.out)
    report = run_experiment(cfg, a.out)
    print(report_table(report))
    t = report["timing"]
    print(f"{t['wall_seconds']:.0f} s wall, {t['cpu_seconds']:.0f} s CPU on {t['threads']} "
          f"threads; report: {Path(a.out) / 'metrics.json'}, {Path(a.out) / 'comparison.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
