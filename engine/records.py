"""Small JSON files of measured records, keyed by a digest, that a later run looks up.

The autotune cache and the int8 records are both such files: a ``format`` tag (a file of
another format, or one that cannot be read, counts as empty and is rewritten), at most a fixed
number of entries (the oldest dropped first), written atomically. A home that cannot be
written must not stop a map, so a failed write is a warning.

May import: ``core``; nothing else of the project.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from core.storage import atomic_write

log = logging.getLogger(__name__)


def read_entries(path: Path, fmt: str, what: str) -> dict[str, Any]:
    """The entries of the records file ``path`` (empty when absent, unreadable or not ``fmt``).

    ``what`` names the file in the warning about an unreadable one.
    """
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("ignoring the unreadable %s %s (%s); it will be rewritten", what, path, exc)
        return {}
    if not isinstance(data, dict) or data.get("format") != fmt:
        return {}
    entries = data.get("entries")
    return entries if isinstance(entries, dict) else {}


def write_entry(path: Path, fmt: str, what: str, key: str, value: Any, limit: int) -> None:
    """Store ``value`` under ``key`` as the newest entry, keeping at most ``limit`` entries."""
    entries = read_entries(path, fmt, what)
    entries.pop(key, None)
    entries[key] = value
    while len(entries) > limit:
        entries.pop(next(iter(entries)))
    text = json.dumps({"format": fmt, "entries": entries}, indent=1)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda fh: fh.write(text.encode()))
    except OSError as exc:  # a read-only home must not stop a prediction
        log.warning("could not write the %s %s (%s)", what, path, exc)
