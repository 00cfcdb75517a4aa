"""The Sentinel-2 level of a stack or of imported patches, read from the same evidence.

The pixels decide (:func:`contract.input_facts.judge_level`: the atmosphere's path radiance in
the blue); what the input says of itself decides only where they cannot tell
(:func:`s2_level_of`: a ``PRODUCT_LEVEL`` tag, a B10 band, an isamap export forced with
``--allow-l1c``). ``isamap-predict`` and ``isamap-map`` judge their input by it;
``isamap-import-patches`` judges its patches by it (:func:`check_import_level`) and, like the
export, refuses Level-1C unless ``--allow-l1c`` is given, which the dataset's recipe then
records (``allow_l1c``), so a model trained on it maps Level-1C stacks with a warning.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Mapping, Sequence

import numpy as np

from contract.archive import S2_L2A_COLLECTION
from contract.input_facts import input_facts, judge_level
from core.errors import ConfigError, InputDataError

#: what ``--allow-l1c`` is for, the start of every refusal of it where it has no scenes to read
ALLOW_L1C_SCOPE = "--allow-l1c lets --backend local composite Level-1C scenes"


def s2_level_of(tags: Mapping[str, str], descriptions: Sequence[str | None]) -> str | None:
    """``"L1C"`` when a stack says it holds top-of-atmosphere Sentinel-2, else None.

    It says so by a ``PRODUCT_LEVEL`` tag ``L1C`` or ``Level-1C``, by a B10 band (Sen2Cor drops the
    cirrus band from L2A), or by an isamap export forced with ``--allow-l1c`` (its
    ``ISAMAP_RECIPE`` tag: such a stack may hold L1C scenes).
    """
    if re.search(r"(L|LEVEL-?)1C$", str(tags.get("PRODUCT_LEVEL", "")).strip().upper()):
        return "L1C"
    if any(str(d or "").upper() == "B10" for d in descriptions):
        return "L1C"
    return "L1C" if allowed_l1c(tags) else None


def allowed_l1c(tags: Mapping[str, str]) -> bool:
    """Whether the stack is an isamap export forced with ``--allow-l1c`` (its recipe tag)."""
    try:
        recipe = (json.loads(tags.get("ISAMAP_RECIPE") or "{}").get("recipe") or {})
    except (ValueError, AttributeError):
        return False
    return bool(recipe.get("allow_l1c"))


def check_import_level(samples: Mapping[str, np.ndarray], stated: str | None,
                       allow_l1c: bool, what: str = "the images") -> str | None:
    """Refuse imported patches of Level-1C (top-of-atmosphere) pixels, or warn when allowed.

    As the export treats its scenes (``gee_export.local.sentinel2.check_level``): refused in
    one line unless ``allow_l1c`` (``--allow-l1c``), else a warning. The level is judged as
    every command judges a stack's (:func:`contract.input_facts.judge_level`).

    Args:
        samples: band name -> sampled values, reflectance 0-1 (as imported).
        stated: ``"L1C"`` when the images' tags or band names say so (:func:`s2_level_of`).
        allow_l1c: the user asked for Level-1C patches to be imported.
        what: how the message names the patches.

    Returns:
        The level taken (``"L1C"``, ``"L2A"``, or None where nothing tells).

    Raises:
        InputDataError: Level-1C without ``allow_l1c``.
    """
    facts = input_facts(samples)
    judged = judge_level(facts, stated=stated)
    if judged.taken != "L1C":
        return judged.taken
    o = facts.optical
    if judged.shown == "L1C" and o is not None and o.blue_excess is not None:
        why = (f"their pixels show the atmosphere's path radiance: over vegetation B2 (blue) is "
               f"{o.blue_excess:+.3f} above B4 (red) and the darkest B2 "
               f"{o.floor['B2'] - o.floor['B3']:+.3f} above the darkest B3")
    else:
        why = "their tags or band names say so and their pixels cannot show otherwise"
    refuse_or_warn_l1c(f"{what} are Sentinel-2 Level-1C ({why})", allow_l1c, "import",
                       "; the dataset records allow_l1c, so its models map Level-1C")
    return "L1C"


def refuse_or_warn_l1c(said: str, allow_l1c: bool, doing: str, note: str = "") -> None:
    """Refuse Level-1C input in one line, or warn where ``--allow-l1c`` asked for it.

    The one wording of the local export's scene check and the patch import's: ``said`` names
    the input and why it is Level-1C, ``doing`` what ``--allow-l1c`` lets go on (``import``,
    ``composite``), ``note`` what the warning adds after "values are TOA".

    Raises:
        InputDataError: Level-1C input without ``allow_l1c``.
    """
    message = (f"{said}, top-of-atmosphere reflectance; the recipe is Level-2A surface "
               "reflectance. Use the L2A product")
    if not allow_l1c:
        raise InputDataError(message + ", or pass --allow-l1c (Python: allow_l1c=True) to "
                             f"{doing} TOA anyway.")
    warnings.warn(message + "; continuing because of --allow-l1c / allow_l1c=True (values "
                  f"are TOA{note}).", stacklevel=3)


def check_allow_l1c_backend(allow_l1c: bool, backend: str | None) -> None:
    """Refuse ``--allow-l1c`` with ``--backend ee`` (``isamap-export``, ``isamap-fit``).

    Earth Engine's recipe reads its Level-2A collection, which has no Level-1C to allow: the
    flag would be taken and ignored. One line, before any Earth Engine call.

    Raises:
        ConfigError: ``allow_l1c`` with the ``ee`` backend.
    """
    if allow_l1c and backend == "ee":
        raise ConfigError(f"{ALLOW_L1C_SCOPE}; --backend ee composites Earth Engine's Level-2A "
                          f"collection ({S2_L2A_COLLECTION}): drop --allow-l1c, or give "
                          "Level-1C scenes on disk with --backend local --scenes DIR")
