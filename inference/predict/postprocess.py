"""CLAHE post-processing of the impervious probability (the land-cover paper, section 3.3).

A model trained on a coarse label predicts impervious surfaces with a probability that is
high in dense city blocks and weak on roads and sparse buildings. The paper equalises that
probability locally: map it to ``[0, 255]``, run contrast-limited adaptive histogram
equalisation (CLAHE, OpenCV) with **512 x 512 px tiles** over the predicted image, threshold
the result into an impervious mask, **double** the impervious probability inside the mask and
**halve** it outside (the other classes' probabilities unchanged), and take the argmax.

What is computed, exactly (``clahe_classes``, the whole-array definition):

1. ``u = rint(clip(p_isa, 0, 1) * 255)`` as uint8, with 0 where the output is nodata;
2. ``u`` is reflect-padded (``cv2.BORDER_REFLECT_101``) at the bottom and right to whole tiles
   and equalised by ``cv2.createCLAHE(clip_limit, (width / block, height / block))``: tiles
   of exactly ``block`` pixels anchored at the raster's origin, each pixel interpolated
   bilinearly between the mappings of the (up to) four nearest tile centres;
3. mask = equalised ``>= threshold``; ``p_isa`` times 2 inside, times 0.5 outside;
4. class = argmax over classes (first index on ties, as ``numpy.argmax``).

Bounded memory (``ClaheStream``): a pixel of tile row ``i`` depends only on the histograms of
tile rows ``i - 1 .. i + 1``, and a tile's histogram only on its own pixels. The stream
therefore takes the output strip by strip, keeps uint8 values for at most three tile rows
plus one strip (and, for strips not yet final, each pixel's impervious probability and best
other class), and finishes a strip as soon as the tile row below its last row is complete, by
running OpenCV on the window of tile rows ``i - 1 .. i + 1`` at full width. That window's
tiles coincide with the whole raster's and OpenCV's interpolation only reads the window's
tile mappings (with the same clamping at the raster's edges), so the result equals the
whole-array run exactly (tested). Memory grows with the raster's width, never its height,
as the predictor's does.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from contract.label_schemes import get_landcover_scheme
from core.errors import ConfigError
from inference.predict.keep.rule import KeepRule, check_model

Postprocess = Literal["none", "clahe", "keep"]
#: ``--keep-window``'s default: about two 30 m NLCD cells on a 1 m map, the window of the
#: fine-from-coarse recipe's default arm (docs/landcover.md)
KEEP_WINDOW = 64
POSTPROCESSES: tuple[str, ...] = ("none", "clahe", "keep")


@dataclass(frozen=True)
class ClaheParams:
    """Parameters of the CLAHE post-processing.

    Attributes:
        block: CLAHE tile side in output pixels (512 in the paper, for 8000 px images).
        clip_limit: OpenCV's contrast limit (relative to a flat histogram). The paper gives
            none; 40 is OpenCV's own default, which it most likely ran with. Much lower limits
            (2-4, common for photographs) hardly stretch a probability map: a 0.4 road in a
            0.05 background stays below the threshold and nothing changes.
        threshold: equalised value (0-255) from which a pixel is in the impervious mask; the
            paper gives none, 128 is the middle of the equalised range.
        inside / outside: factors of the impervious probability in / out of the mask.
    """

    block: int = 512
    clip_limit: float = 40.0
    threshold: int = 128
    inside: float = 2.0
    outside: float = 0.5

    def __post_init__(self) -> None:
        if self.block < 8:
            raise ConfigError(f"the CLAHE block must be at least 8 px, got {self.block}")
        if not self.clip_limit > 0:
            raise ConfigError(f"the CLAHE clip limit must be positive, got {self.clip_limit}")
        if not 0 <= self.threshold <= 255:
            raise ConfigError(f"the CLAHE threshold is a 0-255 value, got {self.threshold}")

    def describe(self) -> str:
        """The post-processing as the map's ``postprocess`` tag records it (JSON)."""
        return json.dumps({"rule": "clahe", **vars(self)})


# ------------------------------------------------------------------ pure functions
def to_uint8(p: np.ndarray, invalid: np.ndarray | None = None) -> np.ndarray:
    """Probability ``[0, 1]`` -> ``0..255`` (nodata pixels 0), the CLAHE input."""
    u = np.rint(np.clip(np.nan_to_num(p, nan=0.0), 0.0, 1.0) * 255.0).astype(np.uint8)
    if invalid is not None:
        u[invalid] = 0
    return u


def clahe_uint8(u: np.ndarray, params: ClaheParams = ClaheParams()) -> np.ndarray:
    """CLAHE of a uint8 image with ``block``-pixel tiles anchored at its origin."""
    import cv2

    b = params.block
    h, w = u.shape
    padded = np.pad(u, ((0, (-h) % b), (0, (-w) % b)),
                    mode="reflect" if min(h, w) > 1 else "edge")  # reflection needs two pixels
    clahe = cv2.createCLAHE(clipLimit=float(params.clip_limit),
                            tileGridSize=(padded.shape[1] // b, padded.shape[0] // b))
    return clahe.apply(np.ascontiguousarray(padded))[:h, :w]


def reweight(p_isa: np.ndarray, mask: np.ndarray, params: ClaheParams = ClaheParams()
             ) -> np.ndarray:
    """The impervious probability doubled inside the mask, halved outside."""
    return np.where(mask, p_isa * np.float32(params.inside), p_isa * np.float32(params.outside))


def clahe_classes(probs: np.ndarray, isa_class: int, params: ClaheParams = ClaheParams(),
                  invalid: np.ndarray | None = None) -> np.ndarray:
    """The whole-array definition: class map (H, W) uint8 of ``probs`` (K, H, W).

    ``invalid`` pixels take part with a probability of 0 and keep whatever class the argmax
    gives them (callers write nodata there).
    """
    probs = np.asarray(probs, dtype=np.float32)
    u = to_uint8(probs[isa_class], invalid)
    mask = clahe_uint8(u, params) >= params.threshold
    weighted = probs.copy()
    weighted[isa_class] = reweight(probs[isa_class], mask, params)
    return np.argmax(weighted, axis=0).astype(np.uint8)


def _summary(probs: np.ndarray, isa_class: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Impervious probability, best other probability and its class (first index on ties)."""
    others = probs.copy()
    others[isa_class] = -np.inf
    idx = np.argmax(others, axis=0).astype(np.uint8)
    best = np.take_along_axis(others, idx[None].astype(np.int64), axis=0)[0]
    return probs[isa_class].astype(np.float32), best.astype(np.float32), idx


def _decide(p_weighted: np.ndarray, best: np.ndarray, idx: np.ndarray, isa_class: int
            ) -> np.ndarray:
    """``argmax`` over {impervious (weighted), the best other}, first index on a tie."""
    wins = (p_weighted > best) | ((p_weighted == best) & (isa_class < idx))
    return np.where(wins, np.uint8(isa_class), idx).astype(np.uint8)


# ------------------------------------------------------------------ bounded-memory stream
@dataclass
class _Strip:
    row0: int
    p_isa: np.ndarray
    best: np.ndarray
    idx: np.ndarray
    payload: Any


class ClaheStream:
    """CLAHE post-processing of an output that arrives strip by strip, top to bottom.

    Args:
        height / width: output size in pixels.
        isa_class: index of the impervious class.
        params: CLAHE parameters.

    ``push(row0, probs, invalid, payload)`` takes the next strip's probabilities ``(K, r, W)``
    (one channel = P(class 1) of a two-class model); it returns the strips that became final,
    as ``(row0, classes, payload)`` in order, with the same row ranges as pushed. ``finish()``
    returns the rest once the last row is in.
    """

    def __init__(self, height: int, width: int, isa_class: int,
                 params: ClaheParams = ClaheParams()) -> None:
        self.height, self.width = int(height), int(width)
        self.isa_class = int(isa_class)
        self.params = params
        self.u_row0 = 0  # first row held in ``self.u``
        self.u = np.zeros((0, self.width), dtype=np.uint8)
        self.pending: list[_Strip] = []
        self.pushed = 0  # rows received so far (absolute end row)
        self.started = False
        self.max_buffered_rows = 0  # largest uint8 buffer held, for the memory bound

    def context_start(self, row: int) -> int:
        """First row whose values the strip starting at ``row`` needs (resume from there).

        ``row`` at (or past) the end means no strip is missing: nothing is needed, ``row``.
        """
        if row >= self.height:
            return row
        return max(0, (row // self.params.block - 1) * self.params.block)

    def push(self, row0: int, probs: np.ndarray, invalid: np.ndarray | None = None,
             payload: Any = None) -> list[tuple[int, np.ndarray, Any]]:
        if not self.started:  # a resumed run starts at a context row, not at 0
            self.u_row0 = self.pushed = row0
            self.started = True
        if row0 != self.pushed:
            raise ConfigError(f"strips must arrive in order: expected row {self.pushed}, "
                              f"got {row0}")
        probs = np.asarray(probs, dtype=np.float32)
        if probs.shape[0] == 1:  # a two-class model in compact form: P(class 1)
            probs = np.concatenate([1.0 - probs, probs])
        rows = probs.shape[1]
        if probs.shape[2] != self.width or row0 + rows > self.height:
            raise ConfigError(f"strip {probs.shape} at row {row0} does not fit a "
                              f"{self.height}x{self.width} output")
        p_isa, best, idx = _summary(probs, self.isa_class)
        self.u = np.concatenate([self.u, to_uint8(p_isa, invalid)])
        self.max_buffered_rows = max(self.max_buffered_rows, self.u.shape[0])
        self.pending.append(_Strip(row0, p_isa, best, idx, payload))
        self.pushed = row0 + rows
        return list(self._ready())

    def finish(self) -> list[tuple[int, np.ndarray, Any]]:
        if self.pushed != self.height:
            raise ConfigError(f"the output ended at row {self.pushed} of {self.height}")
        return list(self._ready())

    def _needed_until(self, strip: _Strip) -> int:
        b = self.params.block
        last = strip.row0 + strip.p_isa.shape[0] - 1
        return min(self.height, (last // b + 2) * b)

    def _ready(self) -> Iterator[tuple[int, np.ndarray, Any]]:
        while self.pending and self.pushed >= self._needed_until(self.pending[0]):
            strip = self.pending.pop(0)
            w0 = max(self.context_start(strip.row0), self.u_row0)
            w1 = self._needed_until(strip)
            window = self.u[w0 - self.u_row0:w1 - self.u_row0]
            equalised = clahe_uint8(window, self.params)
            r = strip.row0 - w0
            mask = equalised[r:r + strip.p_isa.shape[0]] >= self.params.threshold
            classes = _decide(reweight(strip.p_isa, mask, self.params), strip.best, strip.idx,
                              self.isa_class)
            yield strip.row0, classes, strip.payload
            keep_from = self.context_start(self.pending[0].row0 if self.pending
                                           else self.pushed)
            if keep_from > self.u_row0:
                self.u = self.u[keep_from - self.u_row0:]
                self.u_row0 = keep_from


# ------------------------------------------------------------------ command-line options
def add_postprocess_arguments(parser: argparse.ArgumentParser) -> None:
    """``--postprocess``, the CLAHE and the keep rule's flags (isamap-predict, isamap-map)."""
    g = parser.add_argument_group("post-processing")
    g.add_argument("--postprocess", choices=POSTPROCESSES, default="none",
                   help="clahe: CLAHE on the impervious probability, mask, x2 inside / x0.5 "
                        "outside, argmax (land-cover paper, section 3.3); keep: a coarse "
                        "land-cover product's impervious pixels stay impervious unless green "
                        "(NDVI at least half-way between the product's vegetation and "
                        "impervious medians), its classes the model never learnt are "
                        "kept, and with --keep-window each window takes the product's class "
                        "shares (docs/landcover.md)")
    # None: not given (the flags of a rule are refused without it); the rule's defaults apply
    g.add_argument("--clahe-block", type=int,
                   help=f"CLAHE tile side in output pixels (default {ClaheParams.block})")
    g.add_argument("--clahe-clip", type=float,
                   help=f"CLAHE contrast limit (default {ClaheParams.clip_limit:g})")
    g.add_argument("--clahe-threshold", type=int,
                   help="equalised value (0-255) from which a pixel is impervious (default "
                        f"{ClaheParams.threshold})")
    g.add_argument("--keep-product", metavar="RASTER",
                   help="with --postprocess keep: the coarse land-cover product (any grid and "
                        "CRS; read nearest onto the map's grid; default: the input's product "
                        "band, for a model that reads it)")
    g.add_argument("--keep-table", metavar="SOURCE",
                   help="with --postprocess keep: the label table of its codes (nlcd, "
                        "worldcover, dynamicworld, fromglc10, eolearn_lulc, chesapeake)")
    g.add_argument("--keep-window", metavar="PX", type=int,
                   help="with --postprocess keep: the side in output pixels of the windows "
                        "whose class shares are the product's; the model places them (0: "
                        f"off, the model's own argmax; default {KEEP_WINDOW}, about two 30 m "
                        "NLCD cells on a 1 m map)")
    g.add_argument("--force-postprocess", action="store_true",
                   help="apply --postprocess clahe to a model it is not made for (a binary "
                        "impervious/pervious model)")


def postprocess_options(args: argparse.Namespace) -> dict[str, Any]:
    """``PredictConfig`` keyword arguments from the flags of ``add_postprocess_arguments``.

    Raises:
        ConfigError: ``--postprocess keep`` with its product but not its table (or the
            reverse; neither: the input's own ``product`` band), an unknown table, or a
            rule's flags without it (:func:`check_rule_flags`).
    """
    check_rule_flags(args)
    keep = None
    if args.postprocess == "keep":
        if bool(args.keep_product) != bool(args.keep_table):
            raise ConfigError("--postprocess keep keeps a coarse product's impervious class: "
                              "give the product with --keep-product RASTER and its label table "
                              "with --keep-table SOURCE (e.g. nlcd), or neither for a model "
                              "that reads the input's product band")
        if args.keep_table:
            get_landcover_scheme(args.keep_table)  # an unknown table, before anything runs
        keep = KeepRule(args.keep_product or "", args.keep_table or "",
                        window=KEEP_WINDOW if args.keep_window is None else args.keep_window)
    given = {name: getattr(args, flag) for name, flag in (
        ("block", "clahe_block"), ("clip_limit", "clahe_clip"), ("threshold", "clahe_threshold"))
        if getattr(args, flag) is not None}
    return {"postprocess": args.postprocess, "clahe": ClaheParams(**given),
            "keep": keep, "force_postprocess": args.force_postprocess}


#: each post-processing's own flags (``argparse`` names): without it they would change nothing
RULE_FLAGS = {"clahe": ("clahe_block", "clahe_clip", "clahe_threshold", "force_postprocess"),
              "keep": ("keep_product", "keep_table", "keep_window")}


def check_rule_flags(args: argparse.Namespace) -> None:
    """Refuse a post-processing's flags given without its ``--postprocess``.

    Raises:
        ConfigError: e.g. ``--clahe-clip 3`` without ``--postprocess clahe``, which mapped the
            plain map with exit 0.
    """
    for rule, names in RULE_FLAGS.items():
        given = [f"--{name.replace('_', '-')}" for name in names
                 if getattr(args, name) not in (None, False)]
        if given and args.postprocess != rule:
            them = "it" if len(given) == 1 else "them"
            raise ConfigError(f"{', '.join(given)} {'is' if them == 'it' else 'are'} for "
                              f"--postprocess {rule}, which this run does not apply: add "
                              f"--postprocess {rule}, or drop {them}")


def check_postprocess(postprocess: str, class_scheme: str, class_names: tuple[str, ...],
                      force: bool = False, bands: tuple[str, ...] = ()) -> None:
    """Refuse a post-processing for a model it is not made for (CLAHE unless forced).

    The keep rule needs a land-cover model with an impervious class and a red and a
    near-infrared band among ``bands`` (:func:`inference.predict.keep.rule.check_model`); forcing
    does not help it.

    The CLAHE re-decision doubles the impervious probability wherever the equalised map is
    bright: made for a land-cover model, whose impervious probability is weak on roads and
    sparse buildings next to other classes. On a binary impervious/pervious model (CroFuseNet's
    ``isa`` scheme) the equalisation stretches every mid probability into the mask and the
    impervious area grows by half or more, so it is refused there unless ``force``.
    """
    if postprocess == "keep":
        check_model(class_scheme, class_names, bands)
    if postprocess != "clahe" or force:
        return
    if len(class_names) <= 2 and not class_scheme.startswith("landcover"):
        raise ConfigError(
            f"--postprocess clahe is made for land-cover models (several classes), but this "
            f"model has the {len(class_names)} classes {', '.join(class_names)} (scheme "
            f"{class_scheme!r}); on a binary model it re-labels most mid probabilities as "
            "impervious. Drop --postprocess, or pass --force-postprocess to apply it anyway")
