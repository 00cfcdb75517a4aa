"""The local backend's entry point: local scenes -> the monthly stack GeoTIFFs on a Grid.

``build_local_stack`` runs the same monthly recipe as the Earth Engine backend, in numpy, over
blocks of the grid (each block read with the halo its filters need; :mod:`.compositing`), so a
full 10,980 x 10,980 Sentinel-2 tile is processed in bounded memory. It is two steps a caller
can separate: :func:`plan_local_stack` finds and checks the scenes and digests what the stack is
made from (recipe + the SHA-256 of every source file read, :mod:`.digests`) without writing the
stack, so the dataset's compatibility can be checked first; :func:`write_local_stack` writes the
files through the atomic writer (temporaries the clean-up recognises, renamed into place only
when all are complete). Re-running with the same inputs and recipe finds the finished files
(their ``ISAMAP_FINGERPRINT`` tag matches) and does nothing; a stack deleted and rebuilt from the
same inputs has the same fingerprint, so its dataset resumes.

Output (``docs/data-contract.md``, "Stack"): ``<out_dir>/stack_<month>_image.tif`` (float32,
one band per name in ``bands``, NaN nodata, band descriptions = names),
``stack_<month>_label.tif`` (uint8, nodata ``LABEL_NODATA``) and optionally
``stack_<month>_label_x<k>.tif`` on ``grid.scaled(k)``. They are returned as a
:class:`contract.stack.StackPaths`.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path

import rasterio
from rasterio.errors import RasterioError

from contract import bands as band_registry
from contract.bands import check_fine_scale
from contract.composite import DEFAULT_SPECKLE, SpeckleFilter, check_speckle_filter
from contract.grid import Grid
from contract.label_schemes import check_product_band
from contract.stack import FINGERPRINT_TAG, MONTH_TAG, StackPaths
from core.digest import canonical_json, combined_digest
from core.errors import ConfigError, EmptyCompositeError, InputDataError
from core.months import check_month, earlier_month
from core.storage import atomic_path
from gee_export.local import sentinel2
from gee_export.local.compositing import LocalRecipe, write_image, write_label
from gee_export.local.digests import DigestCache
from gee_export.local.labels import ClassMapping, get_scheme
from gee_export.local.month_inputs import MonthInputs, check_month_inputs
from gee_export.local.scenes import BandRef, Scene, SceneCollection, discover_scenes

DEFAULT_BLOCK = 1024


def scl_mask_classes(text: str) -> tuple[int, ...]:
    """``--scl-mask`` (``3,8,9,10,11``, or ``none``) as the sorted SCL classes to mask.

    Raises:
        ConfigError: a class outside 1-11 or not a number.
    """
    if text.strip().lower() == "none":
        return ()
    try:
        classes = {int(c) for c in text.split(",") if c.strip()}
    except ValueError:
        classes = set()  # refused below, as an empty list is
    if not classes or not classes <= set(sentinel2.SCL_CLASSES):
        default = ",".join(map(str, sentinel2.SCL_MASKED_CLASSES))
        raise ConfigError(f"--scl-mask takes SCL classes 1-11 separated by commas (e.g. "
                          f"{default}) or none, got {text!r}")
    return tuple(sorted(classes))


def _done(path: Path, fingerprint: str) -> bool:
    if not path.exists():
        return False
    try:
        with rasterio.open(path) as src:
            return src.tags().get(FINGERPRINT_TAG) == fingerprint
    except RasterioError:
        return False


@dataclass(frozen=True)
class LocalStackPlan:
    """A month's local stack resolved before any pixel is written: inputs, outputs, identity.

    :func:`plan_local_stack` finds the scenes, checks them and digests their content, so a
    caller can check the dataset it feeds (:func:`contract.dataset.check_compatible`
    with :attr:`fingerprint`) before :func:`write_local_stack` touches the stack files.

    Attributes:
        stack: the files the plan produces, with their content fingerprint.
        signature: JSON of everything the stack is made from (recipe, grid, bands, month,
            source products and the SHA-256 of each file read); written to the files' tags.
        inputs: the month's checked scenes, bands and labels.
        built: the files exist and carry this plan's fingerprint (nothing to do).
    """

    stack: StackPaths
    signature: str
    recipe: LocalRecipe
    mapping: ClassMapping
    inputs: MonthInputs
    tags: dict[str, str]
    digests: DigestCache = field(compare=False, repr=False)
    earlier: dict[int, MonthInputs] = field(default_factory=dict)

    @property
    def fingerprint(self) -> str:
        return str(self.stack.fingerprint)

    @property
    def targets(self) -> list[Path]:
        return [Path(p) for p in (self.stack.image, self.stack.label, self.stack.label_fine)
                if p is not None]

    @property
    def label_ref(self) -> BandRef | None:
        return self.inputs.label_ref

    @property
    def built(self) -> bool:
        return all(_done(p, self.fingerprint) for p in self.targets)

    @property
    def input_notes(self) -> list[str]:
        """Why scenes the input check doubts were composited (``allow_implausible``)."""
        return [n for given in (self.inputs, *self.earlier.values()) for n in given.notes]

    def scene_list(self) -> list[dict[str, str]]:
        """The scenes the month is composited from: sensor, product name and date (no paths)."""
        return [{"sensor": sc.sensor, "product": sc.product, "date": sc.date.isoformat()}
                for given in (self.inputs, *self.earlier.values())
                for sc in (*given.s2, *given.s1)]


def _source_files(plan_s2: Sequence[Scene], s2_bands: Sequence[str], plan_s1: Sequence[Scene],
                  s1_bands: Sequence[str]) -> dict[str, list[str]]:
    """Per product, the files the composite reads (bands asked for and cloud masks)."""
    files: dict[str, list[str]] = {}
    for scene in plan_s2:
        names = [*s2_bands, *(m for m in ("SCL", "CLOUD_MASK") if scene.has(m))]
        files[scene.product] = sorted({str(scene.band(n).path) for n in names})
    for scene in plan_s1:
        files[scene.product] = sorted({str(scene.band(n).path) for n in s1_bands})
    return files


def plan_local_stack(scenes: SceneCollection | str | Path | Sequence[str | Path], grid: Grid,
                     month: str,
                     bands: Sequence[str] = band_registry.DEFAULT_IMAGE_BANDS
                     + band_registry.QUALITY,
                     label: str | Path | BandRef | None = None, fine_scale: int | None = None,
                     speckle: SpeckleFilter = DEFAULT_SPECKLE, out_dir: str | Path = ".", *,
                     label_scheme: str | ClassMapping | dict[int, int] | None = None,
                     recipe: LocalRecipe | None = None,
                     model_bands: bool = False, labelled: bool = True) -> LocalStackPlan:
    """Resolve and check everything one month's stack needs, and digest it; write nothing.

    Arguments as :func:`build_local_stack`; ``model_bands``: ``bands`` are a model's (a map,
    :func:`~.month_inputs.check_month_inputs`). Raises what it raises, before any stack file is
    touched. Source files are hashed (SHA-256) once per file version (the digests are saved
    beside the stack by :func:`write_local_stack`, see :mod:`gee_export.local.digests`).
    """
    check_month(month)
    check_speckle_filter(speckle)
    check_fine_scale(fine_scale)
    recipe = recipe or LocalRecipe()
    scheme_name = label_scheme if isinstance(label_scheme, str) else recipe.label_scheme
    recipe = LocalRecipe(**{**asdict(recipe), "speckle": speckle, "label_scheme": scheme_name})
    mapping = get_scheme(label_scheme if label_scheme is not None else recipe.label_scheme)
    names = tuple(s.name for s in band_registry.resolve(bands))
    unknown = [n for n in names if band_registry.get_band(n).sensor == "label"]
    if unknown:
        raise InputDataError(f"{unknown} is not an image band; the label is its own file")
    embedded = [n for n in names if band_registry.get_band(n).sensor == "embedding"]
    if embedded:
        raise ConfigError(f"{embedded[0]}...: the Satellite Embedding comes from Earth Engine "
                          "alone; export it with --backend ee")
    check_product_band(names, scheme_name)

    collection = (scenes if isinstance(scenes, SceneCollection)
                  else discover_scenes(scenes, **recipe.reading()))
    scheme = label_scheme if label_scheme is not None else recipe.label_scheme
    inputs = check_month_inputs(collection, grid, month,
                                [names[i] for i in band_registry.own_month(names)],
                                recipe, scheme, label, fine_scale, model_bands=model_bands,
                                labelled=labelled)
    earlier = earlier_inputs(collection, grid, month, names, recipe, scheme, inputs.label_ref,
                             model_bands, labelled)
    s2, s1, offsets, units = inputs.s2, inputs.s1, inputs.offsets, inputs.units
    label_ref, fine_ref = inputs.label_ref, inputs.fine_ref

    cache = DigestCache(Path(out_dir) if Path(out_dir).is_dir() else None)
    files: dict[str, list[str]] = {}
    for given in (inputs, *earlier.values()):
        files.update(_source_files(given.s2, given.s2_bands, given.s1, given.s1_bands))
    digests = cache.digests([p for paths in files.values() for p in paths]
                            + [str(r.path) for r in (label_ref, fine_ref) if r is not None])
    signature = canonical_json({
        "recipe": recipe.to_dict(), "grid": grid.to_dict(), "bands": names, "month": month,
        "offsets": offsets, "units": sorted(f"{p}/{b}={u}" for (p, b), u in units.items()),
        "sources": {product: [digests[p] for p in paths] for product, paths in files.items()},
        "label": digests[str(label_ref.path)] if label_ref else None,
        "label_band": label_ref.index if label_ref else None,
        "fine": digests[str(fine_ref.path)] if fine_ref else None,
        "fine_scale": fine_scale})
    stack = _stack_paths(Path(out_dir), grid, names, month, fine_scale, signature)
    tags = {"ISAMAP_RECIPE": signature, FINGERPRINT_TAG: stack.fingerprint or "",
            MONTH_TAG: month, "BACKEND": "local"}
    if any(dict(sc.tags).get("SYNTHETIC", "").lower() == "yes" for sc in (*s2, *s1)):
        tags["SYNTHETIC"] = "yes"  # synthetic inputs stay labelled synthetic downstream
    return LocalStackPlan(stack, signature, recipe, mapping, inputs, tags, cache, earlier)


def earlier_inputs(collection: SceneCollection, grid: Grid, month: str, names: Sequence[str],
                   recipe: LocalRecipe, scheme: str | ClassMapping | dict[int, int],
                   label_ref: BandRef | None, model_bands: bool = False,
                   labelled: bool = True) -> dict[int, MonthInputs]:
    """A series stack's earlier months (``B4_m2``): months before -> their checked inputs.

    Each is found and checked as the month's own are (the same checks, the same recipe);
    an earlier month without a scene of a sensor its bands read is refused here, before
    any work, naming the month and what to add (never filled with nodata).
    """
    found: dict[int, MonthInputs] = {}
    for k, named in sorted(band_registry.months_of(names).items()):
        if k == 0:
            continue
        before = earlier_month(month, k)
        try:
            found[k] = check_month_inputs(collection, grid, before, tuple(named), recipe,
                                          scheme, label_ref, model_bands=model_bands,
                                          labelled=labelled)
        except EmptyCompositeError as exc:
            months = 1 + max(band_registry.months_of(names))
            fewer = (f"the model reads {months} months" if model_bands  # its bands say so
                     else "or ask for fewer months (--series-months)")
            raise EmptyCompositeError(
                f"the stack of {month} is a series of {months} months and its bands _m{k} "
                f"are {before}: {str(exc).split(';')[0]}; add the scenes of {before} to "
                f"--scenes{';' if model_bands else ','} {fewer}") from None
    return found

def _stack_paths(out: Path, grid: Grid, names: tuple[str, ...], month: str,
                 fine_scale: int | None, signature: str) -> StackPaths:
    """The month's stack files in ``out``, fingerprinted by the recipe's signature."""
    fine_path = out / f"stack_{month}_label_x{fine_scale}.tif" if fine_scale else None
    return StackPaths(grid=grid, bands=names, month=month,
                      image=str(out / f"stack_{month}_image.tif"),
                      label=str(out / f"stack_{month}_label.tif"),
                      label_fine=str(fine_path) if fine_path else None,
                      fine_scale=fine_scale if fine_path else None,
                      fingerprint=combined_digest([signature]))


def write_local_stack(plan: LocalStackPlan, *, block: int = DEFAULT_BLOCK,
                      progress: bool = True) -> StackPaths:
    """Write the plan's stack files (each atomically); nothing when they are already built.

    A killed build leaves only temporaries that :meth:`LocalStore.remove_temporaries` deletes;
    the files are renamed into place only after all of them are complete.
    """
    plan.digests.save()  # the plan was accepted: remember the digests for the next run
    if plan.built:
        return plan.stack
    stack = plan.stack
    grid = stack.grid
    with ExitStack() as files:
        tmp = [files.enter_context(atomic_path(p)) for p in plan.targets]
        given = plan.inputs
        write_image(tmp[0], grid, stack.bands, given.s2, given.s2_bands, given.s1,
                     given.s1_bands, given.offsets, given.reflectance, given.units, plan.recipe,
                     stack.month, plan.tags, block, progress,
                     given.label_ref if band_registry.PRODUCT in stack.bands else None,
                     plan.earlier)
        write_label(tmp[1], grid, given.label_ref, plan.mapping, plan.tags, block, progress)
        if stack.label_fine is not None and stack.fine_scale is not None:
            write_label(tmp[2], grid.scaled(stack.fine_scale), given.fine_ref, plan.mapping,
                         plan.tags, block, progress)
    return stack


def build_local_stack(scenes: SceneCollection | str | Path | Sequence[str | Path], grid: Grid,
                      month: str,
                      bands: Sequence[str] = band_registry.DEFAULT_IMAGE_BANDS
                      + band_registry.QUALITY,
                      label: str | Path | BandRef | None = None, fine_scale: int | None = None,
                      speckle: SpeckleFilter = DEFAULT_SPECKLE, out_dir: str | Path = ".", *,
                      label_scheme: str | ClassMapping | dict[int, int] | None = None,
                      recipe: LocalRecipe | None = None, block: int = DEFAULT_BLOCK,
                      progress: bool = True, labelled: bool = True) -> StackPaths:
    """Build one month's stack from local scenes on ``grid``.

    Args:
        scenes: a :class:`SceneCollection`, or a folder / glob / list of files to discover.
        grid: the target grid (CRS, 10 m transform, size).
        month: ``YYYY-MM``; scenes acquired in it are composited.
        bands: stack band names from :mod:`contract.bands` (S2, S1 and quality bands), in
            output order.
        label: label raster; None uses ``labels/label.tif`` found among the scenes, and with
            no label at all the label file is written as all-nodata (inference-only stacks).
        fine_scale: also write the label on ``grid.scaled(fine_scale)``, from
            ``label_x<k>.tif`` when present, else from the same label raster.
        speckle: Sentinel-1 speckle filter (see :mod:`gee_export.local.speckle`).
        out_dir: folder of the output GeoTIFFs.
        label_scheme: class mapping of the label to 0/1/nodata (preset name or dict).
        recipe: every other parameter; ``speckle``/``label_scheme`` arguments override it.
        block: grid pixels per block side (memory grows with block^2 x scenes).
        progress: show a tqdm bar over blocks.
        labelled: False: no label is looked for, read or checked (the label file is all
            nodata, as without one, and no warning says so): a stack for points' labels or
            a map; a ``product`` band still reads the label.

    Returns:
        The stack's files, with the content fingerprint of the recipe and sources.

    Raises:
        EmptyCompositeError: no scene in the month, none overlapping the grid, or no clear
            observation at all (an all-cloud month).
        InputDataError: missing band, L1C input, unreadable file, file without CRS.
    """
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    plan = plan_local_stack(scenes, grid, month, bands, label, fine_scale, speckle, out_dir,
                            label_scheme=label_scheme, recipe=recipe, labelled=labelled)
    return write_local_stack(plan, block=block, progress=progress)
