"""The input of a prediction is opened once, and its options travel as one PredictJob."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import rasterio

from cli.predict import predict_job, predict_parser
from core.errors import InputDataError
from inference.predict.input_stack import InputStack, open_input
from inference.predict.job import (
    PredictChange,
    PredictInput,
    PredictJob,
    PredictOutputs,
    PredictRun,
)
from inference.predict.runtime import RuntimeOptions
from inference.predict.sources import decimated_read
from inference.predict.workflow import predict
from tests.support.rasters import BANDS, smooth_stack, write_stack
from training.modelfile import ModelMeta, save_model_file
from training.models import create_model

KWARGS = {"widths": [4, 8, 8, 16, 16]}


@pytest.fixture
def stack(tmp_path):
    data = smooth_stack(96, 112, seed=3)
    data[:, :5, :5] = np.nan
    return write_stack(tmp_path / "stack.tif", data)


def test_a_prediction_opens_its_input_once(stack, tmp_path, monkeypatch):
    """The probe, the value checks, the scene's statistics and the sliding window all read
    one open dataset (a scene-normalised model reads every one of them)."""
    meta = ModelMeta("unet", len(BANDS), 2, BANDS, (0.0,) * 6, (1.0,) * 6, model_kwargs=KWARGS,
                     norm="scene")
    model = save_model_file(tmp_path / "m.pt", create_model("unet", len(BANDS), 2, **KWARGS),
                            meta)
    opened, original = [], rasterio.open

    def counted(path, *args, **kwargs):
        opened.append(str(path))
        return original(path, *args, **kwargs)

    monkeypatch.setattr(rasterio, "open", counted)
    outputs = predict(PredictJob(str(model), PredictInput(str(stack)),
                                 PredictOutputs(str(tmp_path / "o" / "isa")),
                                 options=RuntimeOptions(precision="fp32"),
                                 run=PredictRun(progress=False)))
    assert opened.count(str(stack)) == 1
    with original(outputs.prediction.class_path) as ds:
        assert ds.tags()["input"] == "stack.tif" and "normalisation" in ds.tags()


def test_the_sample_is_read_once_and_its_bands_are_a_reads_own(stack):
    with open_input(str(stack)) as opened, rasterio.open(stack) as ds:
        assert isinstance(opened, InputStack) and opened.identity == str(stack)
        whole = opened.sample([1, 2, 3, 4, 5, 6], 64)
        whole[:] = 0  # a copy: the next reader sees the pixels
        part = opened.sample([4, 2], 64)
        assert np.array_equal(part, decimated_read(ds, [4, 2], 64), equal_nan=True)
        assert opened.read([1], window=((0, 2), (0, 3))).shape == (1, 2, 3)
        assert opened.res == ds.res  # the dataset's other attributes


def test_a_missing_or_unplaced_input_is_refused_before_anything(tmp_path):
    with pytest.raises(InputDataError, match="does not exist"), \
            open_input(str(tmp_path / "none.tif")):
        pass
    png = tmp_path / "picture.tif"
    with rasterio.open(png, "w", driver="GTiff", width=4, height=4, count=1,
                       dtype="uint8") as ds:
        ds.write(np.zeros((1, 4, 4), np.uint8))
    with pytest.raises(InputDataError, match="no georeferencing"), open_input(str(png)):
        pass


def test_isamap_predict_builds_one_job_from_its_flags(tmp_path):
    args = predict_parser().parse_args([
        "--model", "m.pt", "--input", "s.tif", "--out", str(tmp_path / "isa"), "--tile", "256",
        "--bands", "B2,B3", "--compare-with", "old_class.tif", "--change-margin", "0.1",
        "--zones", "z.geojson", "--zones-name", "NAME_2", "--restart", "--quiet"])
    options = RuntimeOptions(precision="fp32")
    job = predict_job(args, options)
    assert (job.model, job.input.stack, job.outputs.prefix) == (
        "m.pt", "s.tif", str(tmp_path / "isa"))
    assert job.config.tile == 256 and job.options is options
    assert job.input.band_order == ["B2", "B3"] and job.change.margin == 0.1
    assert (job.outputs.zones, job.outputs.zones_name) == ("z.geojson", "NAME_2")
    assert job.run == PredictRun(work_dir=None, restart=True, progress=False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        job.run.restart = False  # type: ignore[misc]
    with pytest.raises(InputDataError, match="change-margin"):
        PredictChange("a_class.tif", margin=0.7)


def test_a_stack_is_keyed_by_its_content_from_the_api_and_the_command_line(tmp_path):
    """A backend's stack: by its fingerprint tag, its value types and nodata, whether a path or
    the opened input is given; a converted copy (other values) and another file are not it."""
    import shutil

    import rasterio

    from contract.stack import FINGERPRINT_TAG
    from inference.predict.input_stack import InputStack
    from inference.predict.sources import source_key
    from tests.support.rasters import smooth_stack, write_stack

    stack = write_stack(tmp_path / "a.tif", smooth_stack(20, 20))
    with rasterio.open(stack, "r+") as ds:
        ds.update_tags(**{FINGERPRINT_TAG: "sha256:abc"})
    shutil.copy(stack, tmp_path / "copy.tif")
    keys = []
    for path in (stack, tmp_path / "copy.tif"):
        with rasterio.open(path) as ds:
            keys += [source_key(str(path), ds), InputStack(str(path), ds).content]
    assert len(set(keys)) == 1 and keys[0].startswith("stack sha256:abc")
    plain = write_stack(tmp_path / "plain.tif", smooth_stack(20, 20))
    with rasterio.open(plain) as ds:
        assert source_key(str(plain), ds) == str(plain.resolve())
    converted = write_stack(tmp_path / "int.tif", smooth_stack(20, 20), nodata=-9999.0)
    with rasterio.open(converted, "r+") as ds:
        ds.update_tags(**{FINGERPRINT_TAG: "sha256:abc"})
    with rasterio.open(converted) as ds:
        assert source_key(str(converted), ds) != keys[0]
