"""The TerraMesh cells every fold of the leave-one-tile-out judge trains on too."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from contract.dataset import read_manifest
from core.errors import ConfigError
from experiments.builtup_commands import Budget
from experiments.builtup_extra import FOLDER, check_same_training, extra_names
from experiments.builtup_loto import Steps, run_loto
from tests.support.rasters import write_patch_dataset

BANDS = ("B2", "B3", "B4", "B8")


def _steps(trained: list[tuple[str, str]]) -> Steps:
    """The judge's steps on fake tiles (the cells' exports are the real ones)."""
    tile = SimpleNamespace(footprint=SimpleNamespace(height=4, width=4), month="2019-07")

    def export(t, folder, out, bands, budget, rows=(0, None)):
        write_patch_dataset(out, n=6, bands=bands)
        return out / "stack.tif"

    def train(arm, dataset, run, budget):
        trained.append((arm.name if hasattr(arm, "name") else arm, str(dataset)))
        for folder in (run, run / "member0"):
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "model.pt").write_bytes(b"")
        return run / "model.pt"

    def predict(model_file, stack, out, month, tile_size):
        for kind in ("class", "prob"):
            Path(f"{out}_{kind}.tif").write_bytes(b"")
        return Path(f"{out}_class.tif"), Path(f"{out}_prob.tif")

    scores = {"f1_built": 0.6, "auc_built": 0.9, "pixels": 16, "built_pixels": 4,
              "mapped_built_share": 0.25}
    ndbi = {"ndbi_f1_at_0": 0.3, "ndbi_best_f1": 0.4, "ndbi_best_threshold": 0.0,
            "ndbi_auc": 0.8, "pixels": 16, "built_pixels": 4}
    return Steps(find_tile=lambda data, p, date: tile, scene_folder=lambda t, s: s,
                 export=export, training_rows=lambda *a: 2, check_no_overlap=lambda *a: None,
                 score_ndbi=lambda t, area: dict(ndbi), train=train, predict=predict,
                 score_map=lambda *a: dict(scores))


def test_every_fold_trains_on_the_terramesh_cells_too(shared_data, tmp_path):
    """The four cells are exported once (the export checks their band names) and join every
    fold's training set; the report names them, and an --out of other added regions is
    refused before any export."""
    cells = shared_data / FOLDER
    names = extra_names(cells)
    assert names == ["tm_282D_485L_3_3", "tm_38D_378R_2_3", "tm_433D_629L_3_1",
                     "tm_609U_541L_3_0"]
    trained: list[tuple[str, str]] = []
    out = tmp_path / "o"
    metrics = run_loto(_steps(trained), tmp_path, out, bands=BANDS, holdout_rows=2,
                       budget=Budget(patch=32, stride=32), arms=("unet-s2-one",), seeds=1,
                       terramesh=cells)
    assert metrics["extra_training"] == names
    assert len(trained) == 3
    for _, dataset in trained:
        merged = read_manifest(dataset)["merged_from"]
        assert merged[-len(names):] == names  # after the fold's own tiles
        assert not set(merged[:-len(names)]) & set(names)
    for name in names:  # real patches of the cell's own export, every split among them
        cell = out / "exports" / "terramesh" / name.removeprefix("tm_")
        assert read_manifest(cell)["bands"] == list(BANDS)
        assert (cell / "index.jsonl").read_text().count("\n") > 0
    with pytest.raises(ConfigError, match=r"trained with added regions tm_282D_485L_3_3, .*"
                                          r"not none .*give a new --out"):
        run_loto(_steps(trained), tmp_path, out, bands=BANDS, holdout_rows=2,
                 budget=Budget(patch=32, stride=32), arms=("unet-s2-one",), seeds=1)
    assert len(trained) == 3


def test_an_out_of_other_added_regions_is_refused_and_a_new_one_is_not(tmp_path):
    check_same_training(tmp_path, ["tm_a"])  # nothing there yet
    (tmp_path / "loto.json").write_text(json.dumps({"summary": {}}))  # before regions
    check_same_training(tmp_path, [])
    with pytest.raises(ConfigError, match="added regions none, not tm_a"):
        check_same_training(tmp_path, ["tm_a"])
    assert extra_names(None) == []


def test_the_command_adds_the_sample_cells_unless_told_none(monkeypatch, tmp_path):
    import experiments.builtup as builtup

    seen: list[Path | None] = []

    def loop(*args, terramesh, **kw):
        seen.append(terramesh)
        raise ConfigError("stopped here")

    monkeypatch.setattr(builtup, "run_loto", loop)
    (tmp_path / FOLDER).mkdir()
    common = ["--loto", "--data", str(tmp_path), "--data-root", str(tmp_path), "-q"]
    assert builtup.main([*common, "--out", str(tmp_path / "o")]) == 2
    assert builtup.main([*common, "--out", str(tmp_path / "o"), "--terramesh", "none"]) == 2
    assert seen == [tmp_path / FOLDER, None]
    assert builtup.main([*common, "--out", str(tmp_path / "o"), "--terramesh",
                         str(tmp_path / "missing")]) == 2
    assert len(seen) == 2  # refused before the comparison starts
