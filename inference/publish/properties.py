"""The properties of a published ISA map asset: one builder, one set of names.

An image asset made by ``isamap-publish`` (one map) and an image of the ImageCollection made by
``isamap-map --publish`` (a series) describe the same kind of product, so they carry the same
properties under the same names, whichever command made them; a user filtering or reading an
asset (``ee.Image.get``, ``filter(ee.Filter.eq('month', ...))``) never needs to know which.

========================  ========================================================
property                  value
========================  ========================================================
``model``                 registry name of the model's architecture
``input_bands``           the model's input bands, comma-separated
``classes``               the class names, comma-separated (index = class value)
``month``                 ``YYYY-MM`` of the composite (also ``system:time_start``)
``probability_scale``     :data:`~inference.cog.maps.PROB_SCALE`: stored value of 1.0
``code_version``          the isamap version that made the map
``recipe``                the composite recipe as sorted JSON (first 1000 characters)
``metric_<name>``         each numeric metric of the model
========================  ========================================================

A property whose value is unknown (no recipe, month, model or bands recorded) is left out
rather than empty.
Properties are public with ``--public``: a local path in them (a recipe naming its scene
folder) is reduced to its file name (:mod:`core.shareable`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from core.shareable import shareable
from inference.cog.maps import PROB_SCALE, numeric_metrics

RECIPE_CHARACTERS = 1000
"""The recipe is cut to this length: an asset property is a label, not the recipe's store."""

PropertyValue = str | float | int | bool


def asset_properties(*, model: str, bands: Sequence[str], classes: Sequence[str],
                     month: str | None, code_version: str,
                     recipe: Mapping[str, Any] | None = None,
                     metrics: Mapping[str, Any] | None = None) -> dict[str, PropertyValue]:
    """The properties of one map's asset (see the module docstring for names and values).

    Args:
        model: registry name of the architecture.
        bands: the model's input bands, in order.
        classes: the class names, in class-value order.
        month: ``YYYY-MM`` of the map, None when unknown.
        code_version: the isamap version that made the map (the COGs' ``version`` tag).
        recipe: the composite recipe (the model's dataset recipe), None when unknown.
        metrics: the model's metrics; numbers are kept (``metric_<name>``, a nested one as
            ``metric_<outer>_<name>``), anything else (lists, text) is left out.
    """
    given = {"model": model, "input_bands": ",".join(bands), "classes": ",".join(classes),
             "code_version": code_version}
    properties: dict[str, PropertyValue] = {
        **{k: v for k, v in given.items() if v}, "probability_scale": PROB_SCALE}
    if month:
        properties["month"] = month
    if recipe is not None:
        text = json.dumps(shareable(recipe), sort_keys=True, default=str)
        properties["recipe"] = text[:RECIPE_CHARACTERS]
    for name, value in numeric_metrics(metrics or {}).items():
        properties[f"metric_{name}"] = value
    return shareable(properties)
