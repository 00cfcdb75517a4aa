"""What ``isamap-map`` is asked to map, checked against what the model was trained on.

The map is built from exactly what the model was trained on: the model file records its
dataset (bands, grid, recipe, backend; :func:`training.run.inputs.dataset_record`), and every date
is composited with that recipe on a grid in the region's UTM zone at the model's resolution,
on the dataset's pixel lattice when the zone is the same
(:func:`inference.mapping.region.region_grid`).
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
from inference.predict.config import PredictConfig
from inference.predict.job import PredictOutputs
from inference.predict.runtime import RuntimeOptions
from inference.predict.vectors import VectorOptions
from inference.predict.zone_names import check_zones_name

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
class MapExtent:
    """Where and when a map is: the area, its dates and its grid (STAC's spatial and temporal).

    Attributes:
        region: the area (a built-in name, a GeoJSON file or a bbox, see ``regions``).
        dates: ``YYYY-MM`` months, ascending.
        grid: map exactly this grid instead of the region's (the demo maps its scene's grid).
        crs: projected CRS in metres of the region's grid (default: its centre's UTM zone;
            e.g. ``EPSG:6933`` for an area over several zones, as the export's ``--crs``).
    """

    region: Region
    dates: tuple[str, ...]
    grid: Grid | None = None
    crs: str | None = None


@dataclass(frozen=True)
class MapInputs:
    """Where each date's inputs come from, and how they are read.

    Attributes:
        backend: ``ee`` (Earth Engine) or ``local`` (``scenes`` on disk).
        scenes: folder(s) of local scenes (``local``).
        method: ``pixels`` (streamed computePixels) or ``tasks`` (batch-exported tiles).
        workers: concurrent computePixels requests (1..40).
        project: Cloud project registered for Earth Engine.
        dataset: the model's patch dataset, when the model file does not record its recipe.
        allow_recipe_mismatch: map even though the inputs differ from the training data.
        allow_implausible: map a date whose pixels the value rules doubt, each reason
            recorded (:func:`inference.predict.expected_inputs.check_physics`).
        scene_reading: ``LocalRecipe`` fields that replace the model's recorded ones when
            reading local scenes (``--scene-date``, ``--allow-l1c``, ``--s1-unit``...).
        max_eecu_hours: ``--max-eecu-hours``, the Earth Engine compute the run may spend
            (:mod:`gee_export.ee.budget`; None: no bound).
    """

    backend: Backend = "ee"
    scenes: str | Sequence[str] | None = None
    method: Method = "pixels"
    workers: int = DEFAULT_WORKERS
    project: str | None = None
    dataset: str | None = None
    allow_recipe_mismatch: bool = False
    allow_implausible: bool = False
    scene_reading: tuple[tuple[str, Any], ...] = ()
    max_eecu_hours: float | None = None

    def __post_init__(self) -> None:
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

    def keeps_stacks(self) -> bool:
        """Whether each date's stack is a file the run keeps (local scenes, exported tiles)."""
        return self.backend == "local" or self.method == "tasks"

    def local_scenes(self) -> str | Sequence[str]:
        """``scenes``, which the local backend needs.

        Raises:
            ConfigError: none given.
        """
        if not self.scenes:
            raise ConfigError("--backend local needs --scenes DIR (Sentinel-1/2 scenes); "
                              "`make demo` shows the layout on a synthetic scene")
        return self.scenes


@dataclass(frozen=True)
class ChangeOptions:
    """How change between the dates of a series is decided (:mod:`inference.mapping.series`).

    Attributes:
        temporal_consistency: make the series' class maps consistent over the dates before
            change and area, by this rule (None: not): ``monotone``
            (:mod:`inference.predict.change.consistency`; assumes built-up surface does not
            return to pervious) or ``stretches`` (:mod:`inference.predict.change.stretches`; one
            class where the bands did not change, read from each date's stack, so only where
            the run keeps one).
        margin: change between dates decided on both probabilities with this margin
            (:mod:`inference.predict.change`; 0: the class maps differenced; None:
            ``DEFAULT_CHANGE_MARGIN``, or 0 with ``temporal_consistency``, which decides change
            on the consistent class maps instead). :meth:`margin_in_force` is the one in force.
        rule: ``spectral`` (each date's stack decides whether a pixel changed, the
            probabilities which way: :mod:`inference.predict.change.spectral`), ``encoder``
            (the model's encoder features of each date's stack, cut where they flag as many
            pixels as the bands: :mod:`inference.predict.change.encoder`) or ``margin``;
            None: :meth:`rule_in_force` decides (spectral where the run keeps each date's
            stack).
        spectral_threshold: the spectral rule's threshold (robust z-score, > 0).
    """

    temporal_consistency: TemporalRule | None = None
    margin: float | None = None
    rule: ChangeRule | None = None
    spectral_threshold: float = DEFAULT_SPECTRAL_THRESHOLD

    def __post_init__(self) -> None:
        if not 0 <= self.margin_in_force() < 0.5:
            raise ConfigError(f"--change-margin must be in [0, 0.5), got {self.margin}")
        if self.margin and self.temporal_consistency:
            raise ConfigError("--change-margin decides change on probabilities, "
                              "--temporal-consistency on the class maps: choose one")
        if self.rule not in (None, "spectral", "encoder", "margin"):
            raise ConfigError(f"--change-rule must be spectral, encoder or margin, got "
                              f"{self.rule!r}")
        check_threshold(self.spectral_threshold)
        if self.temporal_consistency not in (None, *TEMPORAL_RULES):
            raise ConfigError(f"--temporal-consistency must be one of "
                              f"{', '.join(TEMPORAL_RULES)}, got {self.temporal_consistency!r}")
        if self.rule in ("spectral", "encoder") and self.margin is not None:
            raise ConfigError(f"--change-rule {self.rule} decides change on both "
                              "dates' stacks, --change-margin on both dates' probabilities: "
                              "choose one")
        if self.rule in ("spectral", "encoder") and self.temporal_consistency:
            raise ConfigError(self._consistency_clash())

    def check_stacks(self, keeps_stacks: bool) -> None:
        """Refuse a rule that reads each date's stack where the run keeps none."""
        if self.temporal_consistency == "stretches" and not keeps_stacks:
            raise ConfigError("--temporal-consistency stretches reads each date's stack, and "
                              "--backend ee --method pixels keeps none (tiles are fetched and "
                              "dropped): use --method tasks or --backend local, or "
                              "--temporal-consistency monotone")
        if self.rule in ("spectral", "encoder") and not keeps_stacks:
            raise ConfigError(f"--change-rule {self.rule} reads each date's stack, and "
                              "--backend ee --method pixels keeps none (tiles are fetched and "
                              "dropped; every --runner maps so): use --method tasks or "
                              "--backend local, or --change-rule margin")

    def _consistency_clash(self) -> str:
        """Why a stack rule and a consistency rule (whose maps differenced are change) clash."""
        rule, again = self.temporal_consistency, f"--change-rule {self.rule}"
        if rule == "stretches":
            reads = "the encoder's features" if self.rule == "encoder" else "the same bands"
            return ("--temporal-consistency stretches already decides where each pixel changed, "
                    "by its bands' spectral change at --spectral-threshold, and change is its "
                    f"consistent class maps differenced; {again} would decide it again on "
                    f"{reads}, apart from those maps: choose one")
        return (f"--temporal-consistency {rule} relabels the class maps, and change is those "
                f"consistent maps differenced; {again} takes gain and loss from the "
                "probabilities, which it does not relabel, apart from those maps: choose one")

    def rule_in_force(self, keeps_stacks: bool) -> ChangeRule:
        """The change rule in force.

        ``rule``, else ``margin`` where a margin or temporal consistency was asked for or the
        run keeps no stack (``keeps_stacks``: :meth:`MapInputs.keeps_stacks`), else
        ``spectral``.
        """
        if self.rule is not None:
            return self.rule
        if self.margin is not None or self.temporal_consistency or not keeps_stacks:
            return "margin"
        return "spectral"

    def margin_in_force(self) -> float:
        """The change margin in force (see ``margin``)."""
        if self.margin is None:
            return 0.0 if self.temporal_consistency else DEFAULT_CHANGE_MARGIN
        return self.margin


@dataclass(frozen=True)
class MapOutputs:
    """Where a map's files go, and which of them it writes beside the COGs.

    Attributes:
        out: folder or ``gs://bucket/prefix`` of the COGs (``<out>/<month>/isa_<month>_*.tif``).
        local_dir: where PNGs, tables, STAC and publication files go (default: ``out`` when
            local, else ``./<name of out>``).
        zones: GeoJSON polygons of the per-zone table (default: the whole map).
        zones_name: the zones' property that names them (default: ``name``, ``NAME`` or the
            highest ``NAME_<n>``: :func:`inference.predict.zone_names.zone_name`).
        vectors: also write each date's built-up polygons (:mod:`inference.predict.vectors`).
    """

    out: str
    local_dir: str | None = None
    zones: str | None = None
    zones_name: str | None = None
    vectors: VectorOptions | None = None

    def __post_init__(self) -> None:
        check_zones_name(self.zones, self.zones_name)

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

    def date_outputs(self, month: str) -> PredictOutputs:
        """One date's outputs: its COGs' prefix, its folder of PNGs and tables, the zones.

        Each date's empty zones are not warned of: the series warns once for all its dates.
        """
        return PredictOutputs(self.prefix(month), self.product_dir() / month, self.zones,
                              self.zones_name, self.vectors, warn_zones=False)


@dataclass(frozen=True)
class MapPublication:
    """Where and how a series is published as an Earth Engine ImageCollection.

    Attributes:
        parent: the Earth Engine asset folder the series is published into, as the
            ImageCollection ``<parent>/isa_<region>``.
        options: how it is published (project, upload prefix, readers, overwrite, wait).
        dry_run: map, then only prepare the publication (manifests and app saved and
            printed; nothing uploaded), as the demo does without an account.
    """

    parent: str
    options: PublishOptions = field(default_factory=PublishOptions)
    dry_run: bool = False

    def __post_init__(self) -> None:
        if not self.parent.strip():
            raise ConfigError("--publish '' names no asset folder; give the Earth Engine folder "
                              "to publish into (e.g. --publish projects/my-project/assets/isa), "
                              "or leave --publish out to map without publishing")


def map_window(**options: Any) -> PredictConfig:
    """The sliding window and post-processing of a map: ``options``, each tile keeping its core.

    Every runner and date of a series cuts one tile lattice and keeps each tile's core only.
    """
    return PredictConfig(blend="core", **options)


@dataclass(frozen=True)
class MapRequest:
    """Everything ``isamap-map`` was asked to do (the CLI fills it, notebooks and tests too).

    Each part goes to the stage that reads it; the model is read once and handed beside it
    (:func:`inference.mapping.region.map_region`).

    Attributes:
        extent: the area, the dates and the grid.
        outputs: where the COGs and the other files go, and the zones and polygons.
        inputs: where each date's inputs come from and how they are read.
        window: the sliding window (tile, overlap, batch size, strip rows: what a killed run
            keeps) and the class map's post-processing (``clahe``: the land-cover paper's
            CLAHE re-decision of the impervious class, :mod:`inference.predict.postprocess`;
            forced onto a binary model; ``keep``: a coarse product's impervious class kept
            unless green, :mod:`inference.predict.keep`, which reads each date's stack, so
            only where the run keeps one); its blend is ``core`` (:func:`map_window`).
        runtime: device, precision, memory format.
        change: how change between the dates is decided.
        publication: where the series is published (None: not published).
        runner: map each date as an Apache Beam pipeline of tiles on this runner
            (:mod:`inference.mapping.beam_map`) instead of streaming it (None).
        dry_run: print the plan, the manifests and the app only; map nothing, and make no
            Earth Engine call.
        latency_s: computePixels seconds per request the dry run's time estimate assumes.
        progress: tqdm bars.
    """

    extent: MapExtent
    outputs: MapOutputs
    inputs: MapInputs = field(default_factory=MapInputs)
    window: PredictConfig = field(default_factory=map_window)
    runtime: RuntimeOptions = field(default_factory=RuntimeOptions)
    change: ChangeOptions = field(default_factory=ChangeOptions)
    publication: MapPublication | None = None
    runner: RunnerConfig | None = None
    dry_run: bool = False
    latency_s: float = DEFAULT_LATENCY_S
    progress: bool = True

    def __post_init__(self) -> None:
        check_range("--latency", self.latency_s, 0.0,
                    hint="seconds one computePixels request takes")
        if self.window.blend != "core":
            raise ConfigError("a map keeps each tile's core (every runner and date cuts one "
                              "lattice): make its window with map_window()")
        keeps = self.inputs.keeps_stacks()
        self.change.check_stacks(keeps)
        if self.window.postprocess == "keep" and not keeps:
            raise ConfigError("--postprocess keep reads each date's stack (a sample for its "
                              "green cut, then the red and near-infrared of every strip), "
                              "which tiles fetched one by one (--backend ee --method pixels, "
                              "any --runner) do not keep: map with --backend local or "
                              "--method tasks")
        if self.inputs.method == "tasks" and (self.inputs.backend != "ee"
                                              or not files.is_gcs(self.outputs.out)):
            raise ConfigError("--method tasks exports the stack with Earth Engine to Cloud "
                              "Storage: use --backend ee and --out gs://BUCKET/PREFIX")

    def rule(self) -> ChangeRule:
        """The change rule in force (:meth:`ChangeOptions.rule_in_force`)."""
        return self.change.rule_in_force(self.inputs.keeps_stacks())
