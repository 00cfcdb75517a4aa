"""isamap-import-patches judges its patches' Sentinel-2 level as every stack's is judged.

Real eo-learn Slovenia Level-1C scenes (top-of-atmosphere reflectance 0-1) cut into GeoTIFF
image/mask pairs, as a new user writes them: refused in one line without ``--allow-l1c``
(nothing written), imported with a warning and ``allow_l1c`` in the recipe with it; a model
trained on that import maps a Level-1C stack of another date with the warning the docs
promise instead of refusing it.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import rasterio
from affine import Affine

from cli.import_patches import main as import_main
from cli.predict import predict_main
from cli.train import train_main
from contract.dataset import read_manifest

BANDS = ("B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12")
#: their indices in REFERENCE_SCENES' 13 bands (B01, B02, ..., B8A, B09, B10, B11, B12)
_INDEX = (1, 2, 3, 4, 5, 6, 7, 8, 11, 12)
SIZE, X0, Y0 = 32, 465180.0, 5080250.0


def _tif(path, data, descriptions=None):
    data = data if data.ndim == 3 else data[None]
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1],
                       count=data.shape[0], dtype=data.dtype.name, crs="EPSG:32633",
                       transform=Affine(10, 0, X0, 0, -10, Y0)) as dst:
        dst.write(data)
        if descriptions:
            dst.descriptions = descriptions


def _patches(shared, root, date: int):
    """A date's 96 x 96 px cut into 3 x 3 pairs; masks: 1 artificial surface, 0 other, 255
    nodata (LULC 8 and 0)."""
    scenes = np.load(shared / "eolearn_slovenia" / "REFERENCE_SCENES.npy")
    lulc = np.load(shared / "eolearn_slovenia" / "LULC.npy")[..., 0]
    image = np.moveaxis(scenes[date][..., list(_INDEX)], -1, 0).astype(np.float32)
    mask = np.where(lulc == 8, 1, np.where(lulc == 0, 255, 0)).astype(np.uint8)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for r in range(3):
        for c in range(3):
            win = np.s_[r * SIZE:(r + 1) * SIZE, c * SIZE:(c + 1) * SIZE]
            left, top = X0 + c * SIZE * 10, Y0 - r * SIZE * 10
            for folder, data in (("images", image[(slice(None), *win)]), ("masks", mask[win])):
                with rasterio.open(root / folder / f"t{r}{c}.tif", "w", driver="GTiff",
                                   width=SIZE, height=SIZE, count=len(data) if data.ndim == 3
                                   else 1, dtype=data.dtype.name, crs="EPSG:32633",
                                   transform=Affine(10, 0, left, 0, -10, top)) as dst:
                    dst.write(data if data.ndim == 3 else data[None])
    return root, image


def _import(src, out, *extra):
    return import_main([str(src), "--out", str(out), "--month", "2015-08", "--bands",
                        ",".join(BANDS), "--ignore-values", "255", "--split-block", "1",
                        "--quiet", *extra])


def test_l1c_patches_are_refused_without_allow_l1c_and_recorded_with_it(shared_data, tmp_path,
                                                                        capsys):
    src, _ = _patches(shared_data, tmp_path / "theirs", date=3)
    out = tmp_path / "ds"
    assert _import(src, out) == 2
    err = [line for line in capsys.readouterr().err.strip().splitlines()
           if not line.startswith("warning:")]  # 9 patches: too few pixels for band order
    assert len(err) == 1 and "the images are Sentinel-2 Level-1C (their pixels show the " \
        "atmosphere's path radiance" in err[0] and "or pass --allow-l1c" in err[0], err
    assert not (out / "manifest.json").exists()
    assert _import(src, out, "--allow-l1c") == 0
    assert "continuing because of --allow-l1c" in capsys.readouterr().err  # a warning
    assert read_manifest(out)["recipe"]["allow_l1c"] is True


def test_a_model_trained_on_an_l1c_import_maps_l1c_stacks_with_a_warning(shared_data, tmp_path,
                                                                         caplog):
    src, _ = _patches(shared_data, tmp_path / "theirs", date=3)
    assert _import(src, tmp_path / "ds", "--allow-l1c") == 0
    run = tmp_path / "run"
    assert train_main(["--data", str(tmp_path / "ds"), "--out", str(run), "--model", "unet",
                       "--model-kwargs", json.dumps({"widths": [4, 8, 8, 16, 16]}), "--epochs",
                       "1", "--batch-size", "2", "--workers", "0", "--precision", "fp32",
                       "--no-progress", "-q"]) == 0
    _, other = _patches(shared_data, tmp_path / "other", date=2)  # another L1C date
    _tif(tmp_path / "stack.tif", other, BANDS)
    with caplog.at_level(logging.WARNING):
        assert predict_main(["--model", str(run / "model.pt"), "--input",
                             str(tmp_path / "stack.tif"), "--out", str(tmp_path / "o" / "isa"),
                             "--quiet", "--precision", "fp32"]) == 0
    assert "Level-1C (top-of-atmosphere) input, as its pixels show, to a model that takes " \
        "it: it was trained on Level-1C scenes (exported or imported with allow_l1c)" \
        in caplog.text
