"""Calibrated probabilities: temperature scaling and the expected calibration error.

A segmentation network trained with cross-entropy ranks pixels well but is usually over- or
under-confident: its 0.8 need not mean that 80 % of such pixels are impervious. The
probabilities are published (the probability COG) and used for areas and strata, so after
training one scalar temperature ``T`` is fitted on the validation split's labelled pixels by
minimising their negative log-likelihood (Guo et al. 2017, "On calibration of modern neural
networks"), and every prediction divides the logits by it before the softmax (sigmoid for a
one-logit head). Dividing all logits by one positive number keeps their order, so a tile's
classes (the arg-max) are unchanged: only the probabilities move (a map blending overlapping
tiles averages probabilities, so a seam pixel near 1/2 can still change sides).

A temperature fitted on the training regions need not hold on new ground. Where the
validation split holds several scenes (a dataset merged from several exports, or several
months), :func:`fit_transfer_record` tests that first: each scene's temperature is fitted on
the other scenes' pixels and judged on its own; when such transferred temperatures leave the
scenes' mean ECE no lower than ``T = 1`` does, the model keeps ``T = 1`` (its record says
why), else the temperature fitted on every scene's pixels.

A model fine-tuned on a user's points (``isamap-fit --from``) records beside its temperature a
``shift``: one number per class added to the logits after the temperature, so that its mean
class probabilities over the input are its base network's (the prior adjustment of Saerens et
al. 2002: points labelled half built where a fiftieth is would otherwise teach a prior of one
half). It moves the classes' boundary, so it can change the class map.

This module owns the step from logits to probabilities (:func:`probabilities`): the runtime
(:class:`inference.predict.runtime.TilePredictor`, every device, precision and pipeline),
``isamap-evaluate`` and the fit itself call it. The fitted record lives in the model file
(``ModelMeta.calibration``); a file without one is read with ``T = 1`` and said to be
uncalibrated.

The expected calibration error (:class:`Reliability`) uses :data:`ECE_BINS` equal-width bins:
of the impervious (positive) class's probability for a two-class model (ECE = sum over bins of
the bin's share of pixels times ``|mean probability - share of positive pixels|``), of the
top class's probability (its confidence against its accuracy, "top-label") for more classes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from contract.bands import LABEL_NODATA

#: equal-width probability bins of the expected calibration error
ECE_BINS = 15
#: labelled validation pixels the temperature is fitted on at most, per scene (an even pick;
#: :class:`training.calibration.pixels.ScenePixels` holds at most twice as many, all scenes
#: together)
MAX_FIT_PIXELS = 2_000_000
#: fewer labelled pixels than this: no fit (the model file says why)
MIN_FIT_PIXELS = 100
#: the temperatures searched (a fit at either end says the split cannot pin it down)
T_RANGE = (0.05, 20.0)


def scaled(logits: torch.Tensor, temperature: float,
           shift: tuple[float, ...] | None = None) -> torch.Tensor:
    """``logits / temperature + shift``, one shift per channel of ``(N, K, ...)`` logits.

    The tensor itself when ``temperature`` is 1 and there is no ``shift``.
    """
    z = logits if temperature == 1.0 else logits / temperature
    if shift is None:
        return z
    return z + torch.tensor(shift, dtype=z.dtype, device=z.device).view(
        1, -1, *([1] * (z.ndim - 2)))


def probabilities(logits: torch.Tensor, temperature: float = 1.0,
                  shift: tuple[float, ...] | None = None) -> torch.Tensor:
    """Class probabilities of ``(N, K, ...)`` logits at ``temperature`` and ``shift``, float32.

    One logit (K = 1): its sigmoid, ``P(class 1)``; otherwise the softmax over dim 1.
    """
    z = scaled(logits.float(), temperature, shift)
    return torch.sigmoid(z) if z.shape[1] == 1 else torch.softmax(z, dim=1)


def check_temperature(temperature: float) -> float:
    """``temperature`` as a float, refused (ValueError) unless finite and > 0."""
    t = float(temperature)
    if not math.isfinite(t) or t <= 0:
        raise ValueError(f"a calibration temperature must be finite and > 0, got {temperature}")
    return t


def nll(logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of ``(P, K)`` logits for ``(P,)`` class labels at ``T``."""
    z = scaled(logits.double(), temperature)
    if z.shape[1] == 1:
        return float(F.binary_cross_entropy_with_logits(z[:, 0], labels.double()))
    return float(F.cross_entropy(z, labels.long()))


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The temperature minimising the NLL of ``(P, K)`` logits for ``(P,)`` labels.

    The NLL is convex in the inverse temperature (a log-sum-exp of terms linear in it, less
    a linear term), so a golden-section search over it on :data:`T_RANGE` finds the minimum.
    """
    if logits.ndim != 2 or labels.shape != logits.shape[:1] or not len(labels):
        raise ValueError(f"logits (P, K) and labels (P,) expected, got {tuple(logits.shape)} "
                         f"and {tuple(labels.shape)}")
    z, y = logits.double(), labels
    lo, hi = 1.0 / T_RANGE[1], 1.0 / T_RANGE[0]
    ratio = (math.sqrt(5.0) - 1.0) / 2.0
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = nll(z, y, 1.0 / a), nll(z, y, 1.0 / b)
    while hi - lo > 1e-5 * max(hi, 1.0):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = nll(z, y, 1.0 / a)
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = nll(z, y, 1.0 / b)
    return 1.0 / ((lo + hi) / 2.0)


@dataclass
class Reliability:
    """Reliability bins of probabilities against labels, filled batch by batch.

    ``positive`` is the class whose probability is binned (two-class models); None bins the
    top class's probability against whether it is right (top-label, more classes). ``name``
    names the positive class in :attr:`kind`.
    """

    positive: int | None
    bins: int = ECE_BINS
    name: str = ""  # the positive class's name, for the reports

    def __post_init__(self) -> None:
        self.count = np.zeros(self.bins, np.int64)
        self.confidence = np.zeros(self.bins, np.float64)  # sum of binned probabilities
        self.hits = np.zeros(self.bins, np.float64)  # positives (or right top labels)

    @property
    def kind(self) -> str:
        if self.positive is None:
            return "top-label"
        return f"{self.name!r} class" if self.name else f"class {self.positive}"

    def update(self, probs: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray,
               ) -> None:
        """Add ``(N, K, ...)`` probabilities (K = 1: ``P(class 1)``) and ``(N, ...)`` labels.

        Pixels labelled :data:`LABEL_NODATA` (or outside the classes) are left out.
        """
        p = torch.as_tensor(probs).float().cpu()
        y = torch.as_tensor(labels).long().cpu()
        k = p.shape[1]
        if k == 1:
            p = torch.cat([1.0 - p, p], dim=1)
            k = 2
        p = p.movedim(1, -1).reshape(-1, k)
        y = y.reshape(-1)
        valid = (y != LABEL_NODATA) & (y >= 0) & (y < k)
        p, y = p[valid], y[valid]
        if self.positive is None:
            conf, top = p.max(dim=1)
            hit = (top == y).double()
        else:
            conf, hit = p[:, self.positive], (y == self.positive).double()
        index = torch.clamp((conf * self.bins).long(), 0, self.bins - 1).numpy()
        self.count += np.bincount(index, minlength=self.bins)
        self.confidence += np.bincount(index, conf.double().numpy(), minlength=self.bins)
        self.hits += np.bincount(index, hit.numpy(), minlength=self.bins)

    @property
    def pixels(self) -> int:
        return int(self.count.sum())

    @property
    def ece(self) -> float:
        """Expected calibration error (NaN with no pixels)."""
        if not self.pixels:
            return math.nan
        return float(np.abs(self.confidence - self.hits).sum() / self.pixels)

    def to_dict(self) -> dict:
        n = np.maximum(self.count, 1)
        return {"ece": self.ece, "pixels": self.pixels, "bins": self.bins, "binned": self.kind,
                "count": self.count.tolist(),
                "mean_probability": np.where(self.count > 0, self.confidence / n, np.nan).tolist(),
                "observed": np.where(self.count > 0, self.hits / n, np.nan).tolist()}


def positive_class(num_classes: int, isa_class: int | None = None) -> int | None:
    """The class binned for the ECE: ``isa_class`` (default 1) of a two-class model, else None."""
    if num_classes > 2:
        return None
    return 1 if isa_class is None else isa_class


def fit_record(logits: torch.Tensor, labels: torch.Tensor, split: str,
               isa_class: int | None = None) -> dict:
    """The calibration a model file records: fitted on ``(P, K)`` logits and ``(P,)`` labels.

    Holds ``method`` (``temperature``, or ``none`` with a ``reason``), ``temperature``, where
    it was fitted, the pixels, and the NLL and ECE before and after.
    """
    n = len(labels)
    if n < MIN_FIT_PIXELS:
        return {"method": "none", "temperature": 1.0, "split": split, "pixels": n,
                "reason": f"{n} labelled pixels in the {split} split, fewer than "
                          f"{MIN_FIT_PIXELS}"}
    t = fit_temperature(logits, labels)
    k = max(logits.shape[1], 2)
    before, after = Reliability(positive_class(k, isa_class)), Reliability(
        positive_class(k, isa_class))
    z = logits.T.unsqueeze(0)  # (1, K, P)
    before.update(probabilities(z), labels.unsqueeze(0))
    after.update(probabilities(z, t), labels.unsqueeze(0))
    return {"method": "temperature", "temperature": t, "split": split, "pixels": n,
            "nll_before": nll(logits, labels), "nll_after": nll(logits, labels, t),
            "ece_before": before.ece, "ece_after": after.ece, "ece_binned": after.kind,
            "ece_bins": ECE_BINS}


def _ece(logits: torch.Tensor, labels: torch.Tensor, temperature: float,
         isa_class: int | None = None) -> float:
    rel = Reliability(positive_class(max(logits.shape[1], 2), isa_class))
    rel.update(probabilities(logits.T.unsqueeze(0), temperature), labels.unsqueeze(0))
    return rel.ece


def fit_transfer_record(parts: Mapping[str, tuple[torch.Tensor, torch.Tensor]], split: str,
                        isa_class: int | None = None) -> dict:
    """:func:`fit_record` on every scene's pixels, kept only where a temperature transfers.

    ``parts``: per scene, its ``(P, K)`` logits and ``(P,)`` labels. With two or more scenes
    of at least :data:`MIN_FIT_PIXELS` pixels, each is held out in turn: a temperature fitted
    on the others is judged by the held-out scene's ECE against ``T = 1`` (``transfer`` in
    the record, per scene). When the mean ECE of the held-out scenes is not lower at the
    transferred temperatures, the record is ``T = 1`` (method ``none``, with the reason);
    with fewer scenes the transfer is not tested (said in ``transfer``).
    """
    z = torch.cat([p[0] for p in parts.values()]) if parts else torch.zeros(0, 1)
    y = torch.cat([p[1] for p in parts.values()]) if parts else torch.zeros(0, dtype=torch.long)
    record = fit_record(z, y, split, isa_class)
    scenes = {k: v for k, v in parts.items() if len(v[1]) >= MIN_FIT_PIXELS}
    if len(scenes) < 2 or record["method"] != "temperature":
        record["transfer"] = f"not tested: {len(scenes)} scene(s) of >= {MIN_FIT_PIXELS} pixels"
        return record
    tested = {}
    for held, (zh, yh) in scenes.items():
        zo = torch.cat([v[0] for k, v in scenes.items() if k != held])
        yo = torch.cat([v[1] for k, v in scenes.items() if k != held])
        t = fit_temperature(zo, yo)
        tested[held] = {"temperature": t, "pixels": len(yh), "ece_at_1": _ece(zh, yh, 1.0,
                        isa_class), "ece_transferred": _ece(zh, yh, t, isa_class)}
    at_1 = float(np.mean([v["ece_at_1"] for v in tested.values()]))
    moved = float(np.mean([v["ece_transferred"] for v in tested.values()]))
    record["transfer"] = {"scenes": tested, "ece_at_1": at_1, "ece_transferred": moved}
    if moved >= at_1:
        kept = {k: record[k] for k in ("split", "pixels", "ece_before", "transfer")}
        return {"method": "none", "temperature": 1.0, **kept,
                "reason": f"a temperature fitted on the other scenes left each held-out "
                          f"scene's ECE no lower (mean {at_1:.4f} at T = 1, {moved:.4f} "
                          "transferred)"}
    return record


def check_record(calibration: object) -> None:
    """Refuse (ValueError, saying why) a calibration record no fit could have written.

    A record is a mapping; ``method: temperature`` carries a number ``temperature`` inside
    the range the fit searches (:data:`T_RANGE`), as ``method: members`` may (the mean's
    own, :func:`training.calibration.record.fit_joined`); any other record applies T = 1. The
    weights digest of a model file does not cover its description, so an edited temperature (1e30
    makes every probability 0.5) is caught only here. A ``shift`` is a list of finite numbers.
    """
    if not isinstance(calibration, Mapping):
        raise ValueError(f"the calibration record is a {type(calibration).__name__}, not a "
                         "mapping of method, temperature, ...")
    shift = calibration.get("shift", [])
    if not isinstance(shift, list) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
            for v in shift):
        raise ValueError(f"the calibration shift is {shift!r}, not a list of finite numbers")
    joined = calibration.get("method") == "members" and "temperature" in calibration
    if calibration.get("method") != "temperature" and not joined:
        t = calibration.get("temperature", 1.0)
        if isinstance(t, bool) or not isinstance(t, int | float) or t != 1.0:
            raise ValueError(f"an unfitted calibration (method {calibration.get('method')!r}) "
                             f"applies temperature 1, but it records {t!r}")
        return
    if "temperature" not in calibration:
        raise ValueError("the calibration record says method 'temperature' but holds no "
                         "temperature")
    t = calibration["temperature"]
    if isinstance(t, bool) or not isinstance(t, int | float):
        raise ValueError(f"the calibration temperature is {t!r}, not a number")
    low, high = T_RANGE
    if not low * (1 - 1e-9) <= t <= high * (1 + 1e-9):
        raise ValueError(f"the calibration temperature {t!r} lies outside {low:g} to {high:g}, "
                         "the range a fit can give")


def temperature_of(calibration: Mapping) -> float:
    """The temperature a model file's calibration record applies (1 when it has none)."""
    check_record(calibration or {})
    return check_temperature((calibration or {}).get("temperature", 1.0))


def shift_of(calibration: Mapping) -> tuple[float, ...] | None:
    """The per-class logit shift a model file's calibration record adds (None: none)."""
    check_record(calibration or {})
    shift = (calibration or {}).get("shift")
    return None if not shift else tuple(float(v) for v in shift)


def at_range_end(temperature: float) -> bool:
    """Whether a fitted temperature lies at an end of :data:`T_RANGE`.

    There the fit could not pin it down: the split asks for more than the range allows.
    """
    return not T_RANGE[0] * 1.001 < temperature < T_RANGE[1] / 1.001


def _judged(record: Mapping) -> str:
    """What a fitted temperature was chosen by (its pixels' NLL) and judged on.

    The ECE on the fitted pixels may rise (the NLL is minimised, not the ECE); only the
    held-out scenes' ECE can refuse the temperature (:func:`fit_transfer_record`).
    """
    said = ""
    if record.get("nll_before") is not None and record.get("nll_after") is not None:
        said += f" by their NLL ({record['nll_before']:.4f} -> {record['nll_after']:.4f})"
    if record.get("ece_before") is not None and record.get("ece_after") is not None:
        said += f"; ECE on those pixels {record['ece_before']:.4f} -> {record['ece_after']:.4f}"
    transfer = record.get("transfer")
    if isinstance(transfer, str):
        said += f"; its transfer to held-out scenes {transfer}"
    elif isinstance(transfer, Mapping):
        said += (f"; held-out scenes' mean ECE {transfer['ece_at_1']:.4f} at T = 1, "
                 f"{transfer['ece_transferred']:.4f} at the temperatures of the other scenes")
    return said


def describe(calibration: Mapping) -> str:
    """One line saying how a model's probabilities are calibrated."""
    record = dict(calibration or {})
    if record.get("shift"):
        shown = ", ".join(f"{float(v):+.3f}" for v in record["shift"])
        return (f"{describe({k: v for k, v in record.items() if k != 'shift'})}; then the "
                f"class logits shifted by ({shown}) to keep the base network's class shares")
    if record.get("method") == "members":  # training.run.members: each inside the mean
        shown = ", ".join(f"{float(t):.3f}" for t in record.get("temperatures") or ())
        line = f"the mean of {len(record.get('temperatures') or ())} trainings' probabilities, " \
               f"each divided by its own temperature ({shown}; 1: not fitted)"
        joined = record.get("joined")
        return line if not isinstance(joined, Mapping) else \
            f"{line}; the mean's own: {describe(joined)}"
    if record.get("method") != "temperature":
        why = record.get("reason") or "the model file records no calibration"
        return f"uncalibrated ({why})"
    line = f"temperature {record['temperature']:.3f} fitted on {record.get('pixels', 0)} " \
           f"pixels of the {record.get('split', 'val')} split" + _judged(record)
    if at_range_end(float(record["temperature"])):
        line += (f", the end of the range searched ({T_RANGE[0]:g}-{T_RANGE[1]:g}): the model "
                 + ("is barely better than chance there, so its probabilities are flattened "
                    "toward an equal share for every class (1/k of k classes); train longer "
                    "or on more data"
                    if record["temperature"] > 1 else "is far less confident than right there"))
    return line

