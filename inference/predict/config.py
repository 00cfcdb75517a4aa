"""A prediction's tiling and output options (:class:`PredictConfig`), checked when made.

:mod:`inference.predict.raster` re-exports it; the sliding window
(:mod:`inference.predict.sliding_window`) runs it.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any

from core.commands import check_range
from core.errors import ConfigError
from inference.cog import maps
from inference.predict.keep.rule import KeepRule
from inference.predict.lattice import Blend, Lattice, default_overlap
from inference.predict.postprocess import POSTPROCESSES, ClaheParams, Postprocess


@dataclass(frozen=True)
class PredictConfig:
    """Tiling and output options.

    Attributes:
        tile: input tile size in pixels (on the input grid).
        overlap: minimum overlap between neighbouring tiles, input pixels.
        batch_size: tiles per forward pass.
        blend: ``"cosine"`` (tapered-cosine weights, no seams), ``"uniform"`` (plain mean of
            overlapping tiles; kept to show what the cosine blend removes) or ``"core"`` (each
            pixel from the one tile that owns it: the map any runner of the same lattice gives,
            :mod:`inference.predict.blending`).
        strip_rows: output rows per checkpoint strip (a multiple of 16).
        isa_class: index of the impervious class in the model's classes.
        compress: COG compression.
        keep_work: keep the strip directory after the COGs are written (debugging).
        postprocess: ``"clahe"`` re-decides the class map with the CLAHE post-processing
            of the impervious probability (:mod:`inference.predict.postprocess`); the probability
            band stays the model's.
            ``"keep"`` keeps a coarse product's impervious class unless green, and its
            classes the model never learnt (:mod:`inference.predict.keep.rule`): on the pixels
            the rule decides, the probabilities become the decision's (1 for the class it
            chose, 0 for the others), so the probability COG holds 1 where the rule keeps a
            pixel impervious, 0 where it takes one out (or gives it the product's class), and
            the model's impervious probability everywhere else. With the rule's ``window``
            the other pixels' probabilities are those given the product's class shares
            (:mod:`inference.predict.keep.shares`).
        clahe: its parameters.
        keep: the keep rule (``"keep"``), settled for the map before the first tile
            (:func:`inference.predict.keep.inputs.settle`).
        force_postprocess: apply ``postprocess`` to a model it was not made for (a binary ISA
            model); see :func:`inference.predict.postprocess.check_postprocess`. It does not
            change the map, so it is no part of a run's identity.
        any_tile: predict on ``tile`` even where the model file records another window
            (:func:`inference.predict.blending.check_window`); the tile is part of the
            lattice every output records, so this flag is no part of a run's identity.
    """

    tile: int = Lattice.tile  # the lattice's defaults: one owner
    overlap: int = Lattice.overlap
    batch_size: int = 8
    blend: Blend = Lattice.blend
    strip_rows: int = 512
    isa_class: int = 1
    compress: maps.Compression = "DEFLATE"
    keep_work: bool = False
    postprocess: Postprocess = "none"
    clahe: ClaheParams = field(default_factory=ClaheParams)
    keep: KeepRule | None = None
    force_postprocess: bool = False
    any_tile: bool = False

    def __post_init__(self) -> None:
        Lattice(self.tile, self.overlap, self.blend)  # checks the tiling and the blend
        if self.postprocess not in POSTPROCESSES:
            raise ConfigError(f"postprocess must be one of {', '.join(POSTPROCESSES)}, got "
                              f"{self.postprocess!r}")
        if self.postprocess == "keep" and self.keep is None:
            raise ConfigError("--postprocess keep needs its product: give --keep-product "
                              "RASTER and --keep-table SOURCE")
        check_range("--batch-size", self.batch_size, 1)  # as typed (Python: batch_size=)
        if self.strip_rows < 16 or self.strip_rows % 16:
            raise ConfigError(f"strip rows must be a multiple of 16, got {self.strip_rows}")
        window = self.keep.window if self.postprocess == "keep" and self.keep else 0
        if window and self.strip_rows % window:
            # each strip must hold whole rows of windows, so strips give the whole map's pixels
            raise ConfigError(f"--keep-window {window} does not divide the {self.strip_rows} "
                              f"rows of an output strip; give a divisor of it (e.g. 32, 64 "
                              f"or 128)")

    def postprocess_tags(self, base: str) -> dict[str, str]:
        """The outputs' ``postprocess`` tag: the rule and its parameters (none: no tag).

        ``base``: the map's folder, which the keep rule's product is named relative to
        (:meth:`inference.predict.keep.rule.KeepRule.describe`).
        """
        if self.postprocess == "clahe":
            return {"postprocess": self.clahe.describe()}
        if self.postprocess == "keep" and self.keep:
            return {"postprocess": self.keep.describe(base)}
        return {}

    @property
    def lattice(self) -> Lattice:
        """Where the tiles are cut and how they combine (recorded in the outputs)."""
        return Lattice(self.tile, self.overlap, self.blend)


def add_window_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--tile``, ``--overlap`` and ``--batch-size``: the sliding window (isamap-predict, -map)."""
    parser.add_argument("--tile", type=int, default=PredictConfig.tile,
                        help="input tile size (px)")
    parser.add_argument("--overlap", type=int, default=None,
                        help=f"overlap between tiles (px; default {PredictConfig.overlap}, or "
                             "half --tile where that is less)")
    parser.add_argument("--batch-size", type=int, default=PredictConfig.batch_size,
                        help="tiles per forward pass")


def window_options(args: argparse.Namespace) -> dict[str, Any]:
    """``PredictConfig`` keyword arguments from the flags of :func:`add_window_arguments`."""
    overlap = default_overlap(args.tile) if args.overlap is None else args.overlap
    return {"tile": args.tile, "overlap": overlap, "batch_size": args.batch_size}
