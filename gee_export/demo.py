"""``isamap-demo``: the whole chain on a SYNTHETIC scene, with no account and no network.

The demo is a sequence of steps, each a function that skips work already done, so ``make demo``
is quick the second time and later issues add steps (training, prediction, publishing) at the
end of :data:`STEPS` without touching the others:

1. ``scene``      write the synthetic Sentinel-1/2 scene and its labels (gee_export.synthetic);
2. ``stack``      composite it onto the grid (:func:`build_stack_for_demo`);
3. ``quicklooks`` PNGs of the composite and the label;
4. ``patches``    cut the stack into the patch dataset (gee_export.patches).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.warp import Resampling, reproject

from gee_export.bands import DEFAULT_IMAGE_BANDS, get_band
from gee_export.errors import ConfigError
from gee_export.geotiff import write_geotiff
from gee_export.patches import StackPaths, patch_stack
from gee_export.quicklook import label_png, rgb_png
from gee_export.splits import DEFAULT_BLOCK
from gee_export.synthetic import SyntheticScene, generate_scene

SCL_MASKED = (0, 1, 3, 8, 9, 10, 11)  # nodata, saturated, shadow, clouds, cirrus, snow


@dataclass
class DemoContext:
    """What the steps share: options in, outputs out (printed at the end)."""

    out: Path
    seed: int = 0
    size: int = 768
    workers: int = 2
    scene: SyntheticScene | None = None
    stack: StackPaths | None = None
    outputs: dict[str, Any] = field(default_factory=dict)


def _file_band(name: str) -> str:
    """Registry name -> Sentinel-2 file band name (B2 -> B02, B8A stays)."""
    return f"B{int(name[1:]):02d}" if name[1:].isdigit() else name


def _onto_grid(path: Path, grid, resampling: Resampling, dtype: str = "float32",
               nodata: float | None = None) -> np.ndarray:
    """Read a single-band raster and resample it onto ``grid`` (once)."""
    out = np.full(grid.shape, np.nan if dtype == "float32" else 0, dtype=dtype)
    with rasterio.open(path) as src:
        reproject(rasterio.band(src, 1), out, src_nodata=src.nodata if nodata is None else nodata,
                  dst_transform=grid.transform, dst_crs=grid.crs,
                  dst_nodata=np.nan if dtype == "float32" else 0, resampling=resampling)
    return out


def build_stack_for_demo(scene: SyntheticScene, out_dir: Path,
                         bands: Sequence[str] = DEFAULT_IMAGE_BANDS) -> StackPaths:
    """A minimal monthly composite of the scene on its grid (replaced by the local recipe).

    Sentinel-2: reflectance = DN / 10000, pixels flagged by SCL (clouds, shadows, nodata) are
    masked, then the per-pixel median of the clear dates. Sentinel-1: mean of the dates in
    linear power, then 10*log10 once. The scene's labels are already on the grid.
    """
    grid = scene.grid
    image_path = out_dir / "image.tif"
    stamp = out_dir / "stack.json"
    params = {"scene": str(scene.root), "seed": scene.seed, "bands": list(bands),
              "grid": grid.to_dict()}
    if image_path.exists() and stamp.exists() and json.loads(stamp.read_text()) == params:
        return _stack_paths(scene, image_path, bands)
    layers = []
    s2 = [b for b in bands if get_band(b).sensor == "S2"]
    clear = np.stack([~np.isin(_onto_grid(scene.s2_files[d]["SCL"], grid, Resampling.nearest,
                                          "uint8", nodata=0), SCL_MASKED)
                      for d in scene.s2_dates])
    for name in bands:
        spec = get_band(name)
        if spec.sensor == "S2":
            dates = [_onto_grid(scene.s2_files[d][_file_band(name)], grid, Resampling.bilinear)
                     for d in scene.s2_dates]
            stack = np.where(clear, np.stack(dates) * spec.scale, np.nan)
            with warnings.catch_warnings():  # all-cloudy pixels stay NaN, silently
                warnings.simplefilter("ignore", RuntimeWarning)
                layers.append(np.nanmedian(stack, axis=0))
        elif spec.sensor == "S1":
            linear = np.mean([_onto_grid(scene.s1_files[d][name], grid, Resampling.bilinear)
                              for d in scene.s1_dates], axis=0)
            layers.append(10.0 * np.log10(linear))
        else:
            raise ConfigError(f"the demo composite makes S1/S2 bands only, not {name!r}")
    image = np.stack(layers).astype(np.float32)
    write_geotiff(image_path, image, grid.transform, grid.crs, float("nan"),
                  descriptions=list(bands),
                  tags={"SYNTHETIC": "yes", "COMPOSITE": "S2 median of SCL-clear dates; S1 "
                        "mean in linear power then dB", "MONTH": scene.month, "S2_BANDS": s2})
    stamp.write_text(json.dumps(params))
    return _stack_paths(scene, image_path, bands)


def _stack_paths(scene: SyntheticScene, image: Path, bands: Sequence[str]) -> StackPaths:
    return StackPaths(scene.grid, tuple(bands), scene.month, str(image), str(scene.label),
                      label_fine=str(scene.label_fine), fine_scale=scene.fine_scale)


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
    ctx.stack = build_stack_for_demo(ctx.scene, ctx.out / "stack" / ctx.scene.month)
    ctx.outputs["stack (image)"] = ctx.stack.image
    ctx.outputs["stack (label)"] = ctx.stack.label


def _up_to_date(target: Path, source: str | Path) -> bool:
    return target.exists() and target.stat().st_mtime_ns >= Path(source).stat().st_mtime_ns


def step_quicklooks(ctx: DemoContext) -> None:
    folder = ctx.out / "quicklooks"
    rgb, label = folder / "composite_rgb.png", folder / "label.png"
    if not _up_to_date(rgb, ctx.stack.image):
        rgb_png(ctx.stack.image, rgb)
    if not _up_to_date(label, ctx.stack.label):
        label_png(ctx.stack.label, label)
    ctx.outputs["quick-look composite"] = rgb
    ctx.outputs["quick-look label"] = label


def step_patches(ctx: DemoContext) -> None:
    root = ctx.out / "patches"
    summary = patch_stack(ctx.stack, root, block=demo_block(ctx.stack.grid), workers=ctx.workers,
                          backend="synthetic", region="synthetic-wuhan",
                          recipe={"composite": "demo (gee_export.demo.build_stack_for_demo)",
                                  "scene": str(ctx.scene.root), "seed": ctx.seed,
                                  "s2_dates": list(ctx.scene.s2_dates),
                                  "s1_dates": list(ctx.scene.s1_dates)})
    ctx.outputs["patches"] = root / "patches"
    ctx.outputs["index"] = root / "index.jsonl"
    ctx.outputs["manifest"] = root / "manifest.json"
    ctx.outputs["patch counts"] = (
        f"{summary.written} written, {summary.already_done} already there, "
        f"{summary.invalid} below the valid fraction, {summary.dropped_overlap} dropped at "
        f"split borders; per split {summary.per_split}")


Step = Callable[[DemoContext], None]
STEPS: list[tuple[str, Step]] = [
    ("scene", step_scene),
    ("stack", step_stack),
    ("quicklooks", step_quicklooks),
    ("patches", step_patches),
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
    args = parser.parse_args(argv)
    ctx = DemoContext(Path(args.out).resolve(), args.seed, args.size, args.workers)
    print(f"isamap demo on a SYNTHETIC scene -> {ctx.out}")
    for name, step in STEPS:
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
