"""The arms of the built-up comparison: each a trained map's ``isamap-train`` model and options.

Any model name ``isamap-train`` starts is an arm with its own recipe (:func:`arm_of`;
``unet-s2``, the default); :data:`ARMS` names the four others, each with evidence the docs
quote, each stating the options it compares so none changes with the recipe a model name
holds. A model trains as many trainings as its ``--members`` or its recipe joins
(:func:`members_of`; ``unet-s2``: 9). ``presto-scene`` fuses a pretrained encoder, whose
checked file :func:`encoder_files` finds before any export.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from training.models.encoders.registry import encoder_entry, load_encoder, parse_encoder
from training.run.members import recipe_members

#: the sample weights' folder of each encoder (``weights/<folder>/<file>``)
WEIGHT_FOLDERS = {"presto": "presto", "galileo-nano": "galileo_nano"}


@dataclass(frozen=True)
class Arm:
    """One trained map of the comparison: an ``isamap-train`` model and its extra arguments.

    ``encoder``: the pretrained encoder (``--encoder NAME=PATH``) it fuses, the file given to
    the experiment (never recorded in its results).
    """

    name: str
    model: str
    model_kwargs: Mapping = field(default_factory=dict)
    train_args: tuple[str, ...] = ()
    encoder: str | None = None


#: The six bands of the plain reference (:data:`PLAIN`)
PLAIN_BANDS = ("B2", "B3", "B4", "B8", "B11", "B12")

#: The plain reference the default must beat: a U-Net of widths 16-256 on six bands, one
#: normalisation from the training tiles' statistics, 600 iterations of 8 patches (the
#: export's, whole) with the flips and rotations of every recipe, Adam at a constant 1e-3, one
#: training, each window mapped once; no radiometric augmentation, balanced sampling, weight
#: average or test-time flips. Every option stated, so it does not move with unet-s2's recipe.
PLAIN = Arm("plain", "unet-s2", {"input_norm": "none", "widths": [16, 32, 64, 128, 256],
                                 "flips": False, "member_views": False},
            ("--bands", ",".join(PLAIN_BANDS), "--norm", "training", "--no-radiometric",
             "--no-balanced-sampling", "--ema", "0", "--members", "1",
             "--max-iterations", "600", "--batch-size", "8", "--optimizer", "adam",
             "--lr", "0.001", "--poly-power", "0", "--crop-size", "0"))

#: The plain reference on each scene's own statistics (``--norm scene``), every other option
#: the reference's: what the default's nine trainings, ten bands, weight average, flips and
#: balanced sampling add over a plain network normalised as the default is.
PLAIN_SCENE = Arm("plain-scene", PLAIN.model, PLAIN.model_kwargs,
                  tuple("scene" if a == "training" else a for a in PLAIN.train_args))

#: Where the encoder arms tell the encoder they are: one place and month for every fold (the
#: equator at the prime meridian, January), so a patch's features are the same whichever tiles
#: a fold trains on and are encoded once for all of them; a model file maps every region with
#: the location and month it records.
ENCODER_PLACE = {"latlon": [0.0, 0.0], "month": 0}


#: The arms beside the registry's models (any ``isamap-train`` model name is an arm too, with
#: its own recipe: ``unet-s2``, the default). Each has evidence the docs quote:
#:
#: - ``plain`` (:data:`PLAIN`), the reference the default must beat (docs/real-data.md);
#: - ``plain-scene`` (:data:`PLAIN_SCENE`), the reference on each scene's statistics;
#: - ``unet-s2-fixed``, the candidate recipe that maps each pixel alike whatever extent is
#:   mapped: ``unet-s2``'s recipe (nine trainings) on the training statistics it records, with
#:   radiometric augmentation for the scene-to-scene shifts its own scene's statistics took
#:   away (docs/real-data.md, "The candidate recipe on the training statistics");
#: - ``presto-scene``, the product's ``isamap-train --model unet-s2 --encoder presto=PATH``
#:   with every other option its recipe's (Presto's features beside the bands, each scene
#:   normalised by its own statistics), told the common place and month
#:   (:data:`ENCODER_PLACE`): it maps ``ghana_a`` better than ``unet-s2`` in every seed and the
#:   other tiles worse (docs/evidence/builtup.md, "Presto's features in the recipe").
ARMS = {arm.name: arm for arm in (
    PLAIN,
    PLAIN_SCENE,
    Arm("unet-s2-fixed", "unet-s2", {}, ("--norm", "training", "--radiometric", "--members", "9")),
    Arm("presto-scene", "unet-s2", dict(ENCODER_PLACE), ("--norm", "scene"), "presto"),
)}


def arm_of(name: str) -> Arm:
    """The named arm, or the registry model ``name`` with its own recipe."""
    return ARMS.get(name, Arm(name, name))


def members_of(arm: Arm) -> int:
    """The trainings one model of ``arm`` joins: its ``--members``, else its model's recipe's."""
    args = list(arm.train_args)
    if "--members" in args:
        return int(args[args.index("--members") + 1])
    return recipe_members(arm.model)


def encoder_files(arms: Sequence[str], given: Sequence[str], data: Path) -> dict[str, str]:
    """The checked encoder file of every encoder the ``arms`` fuse (name -> path).

    ``given``: ``NAME=PATH`` items; an encoder not given is looked for where the sample sets'
    weights lie (``weights/presto/default_model.pt`` beside the data folder's parent). Each
    file is checked (exists, the published SHA-256) before any export.
    """
    files = {}
    for item in given:
        entry, path = parse_encoder(item)
        files[entry.name] = path
    wanted = {arm_of(arm).encoder for arm in arms}
    out = {}
    for name in sorted(n for n in wanted if n):
        entry = encoder_entry(name)
        path = files.get(name) or str(data.parent / "weights" / WEIGHT_FOLDERS[name] /
                                      entry.file_name)
        load_encoder(entry, path)
        out[name] = path
    return out
