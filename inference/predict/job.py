"""One prediction's options as one value: :class:`PredictJob`, a few frozen parts carried down.

``isamap-predict`` builds it from its flags (:mod:`cli.predict`), ``isamap-map`` one per date
(:mod:`inference.mapping.dates`), and :func:`inference.predict.workflow.predict` runs it. Each
part checks what it can without opening a file as it is made, before anything is opened or
loaded.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contract.stack import recorded_month, stack_month
from core.errors import InputDataError
from core.months import check_month
from core.storage import files
from inference.predict.change.arrays import DEFAULT_CHANGE_MARGIN, DEFAULT_SPECTRAL_THRESHOLD
from inference.predict.config import PredictConfig
from inference.predict.sources import RasterSource
from inference.predict.vectors import VectorOptions, check_vector_extra
from inference.predict.zone_names import check_zones_name

if TYPE_CHECKING:
    from inference.predict.runtime import RuntimeOptions
    from training.data import NormStats
    from training.modelfile import LoadedModel


#: the files a prediction writes at its prefix (COGs), and in its local folder (quick-looks,
#: area tables, the built-up polygons), each ``<prefix's name><suffix>``
PREFIX_SUFFIXES = ("_class.tif", "_prob.tif", "_change.tif")
LOCAL_SUFFIXES = ("_class.png", "_prob.png", "_area.json", "_area.csv", "_change_area.json",
                  "_change_area.csv", "_builtup.gpkg", "_builtup.parquet")


@dataclass(frozen=True)
class PredictInput:
    """What is predicted: the input stack, and how it is read.

    Attributes:
        stack: the input stack (GeoTIFF/VRT, local or gs://) with named bands, or an open
            :class:`inference.predict.sources.RasterSource` (tiles fetched on demand).
        month: ``YYYY-MM`` recorded in the COGs and used for the asset's time range (None:
            the month the stack records, if any: :meth:`with_stack_month`).
        band_order: the stack's band names in file order when it has no band descriptions.
        allow_implausible: map an input the heuristic value rules doubt, with a warning
            (:func:`inference.predict.expected_inputs.check_physics`).
        scene: the input's band statistics a scene-normalised model maps with, computed
            elsewhere (tiles fetched from Earth Engine: :mod:`inference.mapping.ee_statistics`);
            None: from a decimated sample of ``stack``
            (:func:`inference.predict.scene.scene_statistics`). Any other model ignores them.

    Raises:
        IsamapError: a malformed month.
    """

    stack: str | RasterSource
    month: str | None = None
    band_order: Sequence[str] | None = None
    allow_implausible: bool = False
    scene: NormStats | None = None

    def __post_init__(self) -> None:
        if self.month is not None:
            check_month(self.month)

    def with_stack_month(self, stack: Any) -> PredictInput:
        """This input with the month its opened ``stack`` records, where ``--month`` gave none.

        A stack the backends wrote records its month (:data:`contract.stack.MONTH_TAG`);
        another input records none and keeps its own.

        Raises:
            InputDataError: ``--month`` names another month than the stack records.
        """
        tags = getattr(stack, "tags", None)
        recorded = recorded_month(tags()) if callable(tags) else None
        if recorded is None:
            return self
        return replace(self, month=stack_month(self.month, recorded))


@dataclass(frozen=True)
class PredictChange:
    """The change map against an earlier date (:mod:`inference.predict.change.inputs`).

    Attributes:
        compare_with: class COG of an earlier date on the same grid: adds a change map
            (None: no change map).
        margin: with ``compare_with``, change is decided on both dates' probabilities with
            this margin (:func:`inference.predict.change.arrays.margin_change`; the earlier
            ``<prefix>_prob.tif`` must lie beside its class COG); 0: the class maps differenced.
        normalise_to: the earlier date's stack (same grid): the input is normalised onto it
            per band before predicting
            (:func:`inference.predict.change.inputs.normalised_source`); the fit is recorded.
        earlier_stack: with ``compare_with``, the earlier date's stack (on the output grid,
            as the input): change is decided by the spectral rule instead of ``margin``
            (:mod:`inference.predict.change.spectral`); its fit is recorded.
        spectral_threshold: the spectral rule's threshold (robust z-score, > 0).

    Raises:
        IsamapError: a margin outside [0, 0.5), or ``earlier_stack`` without ``compare_with``.
    """

    compare_with: str | None = None
    margin: float = DEFAULT_CHANGE_MARGIN
    normalise_to: str | None = None
    earlier_stack: str | None = None
    spectral_threshold: float = DEFAULT_SPECTRAL_THRESHOLD

    def __post_init__(self) -> None:
        if not 0 <= self.margin < 0.5:
            raise InputDataError(f"--change-margin must be in [0, 0.5), got {self.margin}")
        if self.earlier_stack and not self.compare_with:
            raise InputDataError("--earlier-stack decides a change map: give --compare-with "
                                 "EARLIER_class.tif too")


@dataclass(frozen=True)
class PredictOutputs:
    """Where a prediction's files go, and what is made from the maps beside the COGs.

    Attributes:
        prefix: COG prefix (``<prefix>_class.tif``, ``<prefix>_prob.tif``).
        local_dir: where PNGs and tables go (default: beside a local prefix, else ``.``).
        zones: GeoJSON of polygons for the area table (default: the whole raster).
        zones_name: the zones' property that names them (default:
            :func:`inference.predict.zone_names.zone_name`).
        vectors: also write the built-up polygons (:mod:`inference.predict.vectors`).
        warn_zones: warn of each zone without a valid pixel of the map (False: the caller
            warns once for several maps, as a series does for its dates).

    Raises:
        IsamapError: ``zones_name`` without ``zones``, or the vectors' extra not installed.
    """

    prefix: str
    local_dir: str | os.PathLike[str] | None = None
    zones: str | os.PathLike[str] | dict[str, Any] | None = None
    zones_name: str | None = None
    vectors: VectorOptions | None = None
    warn_zones: bool = True

    def __post_init__(self) -> None:
        check_zones_name(self.zones, self.zones_name)
        check_vector_extra(self.vectors)  # a missing extra fails before the model loads

    def name(self) -> str:
        """The prefix's last part, which every local file's name starts with."""
        return self.prefix.rstrip("/").rsplit("/", 1)[-1]

    def local_folder(self) -> Path:
        """Where the PNGs and tables go.

        ``local_dir``, else beside a local prefix, else (a ``gs://`` prefix) the working
        directory.
        """
        if self.local_dir:
            return Path(self.local_dir)
        return Path.cwd() if files.is_gcs(self.prefix) else Path(self.prefix).parent

    def written_paths(self) -> list[str]:
        """Every file the prediction may write (with a change map and polygons)."""
        local = self.local_folder()
        return ([self.prefix + suffix for suffix in PREFIX_SUFFIXES]
                + [str(local / (self.name() + suffix)) for suffix in LOCAL_SUFFIXES])


@dataclass(frozen=True)
class PredictRun:
    """How the sliding window resumes and shows itself.

    Attributes:
        work_dir: checkpoint folder (see :func:`inference.predict.raster.predict_raster`).
        restart: discard strips of a different earlier run.
        progress: show tqdm bars.
    """

    work_dir: str | None = None
    restart: bool = False
    progress: bool = True


@dataclass(frozen=True)
class PredictJob:
    """A stack predicted with a model file, and everything made from the maps.

    Each part goes to the stage that reads it: the input to its checks and the sliding window,
    the change to :func:`inference.predict.change.inputs.change_inputs`, the outputs to
    :func:`inference.predict.workflow.finish_outputs`, the run to the sliding window.

    Attributes:
        model: a file written by ``training.modelfile.save_model_file``, or one already read
            (:func:`training.modelfile.load_model`: a run of many dates reads it once).
        input: the stack, its month and how it is read.
        outputs: where the COGs, PNGs and tables go, and the zones and polygons.
        config: tiling and output options.
        options: device, precision, memory format, compilation.
        isa_class: index of the impervious class (default: found by class name).
        change: the change map against an earlier date (default: none).
        run: checkpoints and progress bars.
    """

    model: str | os.PathLike[str] | LoadedModel
    input: PredictInput
    outputs: PredictOutputs
    config: PredictConfig = field(default_factory=PredictConfig)
    options: RuntimeOptions | None = None
    isa_class: int | None = None
    change: PredictChange = PredictChange()
    run: PredictRun = PredictRun()
