"""isamap-predict maps Level-1C input a stack says it holds to a model trained on L2A, with a
warning and the reason in the map's ``input_notes`` tag.

The stacks are real GeoTIFFs; the model files are real (saved by the project's writer) and
record the recipe of the dataset they were trained on, as ``isamap-train`` records it.
"""

from __future__ import annotations

import json
import logging

import pytest
import rasterio

from cli.predict import predict_main
from inference.predict.expected_inputs import s2_level_of
from tests.support.rasters import BANDS, scene_stack, write_stack
from training.modelfile import ModelMeta, save_model_file
from training.models import create_model

TINY = {"widths": [4, 8, 8, 16, 16]}
WARNING = "Level-1C (top-of-atmosphere) input, as its stack says"


def _model(path, allow_l1c: bool):
    model = create_model("unet", len(BANDS), 2, **TINY)
    meta = ModelMeta("unet", len(BANDS), 2, BANDS, (0.0,) * 6, (1.0,) * 6, model_kwargs=TINY,
                     extra={"dataset": {"recipe": {"allow_l1c": allow_l1c}}})
    return save_model_file(path, model, meta)


def _stack(path, **tags):
    write_stack(path, scene_stack(64, 64))
    with rasterio.open(path, "r+") as dst:
        dst.update_tags(**tags)
    return path


@pytest.mark.parametrize(("tags", "descriptions", "level"), [
    ({"PRODUCT_LEVEL": "Level-1C"}, ("B2",), "L1C"),
    ({}, ("B2", "B10"), "L1C"),
    ({"ISAMAP_RECIPE": json.dumps({"recipe": {"allow_l1c": True}})}, ("B2",), "L1C"),
    ({"ISAMAP_RECIPE": json.dumps({"recipe": {"allow_l1c": False}})}, ("B2",), None),
    ({"PRODUCT_LEVEL": "Level-2A", "ISAMAP_RECIPE": "not json"}, ("B2",), None),
])
def test_the_level_is_read_from_tags_and_band_names(tags, descriptions, level):
    assert s2_level_of(tags, descriptions) == level


@pytest.mark.parametrize(("allow_l1c", "warned"), [(False, True), (True, False)])
def test_l1c_input_to_an_l2a_model_maps_with_a_warning(allow_l1c, warned, tmp_path, caplog):
    model = _model(tmp_path / "m.pt", allow_l1c)
    stack = _stack(tmp_path / "s.tif", PRODUCT_LEVEL="Level-1C")
    with caplog.at_level(logging.WARNING):
        assert predict_main(["--model", str(model), "--input", str(stack), "--out",
                             str(tmp_path / "o" / "isa"), "--tile", "64", "--overlap", "16",
                             "--quiet", "--precision", "fp32"]) == 0
    assert (WARNING in caplog.text) is warned
    with rasterio.open(tmp_path / "o" / "isa_class.tif") as ds:
        notes = json.loads(ds.tags().get("input_notes", "[]"))
    assert bool(notes and WARNING in notes[0]) is warned
