"""The steps of ``isamap-demo`` (cli/demo.py): the whole chain on a SYNTHETIC scene, offline.

It lives at the top floor because it drives every layer below: the local backend makes the
scene and its stack, the contract cuts patches, training fits and evaluates a model, inference
maps the scene at two dates and prepares the series' publication. It is a sequence of steps,
each a function that skips work already done, so ``make demo`` is quick the second time:

1. ``scene``      write the synthetic Sentinel-1/2 scene and its labels (local.synthetic), and the
                  same town two years later with a few new built-up blocks;
2. ``stack``      composite it onto the grid with the local backend (:func:`build_stack_for_demo`);
3. ``quicklooks`` PNGs of the composite and the label;
4. ``patches``    cut the stack into the patch dataset (contract.patches);
5. ``train``      train and evaluate a reduced-width CroFuseNet (:mod:`inference.demo.training`);
6. ``map``        map both dates with ``isamap-map``'s library (local backend): COGs, quick-looks,
                  the change map, ISA km² over time (table and plot), STAC, and the
                  ImageCollection publication as a dry run;
7. ``assess``     design a blind stratified reference sample on the later date's map
                  (``isamap-assess design``), label it with the scene's truth (the class under
                  each point on the 1 m grid: the offline stand-in for a person reading
                  high-resolution imagery), score the map and the scene's 10 m label product on
                  the same points (``isamap-assess score``) and print the report; then the same
                  on the change map's strata, sized for the gain's area, labelled with both
                  dates' truth: gain, loss and net impervious change with 95 % intervals. The
                  figures docs/accuracy.md quotes are written to ``assess/figures.json``
                  (:mod:`inference.demo.assess`).

Every step records what its inputs were (``.demo_state/<step>.json``: the scene's parameters, the
stack's and the dataset's content fingerprints, the model file's hash, the options) and redoes
itself, discarding its stale outputs, when they change: re-running with another ``--size``,
``--seed`` or ``--epochs`` into the same folder rebuilds, re-cuts, retrains and re-maps
(:mod:`inference.demo.context`).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from pyproj import Transformer

from contract.bands import DEFAULT_IMAGE_BANDS
from contract.dataset import INDEX, MANIFEST, read_manifest
from contract.patches import patch_stack
from contract.publishing import PublishOptions
from contract.quicklook import label_png, rgb_png, title_note
from contract.regions import Region
from contract.splits import DEFAULT_BLOCK
from contract.stack import StackPaths, fingerprint
from core.errors import ConfigError
from core.shareable import shareable_path
from gee_export.local.stack import LocalRecipe, build_local_stack
from gee_export.local.synthetic import SyntheticScene, generate_scene
from inference.demo.assess import step_assess
from inference.demo.context import (
    LATER_GROWTH,
    LATER_MONTH,
    DemoContext,
    file_hash,
    inputs_changed,
    record_inputs,
)

DEMO_RECIPE = LocalRecipe()  # the local backend's defaults: refined Lee, ENL 4.4, SCL masking


def build_stack_for_demo(scene: SyntheticScene, out_dir: Path,
                         bands: Sequence[str] = DEFAULT_IMAGE_BANDS) -> StackPaths:
    """The scene's monthly stack through the local backend, exactly as ``--backend local``.

    The synthetic scene is written in the layout of local input scenes, so the demo exercises
    the real recipe (scene discovery, SCL masking and median, refined Lee in linear power and
    the mean in dB, one warp per source, windowed writes); a rerun finds the finished stack.
    """
    return build_local_stack(scene.root, scene.grid, scene.month, bands, label=scene.label,
                             fine_scale=scene.fine_scale, speckle=DEMO_RECIPE.speckle,
                             out_dir=out_dir, recipe=DEMO_RECIPE, progress=False)


def demo_block(grid) -> int:
    """Split block side for a small scene: about three blocks per side, so val and test exist.

    The default 8 x 8 blocks suit real regions (thousands of patches); the demo scene holds
    81 patch positions, where 8 x 8 blocks would put nearly everything in one split.
    """
    return max(1, min(DEFAULT_BLOCK, min(grid.patch_rows, grid.patch_cols) // 3))


# ---------------------------------------------------------------------- steps
def step_scene(ctx: DemoContext) -> None:
    ctx.scene = generate_scene(ctx.out / "scene", seed=ctx.seed, width=ctx.size,
                               height=ctx.size, progress=ctx.progress)
    ctx.later = generate_scene(ctx.out / f"scene_{LATER_MONTH}", seed=ctx.seed, width=ctx.size,
                               height=ctx.size, month=LATER_MONTH, growth=LATER_GROWTH,
                               progress=ctx.progress)
    ctx.outputs["synthetic scene"] = ctx.scene.root
    ctx.outputs[f"synthetic scene {LATER_MONTH}"] = ctx.later.root


def step_stack(ctx: DemoContext) -> None:
    scene = ctx.need_scene()
    folder = ctx.out / "stack" / scene.month
    inputs = {"scene": json.loads((scene.root / "scene.json").read_text()),
              "recipe": DEMO_RECIPE.to_dict()}
    if inputs_changed(ctx, "stack", inputs):
        shutil.rmtree(folder, ignore_errors=True)  # another scene: the old stack is stale
    ctx.stack = build_stack_for_demo(scene, folder)
    record_inputs(ctx, "stack", inputs)
    ctx.outputs["stack (image)"] = ctx.stack.image
    ctx.outputs["stack (label)"] = ctx.stack.label


def _up_to_date(target: Path, source: str | Path) -> bool:
    return target.exists() and target.stat().st_mtime_ns >= Path(source).stat().st_mtime_ns


def step_quicklooks(ctx: DemoContext) -> None:
    stack = ctx.need_stack()
    folder = ctx.out / "quicklooks"
    rgb, label = folder / "composite_rgb.png", folder / "label.png"
    if not _up_to_date(rgb, stack.image):
        rgb_png(stack.image, rgb, month=stack.month)
    if not _up_to_date(label, stack.label):
        label_png(stack.label, label, month=stack.month)
    ctx.outputs["quick-look composite"] = rgb
    ctx.outputs["quick-look label"] = label


def step_patches(ctx: DemoContext) -> None:
    scene, stack = ctx.need_scene(), ctx.need_stack()
    root = ctx.out / "patches"
    manifest = read_manifest(root, missing_ok=True)
    cut_from = manifest.get("sources", {}).get(stack.month, {}).get("fingerprint")
    if manifest and cut_from != fingerprint(stack):
        shutil.rmtree(root)  # the stack was rebuilt: the demo's old patches are stale
    summary = patch_stack(stack, root, block=demo_block(stack.grid), workers=ctx.workers,
                          backend="synthetic", region="synthetic-wuhan",
                          recipe={"composite": "local backend (gee_export.local.stack)",
                                  "local_recipe": DEMO_RECIPE.to_dict(),
                                  "scene": shareable_path(scene.root, ctx.out),
                                  "seed": ctx.seed,
                                  "s2_dates": list(scene.s2_dates),
                                  "s1_dates": list(scene.s1_dates)},
                          progress=ctx.progress)
    ctx.outputs["patches"] = root / "patches"
    ctx.outputs["index"] = root / INDEX
    ctx.outputs["manifest"] = root / MANIFEST
    ctx.outputs["patch counts"] = (
        f"{summary.written} written, {summary.already_done} already there, "
        f"{summary.invalid} below the valid fraction, {summary.dropped_overlap} dropped at "
        "split borders; " + ", ".join(f"{n} {split}" for split, n in summary.per_split.items()))


def step_train(ctx: DemoContext) -> None:
    """Train a reduced-width CroFuseNet on the patches and evaluate it on the test split."""
    from inference.demo.training import (  # torch is only needed from here on
        DEMO_BATCH,
        DEMO_LR,
        DEMO_MIN_STEPS,
        run_demo_training,
    )

    root = ctx.out / "patches"
    inputs = {"dataset": file_hash(root / INDEX), "epochs": ctx.epochs,
              "seed": ctx.seed, "grid": read_manifest(root).get("grid"),
              "recipe": {"batch": DEMO_BATCH, "min_steps": DEMO_MIN_STEPS, "lr": DEMO_LR}}
    if inputs_changed(ctx, "train", inputs):
        shutil.rmtree(ctx.out / "model", ignore_errors=True)  # trained on other patches
    result = run_demo_training(root, ctx.out / "model", epochs=ctx.epochs,
                               seed=ctx.seed, threads=ctx.threads, progress=ctx.progress)
    record_inputs(ctx, "train", inputs)
    ctx.model_file = Path(result.model)
    ctx.outputs["model file"] = result.model
    ctx.outputs["learning curves"] = result.curves
    ctx.outputs["test metrics"] = result.metrics_table
    ctx.outputs["confusion matrix"] = result.confusion_png


def step_map(ctx: DemoContext) -> None:
    """Map the scene at both dates (isamap-map's library) and prepare the series' publication.

    Both dates go through the local backend with the recipe recorded in the model file, on the
    scene's grid: COGs, quick-looks, the change map, ISA km² per date and change (table and
    plot), STAC Items and Collection, and the ImageCollection manifests and Code Editor app as a
    dry run (the demo has no Earth Engine account).
    """
    from inference.mapping import request as parts  # lazy: torch
    from inference.mapping.region import map_region  # lazy: torch
    from training.modelfile import load_model  # lazy: torch

    scene, later = ctx.need_scene(), ctx.later
    if ctx.model_file is None or later is None:
        raise ConfigError("the 'scene' and 'train' steps must run before 'map'")
    out = ctx.out / "maps"
    inputs = {"model": file_hash(ctx.model_file),
              "scenes": [json.loads((s.root / "scene.json").read_text()) for s in (scene, later)]}
    if inputs_changed(ctx, "map", inputs):
        shutil.rmtree(out, ignore_errors=True)  # another model or scene: the maps are stale
    region = _scene_region(scene)
    request = parts.MapRequest(
        parts.MapExtent(region, (scene.month, later.month), grid=scene.grid),
        parts.MapOutputs(str(out)),
        parts.MapInputs(backend="local", scenes=[str(scene.root), str(later.root)]),
        parts.map_window(tile=256, overlap=32, batch_size=4),
        publication=parts.MapPublication("projects/isamap-demo/assets/isamap",
                                         PublishOptions(project="isamap-demo"), dry_run=True),
        progress=ctx.progress)
    result = map_region(request, load_model(ctx.model_file), echo=lambda text: None)
    record_inputs(ctx, "map", inputs)
    series = result.series
    assert series is not None
    for d in result.dates:
        if d.outputs is not None:
            ctx.map_class = Path(d.outputs.prediction.class_path)
            ctx.outputs[f"class map COG {d.month}"] = d.outputs.prediction.class_path
            ctx.outputs[f"quick-look class map {d.month}"] = d.outputs.class_png
    for change in series.changes:
        ctx.change_map = Path(change.cog)
        ctx.outputs[f"change map {change.date_from} -> {change.date_to}"] = change.cog
        ctx.outputs["quick-look change map"] = change.png
    ctx.outputs["ISA km² per date (CSV)"] = series.area_csv
    if series.change_csv is not None:  # two dates or more
        ctx.outputs["ISA change (CSV)"] = series.change_csv
    ctx.outputs["ISA area over time (PNG)"] = series.plot
    ctx.outputs["STAC collection"] = out / "collection.json"
    if result.publication is not None:
        ctx.outputs["ImageCollection manifests (dry run)"] = result.publication.manifest_path
        ctx.outputs["Code Editor app"] = result.publication.script_path
    ctx.outputs["ISA area table"] = "\n" + series.table()


def _scene_region(scene: SyntheticScene) -> Region:
    box = Transformer.from_crs(scene.grid.crs, "EPSG:4326", always_xy=True).transform_bounds(
        *scene.grid.bounds)
    west, south, east, north = (round(v, 6) for v in box)
    return Region("synthetic", (west, south, east, north),
                  description="SYNTHETIC demo scene")


Step = Callable[[DemoContext], None]
STEPS: list[tuple[str, Step]] = [
    ("scene", step_scene),
    ("stack", step_stack),
    ("quicklooks", step_quicklooks),
    ("patches", step_patches),
    ("train", step_train),
    ("map", step_map),
    ("assess", step_assess),
]


def run_demo(ctx: DemoContext, until: str = STEPS[-1][0]) -> None:
    """Run the steps up to ``until`` in order, each skipping what is already done."""
    print(f"isamap demo on a SYNTHETIC scene -> {ctx.out}")
    names = [name for name, _ in STEPS]
    with title_note("SYNTHETIC"):  # every picture of the made-up scene says so in its title
        for name, step in STEPS[: names.index(until) + 1]:
            started = time.monotonic()
            step(ctx)
            print(f"  [{name}] done in {time.monotonic() - started:.1f} s")
    width = max(len(k) for k in ctx.outputs)
    print("\nOutputs:")
    for key, value in ctx.outputs.items():
        print(f"  {key:<{width}}  {value}")
