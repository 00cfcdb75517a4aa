"""The demo end to end on a small SYNTHETIC scene, and its composite's known answers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from PIL import Image

from cli.demo import main
from contract.bands import DEFAULT_IMAGE_BANDS
from contract.dataset import read_index, read_manifest
from gee_export.local.synthetic import BUILDING, CLASS_S1, CLASS_S2, S2_BANDS, VEGETATION, WATER
from tests.support.shared_files import private_strings, shared_files

#: the shared run's scene side: the smallest ``--size`` the demo takes (``demo_chain``'s)
SIZE = 384
#: the session's demo_chain is built once: its readers run on one worker
pytestmark = pytest.mark.xdist_group("demo_chain")


def test_demo_writes_and_reports_every_output(demo_chain, capsys):
    out = demo_chain.out
    manifest = read_manifest(out / "patches")
    assert manifest["backend"] == "synthetic" and manifest["bands"] == list(DEFAULT_IMAGE_BANDS)
    records = read_index(out / "patches")
    assert len(records) == manifest["counts"]["patches"] > 0
    assert {r["split"] for r in records} == {"train", "val", "test"}
    assert all((out / "patches" / r["label_fine"]).exists() for r in records)
    for png in ("composite_rgb.png", "label.png"):
        with Image.open(out / "quicklooks" / png) as img:
            # the scene one to one, framed by a title, a caption and (label) a legend
            assert SIZE < img.size[0] < SIZE + 300 and SIZE < img.size[1] < SIZE + 150
    assert (out / "scene" / "SYNTHETIC_README.txt").exists()
    # a second run reports the same places and writes nothing
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    assert main(["--out", str(out), "--size", str(SIZE), "--until", "patches"]) == 0
    printed = capsys.readouterr().out
    for key in ("synthetic scene", "stack (image)", "index", "manifest", "quick-look label"):
        assert key in printed
    assert str(out / "patches" / "index.jsonl") in printed and "0 written" in printed
    after = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    assert after == before


def test_demo_composite_recovers_the_class_signatures(demo_chain):
    out = demo_chain.out
    with rasterio.open(out / "stack" / "2019-06" / "stack_2019-06_image.tif") as src:
        assert src.descriptions == DEFAULT_IMAGE_BANDS and src.tags()["SYNTHETIC"] == "yes"
        image = src.read()
    fractions = demo_chain.scene.class_fractions()
    assert np.isfinite(image).mean() > 0.999  # clouds masked, but some clear date everywhere
    for code in (BUILDING, VEGETATION, WATER):
        pure = fractions[code] == 1.0
        for i, band in enumerate(("B02", "B03", "B04", "B08")):
            want = CLASS_S2[code][S2_BANDS.index(band)]
            assert np.nanmean(image[i][pure]) == pytest.approx(want, rel=0.06, abs=0.004)
        for i, pol in ((4, 0), (5, 1)):  # VV, VH in dB from the linear mean
            want_db = 10 * np.log10(CLASS_S1[code][pol])
            assert np.median(image[i][pure]) == pytest.approx(want_db, abs=0.6)


def test_demo_keeps_its_patches_when_the_stack_is_only_touched(demo_chain, tmp_path, capsys):
    """Same content, new modification time: the stack is the same, nothing is cut again."""
    import shutil

    out = shutil.copytree(demo_chain.out, tmp_path / "out")
    (image,) = (out / "stack" / "2019-06").glob("*image.tif")
    image.write_bytes(image.read_bytes())
    capsys.readouterr()
    assert main(["--out", str(out), "--size", str(SIZE), "--until", "patches"]) == 0
    printed = capsys.readouterr().out
    written = int(printed.split("patch counts")[1].split()[0])
    assert written == 0 and len(read_index(out / "patches")) > 0


def _beam_equals_single_process(out, tmp_path) -> None:
    """The demo's CroFuseNet maps its own stack (served by the fake pixel server) as one process
    and as a Beam pipeline on the DirectRunner: the same classes, pixel for pixel."""
    from core.pipeline_options import RunnerConfig
    from inference.mapping import request as parts
    from inference.mapping.region import map_region
    from inference.predict.runtime import RuntimeOptions
    from testing.fake_server import StackSessions, StackTransport
    from tests.support.mapping import inner_region, session_for, stack_paths
    from training.modelfile import load_model

    stack = stack_paths(next((out / "stack").rglob("stack_2019-06_image.tif")))

    def mapped(name, runner=None, **kw):
        request = parts.MapRequest(
            parts.MapExtent(inner_region(stack.grid, 0), ("2019-06",), grid=stack.grid),
            parts.MapOutputs(str(tmp_path / name)),
            parts.MapInputs(allow_recipe_mismatch=True),
            parts.map_window(tile=256, overlap=32, batch_size=4),
            RuntimeOptions(precision="fp32", channels_last=False), progress=False, runner=runner)
        result = map_region(request, load_model(out / "model" / "train" / "model.pt"),
                            session=session_for(StackTransport(stack, info=lambda t: 5)),
                            echo=lambda _: None, **kw)
        with rasterio.open(result.dates[0].outputs.prediction.class_path) as src:
            return src.read(1)

    single = mapped("single")
    piped = mapped("piped", runner=RunnerConfig("direct", max_workers=2, max_concurrent=4),
                   worker_sessions=StackSessions(stack))
    assert (single == 1).any() and (single == 0).any()
    assert np.array_equal(single, piped), "the Beam map of the demo's CroFuseNet differs"


@pytest.mark.slow
def test_demo_runs_the_whole_chain_to_a_two_date_series(demo_chain, tmp_path, capsys,
                                                         ee_offline):
    """scene x2 -> stack -> patches (the shared ``--until patches`` run's, copied: the chain
    goes on from where it stopped) -> train -> evaluate -> two dates mapped -> change, area over
    time, STAC, ImageCollection dry run; then another --size redoes every step up to the map,
    the scene's included."""
    import shutil

    from training.modelfile import load_model_file

    out = tmp_path / "out"
    shutil.copytree(demo_chain.out, out)
    assert main(["--out", str(out), "--size", str(SIZE), "--epochs", "1", "--threads",
                 "1"]) == 0
    printed = capsys.readouterr().out
    _, meta = load_model_file(out / "model" / "train" / "model.pt")
    for listed in (out / "model" / "train" / "model.pt", out / "maps" / "collection.json"):
        assert f"  {listed}\n" in printed  # every output listed by its absolute path
    assert list(meta.bands) == list(DEFAULT_IMAGE_BANDS)
    assert meta.extra["dataset"]["grid"]["width"] == SIZE  # the recipe travels with the model
    metrics = json.loads((out / "model" / "evaluate" / "metrics.json").read_text())
    pixel = metrics["pixel"]
    assert metrics["split"] == "test" and np.sum(pixel["matrix"]) > 0
    assert 0.0 <= pixel["oa"] <= 1.0 and -1.0 <= pixel["kappa"] <= 1.0
    maps = out / "maps"
    for month in ("2019-06", "2021-06"):
        with rasterio.open(maps / month / f"isa_{month}_class.tif") as src, rasterio.open(
                next((out / "stack").rglob("*_image.tif"))) as stack:
            assert src.transform == stack.transform and src.crs == stack.crs
            assert set(np.unique(src.read(1))) <= {0, 1, 255}
            assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert (maps / month / f"isa_{month}_class.png").exists()
    with rasterio.open(maps / "change" / "isa_change_2019-06_2021-06.tif") as src:
        assert set(np.unique(src.read(1))) <= {0, 1, 2, 3, 255}
    assert (maps / "series_area.png").read_bytes()[:4] == b"\x89PNG"
    manifest = json.loads(next((maps / "publish").glob("*.collection.json")).read_text())
    assert sorted(manifest["images"]) == ["2019-06", "2021-06"]
    assert manifest["collection"].endswith("isa_synthetic")
    assert "Code Editor app" in printed and "ISA change between consecutive dates" in printed
    # every file a user may share (STAC, manifests, apps, reports, COG tags) names no local
    # path but relative to the output: not the folder it was made in, not the home folder
    home = str(Path.home())
    made_in = [str(tmp_path), str(demo_chain.out.parent)]  # and where the copied steps ran
    assert private_strings(out, [*made_in, *([home] if len(home) > 1 else [])]) == []
    scanned = {p.relative_to(out).as_posix() for p in shared_files(out)}
    assert {"maps/map.json", "maps/collection.json", "maps/2021-06/isa_2021-06_class.stac.json",
            "maps/change/isa_change_2019-06_2021-06.stac.json",
            "maps/publish/isa_synthetic.collection.json", "maps/publish/isa_synthetic.app.js",
            "assess/design/labelling_app.js", "assess/design/sample.kml",
            "assess/score/report.md", "assess/score/report.json",
            "model/evaluate/metrics.json", "patches/manifest.json",
            "model/train/model.pt"} <= scanned  # a model file's description, not its checkpoint
    assert "model/train/checkpoint.pt" not in scanned
    _beam_equals_single_process(out, tmp_path)
    _polygons_match_the_map(maps / "2021-06", tmp_path / "vectors")

    # The same output folder with another --size: nothing stale survives.
    stamps = {p: p.stat().st_mtime_ns for p in (out / "model" / "train" / "model.pt",
                                                 maps / "2021-06" / "isa_2021-06_class.tif")}
    # (up to the map: the assess step after it reads the map, and is checked on its own below)
    assert main(["--out", str(out), "--size", "386", "--epochs", "1", "--threads", "1",
                 "--until", "map"]) == 0
    _, meta = load_model_file(out / "model" / "train" / "model.pt")
    assert meta.extra["dataset"]["grid"]["width"] == 386  # retrained on the new patches
    assert all(p.stat().st_mtime_ns != t for p, t in stamps.items())
    for month in ("2019-06", "2021-06"):
        with rasterio.open(maps / month / f"isa_{month}_class.tif") as src:
            assert src.width == 386 and src.tags()["model"] == meta.name


@pytest.mark.slow
def test_quiet_demo_draws_no_progress_bar(tmp_path, capsys):
    """-q hides progress bars (its help says so); the demo's scene bar showed anyway."""
    assert main(["--out", str(tmp_path / "out"), "--size", "384", "--until", "scene",
                 "-q"]) == 0
    assert capsys.readouterr().err == ""


def test_demo_assess_step_scores_the_map_the_label_and_the_change(demo_chain, tmp_path):
    """The ``assess`` step on the shared run's scene pair (read) and maps made from their
    labels with errors."""
    import time

    from inference.cog.maps import write_cog
    from inference.demo.steps import DemoContext, step_assess
    from inference.predict.stats import change_map

    scene, later = demo_chain.scene, demo_chain.later
    rng = np.random.default_rng(0)
    maps = []
    for s in (scene, later):
        with rasterio.open(s.label) as ds:
            label, profile = ds.read(1), ds.profile
        mapped = np.where(label == 255, 0, label)
        mapped = np.where(rng.random(mapped.shape) < 0.05, 1 - mapped, mapped).astype(np.uint8)
        raw = tmp_path / f"raw_{s.month}.tif"
        with rasterio.open(raw, "w", **profile) as dst:  # on the scene's grid
            dst.write(mapped, 1)
        maps.append(tmp_path / f"map_{s.month}.tif")
        write_cog(raw, maps[-1], "class", {"classes": "pervious,impervious"})
    change = change_map(str(maps[0]), str(maps[1]), str(tmp_path / "change.tif"))
    ctx = DemoContext(tmp_path / "out", seed=0, size=384, progress=False)
    ctx.scene, ctx.later, ctx.map_class = scene, later, maps[1]
    ctx.change_map = Path(change)
    started = time.perf_counter()
    step_assess(ctx)
    seconds = time.perf_counter() - started
    out = tmp_path / "out" / "assess"
    report = json.loads((out / "score" / "report.json").read_text())
    products = report["products"]
    assert set(products) == {"map", "10 m label"} and report["n"] >= 100
    assert report["interpretation"] == "blind"
    # the label misses the map's noise: it scores better on the same points
    assert products["10 m label"]["overall_accuracy"] > products["map"]["overall_accuracy"]
    assert products["10 m label"]["n"] < report["n"]  # its unlabelled corner is left out
    changed = json.loads((out / "change_score" / "report.json").read_text())["change"]
    true_gain = float((later_isa(later) & ~later_isa(scene)).sum()) * 1e-4  # 10 m pixels
    assert changed["gain_km2"] > 0 and abs(changed["gain_km2"] - true_gain) < 0.5
    figures = json.loads((out / "figures.json").read_text())
    assert figures["change"]["gain_km2"] == changed["gain_km2"]  # full precision, not rounded
    assert "impervious change from the points" in ctx.outputs
    assert "| net (gain - loss) |" in ctx.outputs["impervious change from the points"]
    assert "accuracy and area" in ctx.outputs and seconds < 60
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "out").rglob("*") if p.is_file()}
    step_assess(ctx)  # again: nothing rewritten
    assert before == {p: p.stat().st_mtime_ns for p in (tmp_path / "out").rglob("*")
                      if p.is_file()}


def later_isa(scene) -> np.ndarray:
    """The scene's impervious pixels at 10 m: more than half of the fine pixels built."""
    from gee_export.local.synthetic import ISA_CLASSES

    fine = np.isin(scene.class_map_fine(), ISA_CLASSES)
    k = scene.fine_scale
    return fine.reshape(fine.shape[0] // k, k, fine.shape[1] // k, k).mean(axis=(1, 3)) > 0.5


def _polygons_match_the_map(folder: Path, out: Path) -> None:
    """The demo map's built-up polygons (the vectors extra, which make setup installs) cover
    the class map's built area within 1 % with their default simplification."""
    pyogrio = pytest.importorskip("pyogrio", reason="the vectors extra is not installed")
    shapely = pytest.importorskip("shapely", reason="the vectors extra is not installed")
    from inference.predict import stats
    from inference.predict.vectors import VectorOptions, write_vectors

    class_path, prob_path = (str(folder / f"isa_2021-06_{k}.tif") for k in ("class", "prob"))
    raster_km2 = stats.isa_area(class_path, [stats.Zone("all", None)])[0].isa_km2
    result = write_vectors(class_path, prob_path, 1, out, VectorOptions(min_area_m2=0.0))
    wkb = pyogrio.raw.read(str(out.with_suffix(".gpkg")), layer="builtup")[2]
    polygons = shapely.from_wkb(wkb)
    assert raster_km2 > 0 and len(polygons) == result.polygons > 0
    assert sum(p.area for p in polygons) / 1e6 == pytest.approx(raster_km2, rel=0.01)
