"""Blocks of a mapped input normalised once for the tiles beside each other that share them.

A tile of the sliding window rarely lies on the input file's blocks: at a 480 px stride a
512 px tile spans two block columns (and two block rows), and its right-hand neighbour
starts in the second column. Normalised piece by piece straight into the batch, each piece
is a short-rowed window written across the batch's channels-last rows, the slowest pattern
the memory system gets; and the columns tiles share are normalised twice.
:class:`NormalisedBlocks` normalises a block's rows once instead, one band at a time over
whole block rows (one long strided pass each, which the hardware streams), into a buffer in
the batch's layout, and each tile copies its columns out of it as whole rows of pixels. On a
16,384 px wide six-band stack that costs about a fifth less per tile than the pieces
(``benchmarks/bench_encoder.py``, docs/performance.md), and the result is the same bits: the
same multiply-add per pixel.

Only the last few blocks are kept (tiles arrive left to right, a tile row at a time), and
a block is used only when it is at most twice as wide as the tile: a file of full-width
strips would make every tile normalise a whole row of the raster.
"""

from __future__ import annotations

from collections import OrderedDict

import torch

from inference.predict.direct_read import BlockRows

#: blocks kept: a tile spans up to two block rows of two block columns, and the next tile
#: starts in the second column of both
KEEP = 6


class NormalisedBlocks:
    """``(x - mean) / std`` of blocks' rows in a channels-last buffer, kept for reuse.

    Args:
        shift, scale: per band, ``-mean / std`` and ``1 / std`` as 0-d float32 tensors (the
            operands the predictor's whole-tile pass uses, so both give the same bits).
    """

    def __init__(self, shift: list[torch.Tensor], scale: list[torch.Tensor]) -> None:
        self.shift, self.scale = shift, scale
        #: normalised rows by their block's key, and the flat buffer each view lies in
        self._kept: OrderedDict[tuple, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()
        self._spare: list[torch.Tensor] = []  # flat buffers of blocks no longer kept
        self._size = 0  # the largest block's values: every new buffer holds that many

    def usable(self, block: BlockRows, tile_cols: int) -> bool:
        """Whether ``block`` is narrow enough to normalise whole for tiles ``tile_cols`` wide."""
        return block.array.shape[2] <= 2 * tile_cols

    def get(self, block: BlockRows, bands: slice) -> torch.Tensor:
        """The normalised rows of ``block`` as ``(bands, rows, block cols)``, channels last.

        ``bands``: the predictor's bands the block holds (its normalisation is theirs).
        """
        kept = self._kept.get(block.key)
        if kept is not None:
            self._kept.move_to_end(block.key)
            return kept[0]
        while len(self._kept) >= KEEP:  # the oldest block's buffer serves this one
            self._spare.append(self._kept.popitem(last=False)[1][1])
        nb, h, w = block.array.shape
        flat = self._flat(nb * h * w)
        buf = flat[:nb * h * w].view(h, w, nb).permute(2, 0, 1)
        raw = torch.from_numpy(block.array)
        for b in range(nb):  # one band over whole rows: a long strided pass, not short ones
            c = bands.start + b
            torch.addcmul(self.shift[c], raw[b], self.scale[c], out=buf[b])
        self._kept[block.key] = (buf, flat)
        return buf

    def _flat(self, size: int) -> torch.Tensor:
        """A flat float32 buffer of at least ``size`` values, a spare one where one is enough.

        A fresh one is pages to fault in between forwards.
        """
        self._size = max(self._size, size)
        while self._spare:
            flat = self._spare.pop()
            if flat.numel() >= size:
                return flat
        with torch.inference_mode(False):  # usable in and outside inference mode
            return torch.empty(self._size)

    def __len__(self) -> int:
        return len(self._kept)
