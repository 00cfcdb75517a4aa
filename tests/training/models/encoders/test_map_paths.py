"""An encoder model file maps on every path: local scenes, streamed tiles, Beam workers.

The model file holds Presto's (or Galileo nano's) published weights, read from
``../shared/weights``, its features beside the bands; each path rebuilds it from the file alone.
The streamed map (tiles fetched from the fake pixel server) and the Beam pipeline on the
DirectRunner (the model loaded in its workers) give the same map bit for bit; ``isamap-map
--backend local`` maps a scene folder. ``--precision int8``, which neither encoder can be
exported for, is refused on every path in one line before any pixel is read.
"""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

from cli.predict import predict_main
from contract.bands import stack_series_bands
from contract.patches import StackPaths
from core.errors import ConfigError
from core.pipeline_options import RunnerConfig
from inference.mapping.region import map_region
from inference.mapping.request import MapExtent, MapInputs, MapOutputs, MapRequest, map_window
from inference.predict.runtime import RuntimeOptions, TilePredictor
from testing.fake_server import StackSessions, StackTransport
from tests.support.mapping import (
    MONTH,
    encoder_model_file,
    inner_region,
    session_for,
    stack_paths,
    write_month_stack,
)
from tests.support.rasters import BANDS, smooth_stack, write_stack
from training.modelfile import load_model, load_model_file
from training.models.encoders.registry import ENCODERS, PRESTO

OPTIONS = RuntimeOptions(precision="fp32", channels_last=False)


def _read(result) -> tuple[np.ndarray, np.ndarray]:
    prediction = result.dates[0].outputs.prediction
    with rasterio.open(prediction.class_path) as a, rasterio.open(prediction.prob_path) as b:
        return a.read(1), b.read(1)


def _map(stack, model, out, beam: bool) -> tuple[np.ndarray, np.ndarray]:
    """The class and probability maps of ``model`` over ``stack``'s inner region, streamed
    from the fake pixel server or by Beam workers (DirectRunner)."""
    runner = RunnerConfig("direct", max_workers=2, max_concurrent=2) if beam else None
    request = MapRequest(MapExtent(inner_region(stack.grid, 8), (MONTH,)), MapOutputs(str(out)),
                         MapInputs(workers=2), map_window(tile=32, overlap=8, batch_size=2),
                         OPTIONS, progress=False, runner=runner)
    kwargs = {"worker_sessions": StackSessions(stack)} if beam else {}
    return _read(map_region(request, load_model(model), session=session_for(
        StackTransport(stack, info=lambda text: 5)), echo=lambda _: None, **kwargs))


@pytest.mark.slow
def test_streamed_and_beam_maps_of_encoder_models_are_the_same_and_a_series_reads_its_months(
        presto_file, tmp_path, ee_offline):
    """Two tests merged, over one two-month series stack (its earlier month cloudy on a
    block), so that the one-month model's streamed map is made once:

    - a one-month Presto model (reading the month's own bands of the stack): the streamed
      map and the Beam workers' are the same bit for bit, and not a constant;
    - a Presto model of the series: the streamed map and the Beam workers' give the same
      map bit for bit, every pixel mapped, and the earlier month changes the map (Presto
      reads it): the one-month model of the same weights maps otherwise.
    """
    pytest.importorskip("apache_beam", reason="the beam extra is not installed (make setup does)")
    series = stack_series_bands(BANDS, 2)
    data = np.concatenate([smooth_stack(48, 48, seed=3), smooth_stack(48, 48, seed=4)])
    data[len(BANDS):, 16:28, 18:32] = np.nan  # the month before cloudy on a block
    plain = stack_paths(write_stack(tmp_path / f"stack_{MONTH}.tif", data, bands=series))
    stack = StackPaths(plain.grid, series, MONTH, plain.image, plain.label)

    one = encoder_model_file(tmp_path / "presto.pt", stack.grid, presto_file)
    assert load_model_file(one)[1].model_kwargs["encoder_sha256"] == PRESTO.sha256
    (one_class, one_prob), (beam_class, beam_prob) = (
        _map(stack, one, tmp_path / "one", False), _map(stack, one, tmp_path / "one_b", True))
    assert np.array_equal(one_class, beam_class)
    assert np.array_equal(one_prob, beam_prob)
    assert np.unique(one_prob[one_class != 255]).size > 10  # the pixels, not a constant

    model = encoder_model_file(tmp_path / "series.pt", stack.grid, presto_file,
                               stack_bands=series)
    (streamed_class, streamed_prob), (beam_class, beam_prob) = (
        _map(stack, model, tmp_path / "s", False), _map(stack, model, tmp_path / "b", True))
    assert (streamed_class != 255).all()
    assert np.array_equal(streamed_class, beam_class)
    assert np.array_equal(streamed_prob, beam_prob)
    # the one-month model of the same weights reads the month's own bands of the same stack
    assert not np.array_equal(one_prob, streamed_prob)


@pytest.mark.parametrize("name", ["presto", "galileo-nano"])
def test_a_local_map_of_scene_files_with_an_encoder_model(name, request, tmp_path):
    from gee_export.local.synthetic import generate_scene

    weights = request.getfixturevalue("presto_file" if name == "presto" else "galileo_file")
    scene = generate_scene(tmp_path / "scene", width=48, height=48, progress=False)
    model = encoder_model_file(tmp_path / "m.pt", scene.grid, weights, "local",
                               ENCODERS[name])
    out = tmp_path / "out"
    request = MapRequest(MapExtent(inner_region(scene.grid, margin_px=0), (MONTH,),
                                   grid=scene.grid), MapOutputs(str(out)),
                         MapInputs(backend="local", scenes=str(tmp_path / "scene"),
                                   allow_recipe_mismatch=True),
                         map_window(tile=32, overlap=8), OPTIONS, progress=False)
    classes, prob = _read(map_region(request, load_model(model), echo=lambda _: None))
    assert (classes != 255).any() and np.unique(prob[classes != 255]).size > 10


@pytest.mark.parametrize("name", ["presto", "galileo-nano"])
def test_int8_of_an_encoder_model_is_one_line_before_any_pixel_on_every_path(
        name, request, tmp_path, capfd):
    """Presto branches on its input's values, Galileo cuts tiles into windows it counts:
    neither exports as one graph for every tile, so int8 is refused up front (exit 2), not
    after a failed export (a traceback, or a graph dump before the refusal)."""
    weights = request.getfixturevalue("presto_file" if name == "presto" else "galileo_file")
    stack = write_month_stack(tmp_path, smooth_stack(64, 64, seed=3))
    model = encoder_model_file(tmp_path / "m.pt", stack.grid, weights, entry=ENCODERS[name])
    said = f"its {'Presto' if name == 'presto' else 'Galileo'} encoder"
    out = tmp_path / "maps"
    out.mkdir()
    assert predict_main(["--model", str(model), "--input", stack.image, "--out",
                         str(out / "isa"), "--tile", "64", "--overlap", "0", "--precision",
                         "int8", "--device", "cpu", "--no-progress"]) == 2
    err = capfd.readouterr().err.strip()
    assert err.startswith("isamap-predict: error: --precision int8 cannot quantize this "
                          f"model: {said}") and err.endswith("use --precision bf16 or fp32")
    assert len(err.splitlines()) == 1 and not any(out.iterdir())
    int8 = RuntimeOptions(device="cpu", precision="int8")
    module, meta = load_model_file(model)
    with pytest.raises(ConfigError, match=said):  # the predictor of maps and Beam workers
        TilePredictor.for_model(module, meta, options=int8)
    for runner in (None, RunnerConfig("direct")):  # isamap-map, and a pipeline's launch
        with pytest.raises(ConfigError, match=said):
            map_region(MapRequest(MapExtent(inner_region(stack.grid, 8), (MONTH,)),
                                  MapOutputs(str(tmp_path / "m")),
                                  window=map_window(tile=64, overlap=0), runtime=int8,
                                  progress=False, runner=runner), load_model(model),
                       session=session_for(StackTransport(stack, info=lambda text: 5)),
                       echo=lambda _: None)
    assert not (tmp_path / "m").exists()
