"""The land-cover experiment's data: the coarse product and the held-out quadrant."""

from __future__ import annotations

import numpy as np

from experiments.landcover import CropDataset, Tile, coarse_product, load_tiles
from gee_export.contract.bands import LABEL_NODATA


def test_coarse_product_is_the_mode_per_cell_shown_at_full_resolution():
    classes = np.full((25, 23), 2, np.uint8)
    classes[:10, :10] = 4
    classes[:10, :4] = 1  # 40 % class 1, 60 % class 4: mode 4
    classes[10:20, :10] = LABEL_NODATA
    classes[10:20, 0] = 3  # a cell with one labelled pixel takes that class
    classes[20:, 20:] = LABEL_NODATA  # a partial edge cell with nothing labelled
    coarse = coarse_product(classes, 10)
    assert coarse.shape == classes.shape
    assert (coarse[:10, :10] == 4).all()
    assert (coarse[10:20, :10] == 3).all()
    assert (coarse[20:, 20:] == LABEL_NODATA).all()
    assert (coarse[:, 10:20] == 2).all()


def test_tie_goes_to_the_lower_class():
    classes = np.array([[5, 5], [1, 1]], np.uint8)
    assert (coarse_product(classes, 2) == 1).all()


def test_training_crops_never_touch_the_held_out_quadrant():
    rows, cols = np.mgrid[0:100, 0:100].astype(np.float32)
    image = np.stack([rows, cols, rows, cols])  # each pixel says where it is
    truth = np.zeros((100, 100), np.uint8)
    data = CropDataset([Tile("t", image, truth, truth, 50)], np.zeros(4), np.ones(4), 32, 300,
                       seed=0)
    origins = set()
    for i in range(300):
        crop = data[(0, i)]["image"].numpy()  # flipped / turned, but its values say where
        r, c = int(crop[0].min()), int(crop[1].min())
        assert crop[0].max() == r + 31 and crop[1].max() == c + 31
        assert r + 32 <= 50 or c + 32 <= 50
        origins.add((r, c))
    assert len(origins) > 200  # and they are spread over the three training quadrants


def test_real_tiles_split_on_the_cell_lattice(shared_data):
    tiles = load_tiles(shared_data / "geobench_chesapeake_naip", 10)
    assert len(tiles) == 5 and all(t.test_from == 130 for t in tiles)
    for t in tiles:
        # no 10 m cell straddles the quadrant edge: the coarse product on either side is
        # made from that side's pixels only
        assert t.test_from % 10 == 0
        assert set(np.unique(t.truth)) <= {1, 2, 3, 4, 5, LABEL_NODATA}


def test_the_experiment_runs_end_to_end_on_a_tiny_budget(shared_data, tmp_path, monkeypatch):
    """Train, prune (compact network), evaluate, report; a new pruning rule re-runs a seed."""
    import torch

    import experiments.landcover as lccompare
    from training.pruning import PRUNING_RULE

    cfg = lccompare.LandCoverCompareConfig(
        data_dir=str(shared_data / "geobench_chesapeake_naip"), seeds=(0,), iterations=2,
        prune_iterations=2, prune_epochs=2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # pytest -n 2 on two cores: no OpenMP threads spinning
    try:
        report = lccompare.run_experiment(cfg, tmp_path)
    finally:
        torch.set_num_threads(threads)
    assert report["pruning_rule"] == PRUNING_RULE
    assert report["parameters"]["pruned"] < 0.7 * report["parameters"]["hrnet"]
    assert report["flops_256"]["pruned"] < 0.65 * report["flops_256"]["hrnet"]
    assert set(report["summary"]) == set(lccompare.METHODS)
    assert (tmp_path / "comparison.md").read_text().startswith("| method | OA |")
    key = cfg.key(0)
    monkeypatch.setattr(lccompare, "PRUNING_RULE", PRUNING_RULE + 1)
    assert cfg.key(0) != key  # results of another rule are not reused
