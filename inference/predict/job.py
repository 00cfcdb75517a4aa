"""One prediction's options as one value: :class:`PredictJob`, built once and carried down.

``isamap-predict`` builds it from its flags (:mod:`cli.predict`), ``isamap-map`` one per date
(through :func:`inference.predict.workflow.predict_with_model_file`), and
:func:`inference.predict.workflow.predict` runs it. What can be checked without opening a
file is checked by :meth:`PredictJob.check` before anything is opened or loaded.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contract.stack import recorded_month, stack_month
from core.errors import ConfigError, InputDataError
from core.months import check_month
from core.storage import files
from inference.cog.stream import cog_writer
from inference.predict.change.arrays import DEFAULT_CHANGE_MARGIN, DEFAULT_SPECTRAL_THRESHOLD
from inference.predict.config import PredictConfig
from inference.predict.sources import RasterSource
from inference.predict.vectors import VectorOptions, check_vector_extra

if TYPE_CHECKING:
    from inference.predict.runtime import RuntimeOptions
    from training.data import NormStats
    from training.modelfile import LoadedModel


#: the files a prediction writes at its prefix (COGs), and in its local folder (quick-looks,
#: area tables, the built-up polygons), each ``<prefix's name><suffix>``
PREFIX_SUFFIXES = ("_class.tif", "_prob.tif", "_change.tif")
LOCAL_SUFFIXES = ("_class.png", "_prob.png", "_area.json", "_area.csv", "_change_area.json",
                  "_change_area.csv", "_builtup.gpkg", "_builtup.parquet")


def local_folder(out_prefix: str, local_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where a prediction's PNGs and tables go.

    ``local_dir``, else beside a local prefix, else (a ``gs://`` prefix) the working directory.
    """
    if local_dir:
        return Path(local_dir)
    return Path.cwd() if files.is_gcs(out_prefix) else Path(out_prefix).parent


def written_paths(out_prefix: str, local_dir: str | os.PathLike[str] | None = None
                  ) -> list[str]:
    """Every file a prediction at ``out_prefix`` may write (with a change map and polygons)."""
    name = out_prefix.rstrip("/").rsplit("/", 1)[-1]
    local = local_folder(out_prefix, local_dir)
    return ([out_prefix + suffix for suffix in PREFIX_SUFFIXES]
            + [str(local / (name + suffix)) for suffix in LOCAL_SUFFIXES])


@dataclass(frozen=True)
class PredictJob:
    """A stack predicted with a model file, and everything made from the maps.

    Attributes:
        model: a file written by ``training.modelfile.save_model_file``, or one already read
            (:func:`training.modelfile.load_model`: a run of many dates reads it once).
        stack: the input stack (GeoTIFF/VRT, local or gs://) with named bands, or an open
            :class:`inference.predict.sources.RasterSource` (tiles fetched on demand).
        out_prefix: COG prefix (``<prefix>_class.tif``, ``<prefix>_prob.tif``).
        month: ``YYYY-MM`` recorded in the COGs and used for the asset's time range.
        config: tiling and output options (None: the defaults).
        options: device, precision, memory format, compilation.
        isa_class: index of the impervious class (default: found by class name).
        zones: GeoJSON of polygons for the area table (default: the whole raster).
        zones_name: the zones' property that names them (default:
            :func:`inference.predict.zone_names.zone_name`).
        compare_with: class COG of an earlier date on the same grid: adds a change map.
        change_margin: with ``compare_with``, change is decided on both dates' probabilities
            with this margin (:func:`inference.predict.change.arrays.margin_change`; the earlier
            ``<prefix>_prob.tif`` must lie beside its class COG); 0: the class maps differenced.
        normalise_to: the earlier date's stack (same grid): ``stack`` is normalised onto it
            per band before predicting
            (:func:`inference.predict.change.inputs.normalised_source`); the fit is recorded.
        earlier_stack: with ``compare_with``, the earlier date's stack (on the output grid,
            as ``stack``): change is decided by the spectral rule instead of ``change_margin``
            (:mod:`inference.predict.change.spectral`); its fit is recorded.
        spectral_threshold: the spectral rule's threshold (robust z-score, > 0).
        local_dir: where PNGs and tables go (default: beside a local prefix, else ``.``).
        work_dir: checkpoint folder (see :func:`inference.predict.raster.predict_raster`).
        restart: discard strips of a different earlier run.
        progress: show tqdm bars.
        band_order: the stack's band names in file order when it has no band descriptions.
        allow_implausible: map an input the heuristic value rules doubt, with a warning
            (:func:`inference.predict.expected_inputs.check_physics`).
        scene: the input's band statistics a scene-normalised model maps with, computed
            elsewhere (tiles fetched from Earth Engine: :mod:`inference.mapping.ee_statistics`);
            None: from a decimated sample of ``stack``
            (:func:`inference.predict.scene.scene_statistics`). Any other model ignores them.
        vectors: also write the built-up polygons (:mod:`inference.predict.vectors`).
        warn_zones: warn of each zone without a valid pixel of the map (False: the caller
            warns once for several maps, as a series does for its dates).
    """

    model: str | os.PathLike[str] | LoadedModel
    stack: str | RasterSource
    out_prefix: str
    month: str | None = None
    config: PredictConfig | None = None
    options: RuntimeOptions | None = None
    isa_class: int | None = None
    zones: str | os.PathLike[str] | dict[str, Any] | None = None
    zones_name: str | None = None
    compare_with: str | None = None
    change_margin: float = DEFAULT_CHANGE_MARGIN
    normalise_to: str | None = None
    earlier_stack: str | None = None
    spectral_threshold: float = DEFAULT_SPECTRAL_THRESHOLD
    local_dir: str | os.PathLike[str] | None = None
    work_dir: str | None = None
    restart: bool = False
    progress: bool = True
    band_order: Sequence[str] | None = None
    allow_implausible: bool = False
    scene: NormStats | None = None
    vectors: VectorOptions | None = None
    warn_zones: bool = True

    @property
    def predict_config(self) -> PredictConfig:
        return self.config or PredictConfig()

    def check(self) -> None:
        """What fails without opening a file: before the input is opened or the model loaded.

        Raises:
            IsamapError: a malformed month, a misspelt ``ISAMAP_COG_WRITER``, the vectors'
                extra not installed, a change margin outside [0, 0.5), ``zones_name`` without
                ``zones``, or ``earlier_stack`` without ``compare_with``.
        """
        if self.month is not None:
            check_month(self.month)
        cog_writer()  # a misspelt ISAMAP_COG_WRITER fails before the model loads
        check_vector_extra(self.vectors)  # a missing extra fails before the model loads
        if not 0 <= self.change_margin < 0.5:
            raise InputDataError(f"--change-margin must be in [0, 0.5), got "
                                 f"{self.change_margin}")
        if self.zones_name and not self.zones:
            raise ConfigError("--zones-name names the zones of --zones: give --zones FILE too")
        if self.earlier_stack and not self.compare_with:
            raise InputDataError("--earlier-stack decides a change map: give --compare-with "
                                 "EARLIER_class.tif too")


def with_stack_month(job: PredictJob, stack: Any) -> PredictJob:
    """``job`` with the month its opened input records, where ``--month`` gave none.

    A stack the backends wrote records its month (:data:`contract.stack.MONTH_TAG`); another
    input records none and the job keeps its own.

    Raises:
        InputDataError: ``--month`` names another month than the stack records.
    """
    tags = getattr(stack, "tags", None)
    recorded = recorded_month(tags()) if callable(tags) else None
    if recorded is None:
        return job
    return dataclasses.replace(job, month=stack_month(job.month, recorded))
