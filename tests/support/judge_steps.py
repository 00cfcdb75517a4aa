"""The built-up judge's steps on fake tiles: exports of real patch files, empty maps.

``experiments.builtup_loto.run_loto`` runs its whole comparison on them in a second; a test
gives the training and scoring steps whose calls it checks.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

from experiments.builtup_loto import Steps
from tests.support.rasters import write_patch_dataset

#: NDBI's scores on every fake tile
NDBI = {"ndbi_f1_at_0": 0.3, "ndbi_best_f1": 0.4, "ndbi_best_threshold": 0.0,
        "ndbi_auc": 0.8, "pixels": 16, "built_pixels": 4}


def fake_training(run: Path) -> Path:
    """An empty model file in ``run`` and its first member's folder (a members arm's layout)."""
    for folder in (run, run / "member0"):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "model.pt").write_bytes(b"")
    return run / "model.pt"


def fake_steps(train: Callable, score_map: Callable) -> Steps:
    """Steps whose tiles are 4 x 4 px and whose exports hold six patches of the given bands."""
    tile = SimpleNamespace(footprint=SimpleNamespace(height=4, width=4), month="2019-07")

    def export(t, folder, out, bands, budget, rows=(0, None)):
        write_patch_dataset(out, n=6, bands=bands)
        return out / "stack.tif"

    def predict(model_file, stack, out, month, tile_size):
        for kind in ("class", "prob"):
            Path(f"{out}_{kind}.tif").write_bytes(b"")
        return Path(f"{out}_class.tif"), Path(f"{out}_prob.tif")

    return Steps(find_tile=lambda data, p, date: tile, scene_folder=lambda t, s: s,
                 export=export, training_rows=lambda *a: 2, check_no_overlap=lambda *a: None,
                 score_ndbi=lambda t, area: dict(NDBI), train=train, predict=predict,
                 score_map=score_map)
