"""The statistics a scene-normalised model's map is made with (``isamap-train --norm scene``).

Such a model saw every training patch normalised by the band statistics of the scene the patch
was cut from (:func:`training.data.compute_scene_norms`), so every map of it is normalised by
its own input stack's statistics: computed here once, before the first tile, from a decimated
sample of the whole stack (at most :data:`~inference.predict.sources.SAMPLE_SIDE` pixels a
side, NaN ignored). Every tile of a map is then normalised alike, whatever ``--tile`` is, and
the statistics depend on the input's pixels alone; the map records them (its ``normalisation``
tag).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from gee_export.core.errors import ConfigError, InputDataError
from gee_export.core.storage import files
from inference.predict.expected_inputs import read_band_sample
from inference.predict.sources import SAMPLE_SIDE, RasterSource, select_bands
from training.data import NormStats, band_stats


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
                             "which an input fetched tile by tile cannot give: export the "
                             "scene's stack and map it with isamap-predict --input")
    return band_stats([sample], tuple(bands), where="the input stack")


def check_tiled_input(norm: str, model: str) -> None:
    """Refuse a scene-normalised model where the input arrives tile by tile.

    Its map needs the whole scene's statistics before the first tile, which tiles fetched
    from Earth Engine one by one (``isamap-map --method pixels``, any runner) do not give;
    said before anything is fetched.
    """
    if norm == "scene":
        raise ConfigError(f"model {model!r} normalises each map by its input scene's "
                          "statistics (isamap-train --norm scene), which tiles fetched one "
                          "by one cannot give: map it with isamap-map --method tasks or "
                          "--backend local")


def describe(stats: NormStats) -> str:
    """The statistics as the map's ``normalisation`` tag records them (JSON, 6 digits)."""
    return json.dumps({"by": "scene", "bands": list(stats.bands),
                       "mean": [float(f"{v:.6g}") for v in stats.mean],
                       "std": [float(f"{v:.6g}") for v in stats.std]})
