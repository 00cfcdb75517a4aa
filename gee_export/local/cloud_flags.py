"""Does Sen2Cor's cloud mask hide clear ground? A check over one month's composite.

Sen2Cor's scene classification (SCL) can flag bright or hazy ground as cloud (8, 9) or
cirrus (10) under a clear sky: on the real ``ghana_b`` tile it flags most of a town and little
else, so the default mask leaves the town without a composite value and the map with a hole
where the built-up land is. A real opaque cloud is brighter in the visible than the ground
around it; a flagged pixel that is not is more likely clear ground. The check therefore
compares the visible reflectance of the observations that the cloud flags removed (at pixels
left without any clear observation) with that of the clear observations, and words a warning
when the removed ones are no brighter than the brightest tenth of the clear ground.

It trusts the pixels, not the flags, and decides nothing: the mask stays as the recipe says
(``isamap-export --scl-mask`` changes it), the user is told where to look. Memory is two
fixed histograms however large the grid, because the composite is written block by block.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

#: the bands whose brightness is compared, in order of preference (clouds are white)
VISIBLE_BANDS: tuple[str, ...] = ("B2", "B3", "B4")
#: histogram bins of reflectance 0..BINS_TOP; brighter values fall into the last bin
BINS, BINS_TOP = 400, 1.0
#: the clear ground's quantile that removed observations must exceed to look like cloud
CLEAR_QUANTILE = 0.9
#: fewer hidden pixels than this share of the observed ones are not worth a warning
MIN_SHARE = 0.001


def visible_band(bands: Sequence[str]) -> int | None:
    """Index in ``bands`` of the first of :data:`VISIBLE_BANDS` there, else None."""
    for name in VISIBLE_BANDS:
        if name in bands:
            return list(bands).index(name)
    return None


def _histogram(values: np.ndarray) -> np.ndarray:
    finite = values[np.isfinite(values)]
    index = np.clip((finite / BINS_TOP * BINS).astype(np.int64), 0, BINS - 1)
    return np.bincount(index, minlength=BINS)


def _quantile(hist: np.ndarray, q: float) -> float:
    """Centre of the bin where the cumulative share first reaches ``q`` (to half a bin)."""
    cumulative = np.cumsum(hist) / hist.sum()
    return float((np.searchsorted(cumulative, q) + 0.5) * BINS_TOP / BINS)


@dataclass
class CloudFlagCheck:
    """Counts over a month's composite, added to block by block (:meth:`add`).

    Attributes:
        scenes: the month's Sentinel-2 scenes (for the message).
        observed: grid pixels with at least one valid observation.
        hidden: pixels without a clear observation that some scene's SCL flagged as cloud or
            cirrus (``sentinel2.SCL_CLOUD_CLASSES``, where the recipe masks them).
        hidden_values: histogram of the visible reflectance of the flagged observations at the
            hidden pixels.
        clear_values: histogram of the visible reflectance of the clear observations.
    """

    scenes: int
    observed: int = 0
    hidden: int = 0
    hidden_values: np.ndarray = field(default_factory=lambda: np.zeros(BINS, np.int64))
    clear_values: np.ndarray = field(default_factory=lambda: np.zeros(BINS, np.int64))

    def add(self, visible: np.ndarray | None, clear: np.ndarray, flagged: np.ndarray,
            observed: np.ndarray) -> None:
        """Count one window: (scenes, H, W) arrays of one visible band and three masks.

        ``flagged``: the SCL put the observation in a masked cloud class; ``observed``: the
        scene has a value there in every band. ``visible`` None (no visible band exported)
        counts the pixels only.
        """
        hidden = np.asarray(flagged.any(axis=0) & ~clear.any(axis=0))
        self.observed += int(observed.any(axis=0).sum())
        self.hidden += int(hidden.sum())
        if visible is not None:
            self.hidden_values += _histogram(visible[flagged & hidden[None]])
            self.clear_values += _histogram(visible[clear])

    def warning(self, month: str) -> str | None:
        """The warning to show, or None when the hidden pixels look like cloud (or are few)."""
        if not self.observed or self.hidden < MIN_SHARE * self.observed:
            return None
        if not self.hidden_values.sum() or not self.clear_values.sum():
            return None
        flagged_median = _quantile(self.hidden_values, 0.5)
        clear_top = _quantile(self.clear_values, CLEAR_QUANTILE)
        if flagged_median > clear_top:
            return None
        share = 100.0 * self.hidden / self.observed
        scenes = "its one scene" if self.scenes == 1 else f"any of its {self.scenes} scenes"
        return (f"{month}: {self.hidden:,} pixels ({share:.1f} % of the grid) have no clear "
                f"Sentinel-2 observation in {scenes} because Sen2Cor flagged them as cloud or "
                f"cirrus (SCL 8/9/10), yet they are no brighter than clear ground (visible "
                f"reflectance median {flagged_median:.2f}, clear ground's 90th "
                f"percentile {clear_top:.2f}): bright roofs and haze over towns are flagged so "
                "under a clear sky. Look at the stack's s2_clear_count band (0 there); if the "
                "sky was clear, keep them with isamap-export --scl-mask 3,11")
