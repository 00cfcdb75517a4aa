"""What ``isamap-map`` is asked to map, checked against what the model was trained on.

The map is built from exactly what the model was trained on: the model file records its
dataset (bands, grid, recipe, backend; :func:`training.run.inputs.dataset_record`), and every date
is composited with that recipe on a grid in the region's UTM zone at the model's resolution,
on the dataset's pixel lattice when the zone is the same
(:func:`inference.mapping.map_grid.region_grid`).
"""


from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from contract.dataset import read_manifest
from contract.grid import Grid
from contract.publishing import PublishOptions
from contract.regions import Region
from core.commands import check_range
from core.errors import (
    ConfigError,
    IsamapError,
)
from core.months import check_month, parse_months
from core.pipeline_options import RunnerConfig
from core.storage import files
from gee_export.ee.budget import check_max_eecu_hours
from gee_export.ee.export import DEFAULT_WORKERS, MAX_WORKERS
from inference.predict.change.arrays import DEFAULT_CHANGE_MARGIN, DEFAULT_SPECTRAL_THRESHOLD
from inference.predict.change.consistency import TEMPORAL_RULES, TemporalRule
from inference.predict.change.spectral import check_threshold
from inference.predict.keep.rule import KeepRule
from inference.predict.lattice import Lattice
from inference.predict.postprocess import ClaheParams, Postprocess
from inference.predict.raster import PredictConfig
from inference.predict.runtime import RuntimeOptions
from inference.predict.vectors import VectorOptions

if TYPE_CHECKING:
    from training.modelfile import ModelMeta

log = logging.getLogger(__name__)

Backend = Literal["ee", "local"]
Method = Literal["pixels", "tasks"]
ChangeRule = Literal["spectral", "encoder", "margin"]
DEFAULT_LATENCY_S = 0.4  # a computePixels round trip for one 512 px tile (plans only)


@dataclass(frozen=True)
class ModelDataset:
    """What a model was trained on, as its dataset manifest recorded it."""

    bands: tuple[str, ...]
    grid: Grid | None
    recipe: Mapping[str, Any]
    backend: str
    months: tuple[str, ...]
    source: str  # where this was read: the model file, or a manifest
    sources: Mapping[str, Any] = field(default_factory=dict)  # per month: composite windows

    def month_of_year(self) -> str:
        """The calendar month the model was trained on (``06`` for 2019-06)."""
        if not self.months:
            raise ConfigError("the model's dataset records no month; give --months YYYY-MM,...")
        return self.months[0][5:7]


def model_dataset(meta: ModelMeta, dataset: str | None = None) -> ModelDataset:
    """The dataset record of a model file (its ``extra``), or the manifest under ``dataset``.

    Older model files record only the dataset's root; its ``manifest.json`` is read then.
    """
    record = dict((getattr(meta, "extra", None) or {}).get("dataset") or {})
    where = "the model file"
    if dataset is not None or "recipe" not in record:
        root = dataset or record.get("root")
        if not root and "points" in (getattr(meta, "extra", None) or {}):
            raise ConfigError("the model was fitted (isamap-fit) on a stack of no export, so "
                              "it records no recipe to make each date's stack with; give "
                              "--dataset DIR (an isamap-export folder of the bands it reads), "
                              "fit it on an export's stacks/ file, or map your own stacks with "
                              "isamap-predict")
        if not root:
            raise ConfigError("the model file does not record its dataset; give --dataset DIR "
                              "(the patch dataset it was trained on)")
        try:
            record = read_manifest(root)
        except IsamapError as exc:
            raise ConfigError(f"cannot read the model's dataset manifest in {root} ({exc}); "
                              "give --dataset DIR pointing at the patch dataset") from None
        where = f"{root}/manifest.json"
    grid = Grid.from_dict(record["grid"]) if record.get("grid") else None
    return ModelDataset(tuple(record.get("bands") or ()), grid, dict(record.get("recipe") or {}),
                        str(record.get("backend") or ""), tuple(record.get("months") or ()),
                        where, dict(record.get("sources") or {}))


def check_recipe(meta: ModelMeta, dataset: ModelDataset, backend: Backend,
                 allow_mismatch: bool = False) -> list[str]:
    """Refuse a map whose inputs would differ from the model's training data.

    Returns the differences that ``allow_mismatch`` accepted (logged as warnings).
    """
    problems = []
    missing = [b for b in meta.bands if dataset.bands and b not in dataset.bands]
    if missing:
        problems.append(f"the model reads bands {missing} that its dataset ({dataset.source}) "
                        f"does not have ({list(dataset.bands)})")
    trained = "ee" if dataset.backend == "ee" else "local"
    if dataset.backend and trained != backend:
        problems.append(f"the model was trained on the {trained!r} backend's recipe "
                        f"({dataset.source}) and this map uses --backend {backend}")
    if problems and not allow_mismatch:
        raise ConfigError("; ".join(problems) + ". The map would not be built from what the "
                          "model learned; use a matching model or pass --allow-recipe-mismatch")
    for problem in problems:
        log.warning("recipe mismatch accepted (--allow-recipe-mismatch): %s", problem)
    return problems


def parse_dates(months: str | None, years: str | None, month_of_year: Callable[[], str]
                ) -> tuple[str, ...]:
    """``--months 2017-06,2019-06`` or ``--years 2017:2023:2`` (month from the dataset), ascending.

    ``--months`` is read by the one month-list parser (:func:`core.months.parse_months`)
    that ``isamap-export --months`` uses too, so both commands accept and refuse the same lists:
    a month given twice is mapped once.
    """
    if bool(months) == bool(years):
        raise ConfigError("give exactly one of --months YYYY-MM,... or --years FIRST:LAST[:STEP]")
    if months:
        dates = parse_months(months)
    else:
        parts = str(years).split(":")
        try:
            first, last = int(parts[0]), int(parts[1] if len(parts) > 1 else parts[0])
            step = int(parts[2]) if len(parts) > 2 else 1
        except ValueError:
            raise ConfigError(f"--years {years!r} must be FIRST:LAST[:STEP], e.g. 2017:2023:2"
                              ) from None
        if step < 1 or last < first:
            raise ConfigError(f"--years {years!r}: LAST must be >= FIRST and STEP >= 1")
        month = month_of_year()  # read once: it may open the model's dataset manifest
        dates = tuple(check_month(f"{y}-{month}") for y in range(first, last + 1, step))
    return tuple(sorted(dates))


@dataclass(frozen=True)
class MapRequest:
    """Everything ``isamap-map`` was asked to do (the CLI fills it, notebooks and tests too).

    Attributes:
        region: the area (a built-in name, a GeoJSON file or a bbox, see ``regions``).
        dates: ``YYYY-MM`` months, ascending.
        model_file: a file written by ``isamap-train``.
        out: folder or ``gs://bucket/prefix`` of the COGs (``<out>/<month>/isa_<month>_*.tif``).
        backend: ``ee`` (Earth Engine) or ``local`` (``scenes`` on disk).
        scenes: folder(s) of local scenes (``local``).
        method: ``pixels`` (streamed computePixels) or ``tasks`` (batch-exported tiles).
        workers: concurrent computePixels requests (1..40).
        project: Cloud project registered for Earth Engine.
        zones: GeoJSON polygons of the per-zone table (default: the whole map).
        zones_name: the zones' property that names them (default: ``name``, ``NAME`` or the
            highest ``NAME_<n>``: :func:`inference.predict.zone_names.zone_name`).
        dataset: the model's patch dataset, when the model file does not record its recipe.
        allow_recipe_mismatch: map even though the inputs differ from the training data.
        allow_implausible: map a date whose pixels the value rules doubt, each reason
            recorded (:func:`inference.predict.expected_inputs.check_physics`).
        grid: map exactly this grid instead of the region's (the demo maps its scene's grid).
        crs: projected CRS in metres of the region's grid (default: its centre's UTM zone;
            e.g. ``EPSG:6933`` for an area over several zones, as the export's ``--crs``).
        local_dir: where PNGs, tables, STAC and publication files go (default: ``out`` when
            local, else ``./<name of out>``).
        tile / overlap / batch_size: the sliding window.
        strip_rows: output rows per checkpoint strip (what a killed run keeps).
        postprocess / clahe / keep / force_postprocess: the class map's post-processing
            (``clahe``: the land-cover paper's CLAHE re-decision of the impervious class,
            :mod:`inference.predict.postprocess`; forced onto a binary model; ``keep``: a
            coarse product's impervious class kept unless green, :mod:`inference.predict.keep`,
            which reads each date's stack, so only where the run keeps one).
        options: device, precision, memory format.
        progress: tqdm bars.
        temporal_consistency: make the series' class maps consistent over the dates before
            change and area, by this rule (None: not): ``monotone``
            (:mod:`inference.predict.change.consistency`; assumes built-up surface does not
            return to pervious) or ``stretches`` (:mod:`inference.predict.change.stretches`; one
            class where the bands did not change, read from each date's stack, so only where
            the run keeps one).
        scene_reading: ``LocalRecipe`` fields that replace the model's recorded ones when
            reading local scenes (``--scene-date``, ``--allow-l1c``, ``--s1-unit``...).
        change_margin: change between dates decided on both probabilities with this margin
            (:mod:`inference.predict.change`; 0: the class maps differenced; None:
            ``DEFAULT_CHANGE_MARGIN``, or 0 with ``temporal_consistency``, which decides change
            on the consistent class maps instead). :meth:`margin` is the one in force.
        change_rule: ``spectral`` (each date's stack decides whether a pixel changed, the
            probabilities which way: :mod:`inference.predict.change.spectral`), ``encoder``
            (the model's encoder features of each date's stack, cut where they flag as many
            pixels as the bands: :mod:`inference.predict.change.encoder`) or ``margin``;
            None: :meth:`rule` decides (spectral where the run keeps each date's stack).
        spectral_threshold: the spectral rule's threshold (robust z-score, > 0).
        vectors: also write each date's built-up polygons (:mod:`inference.predict.vectors`).
        publish: the Earth Engine asset folder the series is published into, as the
            ImageCollection ``<publish>/isa_<region>`` (None: not published).
        publishing: how it is published (project, upload prefix, readers, overwrite, wait).
        publish_dry_run: map, then only prepare the publication (manifests and app saved and
            printed; nothing uploaded), as the demo does without an account.
        dry_run: print the plan, the manifests and the app only; map nothing, and make no
            Earth Engine call.
        latency_s: computePixels seconds per request the dry run's time estimate assumes.
        runner: map each date as an Apache Beam pipeline of tiles on this runner
            (:mod:`inference.mapping.beam_map`) instead of streaming it (None).
        max_eecu_hours: ``--max-eecu-hours``, the Earth Engine compute the run may spend
            (:mod:`gee_export.ee.budget`; None: no bound).
    """

    region: Region
    dates: tuple[str, ...]
    model_file: str
    out: str
    backend: Backend = "ee"
    scenes: str | Sequence[str] | None = None
    method: Method = "pixels"
    workers: int = DEFAULT_WORKERS
    project: str | None = None
    zones: str | None = None
    zones_name: str | None = None
    dataset: str | None = None
    allow_recipe_mismatch: bool = False
    allow_implausible: bool = False
    grid: Grid | None = None
    crs: str | None = None
    local_dir: str | None = None
    tile: int = PredictConfig.tile
    overlap: int = PredictConfig.overlap
    batch_size: int = PredictConfig.batch_size
    strip_rows: int = 512
    postprocess: Postprocess = "none"
    clahe: ClaheParams = field(default_factory=ClaheParams)
    keep: KeepRule | None = None
    force_postprocess: bool = False
    options: RuntimeOptions = field(default_factory=RuntimeOptions)
    progress: bool = True
    temporal_consistency: TemporalRule | None = None
    scene_reading: tuple[tuple[str, Any], ...] = ()
    change_margin: float | None = None
    change_rule: ChangeRule | None = None
    spectral_threshold: float = DEFAULT_SPECTRAL_THRESHOLD
    vectors: VectorOptions | None = None
    publish: str | None = None
    publishing: PublishOptions = field(default_factory=PublishOptions)
    publish_dry_run: bool = False
    dry_run: bool = False
    latency_s: float = DEFAULT_LATENCY_S
    runner: RunnerConfig | None = None
    max_eecu_hours: float | None = None

    def __post_init__(self) -> None:
        self._check_outputs()
        if not 0 <= self.margin() < 0.5:
            raise ConfigError(f"--change-margin must be in [0, 0.5), got {self.change_margin}")
        if self.change_margin and self.temporal_consistency:
            raise ConfigError("--change-margin decides change on probabilities, "
                              "--temporal-consistency on the class maps: choose one")
        self._check_change_rule()
        if self.max_eecu_hours is not None:
            check_max_eecu_hours(self.max_eecu_hours)
            if self.backend != "ee":
                raise ConfigError("--max-eecu-hours bounds Earth Engine compute; local scenes "
                                  "use none: leave it out with --backend local")
        if not 1 <= self.workers <= MAX_WORKERS:
            raise ConfigError(f"--workers must be between 1 and {MAX_WORKERS} (Earth Engine "
                              f"allows about {MAX_WORKERS} concurrent requests), got "
                              f"{self.workers}")
        if self.backend == "local":
            self.local_scenes()
        if self.postprocess == "keep" and not self.keeps_stacks():
            raise ConfigError("--postprocess keep reads each date's stack (a sample for its "
                              "green cut, then the red and near-infrared of every strip), "
                              "which tiles fetched one by one (--backend ee --method pixels, "
                              "any --runner) do not keep: map with --backend local or "
                              "--method tasks")
        if self.method == "tasks" and (self.backend != "ee" or not files.is_gcs(self.out)):
            raise ConfigError("--method tasks exports the stack with Earth Engine to Cloud "
                              "Storage: use --backend ee and --out gs://BUCKET/PREFIX")
        self.predict_config()

    def _check_outputs(self) -> None:
        """What the run writes besides the maps: the zones' names, the publication, the plan."""
        check_range("--latency", self.latency_s, 0.0,
                    hint="seconds one computePixels request takes")
        if self.publish is not None and not self.publish.strip():
            raise ConfigError("--publish '' names no asset folder; give the Earth Engine folder "
                              "to publish into (e.g. --publish projects/my-project/assets/isa), "
                              "or leave --publish out to map without publishing")
        options = self.publishing
        given = [flag for flag, value in (
            ("--public", options.public), ("--reader", options.readers),
            ("--gcs-prefix", options.gcs_prefix), ("--overwrite", options.overwrite),
            ("--wait", options.wait)) if value]
        if given and self.publish is None:
            raise ConfigError(f"{', '.join(given)}: how the series is published, and this run "
                              "publishes nothing; give --publish ASSET_PARENT too, or leave "
                              f"{'it' if len(given) == 1 else 'them'} out")
        if self.zones_name and not self.zones:
            raise ConfigError("--zones-name names the zones of --zones: give --zones FILE too")

    def _check_change_rule(self) -> None:
        if self.change_rule not in (None, "spectral", "encoder", "margin"):
            raise ConfigError(f"--change-rule must be spectral, encoder or margin, got "
                              f"{self.change_rule!r}")
        check_threshold(self.spectral_threshold)
        if self.temporal_consistency not in (None, *TEMPORAL_RULES):
            raise ConfigError(f"--temporal-consistency must be one of "
                              f"{', '.join(TEMPORAL_RULES)}, got {self.temporal_consistency!r}")
        if self.temporal_consistency == "stretches" and not self.keeps_stacks():
            raise ConfigError("--temporal-consistency stretches reads each date's stack, and "
                              "--backend ee --method pixels keeps none (tiles are fetched and "
                              "dropped): use --method tasks or --backend local, or "
                              "--temporal-consistency monotone")
        if self.change_rule not in ("spectral", "encoder"):
            return
        if self.change_margin is not None:
            raise ConfigError(f"--change-rule {self.change_rule} decides change on both "
                              "dates' stacks, --change-margin on both dates' probabilities: "
                              "choose one")
        if self.temporal_consistency:
            raise ConfigError(self._consistency_clash())
        if not self.keeps_stacks():
            raise ConfigError(f"--change-rule {self.change_rule} reads each date's stack, and "
                              "--backend ee --method pixels keeps none (tiles are fetched and "
                              "dropped; every --runner maps so): use --method tasks or "
                              "--backend local, or --change-rule margin")

    def _consistency_clash(self) -> str:
        """Why a stack rule and a consistency rule (whose maps differenced are change) clash."""
        rule, again = self.temporal_consistency, f"--change-rule {self.change_rule}"
        if rule == "stretches":
            reads = "the encoder's features" if self.change_rule == "encoder" else "the same bands"
            return ("--temporal-consistency stretches already decides where each pixel changed, "
                    "by its bands' spectral change at --spectral-threshold, and change is its "
                    f"consistent class maps differenced; {again} would decide it again on "
                    f"{reads}, apart from those maps: choose one")
        return (f"--temporal-consistency {rule} relabels the class maps, and change is those "
                f"consistent maps differenced; {again} takes gain and loss from the "
                "probabilities, which it does not relabel, apart from those maps: choose one")

    def keeps_stacks(self) -> bool:
        """Whether each date's stack is a file the run keeps (local scenes, exported tiles)."""
        return self.backend == "local" or self.method == "tasks"

    def rule(self) -> ChangeRule:
        """The change rule in force.

        ``change_rule``, else ``margin`` where a margin or temporal consistency was asked for
        or the run keeps no stack (:meth:`keeps_stacks`), else ``spectral``.
        """
        if self.change_rule is not None:
            return self.change_rule
        if self.change_margin is not None or self.temporal_consistency \
                or not self.keeps_stacks():
            return "margin"
        return "spectral"

    def margin(self) -> float:
        """The change margin in force (see ``change_margin``)."""
        if self.change_margin is None:
            return 0.0 if self.temporal_consistency else DEFAULT_CHANGE_MARGIN
        return self.change_margin

    def local_scenes(self) -> str | Sequence[str]:
        """``scenes``, which the local backend needs.

        Raises:
            ConfigError: none given.
        """
        if not self.scenes:
            raise ConfigError("--backend local needs --scenes DIR (Sentinel-1/2 scenes); "
                              "`make demo` shows the layout on a synthetic scene")
        return self.scenes

    def predict_config(self) -> PredictConfig:
        return PredictConfig(tile=self.tile, overlap=self.overlap, batch_size=self.batch_size,
                             strip_rows=self.strip_rows, postprocess=self.postprocess,
                             clahe=self.clahe, keep=self.keep,
                             force_postprocess=self.force_postprocess,
                             blend=self.lattice().blend)

    def lattice(self) -> Lattice:
        """The series' tile lattice: every runner and date keeps each tile's core only."""
        return Lattice(self.tile, self.overlap, "core")

    def product_dir(self) -> Path:
        """Local folder of PNGs, tables, STAC and publication files."""
        if self.local_dir:
            return Path(self.local_dir)
        if files.is_gcs(self.out):
            return Path.cwd() / self.out.rstrip("/").rsplit("/", 1)[-1]
        return Path(self.out)

    def prefix(self, month: str) -> str:
        """Output prefix of one date's COGs."""
        return f"{self.out.rstrip('/')}/{month}/isa_{month}"
