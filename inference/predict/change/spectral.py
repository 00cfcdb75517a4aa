"""The spectral change rule on files: both dates' stacks decide whether, the model which way.

:func:`inference.predict.change.arrays.spectral_change` is the rule on arrays. Here it meets the
product's files: the two dates' input stacks (the bands the model reads, found by name as the
predictor finds them, :func:`inference.predict.sources.select_bands`, and read with their
nodata as NaN as the predictor reads them, :func:`inference.predict.sources.masked_read`)
beside the two dates' probability COGs.

- :func:`spectral_stacks` checks the stacks before any work: they exist, hold the model's
  bands and lie on the probability maps' grid (the rule compares a pixel's bands with its
  probability, so another grid is refused, not resampled). Of a series stack's bands it reads
  the month's own (:func:`contract.bands.own_month`): the earlier months' ``_mK`` bands
  overlap between the two dates and judge no pixel's nodata, as in every prediction path.
- :meth:`SpectralStacks.fitted` fits the scene's
  :class:`~inference.predict.change.arrays.SpectralFit` once, on a decimated sample of both stacks
  (:func:`inference.predict.sources.decimated_read`,
  :data:`~inference.predict.sources.SAMPLE_SIDE`), so every block of the change map is
  scored against the same centre and spread, and a map cut into tiles equals the whole.
- :func:`block_codes` scores one block (:func:`inference.predict.stats.change_map` writes them).

What a change map made so records in its tags: ``change_rule`` (the rule's text),
``spectral_threshold`` and ``spectral_fit`` (numbers only), and the stacks by shareable name.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np
from rasterio.windows import Window

from contract.bands import own_month
from core.errors import InputDataError
from core.shareable import shareable_path
from core.storage import files
from inference.predict.change import arrays as change
from inference.predict.change.arrays import DEFAULT_SPECTRAL_THRESHOLD, SpectralFit
from inference.predict.sources import SAMPLE_SIDE, decimated_read, masked_read, select_bands

NAME = "spectral"
"""What a record calls the rule (``change_rule`` of ``series.json``, ``isamap-map``'s summary)."""


@dataclass(frozen=True)
class SpectralStacks:
    """Both dates' stacks, the bands the rule reads in each, the threshold and the fit.

    Attributes:
        earlier / later: the two dates' stacks (paths, local or gs://), in date order.
        earlier_bands / later_bands: 1-based indexes in each of the model's bands of the
            month's own (:func:`contract.bands.own_month`), same order.
        threshold: :func:`~inference.predict.change.arrays.spectral_change`'s threshold (> 0).
        fit: the scene's :class:`~inference.predict.change.arrays.SpectralFit` (None until
            :meth:`fitted`).
    """

    earlier: str
    later: str
    earlier_bands: tuple[int, ...]
    later_bands: tuple[int, ...]
    threshold: float = DEFAULT_SPECTRAL_THRESHOLD
    fit: SpectralFit | None = None
    rule_text: ClassVar[str] = change.SPECTRAL_RULE
    fit_tag: ClassVar[str] = "spectral_fit"

    def samples(self) -> tuple[np.ndarray, np.ndarray]:
        """Decimated samples of the rule's bands in both stacks (earlier, later), nodata NaN."""
        with files.open_raster(self.earlier) as a, files.open_raster(self.later) as b:
            return (decimated_read(a, self.earlier_bands, SAMPLE_SIDE),
                    decimated_read(b, self.later_bands, SAMPLE_SIDE))

    def fitted(self) -> SpectralStacks:
        """These stacks with the fit of ``later - earlier`` on a decimated sample of both.

        Already fitted stacks are returned as they are, so the stacks are read once.

        Raises:
            InputDataError: no pixel is valid in every band at both dates.
        """
        if self.fit is not None:
            return self
        earlier, later = self.samples()
        try:
            fit = change.fit_spectral_change(later, earlier)
        except ValueError as exc:
            raise InputDataError(f"the spectral change rule cannot be fitted on {self.earlier} "
                                 f"and {self.later}: {exc}; give stacks with common valid "
                                 "pixels or choose the margin rule") from None
        return SpectralStacks(self.earlier, self.later, self.earlier_bands, self.later_bands,
                              self.threshold, fit)

    def tags(self, here: str) -> dict[str, str]:
        """What the change COG records (stacks named relative to ``here``, the COG's folder)."""
        assert self.fit is not None, "fit the stacks first (fitted())"
        return {"change_rule": change.SPECTRAL_RULE,
                "spectral_threshold": f"{self.threshold:g}",
                "spectral_fit": json.dumps(self.fit.to_dict()),
                "from_stack": shareable_path(self.earlier, here),
                "to_stack": shareable_path(self.later, here)}

    def record(self, here: str) -> dict[str, Any]:
        """What a command's summary records of the rule (no absolute path)."""
        assert self.fit is not None, "fit the stacks first (fitted())"
        return {"change_rule": NAME, "spectral_threshold": self.threshold,
                "spectral_fit": self.fit.to_dict(),
                "earlier_stack": shareable_path(self.earlier, here),
                "later_stack": shareable_path(self.later, here)}


    def codes(self, earlier: Any, later: Any, window: Window, p_from: np.ndarray,
              p_to: np.ndarray) -> np.ndarray:
        """Change codes of one block of the two open stacks (:func:`block_codes`)."""
        return block_codes(earlier, later, self, window, p_from, p_to)


class StackRule(Protocol):
    """A change rule on both dates' stacks, as a change map reads it.

    :class:`SpectralStacks`, or the encoder rule's
    (:class:`inference.predict.change.encoder.EncoderStacks`).
    """

    rule_text: ClassVar[str]
    fit_tag: ClassVar[str]  # the change COG's tag holding ``fit.to_dict()``

    @property
    def earlier(self) -> str: ...

    @property
    def later(self) -> str: ...

    @property
    def threshold(self) -> float: ...

    @property
    def fit(self) -> Any: ...

    def fitted(self) -> StackRule: ...

    def tags(self, here: str) -> dict[str, str]: ...

    def record(self, here: str) -> dict[str, Any]: ...

    def codes(self, earlier: Any, later: Any, window: Window, p_from: np.ndarray,
              p_to: np.ndarray) -> np.ndarray: ...


def check_threshold(threshold: float, flag: str = "--spectral-threshold") -> float:
    """``threshold`` when it is a positive number.

    Raises:
        InputDataError: it is not (one line naming ``flag``).
    """
    if not threshold > 0 or not np.isfinite(threshold):
        raise InputDataError(f"{flag} must be a number > 0 (robust z-scores; default "
                             f"{DEFAULT_SPECTRAL_THRESHOLD:g}), got {threshold:g}")
    return float(threshold)


def spectral_stacks(earlier: str, later: str, bands: Sequence[str],
                    size: tuple[int, int], transform: Any, crs: Any, *,
                    band_order: Sequence[str] | None = None,
                    threshold: float = DEFAULT_SPECTRAL_THRESHOLD,
                    names: tuple[str, str] = ("--earlier-stack", "--input")) -> SpectralStacks:
    """Both stacks checked against the probability grid (``size`` = (rows, cols)), not fitted.

    Headers only: a second's work, done before the model loads.

    Args:
        earlier: the earlier date's stack.
        later: the later date's stack.
        bands: the model's bands, in its order; of a series, the month's own are read.
        size: the probability maps' ``(rows, cols)``.
        transform: their geotransform.
        crs: their CRS.
        band_order: the stacks' band names in file order when they have no descriptions.
        threshold: the rule's threshold (> 0).
        names: how messages name the two stacks (the flags the user typed).

    Raises:
        InputDataError: a stack is missing or unreadable, lacks a band, or is not on the grid;
            the threshold is not positive.
    """
    check_threshold(threshold)
    bands = [bands[i] for i in own_month(bands)]
    indexes = []
    for path, flag in zip((earlier, later), names, strict=True):
        given = f"{flag} {path}"
        give = ("the stack GeoTIFF/VRT that date was predicted from (the spectral change rule "
                "reads both dates' stacks)")
        files.require(flag, path, give)
        try:
            with files.open_raster(path) as ds:
                grid = (ds.height, ds.width), ds.transform, ds.crs
                indexes.append(tuple(select_bands(ds.descriptions, bands, band_order)))
        except InputDataError as exc:
            raise InputDataError(f"{given}: {exc}") from None
        except Exception as exc:  # rasterio/GDAL raise several types for an unreadable file
            raise InputDataError(files.raster_refusal(flag, path, exc, give)) from None
        if grid[0] != tuple(size) or not grid[1].almost_equals(transform) or grid[2] != crs:
            raise InputDataError(f"{given} is not on the grid of the probability maps "
                                 f"({grid[0][1]} x {grid[0][0]} px there, {size[1]} x {size[0]} "
                                 "here, or another origin or CRS); the spectral change rule "
                                 "compares each pixel's bands at both dates, so give stacks on "
                                 "the maps' grid (or choose the margin rule)")
    return SpectralStacks(earlier, later, indexes[0], indexes[1], float(threshold))


def block_codes(earlier: Any, later: Any, stacks: SpectralStacks, window: Window,
                p_from: np.ndarray, p_to: np.ndarray) -> np.ndarray:
    """Change codes of one block: the two open stacks' ``window`` and the dates' probabilities.

    255 where a probability is nodata or a band of either stack is (NaN).
    """
    magnitude = block_magnitude(earlier, later, stacks, window)
    return change.spectral_change(p_from, p_to, magnitude, stacks.threshold)


def block_magnitude(earlier: Any, later: Any, stacks: SpectralStacks,
                    window: Window) -> np.ndarray:
    """The spectral magnitude of one block of the two open stacks (NaN where a band is)."""
    assert stacks.fit is not None, "fit the stacks first (fitted())"
    return change.spectral_magnitude(masked_read(later, stacks.later_bands, window),
                                     masked_read(earlier, stacks.earlier_bands, window),
                                     stacks.fit)
