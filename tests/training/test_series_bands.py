"""``isamap-train`` refuses a dataset's band names no series stack has, in one line, before
the run folder: ``B2_m24`` / ``B2_m0`` (outside 1..23 months: trained as channels of their own,
Presto silently given one month) and a skipped month (``B2_m2`` without ``B2_m1``)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cli.train import train_main
from tests.support.rasters import write_patch_dataset

OWN = ("B2", "B3", "B4", "B8")


def _train(root, out) -> int:
    """``isamap-train`` of a small U-Net for one epoch on ``root`` into ``out``."""
    return train_main(["--data", str(root), "--out", str(out), "--model", "unet",
                       "--model-kwargs", json.dumps({"widths": [4, 8, 16, 32, 64]}),
                       "--epochs", "1", "--batch-size", "2", "--workers", "0",
                       "--precision", "fp32", "--no-progress", "-q"])


@pytest.mark.parametrize(("earlier", "says"), [
    (("B2_m24",), "--bands: band B2_m24 names B2 of an earlier month, but a series reaches 1 "
     "to 23 months back (B2_m1 to B2_m23; B2 itself is the stack's own month); name each band "
     "of an earlier month <band>_m<k>, k from 1 to 23"),
    (("B2_m0",), "--bands: band B2_m0 names B2 of an earlier month"),
    (("B2_m1", "B2_m3"), "--bands hold B2_m3 without B2_m2: a series cannot skip a month; add "
     "the month before (B2_m2) to the dataset and --bands, or give --bands without B2_m3"),
], ids=["m24", "m0", "skipped-month"])
def test_a_dataset_of_bad_earlier_month_names_is_refused_before_the_run(earlier, says,
                                                                        tmp_path, capsys):
    root = write_patch_dataset(tmp_path / "ds", bands=(*OWN, *earlier))
    out = tmp_path / "run"
    assert _train(root, out) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and says in err[0], err
    assert not out.exists()


def test_a_training_split_whose_earlier_month_has_no_pixel_is_refused(tmp_path, capsys):
    """An earlier month with no pixel in any training patch (its export failed, or every
    image of it was cloud) is refused in one line naming its bands and what to do, before
    the run folder: training on the own month's statistics in its place gives a model of
    one-month features that a map of a stack with real earlier months feeds features it
    never saw."""
    earlier = tuple(f"{b}_m1" for b in OWN)
    images = []
    for i in range(10):
        img = np.random.default_rng(i).normal(0.1, 0.02, (8, 32, 32)).astype(np.float32)
        img[4:] = np.nan
        images.append(img)
    root = write_patch_dataset(tmp_path / "ds", bands=(*OWN, *earlier), images=images)
    out = tmp_path / "run"
    assert _train(root, out) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert ("bands ['B2_m1', 'B3_m1', 'B4_m1', 'B8_m1'] have no valid pixel in the training "
            "split" in err[0]), err
    assert "export those months again, or give --bands without them" in err[0], err
    assert not out.exists()
