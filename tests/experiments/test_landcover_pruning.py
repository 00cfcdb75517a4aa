"""The pruning-accuracy experiment: its held-out quadrant and an end-to-end run."""

from __future__ import annotations

import numpy as np

from contract.bands import LABEL_NODATA
from experiments.landcover_pruning import CropDataset, Tile, load_tiles


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

    import experiments.landcover_pruning as lccompare
    from training.pruning import PRUNING_RULE

    cfg = lccompare.LandCoverCompareConfig(
        data_dir=str(shared_data / "geobench_chesapeake_naip"), seeds=(0,), iterations=1,
        batch_size=2, prune_iterations=2, prune_epochs=2)  # fpgm after each of two epochs
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
