"""One class per pixel whatever the extent mapped, for the candidate built-up recipe's model.

``unet-s2`` trained with ``--norm training --radiometric`` (the comparison's arm
``unet-s2-fixed``; ``unet-s2`` itself normalises each input by its own scene's statistics)
normalises its inputs by the training data's statistics, recorded in the model file: a window
mapped alone (read with a halo as wide as a tile, so every tile over it sees the same pixels)
and the same pixels mapped inside the whole stack get the same class and probability. A model
normalising each input by that input's statistics does not: the window's statistics are not
the stack's.
"""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

from cli.predict import predict_main
from cli.train import train_main
from tests.support.rasters import crop_raster, scene_stack, write_patch_dataset, write_stack
from training.modelfile import read_model_file

S2 = ("B2", "B3", "B4", "B8")
TILE = 64
#: the window mapped alone: rows, columns and the halo read around it (one tile)
ROW, COL, SIZE, HALO = 96, 128, 80, TILE


def _map(model, stack, out) -> tuple[np.ndarray, np.ndarray]:
    assert predict_main(["--model", str(model), "--input", str(stack), "--out", str(out / "isa"),
                         "--tile", str(TILE), "--batch-size", "4", "--precision", "fp32",
                         "--no-progress", "-q"]) == 0
    with rasterio.open(out / "isa_class.tif") as c, rasterio.open(out / "isa_prob.tif") as p:
        return c.read(1), p.read(1)


@pytest.mark.slow
def test_a_window_mapped_alone_gets_the_classes_it_gets_inside_the_whole_stack(tmp_path):
    data = write_patch_dataset(tmp_path / "patches", n=8, size=32, bands=S2)
    run = tmp_path / "run"
    assert train_main(["--data", str(data), "--out", str(run), "--model", "unet-s2",
                       "--norm", "training", "--radiometric",
                       "--members", "1", "--max-iterations", "3", "--batch-size", "2",
                       "--workers", "0", "--device", "cpu", "--precision", "fp32",
                       "--channels-last", "off", "--no-progress", "-q"]) == 0
    image = scene_stack(288, 352, bands=S2, seed=3)
    image[:, :, 250:] += 0.06  # a hazier east: the window's statistics are not the stack's
    whole = write_stack(tmp_path / "whole.tif", image, bands=S2)
    alone = crop_raster(whole, tmp_path / "window.tif", ROW - HALO, COL - HALO,
                        SIZE + 2 * HALO, SIZE + 2 * HALO)
    classes, probs = _map(run / "model.pt", whole, tmp_path / "whole")
    classes_alone, probs_alone = _map(run / "model.pt", alone, tmp_path / "alone")
    inside = np.s_[ROW:ROW + SIZE, COL:COL + SIZE]
    mine = np.s_[HALO:HALO + SIZE, HALO:HALO + SIZE]
    assert np.ptp(probs[inside]) > 0  # the model tells the window's pixels apart
    assert np.array_equal(classes_alone[mine], classes[inside])  # 100 % agreement
    assert np.array_equal(probs_alone[mine], probs[inside])
    assert read_model_file(run / "model.pt")[0].norm == "training"  # the flags', recorded
