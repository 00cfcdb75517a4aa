"""Paths in files a user may share: relative to the output, or a file name; never absolute.

STAC items, publication manifests and asset properties (public with ``--public``), map
records, accuracy and evaluation reports travel with the maps and models. An absolute path
in them publishes the maker's file system (``/home/<user>/...``) and means nothing on another
machine. Every writer of such a file passes what it records through :func:`shareable` (or a
single path through :func:`shareable_path`): a local path under the output becomes relative
to it, any other local path its file name; ``gs://`` and ``http(s)://`` addresses are kept,
they name where the shared object lives. Model files, shared too, must still find their
dataset: they record it through :func:`portable_path` (relative to the model file's folder,
climbing out of it where needed). Files that stay on the maker's machine (resume records,
digests of inputs) are not for this.

May import: nothing of the project.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

_ABSOLUTE = re.compile(r"^(/|~|[A-Za-z]:[\\/]|\\\\)")
"""A string that is an absolute local path (POSIX, home-relative, Windows drive or share)."""

_EMBEDDED = re.compile(r"(?<![\w.:/])(/(?:[^\s/`'\"()<>|,;]+/)+[^\s/`'\"()<>|,;]*)")
"""An absolute POSIX path of at least two components inside a longer text."""


def is_absolute_local(text: str) -> bool:
    """Whether ``text`` is an absolute path on the local file system (not ``gs://``, URLs)."""
    return bool(_ABSOLUTE.match(text)) and not text.startswith("/vsigs/")


def shareable_path(path: str | os.PathLike[str], base: str | os.PathLike[str] | None = None
                   ) -> str:
    """``path`` as a shared file may name it.

    Args:
        path: a local path (absolute or relative to the working folder), ``/vsigs/`` path,
            ``gs://`` or ``http(s)://`` address.
        base: the output folder the shared file describes (a local path or ``gs://`` prefix).

    Returns:
        ``gs://``/``http(s)://`` addresses unchanged (``/vsigs/b/k`` as ``gs://b/k``); a path
        under ``base`` relative to it (POSIX separators); any other path its file name.
    """
    text = os.fspath(path)
    if text.startswith("/vsigs/"):
        text = "gs://" + text[len("/vsigs/"):]
    base_text = os.fspath(base) if base is not None else None
    if "://" in text:
        if base_text and "://" in base_text:
            root = base_text.rstrip("/") + "/"
            if text.startswith(root):
                return text[len(root):]
        return text
    local = Path(text)
    if base_text and "://" not in base_text:
        try:
            inside = local.absolute().resolve().relative_to(
                Path(base_text).absolute().resolve())
        except (ValueError, OSError):
            inside = None
        if inside is not None:
            return PurePosixPath(*inside.parts).as_posix() if inside.parts else "."
    return local.name or text


def portable_path(path: str | os.PathLike[str], base: str | os.PathLike[str]) -> str:
    """``path`` as a shared file that must find it again names it: relative to ``base``.

    For files that are shared and still lead to their inputs (a model file's dataset): a
    local path becomes relative to the folder ``base`` the file lies in, climbing out of it
    where needed (``../../data/patches``), so a copy moved together with its inputs in the
    same layout finds them again. Where the way between them passes the file system's root or
    a folder above the home folder (``/home``), the relative path would spell out the maker's
    folders, and the file name alone is kept. ``gs://`` and ``http(s)://`` addresses, and any
    path when ``base`` is one, as :func:`shareable_path`.
    """
    text = os.fspath(path)
    if "://" in text or text.startswith("/vsigs/") or "://" in os.fspath(base):
        return shareable_path(text, base)
    target = os.path.abspath(text)
    folder = os.path.abspath(os.fspath(base))
    try:
        common = Path(os.path.commonpath([target, folder]))
    except ValueError:  # other drives (Windows): no relative way between them
        return shareable_path(text, base)
    home = Path.home()
    if common == Path(common.anchor) or common in home.parents:
        return shareable_path(text, base)
    return PurePosixPath(*Path(os.path.relpath(target, folder)).parts).as_posix()


def resolved_path(recorded: str, base: str | os.PathLike[str]) -> str:
    """A path :func:`portable_path` recorded, back as a path from here (absolute ones as is).

    ``recorded`` relative to ``base`` (the folder of the file that records it, a local path
    or a ``gs://`` prefix); addresses (``gs://``, ``http(s)://``) and absolute paths (files
    of older versions) are kept.
    """
    if "://" in recorded or is_absolute_local(recorded) or recorded.startswith("/vsigs/"):
        return recorded
    base_text = os.fspath(base)
    if "://" in base_text:
        scheme, rest = base_text.split("://", 1)
        return f"{scheme}://{posixpath.normpath(posixpath.join(rest, recorded))}"
    return os.path.normpath(os.path.join(os.path.abspath(base_text), recorded))


def shareable_text(text: str, base: str | os.PathLike[str] | None = None) -> str:
    """``text`` with every absolute local path in it made shareable, the home folder as ``~``."""
    if is_absolute_local(text) and not any(c.isspace() for c in text):
        return shareable_path(text, base)
    text = _EMBEDDED.sub(lambda m: shareable_path(m.group(1), base), text)
    home = str(Path.home())
    return text.replace(home, "~") if len(home) > 1 else text


def shareable(value: Any, base: str | os.PathLike[str] | None = None) -> Any:
    """``value`` (JSON-like: mappings, lists, strings, paths) with every local path shareable.

    Keys are kept; strings holding an absolute local path, alone or inside a text, are
    rewritten by :func:`shareable_path`; ``os.PathLike`` values become shareable strings.
    """
    if isinstance(value, os.PathLike):
        return shareable_path(value, base)
    if isinstance(value, str):
        return shareable_text(value, base)
    if isinstance(value, Mapping):
        return {key: shareable(item, base) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [shareable(item, base) for item in value]
    return value

