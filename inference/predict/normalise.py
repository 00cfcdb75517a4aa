"""Raw tiles normalised into a model's batch: the same bits on every CPU and GPU.

Tiles are normalised into the model's batch as ``x * (1/std) + (-mean/std)``, NaN as the
mean. The multiply and the add are two rounded operations (:func:`normalise_into`), never one
fused multiply-add: IEEE 754 rounds each of them the same way on every CPU, vector width and GPU, so
the batch, and the map, do not depend on which kernel torch picks for the machine (a fused
multiply-add rounds once, and torch fuses it on some CPUs and not on others).

On the CPU, :class:`BatchNormaliser` writes each tile, read where it lies (a view into the
caller's tile row), once into a batch tensor reused from call to call: a fresh one is tens of
MB of new pages to fault in on the model's thread between forwards. NaN and infinities
(nodata) become 0, the band mean; each tile just written is summed (still in the cache: NaN
and infinities survive a sum, so one read proves there are none).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

#: a batch of raw tiles: ``(N, C, H, W)``, or N arrays ``(C, H, W)``
Tiles = np.ndarray | Sequence[np.ndarray]

_F32 = np.dtype(np.float32)


def normalise_into(raw: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor,
                   out: torch.Tensor) -> torch.Tensor:
    """``out = raw * scale + shift``, rounded after the multiply and after the add.

    ``shift`` and ``scale`` broadcast against ``raw`` (per band). The one definition of the
    normalisation's arithmetic, on any device.
    """
    torch.mul(raw, scale, out=out)
    return out.add_(shift)


class BatchNormaliser:
    """Writes raw tiles normalised into a reused CPU batch tensor.

    Args:
        shift, scale: per band, ``-mean/std`` and ``1/std`` (float32).
    """

    def __init__(self, shift: np.ndarray, scale: np.ndarray) -> None:
        self.shift = np.ascontiguousarray(shift, _F32).reshape(-1)
        self.scale = np.ascontiguousarray(scale, _F32).reshape(-1)
        self._shift_t = torch.from_numpy(self.shift).view(-1, 1, 1)
        self._scale_t = torch.from_numpy(self.scale).view(-1, 1, 1)
        self._buffers: dict[tuple, torch.Tensor] = {}

    def __call__(self, tiles: Tiles, fmt: torch.memory_format,
                 finite: bool | None = None) -> tuple[torch.Tensor, bool]:
        """The batch ``(N, C, H, W)`` in ``fmt`` and whether all its values were finite.

        ``finite``: None (each tile is checked; those with NaN or infinities have them
        replaced), True (the caller knows there are none) or False (replaced unchecked).
        The tensor is reused by the next call with the same shape and layout.
        """
        n, shape = len(tiles), tuple(tiles[0].shape)
        if any(tuple(tile.shape) != shape for tile in tiles):
            raise ValueError(f"tiles of a batch differ in shape: "
                             f"{sorted({tuple(tile.shape) for tile in tiles})}")
        key = (n, *shape, fmt)
        if key not in self._buffers:
            self._buffers.clear()
            with torch.inference_mode(False):  # writable in and outside inference mode
                self._buffers[key] = torch.empty((n, *shape), memory_format=fmt)
        x = self._buffers[key]
        clean = finite is not False
        for j in range(n):
            raw = torch.from_numpy(np.asarray(tiles[j], dtype=_F32))
            normalise_into(raw, self._shift_t, self._scale_t, x[j])
            if finite is None and not bool(torch.isfinite(x[j].sum())):
                torch.nan_to_num_(x[j], nan=0.0, posinf=0.0, neginf=0.0)
                clean = False
        if finite is False:
            torch.nan_to_num_(x, nan=0.0, posinf=0.0, neginf=0.0)
        return x, clean
