"""Patch training on the Satellite Embedding's 64 bands (``A00``..``A63``), then prediction.

The Earth Engine export writes these bands into an ordinary patch dataset
(:mod:`gee_export.ee.embedding`); here a small one is written directly, with a label the first
axis decides, and ``isamap-train`` then ``isamap-predict`` run on it as on any other bands.
"""

from __future__ import annotations

import json

import numpy as np
import rasterio

from cli.predict import predict_main
from cli.train import train_main
from contract.bands import EMBEDDING
from tests.support.embedding import unit_vectors
from tests.support.rasters import write_patch_dataset
from training.modelfile import load_model_file

SIZE, N = 32, 8
TINY = {"widths": [4, 8, 8, 8, 8]}


def test_unet_trains_and_predicts_on_the_embedding_bands(tmp_path, capsys):
    images = [unit_vectors((SIZE, SIZE), seed=i) for i in range(N)]
    labels = [(image[0] > 0).astype(np.uint8) for image in images]  # learnable from axis A00
    root = write_patch_dataset(tmp_path / "patches", n=N, size=SIZE, bands=EMBEDDING,
                               images=images, labels=labels)
    run = tmp_path / "run"
    code = train_main(["--data", str(root), "--out", str(run), "--model", "unet",
                       "--model-kwargs", json.dumps(TINY), "--max-iterations", "2",
                       "--batch-size", "2", "--workers", "0", "--device", "cpu",
                       "--precision", "fp32", "--channels-last", "off", "--no-progress", "-q"])
    assert code == 0, capsys.readouterr().err
    _, meta = load_model_file(run / "model.pt", flag="model file")
    assert tuple(meta.bands) == EMBEDDING

    (image,) = (root / "patches").rglob("r0_c6.tif")  # a test patch, unseen in training
    with rasterio.open(image) as src:
        assert list(src.descriptions) == list(EMBEDDING)
    out = tmp_path / "map" / "isa"
    assert predict_main(["--model", str(run / "model.pt"), "--input", str(image), "--out",
                         str(out), "--tile", str(SIZE), "--overlap", "0", "--device", "cpu",
                         "--precision", "fp32", "-q"]) == 0, \
        capsys.readouterr().err
    with rasterio.open(tmp_path / "map" / "isa_class.tif") as src:
        classes = src.read(1)
    assert classes.shape == (SIZE, SIZE) and set(np.unique(classes).tolist()) <= {0, 1}
