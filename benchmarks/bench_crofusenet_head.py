"""CroFuseNet's printed head (3x3 conv + BN + ReLU) vs a linear 1x1 head, side by side.

Run: .venv/bin/python benchmarks/bench_crofusenet_head.py [--seeds 0 1 2] [--iterations 60]
     [--out headcompare_output]

Builds two patch datasets through the local backend, then trains the same reduced-width
CroFuseNet with each head on each (``experiments.headcompare``; same seeds, data, budget):

- ``demo``: the synthetic scene exactly as ``make demo`` builds it (``isamap-demo --until
  patches``: 768 px scene, 128 px patches every 80 px, blocked split);
- ``sen1floods11``: the real Sentinel-1 + Sentinel-2 chip in ``../shared/data/
  sen1floods11_spain`` (Vega Baja del Segura, September 2019) with its hand-drawn WATER label
  (the only pixel label in the sample data with both modalities; the head question does not
  depend on the class), 64 px patches, blocked split with 2 x 2 position blocks. The S2 file is
  Level-1C, accepted explicitly here (``LocalRecipe(allow_l1c=True)``).

Finished datasets and runs are reused (the same command resumes). Numbers depend on the shared
machine only through time; the metrics are deterministic per seed on the CPU.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import time
from pathlib import Path

from contract.dataset import read_manifest
from contract.grid import Grid
from contract.patches import patch_stack
from experiments.headcompare import HeadBudget, compare_heads
from gee_export.local.scenes import SceneCollection, open_scene
from gee_export.local.stack import LocalRecipe, build_local_stack
from inference.demo.steps import DemoContext, step_patches, step_scene, step_stack

ROOT = Path(__file__).resolve().parent.parent
BANDS = ("B2", "B3", "B4", "B8", "VV", "VH")
S1F11 = "sen1floods11_spain"


def shared_data() -> Path:
    return Path(os.environ.get("ISAMAP_SHARED_DATA", ROOT.parent / "shared" / "data"))


def demo_patches(out: Path) -> Path:
    """``isamap-demo --until patches`` into ``out`` (reused when already there)."""
    ctx = DemoContext(out)
    for step in (step_scene, step_stack, step_patches):
        step(ctx)
    return out / "patches"


def sen1floods11_patches(out: Path) -> Path:
    """The Sen1Floods11 chip as a 64 px patch dataset on its UTM grid (reused when there)."""
    root = out / "patches"
    if read_manifest(root, missing_ok=True):
        return root
    src = shared_data() / S1F11
    if not src.is_dir():
        raise SystemExit(f"{src} not found: set ISAMAP_SHARED_DATA to the shared data folder")
    import rasterio

    s1 = open_scene(src / "Spain_7370579_S1Hand.tif", sensor="S1", date=dt.date(2019, 9, 17))
    s2 = open_scene(src / "Spain_7370579_S2Hand.tif", sensor="S2", date=dt.date(2019, 9, 18))
    with rasterio.open(src / "Spain_7370579_S2Hand.tif") as f:
        bounds = tuple(f.bounds)
    grid = Grid.from_lonlat_bounds(bounds, resolution=10.0, patch_size=64, stride=64)
    stack = build_local_stack(SceneCollection(s1=(s1,), s2=(s2,)), grid, "2019-09", BANDS,
                              label=src / "Spain_7370579_LabelHand.tif", speckle="refined_lee",
                              out_dir=out / "stack", recipe=LocalRecipe(allow_l1c=True),
                              progress=False)
    patch_stack(stack, root, min_valid_fraction=0.9, ratios=(0.6, 0.2, 0.2), block=2,
                backend="local", region="sen1floods11-spain",
                recipe={"backend": "local", "scenes": str(src), "allow_l1c": True},
                classes={"0": "not water", "1": "water"}, progress=False)
    return root


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--iterations", type=int, default=HeadBudget.iterations)
    p.add_argument("--out", default=str(ROOT / "headcompare_output"))
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    out = Path(a.out)
    t0 = time.perf_counter()
    datasets = {"demo": str(demo_patches(out / "data" / "demo")),
                "sen1floods11": str(sen1floods11_patches(out / "data" / "sen1floods11"))}
    print(f"datasets ready in {time.perf_counter() - t0:.0f} s: {datasets}")
    t0 = time.perf_counter()
    _, table = compare_heads(datasets, a.seeds, out / "runs", HeadBudget(a.iterations))
    print(table)
    print(f"comparison: {time.perf_counter() - t0:.0f} s; {out / 'runs' / 'summary.txt'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
