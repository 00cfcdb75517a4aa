"""The judge's maps already made: scored again only where their arm would train them so now."""

from __future__ import annotations

import dataclasses
import shutil

import pytest
import rasterio

from core.errors import ConfigError, InputDataError
from experiments.builtup_arms import Arm
from experiments.builtup_commands import (
    Budget,
    predict,
    predict_tiling,
    train,
    train_argv,
    trained_otherwise,
)
from experiments.builtup_seeds import check_made_maps
from tests.experiments.products import in_process
from tests.support.rasters import BANDS, smooth_stack, write_patch_dataset, write_stack

BUDGET = Budget(epochs=1, batch_size=2, iterations=1)
#: two one-training arms of these tests, the first keeping its last weights, as an older
#: recipe under the second's name did
ARMS = {name: Arm(name, "unet-s2", {"member_views": False}, (*ema, "--members", "1"))
        for name, ema in (("last-one", ("--ema", "0")), ("one", ()))}


def otherwise_now(arm, dataset, run, budget):
    """:func:`trained_otherwise` of these tests' arms by name, as the judge asks it."""
    return trained_otherwise(ARMS.get(arm, arm), dataset, run, budget)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A real ``isamap-train`` of ``last-one`` in the judge's layout under ``out``,
    trained once for the module; each test works on a copy of it (:func:`_made`)."""
    root = tmp_path_factory.mktemp("judge")
    dataset = write_patch_dataset(root / "out" / "train" / "java", n=8, size=32)
    with in_process():
        train(ARMS["last-one"], dataset,
              root / "out" / "runs" / "java" / "last-one" / "seed0", BUDGET)
    return root / "out"


def _made(tmp_path, trained):
    """The module's training copied to ``tmp_path/out`` (the judge compares no path: a copy is
    what a moved --out is, and the first test checks that too), mapped; returns its dataset."""
    shutil.copytree(trained, tmp_path / "out")
    run = tmp_path / "out" / "runs" / "java" / "last-one" / "seed0"
    (run / "map_class.tif").write_bytes(b"")  # the map is not read: only what trained it
    return tmp_path / "out" / "train" / "java"


@pytest.mark.xdist_group("builtup_seeds_trained")
def test_a_map_an_arm_would_train_otherwise_now_is_refused_and_its_own_is_scored(tmp_path,
                                                                                 trained):
    """A map of an older recipe under a name whose recipe has changed since (``one``
    kept its last weights before it kept their moving average), or of another budget, is
    refused; the same arm and budget, or the --out moved, are scored again."""
    dataset = _made(tmp_path, trained)
    runs = tmp_path / "out" / "runs"
    check_made_maps(otherwise_now, runs, [("java", dataset, "last-one", 0)],
                    BUDGET)
    with pytest.raises(ConfigError, match=r"seed0 holds a map made otherwise than "
                       r"last-one makes it now \(max_iterations: 1 there, 2 now\): "
                       "give a new --out"):
        check_made_maps(otherwise_now, runs, [("java", dataset, "last-one", 0)],
                        dataclasses.replace(BUDGET, iterations=2))
    (runs / "java" / "last-one").rename(runs / "java" / "one")
    with pytest.raises(ConfigError, match=r"one makes it now \(ema: 0.0 there, 10 now\)"):
        check_made_maps(otherwise_now, runs, [("java", dataset, "one", 0)], BUDGET)
    moved = tmp_path / "moved"
    shutil.move(tmp_path / "out", moved)
    (moved / "runs" / "java" / "one").rename(moved / "runs" / "java" / "last-one")
    check_made_maps(otherwise_now, moved / "runs",
                    [("java", moved / "train" / "java", "last-one", 0)], BUDGET)
    assert otherwise_now("last-one", moved / "train" / "java",
                         moved / "runs" / "java" / "last-one" / "seed0", BUDGET) == []


@pytest.mark.slow
@pytest.mark.xdist_group("builtup_seeds_trained")
def test_a_map_made_on_another_tile_is_refused(tmp_path, trained, products_in_process):
    """Maps are tiled as ``isamap-predict`` records it in their COGs: one made on its default
    tile is refused where the judge now maps on ``--tile 32`` (another blend of the windows),
    and one made on ``--tile 32`` where it now maps on the default."""
    dataset = _made(tmp_path, trained)
    run = tmp_path / "out" / "runs" / "java" / "last-one" / "seed0"
    stack = write_stack(tmp_path / "stack.tif", smooth_stack(48, 48), bands=BANDS)
    task = [("java", dataset, "last-one", 0)]
    runs = tmp_path / "out" / "runs"
    for made, now in ((32, None), (None, 32)):  # the default tile last: the map read below
        predict(run / "model.pt", stack, run / "map", "2024-06", made)
        check_made_maps(otherwise_now, runs, task, dataclasses.replace(BUDGET, tile=made))
        there, want = predict_tiling(made)["tile"], predict_tiling(now)["tile"]
        with pytest.raises(ConfigError, match=rf"makes it now \(map_prob.tif tiling: --tile "
                           rf"{there} .* there, --tile {want} .* now\)"):
            check_made_maps(otherwise_now, runs, task, dataclasses.replace(BUDGET, tile=now))
    # a map of the placement before tiles were anchored to the grid (no lattice tag) is
    # another map on the same tile, and one whose tags say nothing of its tiling is refused
    with rasterio.open(run / "map_prob.tif", "r+", IGNORE_COG_LAYOUT_BREAK="YES") as ds:
        ds.update_tags(lattice="even")
    assert otherwise_now("last-one", dataset, run, BUDGET) == [
        "map_prob.tif tiling: --tile 512 --overlap 64 (cosine blend, spread evenly over the "
        "raster, an earlier isamap's placement) there, --tile 512 --overlap 64 (cosine blend, "
        "anchored to the CRS grid) now"]
    with rasterio.open(run / "map_prob.tif", "r+", IGNORE_COG_LAYOUT_BREAK="YES") as ds:
        ds.update_tags(tile="")
    assert otherwise_now("last-one", dataset, run, BUDGET) == [
        "map_prob.tif records no tiling"]
    (run / "map_prob.tif").write_bytes(b"not a tiff")
    with pytest.raises(InputDataError, match=r"map_prob\.tif cannot be read"):
        otherwise_now("last-one", dataset, run, BUDGET)


def test_runs_without_a_map_or_a_record_are_left_to_the_training_step(tmp_path):
    """A run cut short before its map is trained again by ``isamap-train``, which compares
    its own checkpoint; a map with no training recorded (fake steps) is not judged."""
    seen = []

    def otherwise(arm, dataset, run, budget):
        seen.append((run.name, budget.seed))
        return []

    runs = tmp_path / "runs"
    (runs / "java" / "a" / "seed1").mkdir(parents=True)
    (runs / "java" / "a" / "seed1" / "map_class.tif").write_bytes(b"")
    (runs / "java" / "a" / "seed0").mkdir(parents=True)
    tasks = [("java", tmp_path, "a", 0), ("java", tmp_path, "a", 1)]
    check_made_maps(otherwise, runs, tasks, BUDGET)
    assert seen == [("seed1", 1)]  # the seed's own budget, the mapped run alone
    # a map whose run records no training (no checkpoint): nothing to compare, not refused
    assert otherwise_now("one", tmp_path, runs / "java" / "a" / "seed1", BUDGET) == []
    argv = train_argv(ARMS["one"], tmp_path, runs, BUDGET)
    assert argv[argv.index("--seed") + 1] == "0" and argv[-2:] == ["--members", "1"]


def test_the_judge_reads_what_trained_its_maps_before_any_export(monkeypatch, tmp_path):
    """``run_loto`` asks its steps how each mapped run was trained before the first export;
    the command gives it the product's own comparison."""
    import experiments.builtup as builtup
    from experiments.builtup_loto import run_loto
    from tests.support.judge_steps import fake_steps, fake_training

    exported: list[str] = []

    def score_map(t, cls, prob, area, model_file):
        return {"f1_built": 0.6, "auc_built": 0.9, "pixels": 16, "built_pixels": 4,
                "mapped_built_share": 0.25}

    steps = fake_steps(lambda arm, dataset, run, budget: fake_training(run), score_map)
    export = steps.export

    def counted(*args, **kw):
        exported.append(str(args[2]))
        return export(*args, **kw)

    steps = dataclasses.replace(steps, export=counted)
    run_loto(steps, tmp_path, tmp_path / "o", bands=("B2",), holdout_rows=2, budget=Budget(),
             arms=("plain",), seeds=1)
    exported.clear()
    older = dataclasses.replace(steps, trained_otherwise=lambda arm, dataset, run, budget: [
        "ema: 0.0 there, 10 now"])
    with pytest.raises(ConfigError, match=r"java/plain/seed0 holds a map made "
                       r"otherwise than plain makes it now \(ema"):
        run_loto(older, tmp_path, tmp_path / "o", bands=("B2",), holdout_rows=2,
                 budget=Budget(), arms=("plain",), seeds=1)
    assert exported == []

    seen = []
    monkeypatch.setattr(builtup, "run_loto",
                        lambda steps, *a, **kw: seen.append(steps) or {"seconds": 0})
    monkeypatch.setattr(builtup, "figures_markdown", lambda metrics: "")
    builtup.main(["--loto", "--data", str(tmp_path), "--out", str(tmp_path / "p"),
                  "--terramesh", "none", "-q"])
    assert seen[0].trained_otherwise.func is trained_otherwise
