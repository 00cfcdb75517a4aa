"""What an ``--out`` already holds: a map of another model or another input is refused.

A prediction into an ``--out`` holding a map replaces it only where the map is of the same
model and the same input (other options, such as the tiling or a post-processing, map again:
the user asked for it); anything else would lose a map of another product, place or date
without a word.

An input's identity, as a map records it in its tags:

- ``input``: the file's name (never its folder), named in messages;
- ``input_grid``: a digest of its size, transform and CRS;
- ``input_month``: the month the stack's ``MONTH`` tag records, where it records one;
- ``input_content``: a digest of the content fingerprint a local-backend stack records
  (``ISAMAP_FINGERPRINT``), where it records one;
- ``input_pixels``: a digest of the decimated sample of the bands the model reads (the one
  the value checks read, :func:`inference.predict.expected_inputs.read_band_sample`).

The name, the grid and the month (where both record one) agreeing make the same input (the
map is replaced or kept as the run's options say). The content fingerprint only recognises a
copy of the stack under another name as the same input (its finished map is kept, naming the
file it was made from): it covers the stack's labels and recipe as well as its image, so a
stack exported again with the same image differs in it. Either way the pixels must agree
where both record them: another stack of the same name and grid (``2019/stack.tif`` after
``2021/stack.tif``, neither tagged), or a copy edited with its tags kept, is another input.
Maps written before inputs were recorded, and fetched sources (``isamap-map``), are not
compared.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import rasterio
import rasterio.errors

from contract.stack import FINGERPRINT_TAG, recorded_month
from core.digest import chunks_sha256, json_digest
from core.errors import ConfigError
from core.storage import files


def existing_tags(class_path: str) -> dict[str, str] | None:
    """The tags of a map already at ``class_path``.

    None when there is none, or it is damaged (a full disk cut it: it is written again).
    """
    if not files.exists(class_path):
        return None
    try:
        with rasterio.open(files.gdal_path(class_path)) as ds:
            return dict(ds.tags())
    except rasterio.errors.RasterioError:
        return None


def check_same_model(class_path: str, model_id: str, model: str) -> None:
    """Refuse to replace the maps of another model at the same ``--out``.

    A changed tiling or input of the same model maps again (the user asked for it); another
    model's map is a different product, and silently overwriting it loses it.
    """
    tags = existing_tags(class_path)
    if tags is None:
        return
    theirs, their_name = tags.get("model_id", ""), tags.get("model", "")
    if (theirs and model_id and theirs != model_id) or (not theirs and their_name
                                                        and their_name != model):
        raise ConfigError(
            f"{class_path} is a map of another model ({their_name or 'unnamed'}"
            f"{', id ' + theirs if theirs else ''}); this run's model is {model}"
            f"{', id ' + model_id if model_id else ''}: give another --out, or delete that "
            "map first")


def input_tags(run: Mapping[str, Any], source: Any,
               pixels: np.ndarray | None = None) -> dict[str, str]:
    """What a map records of its input file (see the module's docstring).

    Args:
        run: the run's fingerprint (its ``input``, ``size``, ``transform`` and ``crs``).
        source: the open input, whose own tags (``tags()``) hold its month and content
            fingerprint.
        pixels: the decimated sample of the bands the model reads (None: not recorded).
    """
    read = getattr(source, "tags", None)
    stack_tags = dict(read()) if callable(read) else {}
    name = str(run["input"]).rstrip("/").rsplit("/", 1)[-1]
    tags = {"input": name,
            "input_grid": json_digest([run["size"], run["transform"], run["crs"]], 16)}
    month = recorded_month(dict(stack_tags))
    if month:
        tags["input_month"] = month
    if stack_tags.get(FINGERPRINT_TAG):
        tags["input_content"] = json_digest(stack_tags[FINGERPRINT_TAG], 16)
    if pixels is not None:
        tags["input_pixels"] = chunks_sha256([np.ascontiguousarray(pixels).tobytes()], 16)
    return tags


def check_same_input(class_path: str, ours: Mapping[str, str]) -> None:
    """Refuse to replace a map of another input at ``--out`` (see the module's docstring)."""
    tags = existing_tags(class_path) if ours else None
    if tags is None or "input" not in tags:
        return
    theirs = tags["input"]
    months = (tags.get("input_month"), ours.get("input_month"))
    pixels = (tags.get("input_pixels"), ours.get("input_pixels"))
    same_pixels = None in pixels or pixels[0] == pixels[1]
    same_grid = tags.get("input_grid") == ours["input_grid"]
    if theirs == ours["input"] and same_grid and same_pixels and (
            None in months or months[0] == months[1]):
        return
    if (tags.get("input_content") and tags["input_content"] == ours.get("input_content")
            and same_pixels):
        return  # the same stack under another name
    what, mine = "input", ours["input"]
    if None not in months and months[0] != months[1]:
        theirs, mine = f"{theirs} of {months[0]}", f"{ours['input']} of {months[1]}"
    elif theirs == ours["input"] and not same_grid:
        what = "grid (another extent or pixel size)"
    elif theirs == ours["input"]:
        theirs = f"a {theirs} of other pixels on the same grid"
    raise ConfigError(f"{class_path} is a map of another {what}: {theirs}, where this run's "
                      f"--input is {mine}; give another --out, or delete that map first")
