"""The Chesapeake NLCD patch reader and the NLCD -> seven-class mapping."""

from __future__ import annotations

import numpy as np
import pytest

from contract.bands import LABEL_NODATA
from contract.label_schemes import LANDCOVER_CLASSES
from core.errors import InputDataError
from experiments.chesapeake_nlcd import (
    CHESAPEAKE_FOLDER,
    LANDCOVER_CHANNEL,
    NLCD_CHANNEL,
    read_patch,
    read_patches,
    valid_pixels,
)

C = {name: i for i, name in enumerate(LANDCOVER_CLASSES)}


def _write(path, lc, nlcd, naip=100.0, shape4=True):
    arr = np.zeros((29, *lc.shape), np.float32)
    arr[:4] = naip
    arr[LANDCOVER_CHANNEL] = lc
    arr[NLCD_CHANNEL] = nlcd
    np.savez(path, arr[None] if shape4 else arr)
    return path


def test_labels_map_to_the_seven_classes_with_crops_merged_into_grassland(tmp_path):
    lc = np.array([[1, 2, 3, 4], [5, 6, 15, 2]], np.float32).repeat(4, 0).repeat(4, 1)
    nlcd = np.array([[11, 41, 82, 31], [22, 24, 90, 21]], np.float32).repeat(4, 0).repeat(4, 1)
    patch = read_patch(_write(tmp_path / "p.npz", lc, nlcd))
    assert patch.id == "p" and patch.image.shape == (4, 8, 16)
    assert np.allclose(patch.image, 100 / 255)
    assert patch.truth[::4, ::4].tolist() == [
        [C["water"], C["woodland"], C["grassland"], C["bare_land"]],
        [C["impervious"], C["impervious"], LABEL_NODATA, C["woodland"]]]
    assert patch.product[::4, ::4].tolist() == [
        [C["water"], C["woodland"], C["grassland"], C["bare_land"]],  # crops -> grassland
        [C["impervious"], C["impervious"], LABEL_NODATA, C["grassland"]]]  # open space: lawns
    valid = valid_pixels(patch)
    assert not valid[4:, 8:12].any() and valid[:4].all()
    # (29, H, W) without the leading axis reads the same
    again = read_patch(_write(tmp_path / "q.npz", lc, nlcd, shape4=False))
    assert np.array_equal(again.product, patch.product)


@pytest.mark.parametrize("case,match", [
    ("shape", "shape"), ("nlcd code", "not in the nlcd legend"),
    ("fraction", "non-integer"), ("naip", "8-bit"), ("pickle", "cannot read"),
    ("name", "arr_0")])
def test_bad_patches_are_refused_with_what_is_wrong(tmp_path, case, match):
    lc, nlcd = np.full((16, 16), 2, np.float32), np.full((16, 16), 41, np.float32)
    path = tmp_path / "bad.npz"
    if case == "shape":
        np.savez(path, np.zeros((1, 12, 16, 16), np.float32))
    elif case == "nlcd code":
        _write(path, lc, np.full((16, 16), 99, np.float32))
    elif case == "fraction":
        _write(path, lc + 0.5, nlcd)
    elif case == "naip":
        _write(path, lc, nlcd, naip=1000.0)
    elif case == "pickle":
        np.savez(path, np.array([{"a": 1}], dtype=object))
    else:
        np.savez(path, other=np.zeros((1, 29, 16, 16), np.float32))
    with pytest.raises(InputDataError, match=match):
        read_patch(path)


def test_real_patches_and_the_products_accuracy(shared_data):
    """NLCD scored at 1 m against the 1 m land cover: about 86 % OA over the eight patches."""
    patches = read_patches(shared_data / CHESAPEAKE_FOLDER)
    assert len(patches) == 8 and all(p.truth.shape == (256, 256) for p in patches)
    truth = np.concatenate([p.truth.ravel() for p in patches])
    product = np.concatenate([p.product.ravel() for p in patches])
    assert set(np.unique(truth)) == {C["woodland"], C["grassland"], C["impervious"]}
    assert set(np.unique(product)) <= {C["woodland"], C["grassland"], C["impervious"]}
    oa = float((truth == product).mean())
    assert 0.83 < oa < 0.87
