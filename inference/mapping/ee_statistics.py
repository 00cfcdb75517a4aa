"""The scene statistics of an Earth Engine date, which a scene-normalised model maps with.

A model trained with ``isamap-train --norm scene`` normalises each map by its input's own
band statistics (:mod:`inference.predict.scene`). Where the input is tiles fetched from
Earth Engine one by one, streamed (:mod:`inference.mapping.dates`) or by a Beam pipeline
(:mod:`inference.mapping.beam_map`), both ask here, once per date and before the first tile:
one ``reduceRegion`` of the date's image over the map's grid at most
:data:`~inference.predict.sources.SAMPLE_SIDE` pixels a side
(:func:`gee_export.ee.band_statistics.band_statistics`), sent with the session's ``getInfo``
(its one retry loop), and read with a local sample's conventions
(:func:`training.norm_stats.stats_from_moments`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from contract.grid import Grid
from gee_export.ee.band_statistics import band_statistics, output_keys, sample_scale
from inference.predict.scene import recorded
from inference.predict.sources import SAMPLE_SIDE
from training.norm_stats import NormStats, stats_from_moments

if TYPE_CHECKING:
    from training.modelfile import ModelMeta

NO_PIXEL_ADVICE = "choose other --months, or a region where that date has data"


def date_statistics(session: Any, image: Any, grid: Grid, meta: ModelMeta,
                    month: str) -> NormStats | None:
    """The statistics ``image`` is normalised by for ``meta``'s model; None for another model.

    One request to Earth Engine for a scene-normalised model, none for any other.

    Raises:
        InputDataError: a band of the model has no valid pixel in the date's image on
            ``grid`` (nothing would be mapped).
    """
    if meta.norm != "scene":
        return None
    request = band_statistics(image, grid, meta.bands, SAMPLE_SIDE)
    reduction = session.get_info(request, f"computing the band statistics of {month}")
    return recorded(reduction_stats(reduction, meta.bands, month,
                                    sample_scale(grid, SAMPLE_SIDE)))


def reduction_stats(reduction: Mapping[str, Any] | None, bands: Sequence[str], month: str,
                    scale: float) -> NormStats:
    """:class:`NormStats` from the answer to :func:`band_statistics` (pure).

    A band the answer has no number for (Earth Engine answers null for a band with no
    unmasked pixel) is refused, naming the date and what to do (an earlier month's band of a
    series takes its base band's, :func:`~training.norm_stats.stats_from_moments`).

    Raises:
        InputDataError: a band has no valid pixel.
    """
    values = dict(reduction or {})
    if len(bands) == 1:  # a one-band image's outputs may go unprefixed
        mean_key, std_key = output_keys(bands[0])
        values.setdefault(mean_key, values.get("mean"))
        values.setdefault(std_key, values.get("stdDev"))
    keys = [output_keys(b) for b in bands]
    return stats_from_moments(bands, [values.get(m) for m, _ in keys],
                              [values.get(s) for _, s in keys],
                              f"the {month} image over the map's grid (sampled at {scale:g} m)",
                              NO_PIXEL_ADVICE, earlier_from_base=True)
