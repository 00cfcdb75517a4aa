"""Whether an int8 map agrees with the fp32 map of the same patches, by fixed bounds.

:func:`agreement` compares two models' class maps batch by batch: the share of pixels with
the same class, the impervious F1 of one against the other and, against the labels (or the
fp32 map's classes standing for them, so a check without labels is held to the same bounds),
each one's impervious F1. :class:`Agreement` holds the figures and says whether they pass
:data:`MIN_CLASS_AGREEMENT`, :data:`MIN_ISA_F1_VS_FP32` and :data:`MAX_F1_CHANGE`.

May import: ``engine.outputs``, torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from engine.outputs import main_output

#: An int8 map is used only when at least this share of its pixels has the fp32 map's class...
MIN_CLASS_AGREEMENT = 0.99
#: ...its impervious pixels reach this F1 against the fp32 map's (a map whose few impervious
#: pixels all flipped can still agree on 99 % of a rural tile)...
MIN_ISA_F1_VS_FP32 = 0.99
#: ...and, on labelled patches, its impervious F1 against the labels is within this of fp32's:
#: half the smallest difference in average F1 the CroFuseNet paper reports between two of
#: its configurations (0.0073, optical + SAR against optical alone; CroFuseNet against
#: U-Net: 0.0105), so int8 cannot turn one of its conclusions around. All three bounds
#: apply; a check without labels (the map's own input) takes the fp32 map's classes as its
#: labels, so int8 must reach an impervious F1 of 1 - MAX_F1_CHANGE against them.
MAX_F1_CHANGE = 0.005


@dataclass(frozen=True)
class Agreement:
    """How an int8 map compares with the fp32 map of the same patches.

    Attributes:
        class_agreement: share of pixels with the same class.
        isa_f1_vs_fp32: F1 of the int8 impervious pixels against the fp32 ones.
        isa_f1_labels: F1 against the labels of (fp32, int8); where the check has no
            labels, against the fp32 map's classes standing for them (fp32 then scores 1).
        pixels: pixels compared.
        labelled: whether the check had labels.
    """

    class_agreement: float
    isa_f1_vs_fp32: float
    isa_f1_labels: tuple[float, float] | None
    pixels: int
    labelled: bool = True

    @property
    def reference(self) -> str:
        """What the label F1 is measured against, in words (recorded)."""
        return "labels" if self.labelled else "fp32 map's classes (no labels)"

    @property
    def f1_change(self) -> float:
        """|F1_int8 - F1_fp32| against the labels, or the fp32 classes standing for them."""
        if self.isa_f1_labels is None:
            return 0.0
        return abs(self.isa_f1_labels[1] - self.isa_f1_labels[0])

    @property
    def accepted(self) -> bool:
        return (self.class_agreement >= MIN_CLASS_AGREEMENT
                and self.isa_f1_vs_fp32 >= MIN_ISA_F1_VS_FP32
                and self.f1_change <= MAX_F1_CHANGE)

    def describe(self) -> str:
        text = (f"class agreement with fp32 {100 * self.class_agreement:.2f} % (at least "
                f"{100 * MIN_CLASS_AGREEMENT:g} %), impervious F1 against the fp32 map "
                f"{self.isa_f1_vs_fp32:.4f} (at least {MIN_ISA_F1_VS_FP32:g})")
        if self.isa_f1_labels is not None:
            text += (f", impervious F1 against the {self.reference} "
                     f"{self.isa_f1_labels[1]:.4f} (fp32 {self.isa_f1_labels[0]:.4f}, change "
                     f"at most {MAX_F1_CHANGE:g})")
        return f"{text}, over {self.pixels} pixels"


def logits(module: nn.Module, batches: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """The main output of ``module`` on each batch, float32 on the CPU."""
    with torch.inference_mode():
        return [main_output(module(x)).float() for x in batches]


def agreement(reference: Sequence[torch.Tensor], candidate: Sequence[torch.Tensor],
              isa_class: int, labels: Sequence[torch.Tensor] | None = None,
              label_nodata: int | None = None) -> Agreement:
    """Compare the class maps of two models' logits ``(N, K, H, W)`` batch by batch.

    ``labels``: ``(N, H, W)`` class indexes, ``label_nodata`` where unknown (those pixels
    are left out of the label F1 only); None: the reference's classes stand for them, so a
    check without labels is held to the same bounds. A one-logit model's class is
    ``logit > 0``.
    """
    same = pixels = 0
    counts = {"both": 0, "ref": 0, "cand": 0}
    label_counts = [{"tp": 0, "fp": 0, "fn": 0}, {"tp": 0, "fp": 0, "fn": 0}]
    for i, (ref, cand) in enumerate(zip(reference, candidate, strict=True)):
        ref_cls, cand_cls = _classes(ref), _classes(cand)
        same += int((ref_cls == cand_cls).sum())
        pixels += ref_cls.numel()
        ref_isa, cand_isa = ref_cls == isa_class, cand_cls == isa_class
        counts["both"] += int((ref_isa & cand_isa).sum())
        counts["ref"] += int(ref_isa.sum())
        counts["cand"] += int(cand_isa.sum())
        # the labels, or the reference's classes standing for them
        label = labels[i] if labels is not None else ref_cls
        known = (label != label_nodata if labels is not None and label_nodata is not None
                 else torch.ones_like(label, dtype=torch.bool))
        truth = (label == isa_class) & known
        for c, pred in zip(label_counts, (ref_isa, cand_isa), strict=True):
            c["tp"] += int((pred & truth).sum())
            c["fp"] += int((pred & ~truth & known).sum())
            c["fn"] += int((~pred & truth).sum())
    f1_vs = _f1(counts["both"], counts["cand"] - counts["both"], counts["ref"] - counts["both"])
    fp32_f1, int8_f1 = (_f1(c["tp"], c["fp"], c["fn"]) for c in label_counts)
    return Agreement(same / max(pixels, 1), f1_vs, (fp32_f1, int8_f1), pixels,
                     labels is not None)


def _classes(logits_: torch.Tensor) -> torch.Tensor:
    return (logits_[:, 0] > 0).long() if logits_.shape[1] == 1 else logits_.argmax(1)


def _f1(tp: int, fp: int, fn: int) -> float:
    """F1; 1 when neither side has a positive pixel (both maps agree there is none)."""
    return 1.0 if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)
