"""The coarse product as network input: its codes expanded inside the network.

A model that reads the ``product`` band (``contract.bands.PRODUCT``: the land-cover
label source's own codes, NLCD 11..95 say) turns it into the channels of
:data:`~contract.label_schemes.PRODUCT_CHANNELS` in its forward pass: the seven
classes one-hot and the code's expected impervious fraction (the scheme's ``impervious``
table; 0 for every code of a scheme without one), on a unit scale. Because the expansion is
the network's first layer, every path that runs the model (training, validation,
``isamap-predict`` on CPU or GPU, int8, Beam, ``isamap-map``) computes it the same way, and
the model file records the scheme (``product_scheme`` among its constructor arguments) and
the tables themselves (buffers in its weights).

The band reaches the network as stored: the training statistics of a code band are the
identity (``training.norm_stats.band_stats``), so the value is the code. A pixel whose product is
missing (NaN in the stack) is nodata in training (no loss) and in the map, as a pixel missing
any other band is; what the expansion makes of the 0 it arrives as does not matter.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from contract.bands import PRODUCT
from contract.label_schemes import LANDCOVER_CLASSES, PRODUCT_CHANNELS, SCHEMES
from core.errors import ModelError


class ProductChannels(nn.Module):
    """``(N, C, H, W)`` with a product band -> ``(N, C - 1 + 8, H, W)``: bands, then the product.

    The other bands keep their order; the product's eight channels follow them.

    Args:
        bands: the input's band names, in channel order; one of them is ``product``.
        scheme: the land-cover source of the product's codes (``nlcd``), a key of
            :data:`contract.label_schemes.SCHEMES`.
    """

    classes: torch.Tensor
    fractions: torch.Tensor
    keep: torch.Tensor

    def __init__(self, bands: Sequence[str] | None, scheme: str) -> None:
        super().__init__()
        if scheme not in SCHEMES:
            raise ModelError(f"unknown product scheme {scheme!r}; known: {', '.join(SCHEMES)}")
        bands = list(bands or ())
        if bands.count(PRODUCT) != 1:
            raise ModelError(f"product_scheme={scheme!r} needs the band names with exactly one "
                             f"{PRODUCT!r} band (the input has {bands}); export it with "
                             f"isamap-export --bands ...,{PRODUCT}")
        self.scheme = scheme
        self.index = bands.index(PRODUCT)
        classes, fractions = SCHEMES[scheme].input_tables()
        self.register_buffer("classes", torch.from_numpy(classes))
        self.register_buffer("fractions", torch.from_numpy(fractions))
        self.register_buffer("keep", torch.tensor([i for i in range(len(bands))
                                                   if i != self.index], dtype=torch.long),
                             persistent=False)
        self.in_bands = len(bands)

    @property
    def out_channels(self) -> int:
        """Channels of the output: the other bands plus :data:`PRODUCT_CHANNELS`."""
        return self.in_bands - 1 + len(PRODUCT_CHANNELS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raw = x[:, self.index]
        codes = torch.nan_to_num(raw.float(), nan=-1.0).round().long()
        inside = (codes >= 0) & (codes < 256)
        codes = torch.where(inside, codes, torch.zeros_like(codes))
        cls = torch.where(inside, self.classes[codes], torch.full_like(codes, 255))
        k = torch.arange(len(LANDCOVER_CLASSES), device=x.device).view(1, -1, 1, 1)
        onehot = (cls.unsqueeze(1) == k).to(x.dtype)
        share = torch.where(inside, self.fractions[codes], torch.zeros_like(raw.float()))
        return torch.cat([x.index_select(1, self.keep), onehot, share.unsqueeze(1).to(x.dtype)],
                         dim=1)
