"""Pretrained encoders loaded from their published files: Presto and the Galileo nano encoder.

:mod:`~training.models.encoders.registry` holds one entry per encoder (its bands and their
order, normalisation, processing level, licence, where a user downloads the file and the
file's SHA-256) and loads a file with ``weights_only=True`` and ``strict=True``;
:mod:`~training.models.encoders.presto` and :mod:`~training.models.encoders.galileo` are the
architectures, written here from the papers and the authors' public code;
:mod:`~training.models.encoders.fused` fuses an encoder with the U-Net (what ``isamap-train
--encoder NAME=PATH`` trains, and what its model files are rebuilt from). docs/encoders.md
says how to use them and what they measured.

May import: ``core``, ``contract``, :mod:`engine`,
:mod:`training.losses`, the other modules of :mod:`training.models`, torch.
"""

from __future__ import annotations

from training.models.encoders.registry import (
    ENCODERS,
    EncoderEntry,
    encoder_entry,
    load_encoder,
    parse_encoder,
)

__all__ = ["ENCODERS", "EncoderEntry", "encoder_entry", "load_encoder", "parse_encoder"]
