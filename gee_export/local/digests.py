"""Content digests of the local scenes a stack is made from, computed once per file version.

A month's stack is identified by what it is made from (the recipe and the bytes of every source
file it reads), so deleting ``stacks/`` and running the same command again rebuilds an identical
stack that the dataset accepts, and a changed scene is noticed. Hashing a month of full tiles
reads gigabytes, so each file's SHA-256 is kept in a small cache beside the stacks, keyed by the
file's identity *and* its inode change time: any write to a file (even one that restores its
modification time, ``cp -p`` or ``touch -r``) changes ``st_ctime``, which user space cannot
set, so a cached digest is reused only for the very same bytes. Entries are keyed by a digest
of the file's absolute path, not the path: the cache lies in the output folder, which users
share, and a path would name the maker's folders.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from core.digest import chunks_sha256, file_sha256
from core.storage import atomic_write

CACHE_NAME = ".source_digests.json"


class DigestCache:
    """SHA-256 of source files, remembered in ``<folder>/.source_digests.json``.

    Args:
        folder: where the cache file lives (the stack folder); None keeps it in memory only.
    """

    def __init__(self, folder: str | os.PathLike[str] | None):
        self.path = Path(folder) / CACHE_NAME if folder is not None else None
        self._entries: dict[str, dict] = {}
        self._dirty = False
        if self.path is not None and self.path.is_file():
            try:
                loaded = json.loads(self.path.read_text(encoding="utf-8"))
                self._entries = loaded if isinstance(loaded, dict) else {}
            except (OSError, ValueError):
                self._entries = {}  # a damaged cache only costs a re-hash

    def digest(self, path: str | os.PathLike[str]) -> str:
        """The file's SHA-256 (hex), from the cache when the file is provably unchanged."""
        resolved = Path(path).resolve()
        key = chunks_sha256([os.fsencode(resolved)], 32)
        info = resolved.stat()
        identity = [info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns]
        entry = self._entries.get(key)
        if entry and entry.get("identity") == identity:
            return str(entry["sha256"])
        value = file_sha256(resolved)
        self._entries[key] = {"identity": identity, "sha256": value}
        self._dirty = True
        return value

    def digests(self, paths: Iterable[str | os.PathLike[str]]) -> dict[str, str]:
        """``{path: sha256}`` of several files (each distinct file hashed once)."""
        return {str(p): self.digest(p) for p in dict.fromkeys(str(p) for p in paths)}

    def save(self) -> None:
        """Write the cache (atomically) when something was hashed."""
        if self.path is None or not self._dirty:
            return
        text = json.dumps(self._entries, sort_keys=True, indent=0)
        atomic_write(self.path, lambda handle: handle.write(text.encode("utf-8")))
        self._dirty = False
