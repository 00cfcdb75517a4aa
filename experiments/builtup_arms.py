"""The arms of the built-up comparison: each a trained map's ``isamap-train`` model and options.

Any model name ``isamap-train`` starts is an arm with its own recipe (:func:`arm_of`);
:data:`ARMS` names the others (among them ``unet-s2-window``, a retired recipe trained as it
was), each stating every option it compares (window standardisation, index
channels, radiometric augmentation, class-balanced sampling, weight average, flips), so none
changes with the recipe a model name holds; each states its trainings (``--members``; one
but ``unet-s2-fixed``, ``unet-s2-scenes``, ``unet-s2-three`` and the ``short9`` arms), while a
model name trains as many as its recipe joins (:func:`members_of`; ``unet-s2``: 9).
:data:`ENCODER_ARMS` fuse a pretrained encoder, whose checked files :func:`encoder_files` finds
before any export.
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


def _s2_arm(name: str, input_norm: str, indices: Sequence[str] = (), radiometric: bool = False,
            balanced: bool = False, window: int | None = None, norm: str = "training",
            ema: float = 0.0, flips: bool = False) -> Arm:
    """A ``unet-s2`` arm that states every option it compares (none left to the recipe).

    The optical recipes differ in ``input_norm`` and ``norm`` (``unet-s2``: none and scene;
    ``unet-s2-window``: patch and training) and share the widths, so stating both, with the
    augmentations, makes the arm the same whichever recipe the name ``unet-s2`` holds.
    ``ema``: the half-life in iterations of the weight average kept (``isamap-train --ema``;
    0: the last weights), stated too, as ``unet-s2``'s recipe averages; ``flips``: the
    mean of each window's four mirror images in every map (``model_kwargs`` ``flips``),
    stated as ``unet-s2``'s recipe sets it. One training (``--members 1``).
    """
    box = {"norm_window": window} if window else {}
    return Arm(name, "unet-s2", {"input_norm": input_norm, "indices": list(indices),
                                 "flips": flips, "member_views": False, **box},
               ("--radiometric" if radiometric else "--no-radiometric",
                "--balanced-sampling" if balanced else "--no-balanced-sampling",
                "--no-balanced-scenes", "--norm", norm, "--ema", f"{ema:g}", "--members", "1"))


INDICES = ("ndbi", "ndvi", "mndwi")

#: the members of a joined arm each map every window all four ways (its flips), as every
#: joined arm did before ``unet-s2``'s recipe spread the four over its members
#: (``member_views``); stated, so the arm stays what it measured
EVERY_VIEW_EACH = {"member_views": False}

#: The six bands of the plain reference (:data:`PLAIN`)
PLAIN_BANDS = ("B2", "B3", "B4", "B8", "B11", "B12")

#: The plain reference the default must beat: a U-Net of widths 16-256 on six bands, one
#: normalisation from the training tiles' statistics, 600 iterations of 8 patches (the
#: export's, whole) with the flips and rotations of every recipe, Adam at a constant 1e-3, one
#: training, each window mapped once; no radiometric augmentation, balanced sampling, weight
#: average or test-time flips. Every option stated, so it does not move with unet-s2's recipe.
PLAIN = Arm("plain", "unet-s2", {"input_norm": "none", "widths": [16, 32, 64, 128, 256],
                                 "indices": [], "flips": False, "member_views": False},
            ("--bands", ",".join(PLAIN_BANDS), "--norm", "training", "--no-radiometric",
             "--no-balanced-sampling", "--no-balanced-scenes", "--ema", "0", "--members", "1",
             "--max-iterations", "600", "--batch-size", "8", "--optimizer", "adam",
             "--lr", "0.001", "--poly-power", "0", "--crop-size", "0"))

#: Named arms beside the registry's models (any ``isamap-train`` model name is an arm too, with
#: its own recipe: ``unet-s2`` on each scene's statistics, ``unet-s2-window`` standardising
#: each window). Each states the window standardisation (``patch``: each window's bands by
#: their own mean and deviation; ``global``: the training set's statistics alone), the index
#: channels (``idx``: NDBI, NDVI, MNDWI), the radiometric augmentation (``radio``) and the
#: class-balanced sampling (``bal``) it trains with; ``emaN``: ``unet-s2``'s recipe keeping the
#: moving average of its weights with a half-life of N iterations, ``last``: its last weights.
#: Every arm states the half-life (0 unless named) and maps each window once (no ``flips``):
#: ``unet-s2-ema10`` is ``unet-s2``'s recipe without its test-time flips; ``unet-s2-radio``
#: and ``unet-s2-bal`` are ``unet-s2``'s recipe, flips included, with radiometric
#: augmentation or class-balanced sampling.
ARMS = {arm.name: arm for arm in (
    # the retired recipe unet-s2-window as it trained (isamap-train no longer starts the name):
    # each window standardised by its own statistics, the training split's as the norm
    _s2_arm("unet-s2-window", "patch"),
    _s2_arm("unet-s2-global", "none"),
    _s2_arm("unet-s2-patch", "patch"),
    _s2_arm("unet-s2-patch-radio", "patch", radiometric=True),
    _s2_arm("unet-s2-global-radio", "none", radiometric=True),
    _s2_arm("unet-s2-patch-idx", "patch", INDICES),
    _s2_arm("unet-s2-global-idx", "none", INDICES),
    _s2_arm("unet-s2-global-idx-radio", "none", INDICES, radiometric=True),
    _s2_arm("unet-s2-patch-idx-radio", "patch", INDICES, radiometric=True),
    _s2_arm("unet-s2-patch-bal", "patch", balanced=True),
    _s2_arm("unet-s2-global-radio-bal", "none", radiometric=True, balanced=True),
    _s2_arm("unet-s2-patch-idx-bal", "patch", INDICES, balanced=True),
    _s2_arm("unet-s2-global-idx-radio-bal", "none", INDICES, radiometric=True, balanced=True),
    _s2_arm("unet-s2-both-radio", "both", radiometric=True),
    _s2_arm("unet-s2-both-idx-radio", "both", INDICES, radiometric=True),
    _s2_arm("unet-s2-both", "both"),
    _s2_arm("unet-s2-local", "local", window=63),
    _s2_arm("unet-s2-local31", "local", window=31),
    _s2_arm("unet-s2-scene-both", "both", norm="scene"),
    _s2_arm("unet-s2-last", "none", norm="scene"),
    _s2_arm("unet-s2-ema25", "none", norm="scene", ema=25),
    _s2_arm("unet-s2-ema10", "none", norm="scene", ema=10),
    _s2_arm("unet-s2-radio", "none", norm="scene", ema=10, flips=True, radiometric=True),
    _s2_arm("unet-s2-bal", "none", norm="scene", ema=10, flips=True, balanced=True),
    _s2_arm("unet-s2-radio-bal", "none", norm="scene", ema=10, flips=True, radiometric=True,
            balanced=True),
    _s2_arm("unet-s2-flips", "none", norm="scene", ema=10, flips=True),
    # one training of unet-s2's recipe, each scene's patches drawn by their number (stated:
    # the recipe drew every scene alike when it was measured): the large tile's class shares
    # set the prior
    Arm("unet-s2-pooled", "unet-s2", EVERY_VIEW_EACH, ("--no-balanced-scenes", "--members", "1")),
    # unet-s2's recipe trained once (the recipe before it joined three trainings)
    Arm("unet-s2-one", "unet-s2", EVERY_VIEW_EACH, ("--members", "1")),
    # unet-s2's recipe drawing every scene as often as every other (the recipe before it drew
    # them by their number), its three trainings joined, and one training of it
    Arm("unet-s2-scenes", "unet-s2", EVERY_VIEW_EACH, ("--balanced-scenes", "--members", "3")),
    Arm("unet-s2-scenes-one", "unet-s2", EVERY_VIEW_EACH, ("--balanced-scenes", "--members", "1")),
    # nine trainings of 50 iterations joined, each member mapping all four flips of every
    # window, or none (the recipe spreads the four over its members: member_views)
    Arm("unet-s2-short9", "unet-s2", EVERY_VIEW_EACH,
        ("--members", "9", "--max-iterations", "50")),
    Arm("unet-s2-short9-once", "unet-s2", {"flips": False, "member_views": False},
        ("--members", "9", "--max-iterations", "50")),
    # the recipe as it was: three trainings of 150 iterations, each mapping all four flips
    Arm("unet-s2-three", "unet-s2", EVERY_VIEW_EACH,
        ("--members", "3", "--max-iterations", "150")),
    # the candidate recipe that maps each pixel alike whatever extent is mapped: unet-s2's
    # recipe (nine trainings) on the training statistics it records, with radiometric
    # augmentation for the scene-to-scene shifts its own scene's statistics took away; a
    # candidate, not the default: at 25 iterations it lost to unet-s2 on every tile
    # (docs/real-data.md, "The candidate recipe on the training statistics")
    Arm("unet-s2-fixed", "unet-s2", {}, ("--norm", "training", "--radiometric", "--members", "9")),
    PLAIN,
)}


#: Where the encoder arms tell the encoder they are: one place and month for every fold (the
#: equator at the prime meridian, January), so a patch's features are the same whichever tiles
#: a fold trains on and are encoded once for all of them; a model file maps every region with
#: the location and month it records.
ENCODER_PLACE = {"latlon": [0.0, 0.0], "month": 0}


def _encoder_arm(name: str, encoder: str, fusion: str, norm: str) -> Arm:
    """An arm fusing ``encoder`` (frozen) with ``fusion``, normalised by ``norm``.

    Every option it compares is stated: plain shuffling, no radiometric augmentation, no
    weight average.
    """
    return Arm(name, "unet-s2", dict(ENCODER_PLACE),
               ("--fusion", fusion, "--norm", norm, "--no-balanced-sampling",
                "--no-balanced-scenes", "--no-radiometric", "--ema", "0", "--members", "1"),
               encoder)


#: The pretrained-encoder arms. ``presto-scene`` is the product's command
#: ``isamap-train --model unet-s2 --encoder presto=PATH`` with every other option its recipe's
#: (Presto's features beside the bands, each scene normalised by its own statistics, the
#: recipe's trainings, weight average, flips and sampling), told the common place and month
#: (:data:`ENCODER_PLACE`), its ``--norm`` stated; ``presto-training`` normalises by the
#: training statistics (``--norm training``: the encoder reads the stack's reflectance as
#: it is).
#: The ``context`` arms read Presto's features and the bands, with their means over 5 and
#: 15 px squares, out linearly (``--fusion context``); ``presto-context`` normalises by
#: each scene's statistics (the encoder reads each scene matched to the training data's),
#: ``presto-context-raw`` by the training statistics (the encoder reads the stack as it is).
ENCODER_ARMS = {arm.name: arm for arm in (
    Arm("presto-training", "unet-s2", dict(ENCODER_PLACE), ("--norm", "training"), "presto"),
    Arm("presto-scene", "unet-s2", dict(ENCODER_PLACE), ("--norm", "scene"), "presto"),
    _encoder_arm("presto-context", "presto", "context", "scene"),
    _encoder_arm("presto-context-raw", "presto", "context", "training"),
)}
ARMS.update(ENCODER_ARMS)


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
    wanted = {arm_of(part).encoder for arm in arms for part in arm.split("+")} - {None}
    out = {}
    for name in sorted(n for n in wanted if n):
        entry = encoder_entry(name)
        path = files.get(name) or str(data.parent / "weights" / WEIGHT_FOLDERS[name] /
                                      entry.file_name)
        load_encoder(entry, path)
        out[name] = path
    return out
