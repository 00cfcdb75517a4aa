"""isamap-predict judges an input's Sentinel-2 level by its pixels, by its tags only where they
cannot tell, and maps Level-1C where the model takes it or the user asked, with a warning and
the reason in the map's ``input_notes`` tag.

The stacks are real GeoTIFFs; the model files are real (saved by the project's writer) and
record the recipe of the dataset they were trained on, as ``isamap-train`` records it.
"""

from __future__ import annotations

import json
import logging

import pytest
import rasterio

from cli.predict import predict_main
from contract.input_facts import InputFacts, OpticalFacts
from contract.s2_level import s2_level_of
from tests.support.rasters import BANDS, scene_stack, write_stack
from training.modelfile import ModelMeta, save_model_file
from training.models import create_model

TINY = {"widths": [4, 8, 8, 16, 16]}
#: what a top-of-atmosphere scene's pixels show (the real eo-learn L1C dates: blue +0.036 to
#: +0.041 above red over vegetation, darkest blue +0.015 to +0.021 above darkest green)
_TOA_FACTS = InputFacts(OpticalFacts(
    floor={"B2": 0.07, "B3": 0.05, "B4": 0.03, "B8": 0.12},
    median={"B2": 0.09, "B3": 0.08, "B4": 0.06, "B8": 0.3}, vegetation=0.6,
    blue_excess=0.04, bright_green=0.0, red_blue_spread=1.6, soil=0.2, red_over_blue=0.01,
    visible_r=0.95, negative=0.0),
    None)
WARNING = "Level-1C (top-of-atmosphere) input, as its tags or band names say"


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


@pytest.mark.parametrize(("trained_l1c", "asked", "note"), [
    (False, True, "mapped as asked (isamap-export/isamap-map --allow-l1c)"),
    (True, False, "to a model that takes it: it was trained on Level-1C scenes (exported or"),
])
def test_l1c_input_maps_where_the_model_takes_it_or_the_user_asked(trained_l1c, asked, note,
                                                                   tmp_path, caplog):
    model = _model(tmp_path / "m.pt", trained_l1c)
    tags = {"PRODUCT_LEVEL": "Level-1C"}
    if asked:  # an isamap export forced with --allow-l1c records it in its recipe
        tags["ISAMAP_RECIPE"] = json.dumps({"recipe": {"allow_l1c": True}})
    stack = _stack(tmp_path / "s.tif", **tags)
    with caplog.at_level(logging.WARNING):
        assert predict_main(["--model", str(model), "--input", str(stack), "--out",
                             str(tmp_path / "o" / "isa"), "--tile", "64", "--overlap", "16",
                             "--quiet", "--precision", "fp32"]) == 0
    assert WARNING in caplog.text and note in caplog.text
    with rasterio.open(tmp_path / "o" / "isa_class.tif") as ds:
        notes = json.loads(ds.tags().get("input_notes", "[]"))
    assert WARNING in notes[0] and note in notes[0]


def test_a_stack_named_l1c_to_an_l2a_model_is_refused_unless_allowed(tmp_path, capsys):
    """Its pixels (a synthetic scene without enough vegetation) cannot tell: its name stands,
    and a model trained on Level-2A does not map it unasked."""
    model = _model(tmp_path / "m.pt", False)
    stack = _stack(tmp_path / "s.tif", PRODUCT_LEVEL="Level-1C")
    args = ["--model", str(model), "--input", str(stack), "--out", str(tmp_path / "o" / "isa"),
            "--tile", "64", "--overlap", "16", "--quiet", "--precision", "fp32"]
    assert predict_main(args) == 2
    err = capsys.readouterr().err
    assert "top-of-atmosphere (Level-1C)" in err and "give the Level-2A product" in err
    assert not (tmp_path / "o").exists()
    assert predict_main([*args, "--allow-implausible"]) == 0


def test_an_encoder_pretrained_on_l1c_does_not_make_its_model_take_l1c(tmp_path):
    """The registry says Presto and Galileo nano saw Level-1C; the model file's fused layers
    learnt what the training stacks held (Level-2A here), so L1C input is still refused."""
    from contract.input_facts import judge_level
    from inference.predict.expected_inputs import _s2_level
    from training.models.encoders.registry import ENCODERS

    assert {e.level for e in ENCODERS.values()} == {"L1C"}
    stack = _stack(tmp_path / "s.tif")
    for name in ENCODERS:
        meta = ModelMeta("encoder-unet", len(BANDS), 2, BANDS, (0.0,) * 6, (1.0,) * 6,
                         model_kwargs={"encoder": name},
                         extra={"dataset": {"recipe": {"allow_l1c": False}}})
        with rasterio.open(stack) as src:
            level = _s2_level(src, meta)
        assert level.model is None and not level.allowed
        judged = judge_level(_TOA_FACTS, stated=level.stated, model_takes_l1c=level.model,
                             allowed=level.allowed)
        assert judged.taken == "L1C" and judged.finding is not None
