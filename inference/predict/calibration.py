"""The patches an int8 model is calibrated and checked on: the model's own training data.

A model file records the patch dataset it was trained on (``extra["dataset"]["root"]``,
:func:`training.run_inputs.dataset_record`). Where that dataset can still be read, its
training split calibrates the quantized model and its validation split, with labels, checks
it; where it cannot (a model file copied to another machine), :class:`TilePredictor
<inference.predict.runtime.TilePredictor>` falls back to the map's first tiles, and the
recorded choice says so.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import torch

from engine.quantize import CALIBRATION_PATCHES, CHECK_PATCHES, Int8Patches
from gee_export.contract.bands import LABEL_NODATA
from gee_export.core.errors import IsamapError

if TYPE_CHECKING:
    from training.data import PatchDataset
    from training.modelfile import ModelMeta

log = logging.getLogger(__name__)

#: patches per calibration or check batch
BATCH = 8


def model_file_patches(meta: ModelMeta) -> Int8Patches | None:
    """Calibration (training split) and check (validation split, labelled) patches.

    Spread evenly over each split (patches are often stored in region order). None, with the
    reason logged, when the model file records no dataset or it cannot be read.
    """
    from training.data import NormStats, PatchDataset

    extra = dict(meta.extra or {})
    root = (extra.get("dataset") or {}).get("root") or (extra.get("config") or {}).get("data")
    if not root:
        log.info("int8: the model file records no training dataset; calibrating on the "
                 "input's first tiles")
        return None
    label = str((extra.get("config") or {}).get("label") or "label")
    norm = NormStats(tuple(meta.bands), tuple(meta.norm_mean), tuple(meta.norm_std))
    try:
        train = PatchDataset(root, "train", meta.bands, norm, None, targets=(label,))
        val = PatchDataset(root, "val", meta.bands, norm, None, targets=(label,))
        calibration = _batches(train, CALIBRATION_PATCHES)
        check = _batches(val, CHECK_PATCHES)
    except (IsamapError, OSError, ValueError, KeyError) as exc:
        log.info("int8: the training patches at %s cannot be read (%s); calibrating on the "
                 "input's first tiles", root, exc)
        return None
    return Int8Patches(tuple(x for x, _ in calibration), tuple(x for x, _ in check),
                       tuple(y for _, y in check),
                       f"{sum(len(x) for x, _ in calibration)} patches of the training split "
                       f"of {root}",
                       f"{sum(len(x) for x, _ in check)} patches of the validation split of "
                       f"{root} (labelled)", label_nodata=LABEL_NODATA)


def _batches(dataset: PatchDataset, count: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``count`` items spread over ``dataset`` as (image, label) batches of :data:`BATCH`."""
    n = len(dataset)
    step = max(n / count, 1.0)
    picks = sorted({int(i * step) for i in range(min(count, n))})
    items = [dataset[i] for i in picks]
    out = []
    for start in range(0, len(items), BATCH):
        part = items[start:start + BATCH]
        out.append((torch.stack([torch.as_tensor(it["image"]) for it in part]),
                    torch.stack([torch.as_tensor(it["label"]).long() for it in part])))
    return out
