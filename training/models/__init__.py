"""Model registry and the built-in architectures: ``create_model(name, in_channels, num_classes)``.

Every registered model takes one ``(N, C, H, W)`` tensor in the dataset manifest's band order
and returns logits ``(N, K, H*s, W*s)`` (``s`` the output scale) or a dict whose ``"out"``
entry is that tensor. Importing this package imports every built-in model module, and each
registers itself in :mod:`training.models.registry`.

May import: ``gee_export.core``, ``gee_export.contract``, torch and the rest of ``training``
(``models/srseg.py`` imports ``training.srseg.losses`` so that its recipe's loss is registered).
"""

from training.models import crofusenet, hrnet, runetpp, srseg, unet  # noqa: F401  (registration)
from training.models.registry import (
    ModelRecipe,
    available_models,
    context_warning,
    create_model,
    model_module,
    recipe_for,
    register_model,
    upsamples,
)

__all__ = ["ModelRecipe", "available_models", "context_warning", "create_model", "model_module",
           "recipe_for", "register_model", "upsamples"]
