"""One builder of a map asset's properties, used by isamap-publish and isamap-map --publish."""

from __future__ import annotations

import ast

from inference.cog.maps import PROB_SCALE
from inference.publish.properties import RECIPE_CHARACTERS, asset_properties
from tests.support.sources import project_sources, where


def test_properties_have_one_name_each_and_leave_unknowns_out():
    props = asset_properties(model="unet", bands=("B2", "VV"), classes=("pervious", "impervious"),
                             month="2023-06", code_version="1.0+gabc",
                             recipe={"speckle": "lee", "cloud": 20},
                             metrics={"test_miou": 0.75, "epochs": 3, "best": True,
                                      "val": {"miou": 0.7}, "note": "x"})
    assert props == {"model": "unet", "input_bands": "B2,VV", "classes": "pervious,impervious",
                     "month": "2023-06", "probability_scale": PROB_SCALE,
                     "code_version": "1.0+gabc", "recipe": '{"cloud": 20, "speckle": "lee"}',
                     "metric_test_miou": 0.75, "metric_epochs": 3, "metric_val_miou": 0.7}
    # a model file's and isamap-evaluate's metrics nest their scores: they are kept, flat
    nested = asset_properties(model="", bands=(), classes=("a", "b"), month=None,
                              code_version="1.0", metrics={"epoch": 2, "val": {
                                  "oa": 0.9, "per_class": {"a": {"iou": 0.5}}, "cm": [[1]]}})
    assert {k: v for k, v in nested.items() if k.startswith("metric_")} == {
        "metric_epoch": 2, "metric_val_oa": 0.9, "metric_val_per_class_a_iou": 0.5}
    assert "model" not in nested and "input_bands" not in nested  # unknown: left out
    bare = asset_properties(model="unet", bands=("B2",), classes=("a", "b"), month=None,
                            code_version="1.0")
    assert "month" not in bare and "recipe" not in bare
    long = asset_properties(model="m", bands=("B2",), classes=("a",), month=None,
                            code_version="1", recipe={"k": "v" * 5000})
    assert len(long["recipe"]) == RECIPE_CHARACTERS


def test_only_the_builder_names_asset_properties():
    """No other module writes the property names, so the two commands cannot drift apart."""
    named = set(where(r"""["'](input_bands|probability_scale)["']\s*:"""))
    assert "inference/publish/properties.py" in named
    assert named <= {
        "inference/publish/properties.py",
        "inference/mapping/region.py",  # the STAC items' own fields (isamap: prefixed), not assets
        "inference/cog/maps.py",  # the COG tag
    }


def test_no_module_imports_private_names_of_another():
    """What a module offers others is public; a leading underscore means 'mine only'."""
    private = []
    for rel, text in project_sources():
        for node in ast.walk(ast.parse(text)):
            if (isinstance(node, ast.ImportFrom) and node.module
                    and node.module.split(".")[0] in ("core", "contract", "gee_export", "engine",
                                                      "training", "inference", "experiments")):
                private += [f"{rel}:{node.lineno} {node.module}.{alias.name}"
                            for alias in node.names if alias.name.startswith("_")]
    assert private == []
