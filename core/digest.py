"""Content digests: the one SHA-256 of a file's bytes, of a text and of a JSON value.

Every identity that decides whether finished work is reused is a digest: a stack's fingerprint in
the manifest, a model file's id in a prediction's checkpoint and COG tags, the names of a map's
tiles, the autotune cache key, an experiment's result key. They are written to disk and compared
by later runs, so each kind must be computed one way only: a second implementation differing in
a separator, the key order or the treatment of a path would silently stop resumes from matching
(or make two different inputs match). Changing anything here changes persisted identities.

* :func:`file_sha256` / :func:`files_sha256`: the bytes of files, streamed in 1 MiB reads (memory
  stays flat for any file size).
* :func:`chunks_sha256`: byte strings in memory, one after the other.
* :func:`json_digest`: a JSON-like value as canonical JSON (sorted keys, ``json.dumps``'s
  default separators, one :func:`canonical_json` policy for non-JSON values).
* :func:`combined_digest`: several digests or facts as one labelled ``sha256:<hex>``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from typing import Any, Protocol

ALGORITHM = "sha256"
"""The hash of every project digest; :func:`combined_digest` names it in its output."""

CHUNK = 1 << 20
"""Bytes per read when a file is streamed into a hash."""


class Hasher(Protocol):
    """What :func:`update_from_file` needs of a ``hashlib`` object (any algorithm)."""

    def update(self, data: bytes, /) -> None: ...


def update_from_file(hasher: Hasher, path: str | os.PathLike[str]) -> None:
    """Feed a file's bytes into ``hasher`` in :data:`CHUNK` reads.

    The one streaming loop: the SHA-256 digests here and the MD5 checksums Cloud Storage
    compares (:mod:`core.storage.base`) both read files through it.
    """
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            hasher.update(chunk)


def _hex(hasher: Any, length: int | None) -> str:
    text: str = hasher.hexdigest()
    return text if length is None else text[:length]


def file_sha256(path: str | os.PathLike[str], length: int | None = None) -> str:
    """SHA-256 (hex) of a file's bytes, cut to ``length`` characters when given."""
    return files_sha256([path], length)


def files_sha256(paths: Iterable[str | os.PathLike[str]], length: int | None = None) -> str:
    """SHA-256 (hex) of several files' bytes one after the other (order matters)."""
    hasher = hashlib.new(ALGORITHM)
    for path in paths:
        update_from_file(hasher, path)
    return _hex(hasher, length)


def chunks_sha256(chunks: Iterable[bytes], length: int | None = None) -> str:
    """SHA-256 (hex) of byte strings one after the other (a model file's weights, in memory)."""
    hasher = hashlib.sha256()
    for chunk in chunks:
        hasher.update(chunk)
    return _hex(hasher, length)


def text_sha256(text: str, length: int | None = None) -> str:
    """SHA-256 (hex) of a text's UTF-8 bytes, cut to ``length`` characters when given."""
    return _hex(hashlib.new(ALGORITHM, text.encode("utf-8")), length)


def _jsonable(value: Any) -> Any:
    """The one policy for values ``json`` cannot write, so a digest never depends on a repr.

    Paths are their text, sets their sorted elements, numpy scalars their Python value; anything
    else is refused (``str()`` of an object may hold its memory address, which differs per run).
    """
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", None) == 0:
        return value.item()
    raise TypeError(f"{type(value).__name__} has no canonical JSON form; convert it first")


def canonical_json(value: Any) -> str:
    """The text :func:`json_digest` hashes: sorted keys, the default separators.

    Raises:
        TypeError: for a value without a canonical form (see :func:`_jsonable`).
    """
    return json.dumps(value, sort_keys=True, default=_jsonable)


def json_digest(value: Any, length: int | None = None) -> str:
    """SHA-256 (hex) of :func:`canonical_json` ``(value)``, cut to ``length`` when given."""
    return text_sha256(canonical_json(value), length)


def combined_digest(parts: Iterable[str]) -> str:
    """One labelled digest of several texts (order matters): ``sha256:<hex>``.

    Each part is followed by a NUL byte, so ``["ab", "c"]`` and ``["a", "bc"]`` differ.
    """
    hasher = hashlib.new(ALGORITHM)
    for part in parts:
        hasher.update(part.encode("utf-8"))
        hasher.update(b"\0")
    return f"{ALGORITHM}:{hasher.hexdigest()}"
