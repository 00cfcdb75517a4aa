"""The TerraMesh cells every fold of the leave-one-tile-out judge trains on too."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from contract.dataset import FORMAT, MANIFEST, read_manifest
from core.errors import ConfigError, InputDataError
from experiments.builtup_commands import Budget
from experiments.builtup_extra import (
    FOLDER,
    check_same_training,
    extra_names,
    find_cells,
    terramesh_folder,
    trained_with,
)
from experiments.builtup_loto import Steps, run_loto
from tests.support.judge_steps import fake_steps, fake_training

BANDS = ("B2", "B3", "B4", "B8")


def _steps(trained: list[tuple[str, str]], stop_after: int | None = None) -> Steps:
    """The judge's steps on fake tiles (the cells' exports are the real ones); ``stop_after``
    trainings, the next one fails (a run cut short)."""

    def train(arm, dataset, run, budget):
        if stop_after is not None and len(trained) >= stop_after:
            raise InputDataError("cut short")
        trained.append((arm.name if hasattr(arm, "name") else arm, str(dataset)))
        return fake_training(run)

    scores = {"f1_built": 0.6, "auc_built": 0.9, "pixels": 16, "built_pixels": 4,
              "mapped_built_share": 0.25}
    return fake_steps(train, lambda *a: dict(scores))


def test_every_fold_trains_on_the_terramesh_cells_too(shared_data, tmp_path,
                                                      products_in_process):
    """The four cells are exported once (the export checks their band names) and join every
    fold's training set; the report names them, and an --out of other added regions is
    refused before any export.

    The run is first cut short after one training (no report written yet), and the same
    --out without the cells is refused before any export instead of scoring that map as the
    tiles' alone (formerly ``test_a_run_cut_short_is_not_finished_with_other_added_regions``
    with the cells first, which exported them a second time for that); resumed with the
    cells, it trains the other two folds."""
    cells = shared_data / FOLDER
    names = extra_names(find_cells(cells))
    assert names == ["tm_282D_485L_3_3", "tm_38D_378R_2_3", "tm_433D_629L_3_1",
                     "tm_609U_541L_3_0"]
    trained: list[tuple[str, str]] = []
    out = tmp_path / "o"
    budget = Budget(patch=32, stride=32)
    with pytest.raises(ConfigError, match="--holdout-rows must be between"):  # checked first
        run_loto(_steps(trained), tmp_path, out, bands=BANDS, holdout_rows=99,
                 budget=budget, arms=("plain",), seeds=1, terramesh=cells)
    assert not (out / "exports").exists() and not (out / "runs").exists()
    with pytest.raises(InputDataError, match="cut short"):
        run_loto(_steps(trained, stop_after=1), tmp_path, out, bands=BANDS, holdout_rows=2,
                 budget=budget, arms=("plain",), seeds=1, terramesh=cells)
    assert len(trained) == 1 and not (out / "loto.json").exists()
    assert (out / "exports" / "terramesh").exists()
    with pytest.raises(ConfigError, match=r"added regions tm_282D_485L_3_3, .* not none"):
        run_loto(_steps(trained), tmp_path, out, bands=BANDS, holdout_rows=2,
                 budget=budget, arms=("plain",), seeds=1)
    assert (out / "exports" / "terramesh").exists() and len(trained) == 1
    metrics = run_loto(_steps(trained), tmp_path, out, bands=BANDS, holdout_rows=2,
                       budget=budget, arms=("plain",), seeds=1, terramesh=cells)
    assert metrics["extra_training"] == names
    assert len(trained) == 3  # the fold trained before the cut is not trained again
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
                 budget=budget, arms=("plain",), seeds=1)
    assert len(trained) == 3


@pytest.mark.parametrize("first", ["tiles alone"])  # the cells first: the test above
def test_a_run_cut_short_is_not_finished_with_other_added_regions(shared_data, tmp_path, first,
                                                                  products_in_process):
    """A run stops after one training (no report written yet); the same --out with the other
    training sets is refused before any export, instead of scoring that map as theirs.

    With the cells first, :func:`test_every_fold_trains_on_the_terramesh_cells_too` shows it
    on its own run (the cells exported once for both)."""
    cells = shared_data / FOLDER
    given, other = (None, cells) if first == "tiles alone" else (cells, None)
    trained: list[tuple[str, str]] = []
    out = tmp_path / "o"
    budget = Budget(patch=32, stride=32)
    with pytest.raises(InputDataError, match="cut short"):
        run_loto(_steps(trained, stop_after=1), tmp_path, out, bands=BANDS, holdout_rows=2,
                 budget=budget, arms=("plain",), seeds=1, terramesh=given)
    assert len(trained) == 1 and not (out / "loto.json").exists()
    shown = "none, not tm_" if given is None else "tm_282D_485L_3_3, .* not none"
    exported = (out / "exports" / "terramesh").exists()
    with pytest.raises(ConfigError, match=f"added regions {shown}"):
        run_loto(_steps(trained), tmp_path, out, bands=BANDS, holdout_rows=2,
                 budget=budget, arms=("plain",), seeds=1, terramesh=other)
    assert (out / "exports" / "terramesh").exists() == exported and len(trained) == 1


def test_what_an_out_was_trained_with_is_read_from_its_merged_datasets(tmp_path):
    assert trained_with(tmp_path / "new") is None  # no map: any training sets
    check_same_training(tmp_path / "new", ["tm_a"])
    out = tmp_path / "o"
    (out / "runs").mkdir(parents=True)
    assert trained_with(out) == []  # maps and nothing to say more: the tiles alone
    (out / "loto.json").write_text(json.dumps({"summary": {}}))  # a report from before
    assert trained_with(out) == []
    with pytest.raises(ConfigError, match="added regions none, not tm_a"):
        check_same_training(out, ["tm_a"])
    for fold, parts in (("java", ["ghana_a", "tm_b", "tm_a"]), ("ghana_a", ["java", "tm_a"])):
        (out / "train" / fold).mkdir(parents=True)
        (out / "train" / fold / "manifest.json").write_text(
            json.dumps({"format": FORMAT, "merged_from": parts}))
    assert trained_with(out) == ["tm_a", "tm_b"]  # the datasets say more than the report
    check_same_training(out, ["tm_a", "tm_b"])
    with pytest.raises(ConfigError, match="added regions tm_a, tm_b, not none"):
        check_same_training(out, [])
    assert extra_names(find_cells(None)) == []


def test_a_missing_folder_says_how_to_train_without_the_cells(tmp_path):
    with pytest.raises(InputDataError, match="--terramesh none to train each fold on the "
                                             "labelled tiles alone"):
        terramesh_folder(str(tmp_path / "missing"), None)
    assert terramesh_folder("none", None) is None
    (tmp_path / FOLDER).mkdir()
    assert terramesh_folder(None, tmp_path) == tmp_path / FOLDER


def test_the_command_adds_the_sample_cells_unless_told_none(monkeypatch, tmp_path, capsys):
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
    assert "--terramesh none" in capsys.readouterr().err


def test_an_out_of_other_labelled_tiles_is_refused_before_any_export(tmp_path):
    """Maps trained with ``--tiles java,ghana_a,ghana_b`` are not scored again as if trained
    without ``ghana_b``: a fold's merged dataset names the tiles its maps learnt from."""
    trained: list[tuple[str, str]] = []
    out = tmp_path / "o"
    run_loto(_steps(trained), tmp_path, out, bands=BANDS, holdout_rows=2, budget=Budget(),
             arms=("plain",), seeds=1)
    stamp = (out / "exports" / "java" / MANIFEST).stat().st_mtime_ns
    with pytest.raises(ConfigError, match="holds maps of the fold holding out java trained on "
                       r"ghana_a, ghana_b, java_north, not ghana_a, java_north \(--tiles, "
                       r"--train\): give a new --out"):
        run_loto(_steps(trained), tmp_path, out, bands=BANDS, holdout_rows=2, budget=Budget(),
                 tiles=("java", "ghana_a"), arms=("plain",), seeds=1)
    assert len(trained) == 3  # nothing trained, nothing exported again
    assert (out / "exports" / "java" / MANIFEST).stat().st_mtime_ns == stamp
    run_loto(_steps(trained), tmp_path, out, bands=BANDS, holdout_rows=2, budget=Budget(),
             arms=("plain",), seeds=1)  # the same tiles: scored again
    assert len(trained) == 3
