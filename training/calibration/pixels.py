"""The validation split's labelled pixels for the temperature fit, gathered in bounded memory.

A temperature is fitted on the logits and labels of the validation split's labelled pixels,
per scene (:func:`training.calibration.temperature.fit_transfer_record`). A split of a large region
holds
far more of them than a fit needs, so :class:`ScenePixels` gathers them as the batches stream
by and never holds more than ``2 * max_pixels`` at once (:data:`MAX_FIT_PIXELS`): each batch
is moved to the CPU, its labelled pixels kept, and where too many are held the scene holding
the most is thinned. A split of at most ``2 * max_pixels`` labelled pixels is held whole.

Thinning keeps a pixel while its key is below ``1 / stride`` (the scene's stride doubles at
each thinning, so the pixels kept at a larger stride are among those kept at the smaller).
The key is the fractional part of (n + 1) times the golden ratio, n the pixel's number in its
scene (the order the batches gave it): a fixed, evenly spread sequence, so which pixels are kept
depends only on the split and its order, and no column or row of a patch is favoured (a key
of ``number mod stride`` would keep only the patches' first columns, their edges).
"""

from __future__ import annotations

import math
import posixpath
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch

from contract.bands import LABEL_NODATA
from training.calibration.temperature import MAX_FIT_PIXELS

_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


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


def keys(start: int, count: int) -> torch.Tensor:
    """The thinning keys in ``(0, 1)`` of a scene's pixels ``start`` to ``start + count - 1``.

    Pixel ``n``'s key is the fractional part of ``(n + 1)`` times the golden ratio (never 0,
    so no pixel is kept at every stride).
    """
    return torch.frac(torch.arange(start + 1, start + count + 1, dtype=torch.float64) * _GOLDEN)


@dataclass
class _Scene:
    """One scene's held pixels: ``(logits, labels, keys)`` parts in the order they came.

    Each part holds more than twice the pixels of the one after it (a new part is joined with
    the last while it is at least half as large), so a scene holds a few parts, and a pixel is
    copied into a larger one a few times, however long the stream.
    """

    parts: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = field(default_factory=list)
    seen: int = 0
    stride: int = 1
    held: int = 0

    def append(self, part: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> None:
        """Add a part after the others, joining the last ones while they are alike in size."""
        self.parts.append(part)
        self.held += len(part[1])
        while len(self.parts) > 1 and 2 * len(self.parts[-1][1]) >= len(self.parts[-2][1]):
            last = self.parts.pop()
            self.parts[-1] = _joined([self.parts[-1], last])

    def thin(self) -> None:
        """Double the stride and drop the held pixels whose key is not below its inverse."""
        self.stride *= 2
        z, y, key = _joined(self.parts)
        on = key < 1.0 / self.stride
        self.parts, self.held = [(z[on], y[on], key[on])], int(on.sum())


def _joined(parts: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    z, y, key = (torch.cat([p[j] for p in parts]) for j in range(3))
    return z, y, key


class ScenePixels:
    """The labelled pixels of a stream of batches, per scene, at most ``2 * max_pixels`` held.

    :meth:`add_batch` takes each batch as the model gave it; :meth:`result` gives each
    scene's logits and labels, at most ``max_pixels`` of each (an even pick). Labels not on
    the outputs' grid stop the gathering and are said in :attr:`error` (the fit then keeps
    ``T = 1`` and records why), so a validation pass never fails on them.
    """

    def __init__(self, max_pixels: int = MAX_FIT_PIXELS) -> None:
        if max_pixels < 1:
            raise ValueError(f"max_pixels must be >= 1, got {max_pixels}")
        self.max_pixels = max_pixels
        self.scenes: dict[str, _Scene] = {}
        self.error: str | None = None

    @property
    def held(self) -> int:
        """The pixels held now, every scene's."""
        return sum(s.held for s in self.scenes.values())

    def add_batch(self, logits: torch.Tensor, labels: torch.Tensor,
                  scenes: Sequence[str]) -> None:
        """A batch's logits ``(N, K, H, W)``, labels ``(N, H, W)`` and each sample's scene."""
        if self.error is not None:
            return
        z, y = logits.detach().float().cpu(), labels.detach().cpu()
        for i, scene in enumerate(scenes):
            self.add(scene, z[i:i + 1], y[i:i + 1])

    def add(self, scene: str, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """The labelled pixels of ``logits (N, K, H, W)`` and ``labels (N, H, W)``."""
        if self.error is not None:
            return
        try:
            z, y = labelled_pixels(logits, labels)
        except ValueError as exc:  # labels not on the outputs' grid: nothing to fit on
            self.error, self.scenes = str(exc), {}
            return
        s = self.scenes.setdefault(scene, _Scene())
        key = keys(s.seen, len(y))
        s.seen += len(y)
        on = key < 1.0 / s.stride
        if bool(on.any()) or not s.parts:  # an empty part keeps the scene's number of classes
            s.append((z[on], y[on], key[on]))
        while self.held > 2 * self.max_pixels:
            max(self.scenes.values(), key=lambda c: c.held).thin()

    def result(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Each scene's logits ``(P, K)`` and labels ``(P,)``: at most ``max_pixels``, evenly."""
        out = {}
        for name, s in self.scenes.items():
            z, y, _ = _joined(s.parts)
            if len(y) > self.max_pixels:
                pick = torch.linspace(0, len(y) - 1, self.max_pixels).long()
                z, y = z[pick], y[pick]
            out[name] = (z, y)
        return out


def gather(batches: Iterable[tuple[torch.Tensor, torch.Tensor, Sequence[str]]],
           max_pixels: int = MAX_FIT_PIXELS) -> ScenePixels:
    """The labelled pixels of ``(logits, labels, scenes)`` batches (:class:`ScenePixels`)."""
    pixels = ScenePixels(max_pixels)
    for logits, labels, scenes in batches:
        pixels.add_batch(logits, labels, scenes)
        if pixels.error is not None:  # nothing more to fit on: the pass stops here
            break
    return pixels


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
