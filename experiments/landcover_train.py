"""The land-cover experiment's training side: scenes, crops, the filter, one trained model.

Apart from :mod:`experiments.landcover` (the settings, arms, folds and the command) so that
each stays small. A training run here is one model: the experiment decides its labels (a
product, the truth, or the product with soft labels for label super-resolution), its loss and
its budget, and gets back the trained network.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from contract.bands import LABEL_NODATA
from contract.label_schemes import LANDCOVER_CLASSES
from core.digest import json_digest
from core.errors import ConfigError
from inference.predict.keep.rule import other_class
from training.config import TrainConfig
from training.data import Augment
from training.modelfile import ModelMeta
from training.models import create_model
from training.noisy import PatchScore, agreement, select_patches
from training.run.trainer import Trainer

K = len(LANDCOVER_CLASSES)
TRUTH = "true 1 m labels"


@dataclass(frozen=True)
class Scene:
    """One image with its truth, products and held-out pixels (``test``).

    ``soft`` holds training labels that are not maps to score: a product's labels with its
    composite classes as soft labels (``experiments.chesapeake_nlcd.composition_labels``).
    ``product_input`` holds the product as input channels (``(C, H, W)``, already on a unit
    scale: ``experiments.chesapeake_nlcd.product_channels``) for the arms that refine the
    product rather than learn it from the imagery alone.
    """

    id: str
    image: np.ndarray
    truth: np.ndarray
    products: dict
    test: np.ndarray
    soft: dict = field(default_factory=dict)
    product_input: np.ndarray | None = None

    def labels(self, source: str) -> np.ndarray:
        if source == TRUTH:
            return self.truth
        return self.products[source] if source in self.products else self.soft[source]

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

    @property
    def developed(self) -> np.ndarray | None:
        """Pixels whose soft training labels are a composite class (NLCD's developed cells).

        A soft label is any value that is neither a class index nor nodata
        (``experiments.chesapeake_nlcd.composition_labels``); None when the scene has none.
        """
        if not self.soft:
            return None
        out = np.zeros(self.truth.shape, bool)
        for label in self.soft.values():
            out |= (label >= K) & (label != LABEL_NODATA)
        return out


def scored_scenes(folds: Sequence[Sequence[Scene]]) -> list[Scene]:
    """Each scene with held-out pixels once, as the fold holding it out has it."""
    return [s for scenes in folds for s in scenes if s.test.any()]


def image_digest(image: np.ndarray) -> str:
    """A digest of an image's pixels: the same patch under another name has the same one."""
    return json_digest({"shape": list(image.shape),
                        "sum": float(np.float64(image).sum()),
                        "head": np.round(image.ravel()[:4096].astype(np.float64), 6).tolist()})


def training_counts(labels: Sequence[np.ndarray], scenes: Sequence[Scene],
                    soft: dict[int, dict[str, float]]) -> list[float]:
    """Pixels per class among the training labels; a soft label counts its expected share."""
    counts = np.zeros(K)
    for label, scene in zip(labels, scenes, strict=True):
        values, n = np.unique(label[~scene.test], return_counts=True)
        for v, c in zip(values.tolist(), n.tolist(), strict=True):
            if v < K:
                counts[v] += c
            for name, share in soft.get(v, {}).items():
                counts[LANDCOVER_CLASSES.index(name)] += c * share
    return counts.tolist()


class CropDataset(torch.utils.data.Dataset):
    """Random training crops of the scenes' training pixels, then a random flip / quarter turn.

    Item ``i`` of epoch ``e`` is a crop of training scene ``i mod n`` drawn from ``(seed, e,
    i)`` among the windows without a held-out pixel (the trainer passes ``(epoch, index)``).
    ``with_product``: the scenes' ``product_input`` channels follow the image's.
    """

    epoch_keys = True

    def __init__(self, scenes: Sequence[Scene], labels: Sequence[np.ndarray], mean: np.ndarray,
                 std: np.ndarray, crop: int, length: int, seed: int,
                 with_product: bool = False) -> None:
        keep = [i for i, s in enumerate(scenes) if s.trains]
        self.images = [model_input(scenes[i], mean, std, with_product) for i in keep]
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


def normalise(image: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    return ((image - mean[:, None, None]) / std[:, None, None]).astype(np.float32)


def model_input(scene: Scene, mean: np.ndarray, std: np.ndarray,
                with_product: bool = False) -> np.ndarray:
    """The network's input: the normalised image, then the product's channels if asked.

    The product's channels are not normalised: they are one-hot classes and fractions on a
    unit scale already, and a class the training pixels barely hold would get a tiny
    standard deviation and blow up wherever it appears.
    """
    image = normalise(scene.image, mean, std)
    if not with_product:
        return image
    if scene.product_input is None:
        raise ConfigError(f"scene {scene.id} has no product input channels")
    return np.concatenate([image, scene.product_input.astype(np.float32)])


def quadrant_holdout(shape: tuple[int, int], quadrant: int) -> np.ndarray:
    """Held-out mask of one quadrant (0 top left, 1 top right, 2 bottom left, 3 bottom right)."""
    (h, w), (r, c) = shape, divmod(quadrant % 4, 2)
    test = np.zeros(shape, bool)
    test[slice(0, h // 2) if r == 0 else slice(h // 2, h),
         slice(0, w // 2) if c == 0 else slice(w // 2, w)] = True
    return test


def predict_windows(model: torch.nn.Module, image: np.ndarray, window: int) -> np.ndarray:
    """Class map (H, W) predicted in ``window`` px windows (the training crop's size).

    The argmax of :func:`predict_probabilities`.
    """
    return predict_probabilities(model, image, window).argmax(0).astype(np.uint8)


@torch.no_grad()
def predict_probabilities(model: torch.nn.Module, image: np.ndarray, window: int
                          ) -> np.ndarray:
    """Class probabilities (K, H, W) predicted in ``window`` px windows.

    Windows tile the image; the last row and column of windows are moved back inside it (they
    overlap their neighbours, whose pixels they overwrite). An image smaller than the window
    is predicted whole.
    """
    model.eval()
    h, w = image.shape[1:]
    out: np.ndarray | None = None
    rows = sorted({min(r, max(h - window, 0)) for r in range(0, h, window)})
    cols = sorted({min(c, max(w - window, 0)) for c in range(0, w, window)})
    for r in rows:
        for c in cols:
            x = torch.from_numpy(np.ascontiguousarray(image[:, r:r + window, c:c + window]))
            p = torch.softmax(model(x[None])[0].float(), 0).numpy()
            if out is None:
                out = np.zeros((p.shape[0], h, w), np.float32)
            out[:, r:r + window, c:c + window] = p
    assert out is not None
    return out


def share_decision(probs: Sequence[np.ndarray], labels: Sequence[np.ndarray],
                   scenes: Sequence[Scene], soft: dict[int, dict[str, float]], cls: str
                   ) -> list[np.ndarray]:
    """Class maps that give class ``cls`` the share of the soft cells their labels expect.

    Label super-resolution fits the *mean* probability of ``cls`` over a coarse cell to the
    cell's expected fraction; nothing in it makes single pixels confident, so the argmax can
    leave ``cls`` out altogether (a 10 % share spread evenly over a cell is a perfect fit).
    This decides instead: on the training pixels of the soft labels, the threshold ``t`` on
    the probability of ``cls`` above which lies the expected share of those pixels (their
    mean expected fraction); every soft-labelled pixel is ``cls`` where its probability is at
    least ``t``, else the most probable other class; every other pixel keeps the argmax.
    The threshold uses training pixels only; held-out pixels get the same rule.
    """
    k = LANDCOVER_CLASSES.index(cls)
    expected = np.zeros(256, np.float32)
    for value, fractions in soft.items():
        expected[value] = fractions.get(cls, 0.0)
    is_soft = [np.isin(label, list(soft)) for label in labels]
    train = np.concatenate([p[k][m & ~s.test] for p, m, s in zip(probs, is_soft, scenes,
                                                                  strict=True)])
    share = np.concatenate([expected[label[m & ~s.test]] for label, m, s in
                            zip(labels, is_soft, scenes, strict=True)])
    t = float(np.quantile(train, 1 - share.mean())) if train.size else np.inf
    out = []
    for p, m in zip(probs, is_soft, strict=True):
        decided = np.where(p[k] >= t, k, other_class(p, k)).astype(np.uint8)
        out.append(np.where(m, decided, p.argmax(0)).astype(np.uint8))
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


@dataclass(frozen=True)
class Budget:
    """One model's training: crop side, batch, iterations, learning rate and seed."""

    crop: int
    batch: int
    iterations: int
    lr: float
    seed: int


def train_model(model_kwargs: dict, bands: Sequence[str], scenes: Sequence[Scene],
                labels: Sequence[np.ndarray], mean: np.ndarray, std: np.ndarray,
                loss: nn.Module, budget: Budget, tmp: Path,
                product_bands: Sequence[str] = ()) -> nn.Module:
    """An ``hrnet`` trained from scratch on the training pixels of ``scenes`` with ``labels``.

    The engine's trainer runs it (SGD and poly decay of the ``hrnet`` recipe, fp32 on the
    CPU, on the process's thread count); the model is returned in eval mode.
    ``product_bands`` names the scenes' ``product_input`` channels when the network reads
    them after the image (none: the image alone).
    """
    torch.manual_seed(budget.seed)
    bands = (*bands, *product_bands)
    model = create_model("hrnet", len(bands), K, **model_kwargs)
    meta = ModelMeta(name="hrnet", in_channels=len(bands), num_classes=K, bands=tuple(bands),
                     norm_mean=(*map(float, mean), *[0.0] * len(product_bands)),
                     norm_std=(*map(float, std), *[1.0] * len(product_bands)),
                     class_scheme="landcover", class_names=LANDCOVER_CLASSES,
                     model_kwargs=model_kwargs, extra={"experiment": "experiments.landcover"})
    train_cfg = TrainConfig.of(out_dir=str(tmp), model="hrnet", model_kwargs=model_kwargs,
                               epochs=1, max_iterations=budget.iterations,
                               batch_size=budget.batch, lr=budget.lr, crop_size=budget.crop,
                               seed=budget.seed, num_workers=0, precision="fp32",
                               channels_last="off", device="cpu", progress=False)
    data = CropDataset(scenes, labels, mean, std, budget.crop,
                       budget.iterations * budget.batch, budget.seed, bool(product_bands))
    Trainer(train_cfg, model, loss, data, None, meta, curves=False).fit()  # temp folder
    return model.cpu().eval()
