"""The statistics a scene-normalised model's map is made with (``isamap-train --norm scene``).

Such a model saw every training patch normalised by the band statistics of the scene the patch
was cut from (:func:`training.data.compute_scene_norms`), so every map of it is normalised by
its own input stack's statistics: computed once, before the first tile, from a decimated
sample of the whole stack (at most :data:`~inference.predict.sources.SAMPLE_SIDE` pixels a
side, NaN ignored): here from a stack file, by Earth Engine where the tiles are fetched from
it one by one (:mod:`inference.mapping.ee_statistics`, the same sample side). Every tile of a
map is then normalised alike, whatever ``--tile`` is, and the statistics depend on the input's
pixels alone; the map records them (its ``normalisation`` tag).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

from core.errors import InputDataError
from core.storage import files
from inference.predict.expected_inputs import read_band_sample
from inference.predict.sources import SAMPLE_SIDE, RasterSource, select_bands
from training.norm_stats import NormStats, band_stats

if TYPE_CHECKING:
    from training.modelfile import ModelMeta


def scene_statistics(source: str | RasterSource, bands: Sequence[str],
                     band_order: Sequence[str] | None = None) -> NormStats:
    """Per-band mean and deviation of ``bands`` over a decimated sample of ``source``.

    Raises:
        InputDataError: a band has no valid pixel, or the source's pixels are fetched on
            demand (a sample of the whole scene would cost a request per block).
    """
    if isinstance(source, str):
        with files.open_raster(source) as src:
            descriptions = src.descriptions
    else:
        descriptions = source.descriptions
    indexes = select_bands(descriptions, bands, band_order)
    sample = read_band_sample(source, indexes, SAMPLE_SIDE)
    if sample is None:
        raise InputDataError("this model normalises each map by its input scene's statistics, "
                             "which an input fetched tile by tile cannot give: pass them "
                             "(scene=, as isamap-map does from Earth Engine), or map the "
                             "scene's stack file with isamap-predict --input")
    return recorded(band_stats([sample], tuple(bands), where="the input stack",
                               earlier_from_base=True))


def recorded_statistics(meta: ModelMeta) -> NormStats:
    """The training statistics the model file records, as a stand-in for a scene's.

    For what does not depend on the statistics (timing the model in a dry run, checking
    int8 before a pipeline starts) and runs before any scene is read; never for a map.
    """
    return NormStats(tuple(meta.bands), tuple(meta.norm_mean), tuple(meta.norm_std))


def recorded(stats: NormStats) -> NormStats:
    """``stats`` at the precision the map records (6 significant digits): what it is made with.

    A map is normalised by exactly the numbers its ``normalisation`` tag and its run's
    fingerprint hold, so a resumed run whose statistics are computed again (an Earth Engine
    reduction asked a second time) either matches to the recorded digits or is a new run.
    """
    return NormStats(tuple(stats.bands), tuple(float(f"{v:.6g}") for v in stats.mean),
                     tuple(float(f"{v:.6g}") for v in stats.std))


def describe(stats: NormStats) -> str:
    """The statistics as the map's ``normalisation`` tag records them (JSON, 6 digits)."""
    stats = recorded(stats)
    return json.dumps({"by": "scene", "bands": list(stats.bands), "mean": list(stats.mean),
                       "std": list(stats.std)})
