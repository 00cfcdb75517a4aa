"""What a map request refuses before any work, in one line that says how to go on."""

from __future__ import annotations

import pytest


def test_a_fitted_model_of_a_stack_of_no_export_is_told_how_to_map():
    """isamap-fit on a plain GeoTIFF records no recipe: isamap-map said to give "the patch
    dataset it was trained on", which a fitted model has none of."""
    from core.errors import ConfigError
    from inference.mapping.request import model_dataset
    from training.modelfile import ModelMeta

    bands = ("B2", "B3", "B4", "B8")
    meta = ModelMeta("points-linear", 4, 2, bands, (0.0,) * 4, (1.0,) * 4,
                     extra={"points": {"files": ["p.csv"]}, "inputs": ["town.tif"]})
    with pytest.raises(ConfigError, match=r"fitted \(isamap-fit\) on a stack of no export.*"
                                          r"isamap-predict"):
        model_dataset(meta)
