"""``isamap-train --encoder NAME=PATH``: a pretrained encoder's file checked first, then fused.

The file is checked (exists, SHA-256 of the published file, weights fit the architecture)
before any pixel is read: :func:`encoder_config`. The network is the fused model of
:mod:`training.models.encoders.fused` around the base recipe's U-Net, the encoder's weights
copied in from the file (:func:`encoder_model`); the model file then holds them, and
records the encoder's name and SHA-256 in its ``model_kwargs``, with ``ModelMeta.module``
naming the fused model's module, so every prediction path rebuilds it from the model file
alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rasterio.warp import transform
from torch import nn

from contract.grid import Grid
from core.errors import ConfigError, ModelError
from training.config import ModelOptions, TrainConfig
from training.models import check_trainable, create_model, recipe_for
from training.models.encoders.cache import folder_from_env
from training.models.encoders.fused import MODULE, NAME, EncoderUNet
from training.models.encoders.registry import load_encoder, parse_encoder
from training.models.encoders.series import encoder_series

#: Base models whose recipe the fused U-Net takes (its widths and test-time flips).
BASES = ("unet", "unet-s2")
#: Frozen features kept per patch in training (bytes): a 128 px patch's 128 features in
#: half precision is 4 MiB.
CACHE_BYTES = 3 << 30


def encoder_config(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` ready for an encoder run, its file checked.

    The input is normalised as ``--norm`` says, else as the base recipe's: ``unet-s2`` by
    each scene's statistics, so the encoder reads each scene matched to the training
    statistics (:mod:`training.models.encoders.fused`; on the held-out tiles, with the
    training statistics, the stack's own reflectance, the hazy ones were mapped with almost
    nothing built: docs/evidence/builtup.md, "Presto's features"); ``unet`` by the training
    statistics.

    Raises:
        ModelError: the encoder's file is missing, not the published one, or does not fit.
        ConfigError: a base model the fused model cannot use.
    """
    if not cfg.model.encoder:
        return cfg
    entry, path = parse_encoder(cfg.model.encoder)
    load_encoder(entry, path)
    if cfg.model.freeze_encoder:  # a bad ISAMAP_ENCODER_CACHE, before the run folder is written
        folder_from_env()
    if cfg.model.name not in BASES:
        check_trainable(cfg.model.name)  # a retired base says why it left, and what instead
        raise ConfigError(f"--encoder fuses with the U-Net: give --model {' or '.join(BASES)}, "
                          f"not {cfg.model.name!r}")
    return cfg


def check_encoder_bands(net: ModelOptions, bands: Sequence[str]) -> None:
    """A series of months given to an encoder that reads one, refused before any pixel.

    Raises:
        ModelError: ``bands`` hold earlier months (``B4_m1``) and the encoder is not Presto,
            or a month lacks a band the encoder reads
            (:func:`training.models.encoders.series.encoder_series`).
    """
    if net.encoder:
        entry, _ = parse_encoder(net.encoder)
        encoder_series(entry.name, bands, [i for i, b in enumerate(bands) if b in entry.bands])


def grid_centre(manifest: Mapping) -> tuple[float, float]:
    """Latitude, longitude (degrees) of the centre of the dataset's grid."""
    grid = Grid.from_dict(dict(manifest["grid"]))
    west, south, east, north = grid.bounds
    lon, lat = transform(grid.crs, "EPSG:4326", [(west + east) / 2], [(south + north) / 2])
    return float(lat[0]), float(lon[0])


def first_month(manifest: Mapping) -> int:
    """Month (0-11) of the dataset's first month (``YYYY-MM``); 0 when it records none."""
    months = sorted(manifest.get("months") or [])
    try:
        return int(str(months[0])[5:7]) - 1 if months else 0
    except ValueError:
        return 0


def encoder_kwargs(net: ModelOptions, bands: Sequence[str], mean: Sequence[float],
                   std: Sequence[float], manifest: Mapping) -> dict:
    """The fused model's constructor arguments (recorded in the model file)."""
    entry, _ = parse_encoder(str(net.encoder))
    base = {k: v for k, v in recipe_for(net.name).model_kwargs.items()
            if k in ("widths", "flips", "member_views")}
    given = {k: v for k, v in dict(net.model_kwargs).items()
             if k in ("widths", "flips", "member_views", "head_width", "patch_size", "latlon",
                      "month")}
    return {**base, "bands": list(bands), "encoder": entry.name,
            "encoder_sha256": entry.sha256, "input_mean": list(mean), "input_std": list(std),
            "latlon": list(grid_centre(manifest)), "month": first_month(manifest),
            "fusion": net.fusion, "frozen": bool(net.freeze_encoder), **given}


def encoder_model(net: ModelOptions, kwargs: Mapping, num_classes: int) -> nn.Module:
    """The fused network, its encoder holding the file's weights, its feature cache on."""
    entry, path = parse_encoder(str(net.encoder))
    pretrained = load_encoder(entry, path)
    model = create_model(NAME, len(kwargs["bands"]), num_classes, module=MODULE, **kwargs)
    if not isinstance(model, EncoderUNet):
        raise ModelError(f"{NAME} built {type(model).__name__}, not the fused model")
    model.encoder.load_state_dict(pretrained.state_dict(), strict=True)
    model.set_cache_bytes(CACHE_BYTES)
    return model
