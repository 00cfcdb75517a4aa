"""inference.mapping.publication: what the maps of a series record of their model's recipe."""

from __future__ import annotations

from inference.mapping.publication import map_recipe
from inference.mapping.request import ModelDataset


def test_a_maps_recipe_leaves_out_the_training_months_own_scene_dates():
    """Every date's STAC item listed the training month's scene dates in its recipe, beside
    the date's own inputs (a new user's walk): readers took them for the map's dates."""
    recipe = {"composite": "local backend", "local_recipe": {"speckle": "refined_lee"},
              "s1_dates": ["20190605"], "s2_dates": ["20190603"], "per_month": {"x": 1},
              "seed": 0}
    dataset = ModelDataset(("B2",), None, recipe, "local", ("2019-06",), "model file")
    assert map_recipe(dataset) == {"composite": "local backend",
                                   "local_recipe": {"speckle": "refined_lee"}, "seed": 0}
