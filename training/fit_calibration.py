"""After training: the model file's temperature fitted on the validation split, and recorded.

The fit itself (and what a temperature does to probabilities) is :mod:`training.calibration`;
this module runs the kept weights over a split and rewrites their model file with the record,
and fits a joined model's own temperature (:func:`fit_joined`) on the split its members
validated on.

The fit reads the split's outputs as they stream by, one batch at a time: each scene's
labelled pixels are gathered by :class:`ThinnedPixels`, which holds at most twice
:data:`training.calibration.MAX_FIT_PIXELS` of them whatever the split's size.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import torch
from torch import nn

from contract.bands import LABEL_NODATA
from engine.outputs import main_output
from training.calibration import MAX_FIT_PIXELS, fit_transfer_record
from training.data import NormStats, PatchDataset, Split, scene_norms_for
from training.loader import make_loader
from training.model_meta import ModelMeta
from training.modelfile import read_model_file, save_model_file

#: ``outputs(model)``: per batch, the model's logits ``(N, K, H, W)``, labels ``(N, H, W)``
#: and each sample's scene (the temperature is fitted where it transfers between scenes)
Outputs = Callable[[nn.Module], Iterable[tuple[torch.Tensor, torch.Tensor, Sequence[str]]]]


def calibrate_model_file(path: str | os.PathLike, model: nn.Module, outputs: Outputs,
                         split: str = "val") -> dict | None:
    """Fit the temperature of the model file at ``path`` and record it there.

    ``model`` is a network of the file's architecture (the trainer's own: a model file of a
    network defined in a script loads without the registry); the file's weights are loaded
    into it for the fit, in eval mode, and its own weights are given back afterwards.
    ``outputs(model)`` runs it over the split as its training ran (precision, layout). The
    file is rewritten atomically with the record
    (:func:`training.calibration.fit_transfer_record`, per scene); a
    split whose labels are not on the outputs' grid leaves the model uncalibrated, saying
    why. Returns the record, or None when the file already holds one (a resumed run).
    """
    path = Path(path)
    meta, state = read_model_file(path, flag="model file")
    if meta.calibration:
        return None
    net = getattr(model, "_orig_mod", model)  # a compiled model's own module
    kept = {k: v.detach().clone() for k, v in net.state_dict().items()}
    was_training = net.training
    try:
        net.load_state_dict(state)
        net.eval()
        with torch.no_grad():
            record = _fitted(outputs(model), split)
        save_model_file(path, net, ModelMeta.from_dict({**meta.to_dict(),
                                                        "calibration": record}))
    finally:
        net.load_state_dict(kept)
        net.train(was_training)
    return record


def model_split(meta: ModelMeta, data: str | os.PathLike, split: Split) -> PatchDataset:
    """The ``split`` of the patch dataset ``data`` as the file's network reads it.

    Its bands, normalisation (the training split's statistics, or each scene's) and label
    (the fine one for a model mapping finer than its input), as the model was trained.
    """
    return PatchDataset(data, split, bands=meta.bands,
                        norm=NormStats(meta.bands, meta.norm_mean, meta.norm_std),
                        label="label_fine" if meta.output_scale > 1 else "label",
                        scene_norms=scene_norms_for(data, meta.bands, meta.norm))


def fit_joined(model: nn.Module, meta: ModelMeta, data: str | os.PathLike, batch_size: int,
               device: torch.device) -> dict:
    """The joined model's own temperature, fitted where it transfers on the validation split.

    ``model`` is the mean of the members (:class:`training.models.members.MemberMean`, its
    own temperature 1), ``meta`` the joined file's description, ``data`` the patch dataset
    its members trained on. Its log-probabilities are fitted as one network's logits
    (:func:`training.calibration.fit_transfer_record`, per scene): the record says the
    temperature, or ``method: none`` (T = 1) with the reason. One pass over the split, in
    float32 on ``device``.
    """
    loader = make_loader(model_split(meta, data, "val"), batch_size, False, 0, 0)
    model.to(device).eval()

    def outputs() -> Iterator[tuple[torch.Tensor, torch.Tensor, list[str]]]:
        with torch.no_grad():
            for batch in loader:
                out = main_output(model(batch["image"].to(device)))
                yield out.float().cpu(), batch["label"], scenes_of(batch)

    return _fitted(outputs(), "val")


def _fitted(batches: Iterable[tuple[torch.Tensor, torch.Tensor, Sequence[str]]],
            split: str) -> dict:
    """The record of a fit on ``batches`` per scene, or T = 1 with the reason it failed."""
    try:
        return fit_transfer_record(_by_scene(batches), split)
    except ValueError as exc:  # labels not on the outputs' grid
        return {"method": "none", "temperature": 1.0, "split": split, "reason": str(exc)}


def _by_scene(batches: Iterable[tuple[torch.Tensor, torch.Tensor, Sequence[str]]],
              ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Each scene's labelled logits and labels, gathered by :class:`ThinnedPixels`."""
    pixels = ThinnedPixels()
    for logits, labels, scenes in batches:
        for i, scene in enumerate(scenes):
            pixels.add(scene, logits[i:i + 1], labels[i:i + 1])
    return pixels.result()


def labelled_pixels(logits: torch.Tensor, labels: torch.Tensor,
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """The logits ``(P, K)`` (float32, CPU) and labels ``(P,)`` of one batch's labelled pixels.

    ``logits (N, K, H, W)``, ``labels (N, H, W)``; a pixel labelled :data:`LABEL_NODATA` or
    outside the classes is left out. Raises ValueError when the two are not on one grid.
    """
    k = logits.shape[1]
    z = logits.detach().float().cpu().movedim(1, -1).reshape(-1, k)
    y = labels.detach().long().cpu().reshape(-1)
    if z.shape[0] != y.shape[0]:
        raise ValueError(f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)} "
                         "are not on one grid")
    valid = (y != LABEL_NODATA) & (y >= 0) & (y < max(k, 2))
    return z[valid], y[valid]


class ThinnedPixels:
    """Labelled pixels of a stream of batches, per key (a scene), in bounded memory.

    Each labelled pixel takes the stream's next number, and a pixel is held while its number
    is a multiple of the stride. The stride starts at 1 and doubles whenever more than
    ``2 * max_pixels`` are held, dropping those off it: at most ``2 * max_pixels`` (and one
    batch) are held, spread evenly over the stream. A stream of at most ``2 * max_pixels``
    labelled pixels is held whole, so its result is each key's pixels in stream order.
    :meth:`result` then takes at most ``max_pixels`` of each key, evenly.
    """

    def __init__(self, max_pixels: int = MAX_FIT_PIXELS) -> None:
        if max_pixels < 1:
            raise ValueError(f"max_pixels must be >= 1, got {max_pixels}")
        self.max_pixels, self.stride, self.seen, self.held = max_pixels, 1, 0, 0
        self._parts: dict[str, list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]] = {}

    def add(self, key: str, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """The labelled pixels of ``logits (N, K, H, W)`` and ``labels (N, H, W)``, for ``key``."""
        z, y = labelled_pixels(logits, labels)
        number = torch.arange(self.seen, self.seen + len(y))
        self.seen += len(y)
        on = number % self.stride == 0
        self._parts.setdefault(key, []).append((z[on], y[on], number[on]))
        self.held += int(on.sum())
        while self.held > 2 * self.max_pixels:
            self._thin()

    def _thin(self) -> None:
        """Double the stride and drop the held pixels off it."""
        self.stride *= 2
        self.held = 0
        for key, parts in self._parts.items():
            kept = []
            for z, y, number in parts:
                on = number % self.stride == 0
                kept.append((z[on], y[on], number[on]))
                self.held += int(on.sum())
            self._parts[key] = kept

    def result(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Each key's logits ``(P, K)`` and labels ``(P,)``: at most ``max_pixels``, evenly."""
        out = {}
        for key, parts in self._parts.items():
            z, y = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
            if len(y) > self.max_pixels:
                pick = torch.linspace(0, len(y) - 1, self.max_pixels).long()
                z, y = z[pick], y[pick]
            out[key] = (z, y)
        return out


def labelled_logits(batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                    max_pixels: int = MAX_FIT_PIXELS) -> tuple[torch.Tensor, torch.Tensor]:
    """The logits ``(P, K)`` and labels ``(P,)`` of the labelled pixels of ``batches``.

    ``batches``: ``(logits (N, K, H, W), labels (N, H, W))``, one key of
    :class:`ThinnedPixels`: at most ``max_pixels``, spread evenly over the stream.
    """
    pixels = ThinnedPixels(max_pixels)
    for logits, labels in batches:
        pixels.add("all", logits, labels)
    return pixels.result().get("all", (torch.zeros(0, 1), torch.zeros(0, dtype=torch.long)))


def scenes_of(batch: dict) -> list[str]:
    """The scene of each sample of a batch: its patch id's folder (``<month>[/<part>]``).

    A patch id is ``<month>/<id>``, and a dataset merged from several exports prefixes the
    id with the part's name, so the folder tells the scenes apart (one month of one export
    is one stack). A batch without ids is one scene.
    """
    ids = batch.get("id")
    if ids is None:
        return ["all"] * len(batch["label"])
    return [posixpath.dirname(str(i)) for i in ids]
