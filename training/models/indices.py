"""Spectral indices as input channels, computed inside the network from named bands.

A model that asks for indices (``indices=("ndbi", "ndvi", "mndwi")``) computes them in its
forward pass from the bands it is given, so every path that runs the model (training,
validation, ``isamap-predict`` on CPU or GPU, Beam) computes them the same way. The network
sees normalised bands; the indices need reflectance, so the module holds the normalisation the
model was trained under (``input_mean``/``input_std``, the training split's statistics, which
``training.run.patch_training.train`` passes and the model file records with the other constructor
arguments) and undoes it first.

An index is a normalised difference ``(a - b) / (a + b)``: a gain common to both bands cancels,
which is why such indices carry from one scene to another better than the bands do; they are
passed to the network as they are (``-1..1``), not standardised per window.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from core.errors import ModelError

#: Each index's bands ``(a, b)`` of ``(a - b) / (a + b)``.
INDEX_BANDS: dict[str, tuple[str, str]] = {
    "ndbi": ("B11", "B8"),   # built-up: SWIR 1 against NIR (Zha et al. 2003)
    "ndvi": ("B8", "B4"),    # vegetation: NIR against red
    "mndwi": ("B3", "B11"),  # water: green against SWIR 1 (Xu 2006)
}

#: Below this ``|a + b|`` (reflectance) an index is 0 (no signal to divide).
EPS = 1e-6


def normalized_difference(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``(a - b) / (a + b)`` clipped to ``-1..1``; 0 where ``|a + b|`` is below :data:`EPS`."""
    total = a + b
    ok = total.abs() > EPS
    out = (a - b) / torch.where(ok, total, torch.ones_like(total))
    return torch.where(ok, out, torch.zeros_like(out)).clamp(-1.0, 1.0)


class SpectralIndices(nn.Module):
    """``(N, C, H, W)`` normalised bands -> ``(N, len(names), H, W)`` indices.

    Args:
        names: index names, keys of :data:`INDEX_BANDS`.
        bands: the input's band names, in channel order.
        mean / std: the per-band normalisation the input went through (``x = (r - mean) /
            std``), undone before the indices are computed.
    """

    # buffers: the two bands of each index, with their training mean and deviation
    a_index: torch.Tensor
    a_mean: torch.Tensor
    a_std: torch.Tensor
    b_index: torch.Tensor
    b_mean: torch.Tensor
    b_std: torch.Tensor

    def __init__(self, names: Sequence[str], bands: Sequence[str] | None,
                 mean: Sequence[float] | None, std: Sequence[float] | None) -> None:
        super().__init__()
        unknown = [n for n in names if n not in INDEX_BANDS]
        if unknown:
            raise ModelError(f"unknown spectral indices {unknown}; known: "
                             f"{', '.join(INDEX_BANDS)}")
        if bands is None or mean is None or std is None:
            raise ModelError("spectral indices need the input's band names and its "
                             "normalisation (input_mean, input_std: the training run passes "
                             "them)")
        if not len(bands) == len(mean) == len(std):
            raise ModelError(f"{len(bands)} bands but {len(mean)} means and {len(std)} "
                             "deviations for the spectral indices")
        bands = list(bands)
        needed = sorted({b for n in names for b in INDEX_BANDS[n]} - set(bands))
        if needed:
            raise ModelError(f"the spectral indices {list(names)} need bands {needed}, which "
                             f"the input ({bands}) lacks; export them, or drop those indices")
        self.names = tuple(names)
        first = [bands.index(INDEX_BANDS[n][0]) for n in names]
        second = [bands.index(INDEX_BANDS[n][1]) for n in names]
        mean_t = torch.tensor(list(mean), dtype=torch.float32)
        std_t = torch.tensor(list(std), dtype=torch.float32)
        for name, idx in (("a", first), ("b", second)):
            index = torch.tensor(idx, dtype=torch.long)
            self.register_buffer(f"{name}_index", index, persistent=False)
            self.register_buffer(f"{name}_mean", mean_t[index].view(1, -1, 1, 1),
                                 persistent=False)
            self.register_buffer(f"{name}_std", std_t[index].view(1, -1, 1, 1),
                                 persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = x.index_select(1, self.a_index) * self.a_std + self.a_mean
        b = x.index_select(1, self.b_index) * self.b_std + self.b_mean
        return normalized_difference(a.float(), b.float()).to(x.dtype)
