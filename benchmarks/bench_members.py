"""Benchmark: ``isamap-predict`` of a joined Presto model, each member encoding or sharing.

The model ``isamap-train --model unet-s2 --encoder presto=PATH`` writes by default joins nine
trainings, each a U-Net beside the same frozen Presto encoder, the test-time mirror images
spread over them (three members map the window as it is, two each of its three mirror images).
Members given the same image share one encoding of it within the joined forward
(:mod:`training.models.sharing`, the default); with ``ISAMAP_SHARED_FEATURES=off`` every
member encodes it again (the plain twin). Both run the whole command, each in its own
process, alternating, on the same stack and model file, at fp32 in the NCHW layout with no
autotune cache and no feature cache (``ISAMAP_ENCODER_CACHE`` is dropped), and every run's
map is compared with the first plain one (they must be equal: the oracle of
``tests/training/models/encoders/test_shared.py``).

The model file is built here: the recipe's network (nine members, widths and mirror images of
``unet-s2``) around Presto's architecture, weights drawn at random (Presto's published weights
cost the same to run; the map is not scored). The stack is ``--size`` px a side of smooth
ten-band reflectance (B2-B8A, B11, B12, 0.02-0.42) on a UTM grid, mapped in ``--tile`` px
tiles (Presto encodes every pixel of every tile, so a small stack in the command's 512 px
tile would be mostly padding).

Run: ``.venv/bin/python benchmarks/bench_members.py [--size 256] [--tile 128] [--rounds 2]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BANDS = ("B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12")
CASES = {"plain": {"ISAMAP_SHARED_FEATURES": "off"}, "shared": {}}


def _stack(path: Path, size: int) -> None:
    """A smooth ten-band reflectance stack, ``size`` px a side, 10 m UTM 50N."""
    import rasterio

    from contract.geotiff import write_geotiff

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    data = np.stack([0.22 + 0.2 * np.sin(rng.uniform(0.01, 0.08) * yy + rng.uniform(0, 6))
                     * np.cos(rng.uniform(0.01, 0.08) * xx) for _ in BANDS]).astype(np.float32)
    write_geotiff(str(path), data, rasterio.Affine(10, 0, 500000, 0, -10, 3400000),
                  "EPSG:32650", float("nan"), descriptions=list(BANDS))


def _model(path: Path) -> int:
    """The recipe's joined Presto model file at ``path``; returns its members."""
    import torch

    from training.modelfile import ModelMeta, save_model_file
    from training.models import create_model, recipe_for
    from training.models.encoders.fused import MODULE, NAME, EncoderUNet
    from training.models.encoders.registry import PRESTO

    recipe = dict(recipe_for("unet-s2").model_kwargs)
    members = 9
    kwargs = {"widths": recipe["widths"], "flips": recipe["flips"],
              "member_views": recipe["member_views"], "members": members,
              "bands": list(BANDS), "encoder": "presto", "encoder_sha256": PRESTO.sha256,
              "input_mean": [0.2] * len(BANDS), "input_std": [0.1] * len(BANDS),
              "latlon": [30.5, 114.3], "month": 6, "fusion": "concat", "frozen": True}
    torch.manual_seed(0)
    model = create_model(NAME, len(BANDS), 2, module=MODULE, **kwargs)
    encoders = [m.encoder for m in model.modules() if isinstance(m, EncoderUNet)]
    for encoder in encoders[1:]:  # one published file gives every member the same weights
        encoder.load_state_dict(encoders[0].state_dict())
    meta = ModelMeta(NAME, len(BANDS), 2, BANDS, (0.2,) * len(BANDS), (0.1,) * len(BANDS),
                     model_kwargs=kwargs, module=MODULE, pixel_size=10.0)
    save_model_file(path, model, meta)
    return members


def _run(case: str, model: Path, stack: Path, out: Path, tile: int) -> float:
    """Wall seconds of one whole ``isamap-predict`` in its own process."""
    env = {**os.environ, **CASES[case], "ISAMAP_AUTOTUNE_CACHE": "off"}
    env.pop("ISAMAP_ENCODER_CACHE", None)
    if case == "shared":
        env.pop("ISAMAP_SHARED_FEATURES", None)
    argv = [sys.executable, "-c", "from cli.predict import predict_main; "
            "raise SystemExit(predict_main())", "--model", str(model), "--input", str(stack),
            "--out", str(out), "--precision", "fp32", "--channels-last", "off", "--tile",
            str(tile), "--overlap", str(tile // 8), "-q"]
    t0 = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def _pixels(prefix: Path) -> list[np.ndarray]:
    import rasterio

    arrays = []
    for suffix in ("_class.tif", "_prob.tif"):
        with rasterio.open(f"{prefix}{suffix}") as src:
            arrays.append(src.read())
    return arrays


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=256, help="stack side in pixels (default 256)")
    p.add_argument("--tile", type=int, default=128,
                   help="isamap-predict --tile, an eighth of it overlapping (default 128)")
    p.add_argument("--rounds", type=int, default=2, help="runs of each case (default 2)")
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        stack, model = tmp / "stack.tif", tmp / "presto9.pt"
        _stack(stack, a.size)
        members = _model(model)
        seconds: dict[str, list[float]] = {case: [] for case in CASES}
        for r in range(a.rounds):
            for case in (CASES if r % 2 == 0 else reversed(list(CASES))):
                seconds[case].append(_run(case, model, stack, tmp / f"{case}{r}" / "map",
                                          a.tile))
        first = _pixels(tmp / "plain0" / "map")
        same = all(np.array_equal(x, y) for case in CASES for r in range(a.rounds)
                   for x, y in zip(first, _pixels(tmp / f"{case}{r}" / "map"), strict=True))
    plain, shared = (statistics.median(seconds[c]) for c in ("plain", "shared"))
    result = {"size": a.size, "tile": a.tile, "members": members, "rounds": a.rounds,
              "seconds": seconds, "plain_s": plain, "shared_s": shared,
              "speedup": plain / shared, "maps_equal": same,
              "load_average": os.getloadavg()[0]}
    print(f"isamap-predict, {a.size}x{a.size} px in {a.tile} px tiles, a joined Presto model "
          f"of {members} members "
          f"(median of {a.rounds} whole runs each, alternating)")
    print(f"  every member encodes (ISAMAP_SHARED_FEATURES=off): {plain:7.1f} s")
    print(f"  members given the same image share (default):       {shared:7.1f} s")
    print(f"  shared / plain: x{plain / shared:.2f} faster; maps equal: {same}; "
          f"load average {result['load_average']:.1f}")
    print(json.dumps(result))
    if not same:
        raise SystemExit("the maps differ: sharing must change no pixel")
    return result


if __name__ == "__main__":
    main()
