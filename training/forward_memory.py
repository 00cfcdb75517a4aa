"""What tiles a model can run: the multiple of its input sides, and the batch of a scaled model.

A super-resolution segmentation model (``srseg``, ``output_scale`` k) predicts k² output
pixels per input pixel, and its decoder holds its feature maps at the output's size: one
batch of ``batch`` tiles of ``tile`` px holds about ``batch · (tile · k)²`` times
:data:`BYTES_PER_OUTPUT_PIXEL`. At the predictor's defaults (512 px tiles, 8 per batch) a x10
model would need about 210 GB; a new user's run was killed by the kernel at 22 GB with no
message. So every path that runs such a model over tiles or patches (``isamap-predict``,
``isamap-map``, ``isamap-evaluate``) refuses, before the model runs, a batch over
:data:`BATCH_BUDGET_BYTES`, and names the tile and batch that fit (:func:`check_scaled_batch`).
A model whose output is on its input's grid (k = 1) is not bounded here.
"""

from __future__ import annotations

from core.errors import ConfigError

#: resident bytes one forward pass of srseg holds per output pixel (fp32, CPU, inference
#: mode): 973 B measured (``/usr/bin/time -v`` of ``SRSeg(4, 2, scale=10)`` on one 64 px tile
#: against one 32 px tile, 2026-11-27), rounded up
BYTES_PER_OUTPUT_PIXEL = 1000
#: what one forward pass of a scaled model may hold (one batch's output pixels times
#: :data:`BYTES_PER_OUTPUT_PIXEL`)
BATCH_BUDGET_BYTES = 2_000_000_000


def input_multiple(model: object) -> int:
    """The multiple a model's input height and width must be (1: any side).

    A model whose forward refuses other sides (:func:`training.models.blocks.check_divisible`)
    says so with ``divisible_input``; one that pads its input itself (srseg) or needs no
    multiple answers 1, whatever its ``stride``.
    """
    return int(getattr(model, "stride", 1)) if getattr(model, "divisible_input", False) else 1


def batch_bytes(scale: int, side: int, batch: int) -> int:
    """About what one forward pass of ``batch`` inputs of ``side`` px at output ``scale`` holds."""
    return batch * (side * scale) ** 2 * BYTES_PER_OUTPUT_PIXEL


def largest_side(scale: int, multiple: int = 8) -> int:
    """The largest input side (a multiple of ``multiple``) of which one fits the budget."""
    side = int((BATCH_BUDGET_BYTES / BYTES_PER_OUTPUT_PIXEL) ** 0.5 / scale)
    return max(side - side % multiple, multiple)


def check_scaled_batch(scale: int, side: int, batch: int, *, model: str,
                       side_flag: str | None = "--tile", batch_flag: str = "--batch-size"
                       ) -> None:
    """Refuse a batch of a scaled model's inputs whose forward pass passes the budget.

    Args:
        scale: the model's ``output_scale`` (1: nothing to check).
        side: the input tile's (or patch's) side, px.
        batch: inputs per forward pass.
        model: the model's name, for the message.
        side_flag: the flag that sets ``side`` (None: the side is the data's, not a flag's).
        batch_flag: the flag that sets ``batch``.

    Raises:
        ConfigError: one batch would hold more than :data:`BATCH_BUDGET_BYTES`.
    """
    need = batch_bytes(scale, side, batch)
    if scale <= 1 or need <= BATCH_BUDGET_BYTES:
        return
    fits = BATCH_BUDGET_BYTES // batch_bytes(scale, side, 1)
    if fits >= 1:
        advice = f"give {batch_flag} {fits}"
    elif side_flag is None:
        advice = (f"even {batch_flag} 1 does not fit: {side} px patches are too large for "
                  "this model on this machine's budget")
    else:
        advice = f"give {side_flag} {largest_side(scale)} {batch_flag} 1"
    shown = f"{side_flag} {side} {batch_flag} {batch}" if side_flag else \
        f"{batch_flag} {batch} of {side} px patches"
    raise ConfigError(
        f"{shown} is {batch} x {side * scale}² output pixels per forward pass at this {model} "
        f"model's x{scale} output, about {need / 1e9:.1f} GB (about "
        f"{BYTES_PER_OUTPUT_PIXEL} bytes each), over the {BATCH_BUDGET_BYTES / 1e9:.0f} GB one "
        f"batch may hold; {advice}")
