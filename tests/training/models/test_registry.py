"""The model registry: module tables merged explicitly, outside models found through ``module=``."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest
import torch
from torch import nn

from core.errors import ModelError
from tests.support import REPO_ROOT
from tests.support.models import BandThreshold
from training.losses import LOSSES
from training.models import (
    REGISTRY,
    ModelEntry,
    ModelRecipe,
    ModelRegistry,
    available_models,
    create_model,
    model_module,
    recipe_for,
    unet,
)
from training.models.registry import outside_entry


def _conv(c: int, k: int, **kw) -> nn.Module:
    return nn.Conv2d(c, k, 1)


def _module(name: str, **attrs) -> types.ModuleType:
    """A module object with the given attributes (e.g. a ``MODELS`` table), never imported."""
    module = types.ModuleType(name)
    vars(module).update(attrs)
    return module


def test_a_name_in_two_merged_tables_is_refused():
    clash = _module("outside_models", MODELS={"unet": ModelEntry(_conv)})
    with pytest.raises(ModelError, match=r"'unet' is defined twice, by training\.models\.unet "
                                         r"and by outside_models"):
        ModelRegistry.merge(unet, clash)
    merged = ModelRegistry.merge(unet, _module("more_models", MODELS={"conv": ModelEntry(_conv)}))
    assert merged.names() == ("conv", "unet", "unet-s1", "unet-s2", "unet-s2-window")
    assert merged.module_of("conv") == "more_models"
    assert merged.create("conv", 3, 4)(torch.zeros(1, 3, 8, 8)).shape == (1, 4, 8, 8)
    with pytest.raises(TypeError):
        merged.entries["other"] = ModelEntry(_conv)  # read-only
    with pytest.raises(ModelError, match="exports no MODELS table"):
        ModelRegistry.merge(_module("no_table"))
    with pytest.raises(ModelError, match="must map names to ModelEntry"):
        ModelRegistry.merge(_module("bad_table", MODELS={"conv": _conv}))


def test_a_model_outside_the_package_is_found_through_its_module():
    assert "test-threshold" not in available_models()
    with pytest.raises(ModelError, match="unknown model 'test-threshold'"):
        create_model("test-threshold", 6)
    model = create_model("test-threshold", 6, module="tests.support.models", threshold=0.2)
    assert isinstance(model, BandThreshold) and model.threshold == 0.2
    # an entry without a recipe trains with the default one
    assert recipe_for("test-threshold", module="tests.support.models") == ModelRecipe()
    with pytest.raises(ModelError, match=r"'tests\.support\.rasters' exports no MODELS"):
        create_model("test-threshold", 6, module="tests.support.rasters")
    with pytest.raises(ModelError, match=r"defines no model 'unet' in its MODELS table \(it "
                                         r"defines test-band-conv, test-linear, test-threshold, "
                                         r"test-tied, test-tile-context\)"):
        create_model("unet", 6, module="tests.support.models")
    with pytest.raises(ModelError, match=r"cannot import 'tests\.support\.absent', which "
                                         r"defines model 'test-threshold'"):
        create_model("test-threshold", 6, module="tests.support.absent")


def test_every_built_in_model_is_found_again_in_the_module_model_files_record():
    for name in available_models():
        assert outside_entry(name, model_module(name)) is REGISTRY.entries[name]
        assert outside_entry(name, "training.models") is REGISTRY.entries[name]  # the package
        recipe = recipe_for(name)
        assert LOSSES[recipe.loss.name] is recipe.loss  # isamap-train builds it by its name
    assert model_module("unet-s2") == "training.models.unet"
    assert model_module("bilinear-unet") == "training.models.srseg"
    with pytest.raises(ModelError, match="unknown model 'segformer'"):
        model_module("segformer")


def test_an_entry_refuses_a_recipe_its_output_scale_cannot_follow():
    with pytest.raises(ModelError, match="upsamples"):
        ModelEntry(_conv, ModelRecipe(targets=("label_fine",)))
    with pytest.raises(ModelError, match="upsamples"):
        ModelEntry(_conv, upsamples=True)
    assert ModelEntry(_conv, ModelRecipe(targets=("label_fine",)), upsamples=True).upsamples


def test_the_registry_module_alone_imports_no_model_module():
    """The mechanism holds no models: which exist is decided where the tables are merged.

    ``import training.models.registry`` would run the package's ``__init__`` first (which
    merges the built-in tables), so the module is loaded from its file on its own.
    """
    code = (
        "import importlib.util, sys\n"
        "spec = importlib.util.spec_from_file_location('registry_alone', "
        "'training/models/registry.py')\n"
        "registry = importlib.util.module_from_spec(spec)\n"
        "sys.modules['registry_alone'] = registry\n"
        "spec.loader.exec_module(registry)\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('training.models'))\n"
        "assert not loaded, loaded\n"
        "assert registry.ModelRegistry.merge().names() == ()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
