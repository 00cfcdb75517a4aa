"""What values each band had in the training data, recorded in the model file.

A model only knows the values it was trained on. A stack on another scale (integers of
reflectance x 10000, dB x 100), with its bands in another order, or of another quantity
(linear power where dB was trained) still runs through the network and gives a map that looks
like one. Percentiles of each band's raw values in the training split (``ModelMeta.band_ranges``)
let a command compare its input with the training data before the first forward pass.

This module owns that comparison (:func:`value_problems`, :func:`not_trained_on`): a stack's
decimated sample in ``isamap-predict`` and ``isamap-map``
(:func:`inference.predict.expected_inputs.check_input`), a patch dataset's sample in
``isamap-evaluate`` and ``isamap-prune`` (:func:`check_patch_values`), one rule and one
message for all.

A band of class codes (the coarse product's ``product``) has no scale to check and is left
out. The percentiles come from a bounded sample: at most ``max_patches`` patches spread over the
split and ``per_patch`` pixels of each, so a large dataset costs what a small one does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from contract.band_values import band_value_problems, finite_values
from contract.bands import is_code_band
from contract.input_check import fingerprint_of, judge_stack, pixel_sample
from core.errors import InputDataError

log = logging.getLogger(__name__)

RANGE_MARGIN = 0.1
"""A median within the training range widened by this share of its width on each side passes."""
FAR_SPANS = 10.0  # dB under a reflectance is hundreds of widths away; another scene is a few
_SCALES = (10000.0, 100.0)  # integer exports: reflectance x 10000, dB x 100
#: the advice of a refusal for values of another unit; ``{}`` names what to give
UNITS_FIX = ("give {} in the units the model was trained on (float reflectance 0-1, sigma0 "
             "in dB), with its bands named in their order")

PERCENTILES = (1.0, 50.0, 99.0)
"""The recorded percentiles: the range the model saw (1st-99th) and its median."""


def band_ranges(read_image: Callable[[int], np.ndarray], count: int, bands: tuple[str, ...],
                max_patches: int = 64, per_patch: int = 4096) -> dict[str, tuple[float, ...]]:
    """``(p1, p50, p99)`` of each band's finite values over a sample of patches.

    Args:
        read_image: returns patch ``i``'s raw image ``(C, H, W)`` (NaN = nodata), e.g.
            ``lambda i: dataset.read_raw(i)[0]`` of a ``training.data.PatchDataset``.
        count: how many patches there are.
        bands: the band names, in the image's channel order.
        max_patches: at most this many patches are read, evenly spread over ``0..count-1``.
        per_patch: at most this many pixels of each patch (a regular subsample).

    Returns:
        Band name -> percentiles; a band without any finite value, and a band of class
        codes, is left out.
    """
    samples = band_samples(read_image, count, bands, max_patches, per_patch)
    out: dict[str, tuple[float, ...]] = {}
    for name, v in samples.items():
        if v.size and not is_code_band(name):
            out[name] = tuple(round(float(p), 6) for p in np.percentile(v, PERCENTILES))
    return out


def band_samples(read_image: Callable[[int], np.ndarray], count: int, bands: tuple[str, ...],
                 max_patches: int = 64, per_patch: int = 4096) -> dict[str, np.ndarray]:
    """Each band's finite values over a sample of patches (the arguments as :func:`band_ranges`).

    Returns:
        Band name -> its sampled finite values (float32, possibly empty); no band when
        ``count`` is 0.
    """
    if count <= 0:
        return {}
    pixels = pixel_sample(read_image, count, len(bands), max_patches, per_patch)
    return {name: v[np.isfinite(v)] for name, v in zip(bands, pixels, strict=True)}


def range_problems(samples: Mapping[str, np.ndarray], ranges: Mapping[str, Sequence[float]],
                   warnings: list[str] | None = None) -> list[str]:
    """Bands whose sample median shows another scale or kind of value than the training data.

    A median outside the training range (with :data:`RANGE_MARGIN`) but within
    :data:`FAR_SPANS` range widths of it, and no scale of :data:`_SCALES` explaining it (none
    is guessed for a range spanning 0, which any median divided by 10000 falls in), is
    logged as a warning instead (or added to ``warnings``, for the caller to log once the
    input has passed its other checks): the input is plausible, the scene unlike the training
    data.
    """
    problems = []
    for name, values in samples.items():
        if name not in ranges:
            continue
        finite = finite_values(values)
        if finite.size < 16:
            continue
        p1, p50, p99 = (float(v) for v in ranges[name])
        margin = RANGE_MARGIN * max(p99 - p1, 1e-6)
        low, high = p1 - margin, p99 + margin
        median = float(np.median(finite))
        if low <= median <= high:
            continue
        # a range spanning 0 holds any median divided by 10000: no scale is told by it
        guess = "" if p1 <= 0 <= p99 else next(
            (f" (x {scale:g} of values the model knows?)" for scale in _SCALES
             if p1 <= median / scale <= p99 and median * p50 > 0), "")
        text = (f"{name} has a median of {median:.4g}, outside the {p1:.4g} to {p99:.4g} the "
                f"model saw in training (1st-99th percentile)")
        far = FAR_SPANS * max(p99 - p1, 1e-6)
        if guess or not p1 - far <= median <= p99 + far:
            problems.append(text + guess)
        else:
            unlike = (f"{text}: a scene unlike the training data; the model has not seen such "
                      "values and its map there may be poor")
            if warnings is None:
                log.warning("%s", unlike)
            else:
                warnings.append(unlike)
    return problems


def value_problems(samples: Mapping[str, np.ndarray], ranges: Mapping[str, Sequence[float]],
                   warnings: list[str] | None = None, *, named_by_user: bool = False) -> list[str]:
    """Bands whose values are not what the model was trained on: the rule of every command.

    Each band's sample against the model file's ``band_ranges`` (:func:`range_problems`,
    ``warnings`` as there); against the physical rules of its name
    (:func:`contract.band_values.band_value_problems`) where the file records no ranges (an
    older isamap wrote it) or the user named the bands (``named_by_user``: nothing else
    confirms those names).
    """
    problems = range_problems(samples, ranges, warnings) if ranges else []
    if not ranges:
        log.info("the model file records no value ranges of its training data (an older "
                 "isamap wrote it): the input's values are checked against their band names "
                 "only")
    if not ranges or named_by_user:
        problems += band_value_problems(samples)
    return problems


def check_patch_values(read_image: Callable[[int], np.ndarray], count: int,
                       bands: tuple[str, ...], ranges: Mapping[str, Sequence[float]],
                       what: str) -> None:
    """Refuse patches whose band values are not what the model was trained on, in one line.

    A sample of the patches (:func:`band_samples`, as training recorded the model's ranges)
    is judged by :func:`value_problems`, before the model runs on them.

    Args:
        read_image: patch index -> its raw image ``(bands, h, w)``.
        count: the number of patches.
        bands: the model's bands, in the images' order.
        ranges: the model file's ``band_ranges``.
        what: how the message names the patches (e.g. "the test split of the dataset X").

    Raises:
        InputDataError: a band on another scale or of another kind than the training data's.
    """
    problems = value_problems(band_samples(read_image, count, bands), dict(ranges))
    if problems:
        raise not_trained_on(what, problems, UNITS_FIX.format("a dataset") + ", or a model "
                             "trained on data in this dataset's units")


def not_trained_on(what: str, problems: Sequence[str], fix: str) -> InputDataError:
    """The one-line refusal of :func:`value_problems`' findings (at least one).

    It names the first band, its median against the range the model saw, how many more, and
    ``fix`` (e.g. :data:`UNITS_FIX` with what to give).
    """
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return InputDataError(f"{what} does not hold what the model was trained on: "
                          f"{problems[0]}{more}; {fix}")


def judge_patches(what: str, read_image: Callable[[int], np.ndarray], count: int,
                  bands: tuple[str, ...], *, allow_implausible: bool = False,
                  per_patch: int = 4096, physics: bool = True) -> dict[str, Any]:
    """Judge a patch dataset's pixels by the one input check; its fingerprint to record.

    The patches are sampled as :func:`contract.input_check.pixel_sample` reads them and judged by
    :func:`contract.input_check.judge_stack` (untagged fill and the physical rules; no
    fingerprint judges the data a fingerprint is taken of).

    Args:
        what: the data in words, the refusal's start.
        read_image: as :func:`band_ranges`.
        count: how many patches there are.
        bands: the band names, in the image's channel order.
        allow_implausible: proceed with doubts (``--allow-implausible``).
        per_patch: at most this many pixels of each patch (a whole scene's sample: all of
            it, as inference reads it, so that both fingerprints see the same pixels).
        physics: apply the physical rules, a scene's (False: a dataset's patches, whose
            scenes or images were judged at export or import; fill is refused all the same).

    Returns:
        What a model file records of them: ``pixel_fingerprint``, the sample's fingerprint
        (none: too few valid pixels), and ``input_notes``, the doubts accepted with
        ``allow_implausible`` (none: no doubt).
    """
    if count <= 0:
        return {}
    pixels = pixel_sample(read_image, count, len(bands), per_patch=per_patch)
    samples = {b: pixels[i] for i, b in enumerate(bands) if not is_code_band(b)}
    notes = judge_stack(what, samples, allow_implausible=allow_implausible,
                        recorded_in="the model file", physics=physics)
    fingerprint = fingerprint_of(samples)
    return {**({"pixel_fingerprint": fingerprint.to_dict()} if fingerprint else {}),
            **({"input_notes": list(notes)} if notes else {})}
