"""The commands a user runs write only under their ``--out``: never beside the inputs, never in
the working directory.

Every input lies in its own folder (``inputs/``) and the commands run from another
(``cwd/``). Before and after each command both folders are listed with every entry's size
and modification time (folders included, so a temporary file made and removed there counts
too), and the root holding them may only gain the command's ``--out``. The system temporary
folder (a fresh one) must be empty again afterwards. isamap's user cache
(``$XDG_CACHE_HOME/isamap``) is the one place outside ``--out`` a command may write. Modules
that make folders of their own when imported (matplotlib's font cache, torch's default
compile cache) are imported before the folders move.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from pyproj import Transformer

from cli.assess import main as assess_main
from cli.evaluate import evaluate_main
from cli.map import main as map_main
from cli.predict import predict_main
from cli.publish import publish_main
from cli.train import train_main
from experiments.builtup_tiles import find_tile, scene_folder
from gee_export.local.synthetic import generate_scene
from tests.support.assess import labelled_as_the_map, synthetic_scene
from tests.support.mapping import model_file
from tests.support.rasters import BANDS, smooth_stack, write_band, write_patch_dataset, write_stack
from training.modelfile import ModelMeta, save_model_file
from training.models import create_model

TINY_UNET = {"widths": [4, 8, 8, 16, 16]}
Listing = dict[str, tuple[bool, int, int]]


def listing(folder: Path) -> Listing:
    """Every entry under ``folder`` (itself included): (is a folder, size, mtime in ns)."""
    entries = [folder, *folder.rglob("*")]
    return {str(p.relative_to(folder)): (p.is_dir(), p.stat().st_size, p.stat().st_mtime_ns)
            for p in entries}


@dataclass(frozen=True)
class Place:
    """The folders of one test session: inputs, working directory, outputs, caches, temp."""

    root: Path

    @property
    def inputs(self) -> Path:
        return self.root / "inputs"

    @property
    def cwd(self) -> Path:
        return self.root / "cwd"

    @property
    def outs(self) -> Path:
        return self.root / "outs"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    @property
    def temp(self) -> Path:
        return self.root / "tmp"

    def run(self, command: Callable[[list[str]], int], argv: list[str], out: Path,
            capsys: pytest.CaptureFixture[str]) -> str:
        """Run ``command``; fail if it wrote anywhere but ``out`` (and isamap's cache)."""
        watched = (self.inputs, self.cwd)
        before = [listing(folder) for folder in watched]
        names = {p.name for p in self.root.iterdir()}
        outs = {p.name for p in self.outs.iterdir()}
        code = command(argv)
        printed = capsys.readouterr()
        assert code == 0, printed.err
        for folder, was in zip(watched, before, strict=True):
            now = listing(folder)
            changed = sorted(k for k in set(was) | set(now) if was.get(k) != now.get(k))
            assert changed == [], f"{folder.name}/ changed: {changed}"
        assert {p.name for p in self.root.iterdir()} == names
        assert {p.name for p in self.outs.iterdir()} <= outs | {out.relative_to(self.outs)
                                                                .parts[0]}
        assert list(self.temp.iterdir()) == []
        assert {p.name for p in self.cache.iterdir()} <= {"isamap"}
        assert out.exists()
        return printed.out


@pytest.fixture(scope="module")
def place(tmp_path_factory) -> Place:
    """Small inputs of every command, written once, in a folder of their own."""
    here = Place(tmp_path_factory.mktemp("writes"))
    for folder in (here.inputs, here.cwd, here.outs, here.cache, here.temp):
        folder.mkdir()
    meta = ModelMeta("unet", len(BANDS), 2, BANDS, (0.0,) * 6, (1.0,) * 6,
                     model_kwargs=TINY_UNET)
    save_model_file(here.inputs / "unet.pt", create_model("unet", len(BANDS), 2, **TINY_UNET),
                    meta)
    write_stack(here.inputs / "stack.tif", smooth_stack(96, 112))
    (here.inputs / "zones.geojson").write_text(json.dumps({"type": "Polygon", "coordinates": [[
        [117.0, 30.7], [117.1, 30.7], [117.1, 30.8], [117.0, 30.8], [117.0, 30.7]]]}))
    synthetic_scene(here.inputs / "assess", size=96)
    write_patch_dataset(here.inputs / "patches")
    return here


@pytest.fixture
def isolated(place, monkeypatch) -> Place:
    """Run from ``cwd/`` with isamap's cache and the temporary folder inside ``place``."""
    import matplotlib.font_manager  # noqa: F401  (its font cache: found before XDG moves)
    import torch._dynamo  # noqa: F401  (its import makes torch's empty default cache folder)

    monkeypatch.chdir(place.cwd)
    monkeypatch.setenv("XDG_CACHE_HOME", str(place.cache))
    monkeypatch.setenv("TMPDIR", str(place.temp))
    monkeypatch.setattr(tempfile, "tempdir", str(place.temp))
    return place


def test_predict_and_publish_write_only_under_out(isolated, capsys):
    p = isolated
    out = p.outs / "predict"
    p.run(predict_main, ["--model", str(p.inputs / "unet.pt"), "--input",
                         str(p.inputs / "stack.tif"), "--out", str(out / "isa"), "--tile", "64",
                         "--overlap", "16", "--precision", "fp32", "--channels-last", "off",
                         "--zones", str(p.inputs / "zones.geojson"), "--quiet"], out, capsys)
    assert (out / "isa_class.tif").is_file() and (out / "isa_area.csv").is_file()
    second = p.outs / "predict2"
    p.run(predict_main, ["--model", str(p.inputs / "unet.pt"), "--input",
                         str(p.inputs / "stack.tif"), "--out", str(second / "isa"), "--tile",
                         "64", "--overlap", "16", "--precision", "fp32", "--channels-last",
                         "off", "--compare-with", str(out / "isa_class.tif"), "--quiet"],
          second, capsys)
    assert (second / "isa_change.tif").is_file()
    published = p.outs / "publish"
    p.run(publish_main, ["--prefix", str(second / "isa"), "--asset-id", "isamap/test",
                         "--project", "my-project", "--out-dir", str(published), "--dry-run",
                         "-q"], published, capsys)


def test_assess_design_and_score_write_only_under_out(isolated, capsys):
    p = isolated
    design = p.outs / "design"
    p.run(assess_main, ["design", "--map", str(p.inputs / "assess" / "map_class.tif"), "--n",
                        "40", "--out", str(design), "-q"], design, capsys)
    labels = p.inputs / "labels"  # the interpreter's file, beside the other inputs
    labels.mkdir(exist_ok=True)
    labelled = labelled_as_the_map(design, labels / "labelled.csv")
    score = p.outs / "score"
    p.inputs.joinpath("design").mkdir(exist_ok=True)  # the design is an input of the score
    for path in design.iterdir():
        if path.is_file():
            (p.inputs / "design" / path.name).write_bytes(path.read_bytes())
    p.run(assess_main, ["score", "--map", str(p.inputs / "assess" / "map_class.tif"),
                        "--reference", str(labelled), "--design", str(p.inputs / "design"),
                        "--out", str(score), "-q"], score, capsys)
    assert (score / "report.json").is_file()


def test_train_and_evaluate_write_only_under_out(isolated, capsys):
    p = isolated
    run = p.outs / "train"
    p.run(train_main, ["--data", str(p.inputs / "patches"), "--out", str(run), "--model", "unet",
                       "--model-kwargs", json.dumps(TINY_UNET), "--epochs", "1",
                       "--batch-size", "2", "--workers", "0", "--precision", "fp32",
                       "--no-progress", "--quiet"], run, capsys)
    model = p.inputs / "trained.pt"  # the model file is an input of the evaluation
    model.write_bytes((run / "model.pt").read_bytes())
    evaluation = p.outs / "evaluate"
    p.run(evaluate_main, ["--model", str(model), "--data", str(p.inputs / "patches"), "--out",
                          str(evaluation), "--workers", "0", "--precision", "fp32", "--quiet"],
          evaluation, capsys)
    assert (evaluation / "metrics.json").is_file()


def test_a_local_map_writes_only_under_out(isolated, capsys):
    p = isolated
    scene = generate_scene(p.inputs / "scene", width=64, height=64, progress=False)
    to_ll = Transformer.from_crs(scene.grid.crs, "EPSG:4326", always_xy=True)
    box = ",".join(f"{v:.6f}" for v in to_ll.transform_bounds(*scene.grid.bounds))
    model = model_file(p.inputs / "local.pt", scene.grid, backend="local")
    out = p.outs / "map"
    p.run(map_main, ["--bbox", box, "--model", str(model), "--out", str(out), "--backend",
                     "local", "--scenes", str(p.inputs / "scene"), "--months", "2019-06",
                     "--tile", "64", "--overlap", "16", "--precision", "fp32",
                     "--channels-last", "off", "-q"], out, capsys)
    assert (out / "map.json").is_file()


def test_the_builtup_experiment_reads_a_test_tile_by_path_and_links_it_under_out(isolated):
    """``experiments.builtup --test /abs/path/tile``: read there, named under ``--out``."""
    p = isolated
    tiles = p.inputs / "tiles"
    for kind, dtype in (("s2l2a", np.uint16), ("scl", np.uint8), ("label", np.uint8)):
        write_band(tiles / f"ghana_a_{kind}.tif", np.ones((16, 16), dtype))
    before = listing(p.inputs)
    tile = find_tile(p.cwd / "elsewhere", str(tiles / "ghana_a"))
    folder = scene_folder(tile, p.outs / "builtup" / "scenes")
    assert folder == p.outs / "builtup" / "scenes" / "ghana_a"
    assert sorted(x.name for x in folder.iterdir()) == sorted(
        x.name for x in tiles.iterdir())
    assert listing(p.inputs) == before and list(p.cwd.iterdir()) == []
