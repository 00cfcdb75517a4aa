"""``isamap-export --backend local``: local scenes -> monthly stacks -> patches, checked first.

The dataset's parameters (grid, bands, split, recipe) are checked against the manifest, then
every month's inputs are found and digested and checked against the month's recorded
fingerprint, all before a stack file is (re)written: a refused run leaves the dataset and its
stacks as they were, and an identical command always resumes. The command's options arrive in
two parts and the scenes' folder: what is made and where
(:class:`~contract.export_options.ExportTarget`) and how the scenes are read and composited
(:class:`~.compositing.LocalRecipe`); the flags of how local scenes are read, and their checks,
are defined here, beside what reads them.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import rasterio

from contract.bands import is_code_band, series_record
from contract.dataset import (
    DatasetSpec,
    check_compatible,
    out_refusal,
    read_index,
    read_manifest,
)
from contract.export_options import ExportTarget
from contract.input_check import Fingerprint, judge_stack, pixel_sample
from contract.patches import PatchSummary, patch_stack
from contract.s2_level import check_allow_l1c_backend
from core.errors import ConfigError
from core.lock import hold_output
from core.storage import LocalStore, Store, files, open_store
from gee_export.local.compositing import LocalRecipe, reading_options
from gee_export.local.labels import ALIASES, SCHEMES, get_scheme, label_map_scheme
from gee_export.local.plan import LocalPlan, format_local_plan, make_local_plan
from gee_export.local.scenes import SceneCollection
from gee_export.local.stack import (
    LocalStackPlan,
    plan_local_stack,
    scl_mask_classes,
    write_local_stack,
)
from gee_export.local.training_label import check_training_label

log = logging.getLogger(__name__)

DEFAULT_LOCAL_LABELS = "binary"  # local label rasters hold 0/1/255 unless told otherwise


#: the flags of how local scene files are read where the files cannot tell, and the
#: :class:`~.compositing.LocalRecipe` field each sets (every command that reads scenes takes them)
SCENE_FILE_FLAGS = (("--scene-date", "scene_date"), ("--s2-band-names", "s2_band_names"),
                    ("--trust-band-names", "trust_band_names"), ("--s1-unit", "s1_unit"),
                    ("--boa-add-offset", "boa_add_offset"))


def add_scene_file_arguments(g: argparse._ArgumentGroup) -> None:
    """The flags of :data:`SCENE_FILE_FLAGS` (``isamap-export``'s and ``isamap-fit``'s)."""
    g.add_argument("--scene-date", metavar="YYYY-MM-DD",
                     help="acquisition date of the scenes whose tags and file names carry "
                          "none (scenes that do carry one keep theirs)")
    g.add_argument("--s2-band-names", metavar="B1,B2,...",
                     help="band order of stacked Sentinel-2 files without band descriptions "
                          "(never guessed for 12 bands), e.g. B1,B2,B3,B4,B5,B6,B7,B8,B8A,B9,"
                          "B11,B12; checked against the pixels before any work")
    g.add_argument("--trust-band-names", action="store_true", default=None,
                     help="use --s2-band-names even where the band relations of typical scenes "
                          "do not hold in these pixels")
    g.add_argument("--s1-unit", choices=("linear", "dB"),
                     help="unit of the Sentinel-1 files (default: from the values; a tag the "
                          "values contradict is overridden)")
    g.add_argument("--boa-add-offset", type=float, metavar="DN",
                     help="Sentinel-2 BOA_ADD_OFFSET of the files (e.g. 0 for harmonized DNs, "
                          "-1000 for baseline 04.00 products); default: the files' tag, else "
                          "from the processing baseline or date (the values are checked)")


def scene_file_options(args: argparse.Namespace, backend: str | None,
                       also: Sequence[tuple[str, Any]] = ()) -> dict[str, Any]:
    """The :data:`SCENE_FILE_FLAGS` given (only those), checked, as :class:`LocalRecipe` fields.

    ``also``: the command's other flags (flag, value; None: not given) that mean something
    only to local scene files, refused alike without ``--backend local``.

    Raises:
        ConfigError: a malformed ``--scene-date`` or ``--s2-band-names``, or one of these
            flags given without ``--backend local``.
    """
    given = [flag for flag, value in (*((f, getattr(args, key)) for f, key in SCENE_FILE_FLAGS),
                                      *also) if value is not None]
    if given and backend != "local":
        one = len(given) == 1
        raise ConfigError(f"{', '.join(given)} describe{'s' if one else ''} local scene files: "
                          f"use {'it' if one else 'them'} with --backend local")
    options = {"trust_band_names": args.trust_band_names, "s1_unit": args.s1_unit,
               "boa_add_offset": args.boa_add_offset,
               **reading_options(args.scene_date, args.s2_band_names)}
    return {key: value for key, value in options.items() if value is not None}


def add_local_arguments(g: argparse._ArgumentGroup) -> None:
    """``isamap-export``'s flags of how the local backend reads its scene files."""
    g.add_argument("--allow-l1c", action="store_true",
                     help="composite Sentinel-2 Level-1C (top-of-atmosphere) scenes instead of "
                          "refusing them (--backend local; Earth Engine's collection is "
                          "Level-2A)")
    g.add_argument("--label-scheme", choices=(*SCHEMES, *ALIASES),
                     help="codes of the local label raster (default binary 0/1/255): a "
                          "product's classes mapped to impervious, or landcover:<source> for "
                          "the seven land-cover classes (the same as --labels for this backend)")
    g.add_argument("--label-map", metavar="CODE=CLASS,...",
                     help="the label raster's codes stated one by one instead of a scheme: "
                          "CLASS 0 pervious, 1 impervious, 255 ignored, '*' every other code "
                          "(Dynamic World training labels: 7=1,0=255,10=255,*=0); without "
                          "'*' a code not listed is refused")
    g.add_argument("--scl-mask", metavar="CLASSES",
                     help="scene classification (SCL) classes left out of the composite "
                          "(default 3,8,9,10,11: cloud shadow, cloud medium and high "
                          "probability, thin cirrus, snow; 'none' keeps every pixel). On a "
                          "single hazy scene Sen2Cor can flag bright built surfaces as cloud: "
                          "3,11 keeps them (docs/local-backend.md)")
    add_scene_file_arguments(g)
    g.add_argument("--allow-implausible", action="store_true", default=None,
                     help="composite scenes whose pixels the input check doubts (VV/VH swapped, "
                          "the +0.1 offset left in...), with a warning each; recorded in the "
                          "recipe")


def local_scheme(args: argparse.Namespace) -> str:
    """The local label scheme: ``--label-map``, ``--label-scheme`` or ``--labels``, else binary."""
    scheme, labels = args.label_scheme, args.labels
    if args.label_map is not None:
        if scheme or labels:
            raise ConfigError("--label-map states what every label code means; give it without "
                              "--labels/--label-scheme")
        return label_map_scheme(args.label_map)
    if scheme and labels and ALIASES.get(scheme, scheme) != ALIASES.get(labels, labels):
        raise ConfigError(f"--labels {labels} and --label-scheme {scheme} disagree; for the "
                          "local backend they name the same thing: give one of them")
    return scheme or labels or DEFAULT_LOCAL_LABELS


def check_local_arguments(args: argparse.Namespace) -> None:
    """Local scenes given and readable as asked; their flags refused with the ee backend."""
    if args.backend == "local":
        if not args.scenes:
            raise ConfigError("--backend local needs --scenes DIR (Sentinel-1/2 scenes and a "
                              "labels/label.tif); `make demo` shows the layout on a synthetic "
                              "scene")
        files.require("--scenes", args.scenes, "the folder of local Sentinel-1/2 scenes",
                      folder=True)
        scene_file_options(args, args.backend)
        if args.scl_mask is not None:
            scl_mask_classes(args.scl_mask)
    else:
        check_allow_l1c_backend(args.allow_l1c, args.backend)
        if args.scl_mask is not None:
            raise ConfigError("--scl-mask chooses what a local composite masks: use it with "
                              "--backend local (Earth Engine composites take --cloud-mask)")
        scene_file_options(args, args.backend, also=(("--label-map", args.label_map),
                                                      ("--allow-implausible",
                                                       args.allow_implausible)))


def local_recipe(args: argparse.Namespace, labels: str) -> LocalRecipe:
    """The local recipe the flags ask for, with the label scheme ``labels``.

    The recipe's own defaults where the flags say none.
    """
    recipe = LocalRecipe(speckle=args.speckle, allow_l1c=args.allow_l1c, label_scheme=labels,
                         allow_implausible=args.allow_implausible,
                         **scene_file_options(args, args.backend))
    return (recipe if args.scl_mask is None
            else replace(recipe, scl_masked=scl_mask_classes(args.scl_mask)))


def stacks_folder(out: str, scenes: str) -> Path:
    """Where the monthly stacks go: ``<out>/stacks``, beside the scenes for a ``gs://`` out."""
    if out.startswith("gs://"):
        return Path(scenes).resolve().parent / "isamap_stacks"
    return Path(out) / "stacks"


def local_spec(target: ExportTarget, recipe: LocalRecipe) -> DatasetSpec:
    """The dataset ``recipe`` makes of ``target`` (what ``--out`` must hold, if anything)."""
    mapping = get_scheme(recipe.label_scheme)  # an unknown scheme fails before any pixel is read
    return target.spec("local", recipe.to_dict(), mapping.manifest_classes(), mapping.scheme)


def check_local_month(recipe: LocalRecipe, scenes: SceneCollection | str, month: str,
                      store: Store, spec: DatasetSpec, stack_dir: Path) -> LocalStackPlan:
    """The real run's checks of ``month`` before its stack is written; its plan.

    The month's inputs (:func:`~.stack.plan_local_stack`), their digest against the one
    ``--out`` recorded for the month, and the training label. The dry run runs them too for a
    month ``--out`` holds (:func:`out_month_check`).
    """
    plan = plan_local_stack(scenes, spec.grid, month, spec.bands, fine_scale=spec.fine_scale,
                            speckle=recipe.speckle, out_dir=stack_dir, recipe=recipe)
    check_compatible(store, spec, month=month, fingerprint=plan.fingerprint)
    warning = check_training_label(plan.label_ref, spec.grid, recipe.label_scheme)
    if warning:
        log.warning("%s", warning)
    return plan


def out_month_check(out: str, recipe: LocalRecipe, spec: DatasetSpec,
                    stack_dir: Path) -> Callable[[SceneCollection, str], bool]:
    """For the dry run: the real run's checks of a month that ``--out`` already holds.

    The returned function runs :func:`check_local_month` (raising what it refuses) and
    returns True for a month the dataset at ``out`` records; False (nothing run) for another
    month, whose inputs need no digest (nothing to compare it with), and for every month of
    a ``gs://`` out (a dry run reads no bucket). Nothing is written.
    """
    store = open_store(out)
    held = ({} if out.startswith("gs://")
            else read_manifest(store, missing_ok=True).get("sources", {}))

    def check(collection: SceneCollection, month: str) -> bool:
        if month not in held:
            return False
        check_local_month(recipe, collection, month, store, spec, stack_dir)
        return True

    return check


def local_dry_run(target: ExportTarget, recipe: LocalRecipe, scenes: str,
                  echo: Callable[[str], None]) -> LocalPlan:
    """Give ``echo`` the plan of a local export: each month's ``scenes``, the grid, the patches.

    The real run's checks, before its composite; the caller stops at the plan's
    ``stop_line``.
    """
    spec = local_spec(target, recipe)
    plan = make_local_plan(scenes, target.region.name, target.grid, target.months,
                           target.bands, target.out, reading=recipe.reading(), seed=target.seed,
                           block=target.split_block, recipe=recipe, fine_scale=target.fine_scale,
                           out_refused=out_refusal(target.out, spec),
                           out_check=out_month_check(target.out, recipe, spec,
                                                     stacks_folder(target.out, scenes)))
    echo(format_local_plan(plan))
    return plan


def run_local_export(target: ExportTarget, recipe: LocalRecipe, scenes: str, *,
                     progress: bool = True,
                     on_month: Callable[[PatchSummary], None] = lambda summary: None) -> None:
    """Export every month of ``target`` from its local ``scenes`` (see the module docstring).

    A refused run removes the folders it created while they are empty (``--out`` and its
    ``stacks/``, which its lock made); never one an earlier run wrote.
    """
    out = target.out
    stack_dir = stacks_folder(out, scenes)
    store, spec = open_store(out), local_spec(target, recipe)
    # innermost first: stacks/, then --out
    with files.unmade_if_refused(stack_dir, out), hold_output(store), hold_output(stack_dir):
        check_compatible(store, spec)
        stack_dir.mkdir(parents=True, exist_ok=True)
        removed = LocalStore(stack_dir).remove_temporaries()  # what killed builds left
        if removed:
            log.info("removed %d temporary file(s) left in %s by a killed run", removed,
                     stack_dir)
        plans = [check_local_month(recipe, scenes, month, store, spec, stack_dir)
                 for month in target.months]
        for month, plan in zip(target.months, plans, strict=True):
            stack = write_local_stack(plan, progress=progress)
            notes = [*plan.input_notes,
                     *_judge_month(stack.image, month, store, spec, out, recipe)]
            on_month(patch_stack(stack, store, min_valid_fraction=target.min_valid_fraction,
                                 seed=target.seed, block=target.split_block, backend="local",
                                 region=target.region.name,
                                 recipe={**plan.recipe.to_dict(), **series_record(target.bands)},
                                 sources={"scenes": plan.scene_list(), **(
                                     {"input_notes": notes} if notes else {})},
                                 classes=spec.classes, label_scheme=spec.label_scheme,
                                 progress=progress))


def _judge_month(image: str, month: str, store: Store, spec: DatasetSpec, out: str,
                 recipe: LocalRecipe) -> tuple[str, ...]:
    """A month's stack against the fingerprint the dataset's earlier months recorded.

    Its scenes passed the physical rules; a calibration they cannot see (sigma0 raised alike
    in VV and VH, another processor) would join months unlike it. The stack is read where
    the earlier months' patches lie, sampled as their fingerprint was
    (:func:`contract.dataset.patches_fingerprint`), so the two see the same ground.
    """
    recorded = Fingerprint.from_dict(read_manifest(store, missing_ok=True)
                                     .get("pixel_fingerprint"))
    earlier = [r for r in read_index(store, missing_ok=True) if r["month"] != month]
    if recorded is None or not earlier:
        return ()
    with rasterio.open(image) as src:
        def patch(i: int) -> np.ndarray:
            window = spec.grid.patch_window(earlier[i]["row"], earlier[i]["col"]).to_rasterio()
            return src.read(window=window, out_dtype="float32", masked=True).filled(np.nan)

        pixels = pixel_sample(patch, len(earlier), src.count)
        names = src.descriptions
    samples = {b: pixels[i] for i, b in enumerate(names) if b and not is_code_band(b)}
    return judge_stack(f"the stack of {month} (against the fingerprint the manifest of "
                       f"{out} records)", samples, fingerprint=recorded, physics=False,
                       allow_implausible=bool(recipe.allow_implausible),
                       recorded_in="the record of the scenes read")
