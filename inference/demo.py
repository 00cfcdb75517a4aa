"""``isamap-demo``: the whole chain on a SYNTHETIC scene, with no account and no network.

It lives at the top floor because it drives every layer below: the local backend makes the
scene and its stack, the contract cuts patches, training fits and evaluates a model, inference
maps the scene and prepares its publication. It is a sequence of steps, each a function that
skips work already done, so ``make demo`` is quick the second time:

1. ``scene``      write the synthetic Sentinel-1/2 scene and its labels (local.synthetic);
2. ``stack``      composite it onto the grid with the local backend (:func:`build_stack_for_demo`);
3. ``quicklooks`` PNGs of the composite and the label;
4. ``patches``    cut the stack into the patch dataset (gee_export.contract.patches);
5. ``train``      train and evaluate a reduced-width CroFuseNet (training.demo);
6. ``predict``    map the scene to COGs, quick-looks and areas, and publish as a dry run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gee_export.contract.bands import DEFAULT_IMAGE_BANDS
from gee_export.contract.dataset import read_manifest
from gee_export.contract.patches import patch_stack
from gee_export.contract.quicklook import label_png, rgb_png
from gee_export.contract.splits import DEFAULT_BLOCK
from gee_export.contract.stack import StackPaths, fingerprint
from gee_export.core.commands import add_logging_arguments, configure_logging, run_command
from gee_export.core.errors import ConfigError
from gee_export.local.stack import LocalRecipe, build_local_stack
from gee_export.local.synthetic import SyntheticScene, generate_scene


@dataclass
class DemoContext:
    """What the steps share: options in, outputs out (printed at the end)."""

    out: Path
    seed: int = 0
    size: int = 768
    workers: int = 2
    epochs: int = 15
    threads: int | None = None
    scene: SyntheticScene | None = None
    model_file: Path | None = None
    stack: StackPaths | None = None
    outputs: dict[str, Any] = field(default_factory=dict)

    def need_scene(self) -> SyntheticScene:
        if self.scene is None:
            raise ConfigError("the 'scene' step must run before this one")
        return self.scene

    def need_stack(self) -> StackPaths:
        if self.stack is None:
            raise ConfigError("the 'stack' step must run before this one")
        return self.stack


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
                               height=ctx.size)
    ctx.outputs["synthetic scene"] = ctx.scene.root


def step_stack(ctx: DemoContext) -> None:
    scene = ctx.need_scene()
    ctx.stack = build_stack_for_demo(scene, ctx.out / "stack" / scene.month)
    ctx.outputs["stack (image)"] = ctx.stack.image
    ctx.outputs["stack (label)"] = ctx.stack.label


def _up_to_date(target: Path, source: str | Path) -> bool:
    return target.exists() and target.stat().st_mtime_ns >= Path(source).stat().st_mtime_ns


def step_quicklooks(ctx: DemoContext) -> None:
    stack = ctx.need_stack()
    folder = ctx.out / "quicklooks"
    rgb, label = folder / "composite_rgb.png", folder / "label.png"
    if not _up_to_date(rgb, stack.image):
        rgb_png(stack.image, rgb)
    if not _up_to_date(label, stack.label):
        label_png(stack.label, label)
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
                                  "scene": str(scene.root), "seed": ctx.seed,
                                  "s2_dates": list(scene.s2_dates),
                                  "s1_dates": list(scene.s1_dates)})
    ctx.outputs["patches"] = root / "patches"
    ctx.outputs["index"] = root / "index.jsonl"
    ctx.outputs["manifest"] = root / "manifest.json"
    ctx.outputs["patch counts"] = (
        f"{summary.written} written, {summary.already_done} already there, "
        f"{summary.invalid} below the valid fraction, {summary.dropped_overlap} dropped at "
        f"split borders; per split {summary.per_split}")


def step_train(ctx: DemoContext) -> None:
    """Train a reduced-width CroFuseNet on the patches and evaluate it on the test split."""
    from training.demo import run_demo_training  # torch is only needed from here on

    result = run_demo_training(ctx.out / "patches", ctx.out / "model", epochs=ctx.epochs,
                               seed=ctx.seed, threads=ctx.threads)
    ctx.model_file = Path(result.model)
    ctx.outputs["model file"] = result.model
    ctx.outputs["learning curves"] = result.curves
    ctx.outputs["test metrics"] = result.metrics_table
    ctx.outputs["confusion matrix"] = result.confusion_png


def step_predict(ctx: DemoContext) -> None:
    """Map the whole scene with the trained model, then prepare (dry-run) its publication."""
    stack = ctx.need_stack()
    if ctx.model_file is None:
        raise ConfigError("the 'train' step must run before 'predict'")
    paths = run_demo_inference(ctx.model_file, stack.image, ctx.out / "prediction",
                               month=stack.month, name=f"isa_{stack.month}")
    labels = {"class_cog": "class map COG", "prob_cog": "ISA probability COG",
              "class_png": "quick-look class map", "area_json": "ISA area (JSON)",
              "manifest": "Earth Engine manifest (dry run)", "script": "Code Editor script"}
    for key, label in labels.items():
        if key in paths:
            ctx.outputs[label] = paths[key]


def run_demo_inference(
    model_file: str | os.PathLike, stack_path: str | os.PathLike, out_dir: str | os.PathLike,
    *, month: str | None = None, name: str = "isa", tile: int = 256, overlap: int = 32,
    zones: str | os.PathLike | dict | None = None, asset_id: str = "isamap/demo_isa",
    project: str = "isamap-demo", gcs_prefix: str | None = None, progress: bool = True,
) -> dict[str, str]:
    """Predict the demo stack and prepare (not perform) its Earth Engine publication.

    Returns the paths of every output: ``class_cog``, ``prob_cog``, ``class_png``,
    ``prob_png``, ``area_json``, ``area_csv``, ``manifest``, ``script``. The publication is a
    dry run: the demo has no Earth Engine account; the manifest it prints is the one
    ``isamap-publish`` would send.
    """
    from inference.predict import PredictConfig  # torch is only needed from here on
    from inference.publish import PublishRequest, publish
    from inference.workflow import predict_with_model_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    outputs = predict_with_model_file(
        model_file, str(stack_path), str(out / name), month=month,
        config=PredictConfig(tile=tile, overlap=overlap, batch_size=4), zones=zones,
        local_dir=out, progress=progress)
    print(outputs.area_table)
    if month:
        asset_id = f"{asset_id}_{month}"
    request = PublishRequest(outputs.prediction.class_path, outputs.prediction.prob_path,
                             asset_id, project=project, gcs_prefix=gcs_prefix)
    published = publish(request, out, dry_run=True)
    return {**outputs.paths(), "manifest": str(published.manifest_path),
            "script": str(published.script_path)}


Step = Callable[[DemoContext], None]
STEPS: list[tuple[str, Step]] = [
    ("scene", step_scene),
    ("stack", step_stack),
    ("quicklooks", step_quicklooks),
    ("patches", step_patches),
    ("train", step_train),
    ("predict", step_predict),
]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="isamap-demo",
        description="Run isamap end to end on a SYNTHETIC scene (no account, no network).")
    parser.add_argument("--out", default="demo_output", help="output folder (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic scene")
    parser.add_argument("--size", type=int, default=768,
                        help="scene width and height in 10 m pixels (even; default %(default)s)")
    parser.add_argument("--workers", type=int, default=2, help="threads writing patches")
    parser.add_argument("--epochs", type=int, default=15, help="training epochs of the demo model")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads for training (default: torch's own choice)")
    parser.add_argument("--until", choices=[name for name, _ in STEPS], default=STEPS[-1][0],
                        help="stop after this step (default: run the whole chain)")
    add_logging_arguments(parser)
    args = parser.parse_args(argv)
    configure_logging(args.verbose, args.quiet, args.debug)
    return run_command("isamap-demo", lambda: _run(args), debug=args.debug)


def _run(args: argparse.Namespace) -> int:
    ctx = DemoContext(Path(args.out).resolve(), args.seed, args.size, args.workers,
                      args.epochs, args.threads)
    print(f"isamap demo on a SYNTHETIC scene -> {ctx.out}")
    names = [name for name, _ in STEPS]
    for name, step in STEPS[: names.index(args.until) + 1]:
        started = time.monotonic()
        step(ctx)
        print(f"  [{name}] done in {time.monotonic() - started:.1f} s")
    width = max(len(k) for k in ctx.outputs)
    print("\nOutputs:")
    for key, value in ctx.outputs.items():
        print(f"  {key:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
