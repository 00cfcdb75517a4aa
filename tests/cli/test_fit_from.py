"""``isamap-fit --from MODEL.pt``: a model file's network fine-tuned on the user's points.

The base is an ordinary ``unet-s2`` model file (the recipe's network, small); the points lie
on a stack of its bands. The command writes a model file that ``isamap-predict`` maps with
as with any, whose map moves toward the points where their labels disagree with the base
model's; it records where it comes from (the base file's SHA-256, the points, the steps) and
nothing private. Options that make no sense with ``--from``, a ``--from`` that is not a model
file and a stack without the model's bands are refused in one line before any work.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.warp import transform as warp_transform

from cli.fit import build_parser, main
from cli.predict import predict_main
from core.digest import file_sha256
from inference.cog.maps import PROB_SCALE
from tests.support.rasters import scene_stack, write_stack
from tests.support.refusals import assert_refused
from tests.support.shared_files import private_strings
from training.model_meta import ModelMeta
from training.modelfile import build_model, load_model_file, read_model_file, save_model_file
from training.models import recipe_for

S2 = ("B2", "B3", "B4", "B8")
SIZE = 64
NAMES = ("pervious", "impervious")

pytestmark = pytest.mark.xdist_group("cli.test_fit_from")


def unet_s2_file(path: Path, bands=S2, seed: int = 0) -> Path:
    """A small network of the ``unet-s2`` recipe (its flips, scene statistics) as a model file."""
    kwargs = {**dict(recipe_for("unet-s2").model_kwargs), "widths": [4, 8], "bands": list(bands)}
    kwargs.pop("member_views")  # one network, not a mean of members
    meta = ModelMeta("unet-s2", len(bands), 2, tuple(bands), (0.1,) * len(bands),
                     (0.05,) * len(bands), model_kwargs=kwargs, norm="scene", pixel_size=10.0)
    torch.manual_seed(seed)
    return save_model_file(path, build_model(meta), meta)


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> tuple[Path, Path]:
    """The base model file and a stack of its bands, with the stack's map by the base model."""
    root = tmp_path_factory.mktemp("fit_from")
    model = unet_s2_file(root / "base" / "model.pt")
    stack = write_stack(root / "stack.tif", scene_stack(SIZE, SIZE, bands=S2, seed=3), bands=S2)
    return model, stack


def mapped(model: Path, stack: Path, out: Path) -> tuple[np.ndarray, np.ndarray]:
    assert predict_main(["--model", str(model), "--input", str(stack), "--out", str(out / "isa"),
                         "--precision", "fp32", "--no-progress", "-q"]) == 0
    with rasterio.open(out / "isa_class.tif") as c, rasterio.open(out / "isa_prob.tif") as p:
        return c.read(1), p.read(1)


def write_points(path: Path, stack: Path, rows, cols, codes) -> Path:
    with rasterio.open(stack) as src:
        xs, ys = src.transform @ (np.asarray(cols) + 0.5, np.asarray(rows) + 0.5)
        lon, lat = warp_transform(src.crs, "EPSG:4326", list(xs), list(ys))
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "lon", "lat", "reference"])
        for i, (x, y, k) in enumerate(zip(lon, lat, codes, strict=True)):
            w.writerow([f"p{i}", f"{x:.8f}", f"{y:.8f}", NAMES[k]])
    return path


@pytest.mark.slow
def test_the_fine_tuned_model_maps_and_moves_toward_the_points(base, tmp_path, capsys):
    model, stack = base
    _, probs = mapped(model, stack, tmp_path / "before")
    rng = np.random.default_rng(0)
    rows, cols = rng.integers(4, SIZE - 4, 24), rng.integers(4, SIZE - 4, 24)
    # the base model's probability ranks the points; the points say the opposite of its map
    codes = (probs[rows, cols] < np.median(probs[rows, cols])).astype(int)
    points = write_points(tmp_path / "points.csv", stack, rows, cols, codes)
    out = tmp_path / "fit"
    capsys.readouterr()
    assert main(["--from", str(model), "--points", str(points), "--input", str(stack),
                 "--out", str(out), "--steps", "8", "--lr", "0.01", "--block", "320",
                 "--min-points", "20", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("from         model.pt (unet-s2, sha256 ")
    # a few blocks of 320 m: too few to hold out apart, so no number is claimed
    assert "held out     no score claimed: the points lie in " in printed, printed
    assert json.loads((out / "fit.json").read_text())["held_out"]["folds"] == 0
    _, tuned = mapped(out / "model.pt", stack, tmp_path / "after")
    before = np.abs(probs[rows, cols] - codes).mean()
    after = np.abs(tuned[rows, cols] - codes).mean()
    assert after < before - 0.05, (before, after)
    meta = read_model_file(out / "model.pt")[0]
    base_meta = read_model_file(model)[0]
    assert (meta.name, meta.bands, meta.norm, meta.norm_mean) == (
        base_meta.name, base_meta.bands, base_meta.norm, base_meta.norm_mean)
    tune = meta.extra["fine_tune"]
    assert tune["from"]["sha256"] == file_sha256(model) and tune["fine_tune"]["steps"] == 8
    assert tune["points"]["used"] == 24 and tune["points"]["files"] == ["points.csv"]
    # its logits shifted so that it maps the stack with the base network's class shares
    shift = meta.calibration["shift"]
    assert shift == tune["fine_tune"]["shift"] and shift[0] == 0 and meta.logit_shift
    assert abs(tune["fine_tune"]["base_shares"]["impervious"] - probs.mean() / PROB_SCALE) \
        < 0.02
    assert abs(tuned.mean() - probs.mean()) / PROB_SCALE < 0.02
    assert "\nprior        the base's class shares over the inputs kept (pervious " in printed
    # fine-tuned again: its base is the first fine-tune as it maps, shift and all
    assert main(["--from", str(out / "model.pt"), "--points", str(points), "--input",
                 str(stack), "--out", str(tmp_path / "again"), "--steps", "1", "--block", "320",
                 "--min-points", "20", "--no-progress", "-q"]) == 0
    again = json.loads((tmp_path / "again" / "fit.json").read_text())["fine_tune"]
    assert abs(again["base_shares"]["impervious"] - tuned.mean() / PROB_SCALE) < 0.01
    assert private_strings(out, [str(tmp_path), str(model.parent)]) == []


def test_what_makes_no_sense_with_from_is_refused_in_one_line_before_any_work(base, tmp_path,
                                                                              capsys):
    model, stack = base
    parser = build_parser()
    points = write_points(tmp_path / "points.csv", stack, range(4, 44, 2), range(4, 44, 2),
                          [k % 2 for k in range(20)])
    out = tmp_path / "out"
    common = ["--points", str(points), "--input", str(stack), "--out", str(out)]

    def refused(*argv: str, words: tuple[str, ...]) -> None:
        assert_refused(main([*argv, *common]), capsys.readouterr().err, parser, *words)

    for flag in (["--features", "presto"], ["--hidden", "8"], ["--norm", "training"],
                 ["--bands", "B2,B3"]):
        refused("--from", str(model), *flag,
                words=(f"{flag[0]} makes no sense with --from", f"drop {flag[0]}"))
    refused("--steps", "5", words=("--steps is for the fine-tune of a model file",
                                   "give --from MODEL.pt"))
    refused("--from", str(stack), words=(f"--from {stack}", "cannot be read as a model file"))
    # Galileo's features are a window's, not a pixel's: a network reads them, --from tunes it
    why = ("Galileo nano's features of a pixel come from the 64 px window around it",
           "isamap-train --encoder galileo-nano=PATH", "isamap-fit --from MODEL.pt")
    refused("--features", "galileo-nano", words=("--features galileo-nano: ", *why))
    refused("--features", "presto", "--encoder", f"galileo-nano={tmp_path / 'e.pt'}",
            words=("--encoder galileo-nano=PATH: ", *why))
    refused("--from", str(tmp_path / "none.pt"), words=("does not exist",))
    other = unet_s2_file(tmp_path / "b11" / "model.pt", bands=("B2", "B3", "B4", "B11"))
    refused("--from", str(other), words=(f"--input {stack}", "B11"))
    assert not out.exists()  # a refused run leaves no folder, and no model


@pytest.mark.slow
def test_the_fine_tuned_model_maps_streamed_and_on_beam_alike(tmp_path, ee_offline):
    """Points over enough blocks get a held-out score beside the base model's; ``isamap-map``
    runs the fine-tuned file as any: streamed and as a Beam pipeline on the DirectRunner, the
    same map, of the fine-tuned weights (not the base's)."""
    pytest.importorskip("apache_beam", reason="the beam extra is not installed (make setup does)")
    from core.pipeline_options import RunnerConfig
    from inference.fit.job import run_fit
    from inference.mapping.region import map_region
    from inference.mapping.request import (
        MapExtent,
        MapInputs,
        MapOutputs,
        MapRequest,
        map_window,
    )
    from inference.predict.runtime import RuntimeOptions
    from testing.fake_server import StackSessions, StackTransport
    from tests.support.mapping import (
        MONTH,
        inner_region,
        model_file,
        session_for,
        write_month_stack,
    )
    from tests.support.rasters import BANDS, smooth_stack
    from training.modelfile import load_model

    data = smooth_stack(120, 130, seed=11)
    stack = write_month_stack(tmp_path, data)
    kwargs = {**dict(recipe_for("unet-s2").model_kwargs), "widths": [4, 8], "bands": list(BANDS)}
    kwargs.pop("member_views")
    base_file = model_file(tmp_path / "base" / "model.pt", stack.grid, name="unet-s2",
                           norm="scene", **kwargs)
    rng = np.random.default_rng(0)
    rows, cols = rng.integers(10, 110, 80), rng.integers(10, 120, 80)
    codes = (data[0][rows, cols] > np.median(data[0])).astype(int)
    points = write_points(tmp_path / "points.csv", Path(stack.image), rows, cols, codes)
    from cli.fit import job_of

    job = job_of(build_parser().parse_args([
        "--from", str(base_file), "--points", str(points), "--input", stack.image,
        "--steps", "5", "--block", "100", "--out", str(tmp_path / "fit"), "--no-progress"]))
    fitted = run_fit(job)
    held, tuned = fitted.report["held_out"], fitted.model
    # enough blocks of 100 m: each fold scored apart, beside the base model on the same points
    assert held["folds"] == 5 and held["why_none"] is None, held["why_none"]
    assert held["points"] == fitted.report["points"]["used"] > 70  # every point scored once
    assert set(held["f1"]) == set(held["base_f1"]) == {"pervious", "impervious"}
    assert held["auc"] is not None and held["base_auc"] is not None

    def run(model: Path, beam: bool) -> np.ndarray:
        request = MapRequest(
            MapExtent(inner_region(stack.grid), (MONTH,)),
            outputs=MapOutputs(str(tmp_path / f"{model.parent.name}-{beam}")),
            inputs=MapInputs(workers=2), window=map_window(tile=64, overlap=16, batch_size=4),
            runtime=RuntimeOptions(precision="fp32", channels_last=False), progress=False,
            runner=RunnerConfig("direct", max_workers=2, max_concurrent=4) if beam else None)
        result = map_region(request, load_model(model), session=session_for(
            StackTransport(stack, info=lambda text: 5)), echo=lambda _: None,
            worker_sessions=StackSessions(stack) if beam else None)
        with rasterio.open(result.dates[0].outputs.prediction.prob_path) as src:
            return src.read(1)

    streamed, piped = run(tuned, False), run(tuned, True)
    np.testing.assert_array_equal(streamed, piped)
    assert not np.array_equal(streamed, run(base_file, False))  # the fine-tuned weights' map


@pytest.mark.slow
def test_a_network_with_galileo_is_fine_tuned_by_from_and_maps(shared_weights, tmp_path):
    """What the refusal of ``--features galileo-nano`` sends users to: a network trained with
    Galileo nano fused (``isamap-train --encoder galileo-nano=PATH``) is fine-tuned on points
    by ``--from``, keeps its encoder, and maps from the new file alone."""
    from cli.train import train_main
    from tests.support.rasters import BANDS, write_patch_dataset

    data = write_patch_dataset(tmp_path / "patches")
    assert train_main(["--data", str(data), "--model", "unet-s2", "--encoder",
                       f"galileo-nano={shared_weights / 'galileo_nano' / 'encoder.pt'}",
                       "--out", str(tmp_path / "run"), "--epochs", "1", "--batch-size", "3",
                       "--model-kwargs", '{"widths": [4, 8]}', "--members", "1",
                       "--precision", "fp32", "--channels-last", "off", "--device", "cpu",
                       "--workers", "0", "--no-progress", "-q"]) == 0
    stack = write_stack(tmp_path / "stack.tif", scene_stack(SIZE, SIZE, bands=BANDS, seed=3),
                        bands=BANDS)
    rng = np.random.default_rng(0)
    rows, cols = rng.integers(4, SIZE - 4, 24), rng.integers(4, SIZE - 4, 24)
    points = write_points(tmp_path / "points.csv", stack, rows, cols,
                          [k % 2 for k in range(24)])
    assert main(["--from", str(tmp_path / "run" / "model.pt"), "--points", str(points),
                 "--input", str(stack), "--out", str(tmp_path / "fit"), "--steps", "4",
                 "--block", "320", "--min-points", "20", "--no-progress", "-q"]) == 0
    (tuned, meta), (base, base_meta) = (load_model_file(p) for p in (
        tmp_path / "fit" / "model.pt", tmp_path / "run" / "model.pt"))
    assert meta.model_kwargs["encoder"] == "galileo-nano" and meta.model_kwargs["frozen"]
    assert meta.model_kwargs["encoder_sha256"] == base_meta.model_kwargs["encoder_sha256"]
    assert meta.extra["fine_tune"]["fine_tune"]["steps"] == 4
    kept = base.encoder.state_dict()  # the frozen encoder as trained, the rest tuned
    assert all(torch.equal(v, kept[k]) for k, v in tuned.encoder.state_dict().items())
    assert not all(torch.equal(p, q) for p, q in zip(tuned.parameters(), base.parameters(),
                                                      strict=True))
    assert predict_main(["--model", str(tmp_path / "fit" / "model.pt"), "--input", str(stack),
                         "--out", str(tmp_path / "map" / "isa"), "--tile", str(SIZE),
                         "--overlap", "0", "--precision", "fp32", "--no-progress", "-q"]) == 0
    with rasterio.open(tmp_path / "map" / "isa_prob.tif") as src:  # one tile: Galileo is slow
        probs = src.read(1)
    assert probs.shape == (SIZE, SIZE) and probs.max() > 0
