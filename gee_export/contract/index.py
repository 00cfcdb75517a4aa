"""``index.jsonl`` and ``manifest.json``: how a patch dataset describes itself.

The index lists every patch (one JSON object per line) and the manifest records everything
needed to reproduce the dataset. Both are rewritten whole and atomically, never appended to, so a
reader sees either the previous or the next complete version, even on Cloud Storage. See
docs/data-contract.md for the fields.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping
from typing import Any

from gee_export.core.errors import InputDataError, StorageError
from gee_export.core.storage import TEMP_MARK, LocalStore, Store, open_store

FORMAT = "isamap-patches/1"
INDEX = "index.jsonl"
MANIFEST = "manifest.json"
RECORD_FIELDS = ("id", "month", "row", "col", "bounds", "valid_fraction", "isa_fraction",
                 "split", "image", "label")


def _store(root: str | os.PathLike[str] | Store) -> Store:
    return open_store(root)


def remove_temporaries(store: Store, month: str) -> int:
    """Delete what a killed run left of its atomic writes of the index, manifest and state.

    A local atomic write goes through a temporary file beside its target; a SIGKILL between
    the two leaves that file behind. Patch temporaries are removed by the patch writer; these
    are the dataset's own files (``index.jsonl``, ``manifest.json``, ``state/<month>/``), which
    are rewritten while a run goes, so a kill can land in one of those writes too. Cloud Storage
    writes have no temporaries. Returns how many files were deleted.
    """
    if not isinstance(store, LocalStore):
        return 0
    count = store.remove_temporaries(f"state/{month}")
    for name in (INDEX, MANIFEST):
        target = store.path(name)
        if target.parent.is_dir():
            for tmp in target.parent.glob(f".{name}{TEMP_MARK}*"):
                tmp.unlink(missing_ok=True)
                count += 1
    return count


def record_key(record: Mapping[str, Any]) -> tuple[str, int, int]:
    """Sort key of index records: month, then row-major patch order."""
    return (str(record["month"]), int(record["row"]), int(record["col"]))


def read_index(root: str | os.PathLike[str] | Store, *, missing_ok: bool = False) -> list[dict]:
    """Every record of ``<root>/index.jsonl`` (local directory or gs:// URL), in index order.

    Args:
        root: the dataset root.
        missing_ok: return an empty list instead of raising when there is no index yet.
    """
    store = _store(root)
    if not store.exists(INDEX):
        if missing_ok:
            return []
        raise StorageError(
            f"no {INDEX} in {store.url()}; is it a patch dataset (run the patcher or export first)?"
        )
    records = []
    for number, line in enumerate(store.read_bytes(INDEX).decode("utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputDataError(f"{store.url(INDEX)} line {number} is not JSON: {exc}") from None
        missing = [f for f in RECORD_FIELDS if f not in record]
        if missing:
            raise InputDataError(f"{store.url(INDEX)} line {number} lacks {missing}")
        records.append(record)
    return records


def write_index(store: Store, records: Iterable[Mapping[str, Any]]) -> int:
    """Write the index atomically, one record per line in (month, row, col) order."""
    ordered = sorted(records, key=record_key)
    text = "".join(json.dumps(dict(r), sort_keys=True, allow_nan=False) + "\n" for r in ordered)
    store.write_bytes(INDEX, text.encode("utf-8"))
    return len(ordered)


def read_manifest(root: str | os.PathLike[str] | Store, *, missing_ok: bool = False) -> dict:
    """The dataset's manifest; refuses files of another format version."""
    store = _store(root)
    if not store.exists(MANIFEST):
        if missing_ok:
            return {}
        raise StorageError(f"no {MANIFEST} in {store.url()}; is it a patch dataset?")
    try:
        manifest = json.loads(store.read_bytes(MANIFEST))
    except json.JSONDecodeError as exc:
        raise InputDataError(f"{store.url(MANIFEST)} is not JSON: {exc}") from None
    if manifest.get("format") != FORMAT:
        raise InputDataError(
            f"{store.url(MANIFEST)} has format {manifest.get('format')!r}; this code reads "
            f"{FORMAT!r}. Re-export the dataset or use a matching isamap version."
        )
    return manifest


def write_manifest(store: Store, manifest: Mapping[str, Any]) -> None:
    """Write the manifest atomically (pretty-printed: people read it)."""
    text = json.dumps(_jsonable(manifest), indent=2, sort_keys=True, allow_nan=False) + "\n"
    store.write_bytes(MANIFEST, text.encode("utf-8"))


def _jsonable(value: Any) -> Any:
    """Make tuples lists and non-finite floats None, so manifests are strict JSON."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
