"""Which of a run's options are local paths, and how a recorded copy of them converts them.

A run's options are recorded twice: in its ``config.yaml`` (relative to the run folder, so
the file reruns its run from wherever it is given) and in its model file's
``extra["config"]`` (relative to the model file's folder, since the file is shared:
:func:`core.shareable.portable_path`). Both convert the same options, :data:`PATH_KEYS` and
the file of ``--encoder NAME=PATH``, through :func:`converted_paths`, the one owner of that
list.

May import: nothing of isamap.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

#: a key of a run's ``config.yaml``: its ``data``, ``out_dir`` and the encoder's file are
#: relative to the file's folder (the run folder), so the file reruns its run from wherever
#: it is given
PATHS_FROM_FILE = "paths_relative_to_this_file"
#: the options that are a path as they stand (``--encoder`` holds one after its ``NAME=``)
PATH_KEYS = ("data", "out_dir")


def converted_paths(values: Mapping[str, Any], convert: Callable[[str], str]) -> dict[str, Any]:
    """``values`` (a run's options) with each local path among them converted.

    Args:
        values: the options, by name.
        convert: what becomes of one local path (not an address such as ``gs://``).

    Returns:
        A copy with :data:`PATH_KEYS` and the PATH of ``encoder: NAME=PATH`` converted; empty
        values, addresses and an encoder given by name alone kept as they are.
    """
    out = dict(values)
    for key in PATH_KEYS:
        value = out.get(key)
        if isinstance(value, str) and value and "://" not in value:
            out[key] = convert(value)
    encoder = out.get("encoder")
    name, sep, weights = encoder.partition("=") if isinstance(encoder, str) else ("", "", "")
    if sep and weights and "://" not in weights:
        out["encoder"] = f"{name}={convert(weights)}"
    return out


def from_folder(folder: str, value: str) -> str:
    """A path of a run's ``config.yaml`` (relative to ``folder``) as this process opens it."""
    if not value or "://" in value or os.path.isabs(value):
        return value
    return os.path.normpath(os.path.join(folder, value))


def encoder_from_folder(folder: str, value: str) -> str:
    """``NAME=PATH`` of ``--encoder`` with its PATH read from ``folder``, as :func:`from_folder`."""
    name, sep, path = value.partition("=")
    return f"{name}={from_folder(folder, path)}" if sep else value
