"""A patch dataset's own files (``index.jsonl``, ``manifest.json``) and their one writer.

The index lists every patch (one JSON object per line); the manifest records everything needed
to reproduce the dataset. Both are rewritten whole and atomically, never appended to, so a reader
sees either the previous or the next complete version, even on Cloud Storage.

Both producers of patch datasets commit through :func:`commit_month`: the local backend
(:func:`contract.patches.patch_stack`) and the Earth Engine export
(:mod:`gee_export.ee.export`, patches fetched one by one). A :class:`DatasetSpec` holds every
parameter that must be the same for all months of a dataset (grid, bands, split, valid-fraction
threshold, fine scale, recipe); :func:`check_compatible` refuses to mix datasets made with
different parameters in one folder, and is called before any work, so a refused run changes
nothing. Fields: docs/data-contract.md.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
from rasterio.io import MemoryFile

from contract.bands import LABEL_NODATA, check_fine_scale
from contract.dataset_diff import canonical, differences, producer_note
from contract.grid import Grid
from contract.input_check import fingerprint_of, pixel_sample
from contract.label_schemes import DEFAULT_CLASSES_ISA
from contract.splits import (
    DEFAULT_BLOCK,
    DEFAULT_RATIOS,
    Split,
    assign_splits,
    normalise_ratios,
    split_counts,
)
from core.errors import ConfigError, InputDataError, StorageError
from core.jsonsafe import dumps
from core.months import check_month
from core.storage import LocalStore, Store, atomic_path, open_store, temporaries_of
from core.version import code_version

FORMAT = "isamap-patches/1"
INDEX = "index.jsonl"
MANIFEST = "manifest.json"
#: what a ``--data`` flag takes, as its refusals say it
DATA_ROOT = f"the patch dataset folder isamap-export wrote (the one holding {MANIFEST})"
RECORD_FIELDS = ("id", "month", "row", "col", "bounds", "valid_fraction", "isa_fraction",
                 "split", "image", "label")
Backend = Literal["ee", "local", "synthetic", "imported"]
BACKENDS: tuple[str, ...] = ("ee", "local", "synthetic", "imported")
DEFAULT_CLASSES: Mapping[str, str] = DEFAULT_CLASSES_ISA


# ---------------------------------------------------------------------- index and manifest
def record_key(record: Mapping[str, Any]) -> tuple[str, int, int]:
    """Sort key of index records: month, then row-major patch order."""
    return (str(record["month"]), int(record["row"]), int(record["col"]))


def read_index(root: str | os.PathLike[str] | Store, *,
               missing_ok: bool = False) -> list[dict[str, Any]]:
    """Every record of ``<root>/index.jsonl`` (local directory or gs:// URL), in index order.

    Args:
        root: the dataset root.
        missing_ok: return an empty list instead of raising when there is no index yet.
    """
    store = open_store(root)
    if not store.exists(INDEX):
        if missing_ok:
            return []
        raise StorageError(
            f"no {INDEX} in {store.url()}; is it a patch dataset (run the patcher or export first)?"
        )
    records: list[dict[str, Any]] = []
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
    text = "".join(dumps(dict(r), sort_keys=True) + "\n" for r in ordered)
    store.write_bytes(INDEX, text.encode("utf-8"))
    return len(ordered)


def read_manifest(root: str | os.PathLike[str] | Store, *,
                  missing_ok: bool = False) -> dict[str, Any]:
    """The dataset's manifest; refuses files of another format version."""
    store = open_store(root)
    if not store.exists(MANIFEST):
        if missing_ok:
            return {}
        raise StorageError(f"no {MANIFEST} in {store.url()}; is it a patch dataset?")
    try:
        manifest: dict[str, Any] = json.loads(store.read_bytes(MANIFEST))
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
    store.write_bytes(MANIFEST, (dumps(manifest, indent=2, sort_keys=True) + "\n").encode())


def patches_fingerprint(store: Store, records: Sequence[Mapping[str, Any]],
                        bands: Sequence[str]) -> dict[str, Any] | None:
    """The manifest's ``pixel_fingerprint``: that of a sample of the patches ``records``.

    Their images are read from ``store`` and sampled as training samples them
    (:func:`contract.input_check.pixel_sample`); the fingerprint
    (:class:`contract.input_check.Fingerprint`) is what ``isamap-train`` compares the
    patches it reads, and every other root of a merge, with. None: too few valid pixels.
    """
    def image(i: int) -> np.ndarray:
        with MemoryFile(store.read_bytes(records[i]["image"])) as mem, mem.open() as src:
            data: np.ndarray = src.read(out_dtype="float32")
            if src.nodata is not None:
                data[data == src.nodata] = np.nan
        return data

    pixels = pixel_sample(image, len(records), len(bands))
    found = fingerprint_of({b: pixels[i] for i, b in enumerate(bands)})
    return found.to_dict() if found is not None else None


def remove_temporaries(store: Store, month: str) -> int:
    """Delete what a killed run left of its atomic writes of the index, manifest and state.

    A local atomic write goes through a temporary file beside its target; a SIGKILL between
    the two leaves that file behind. Patch temporaries are removed by the patch writer; these
    are the dataset's own files (``index.jsonl``, ``manifest.json``, ``state/<month>/``), which
    are rewritten while a run goes, so a kill can land in one of those writes too. Cloud Storage
    writes have no temporaries. Call it only while holding the output's lock
    (:func:`core.lock.hold_output`): another run's temporaries are in flight.
    Returns how many files were deleted.
    """
    if not isinstance(store, LocalStore):
        return 0
    count = store.remove_temporaries(f"state/{month}")
    for name in (INDEX, MANIFEST):
        for tmp in temporaries_of(store.path(name)):
            tmp.unlink(missing_ok=True)
            count += 1
    return count


# ---------------------------------------------------------------------- what a dataset is
@dataclass(frozen=True)
class DatasetSpec:
    """The parameters shared by every month of one patch dataset.

    Attributes:
        grid: the pixel grid and patch layout.
        bands: image band names in file order.
        ratios: train/val/test shares of the blocked split.
        seed: split seed.
        block: split block side in patch positions.
        min_valid_fraction: patches with fewer valid pixels are not written.
        fine_scale: factor of fine labels/images, or None.
        backend: who made the stack ('ee', 'local', 'synthetic').
        region: region name (or a description of a GeoJSON/bbox).
        recipe: every composite parameter that is the same for all months (collections,
            cloud threshold, speckle filter...). Month-specific facts (date windows, source
            files and their fingerprint) go to ``sources`` in :func:`commit_month`.
        classes: label value -> class name.
        label_scheme: ``isa`` (binary) or ``landcover`` (the seven classes of
            :mod:`contract.label_schemes`), the manifest's ``label.scheme``.
    """

    grid: Grid
    bands: tuple[str, ...]
    ratios: tuple[float, float, float] = DEFAULT_RATIOS
    seed: int = 0
    block: int = DEFAULT_BLOCK
    min_valid_fraction: float = 0.9
    fine_scale: int | None = None
    backend: Backend = "local"
    region: str | None = None
    recipe: Mapping[str, Any] = field(default_factory=dict)
    classes: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_CLASSES))
    label_scheme: str = "isa"

    def __post_init__(self) -> None:
        object.__setattr__(self, "bands", tuple(self.bands))
        object.__setattr__(self, "ratios", normalise_ratios(self.ratios))
        if not self.bands or len(set(self.bands)) != len(self.bands):
            raise ConfigError(f"bands must be non-empty and unique, got {self.bands}")
        if not 0.0 <= self.min_valid_fraction <= 1.0:
            raise ConfigError(
                f"min_valid_fraction must be in [0, 1], got {self.min_valid_fraction}")
        if self.backend not in BACKENDS:
            raise ConfigError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        check_fine_scale(self.fine_scale)

    def splits(self) -> dict[tuple[int, int], Split]:
        """The split of every kept patch position of the grid (same for every month)."""
        return assign_splits(self.grid, None, self.ratios, self.seed, self.block)

    def fixed_params(self) -> dict[str, Any]:
        """The parameters that must not change between months of a dataset."""
        return {
            "grid": self.grid.to_dict(), "bands": list(self.bands),
            "split": {"method": "blocked", "ratios": list(self.ratios), "seed": self.seed,
                      "block": self.block},
            "min_valid_fraction": self.min_valid_fraction, "fine_scale": self.fine_scale,
            "classes": {str(k): str(v) for k, v in self.classes.items()},
            "recipe": dict(self.recipe),
        }


def _fixed_params_of(manifest: Mapping[str, Any]) -> dict[str, Any]:
    return {"grid": manifest.get("grid"), "bands": manifest.get("bands"),
            "split": manifest.get("split"),
            "min_valid_fraction": manifest.get("min_valid_fraction"),
            "fine_scale": manifest.get("label", {}).get("fine_scale"),
            "classes": manifest.get("label", {}).get("classes"),
            "recipe": manifest.get("recipe", {})}


def check_compatible(store: Store, spec: DatasetSpec, *, month: str | None = None,
                     fingerprint: str | None = None) -> dict[str, Any]:
    """The existing manifest of ``store`` (or {}); refuse one made with other parameters.

    Call it before any work (before a stack is built or a patch fetched), so a refused run
    leaves the dataset and its inputs as they were. With ``month`` and ``fingerprint`` (a
    content digest of the month's inputs, see :func:`contract.stack.fingerprint`),
    a month that was cut from other inputs is refused too: its patches would be mixed.
    """
    existing = read_manifest(store, missing_ok=True)
    if not existing:
        return {}
    old, new = _fixed_params_of(existing), spec.fixed_params()
    differ = [k for k in new if canonical(old[k]) != canonical(new[k])]
    if differ:
        raise ConfigError(
            f"{store.url()} already holds a dataset made with other {', '.join(differ)}"
            f"{producer_note(existing, spec.backend)}: {'; '.join(differences(old, new))}; "
            "to add to it, run with the options it was made with; else write to another "
            "folder (--out) or delete it first"
        )
    if month is not None and fingerprint is not None:
        previous = existing.get("sources", {}).get(month, {}).get("fingerprint")
        if previous and previous != fingerprint:
            raise ConfigError(
                f"the inputs of {month} changed since {store.url()} was cut from them (their "
                "content digest differs); write to another folder (--out) to cut them again, "
                "or delete the dataset's folder first"
            )
    return existing


def out_refusal(out: str, spec: DatasetSpec) -> str | None:
    """For a dry run: the real run's refusal of ``out`` (:func:`check_compatible`), else None.

    A ``gs://`` out is not read (a dry run touches no bucket): None.
    """
    try:
        if not out.startswith("gs://"):
            check_compatible(open_store(out), spec)
    except ConfigError as err:
        return str(err)
    return None


def commit_month(store: Store, spec: DatasetSpec, month: str,
                 records: Iterable[Mapping[str, Any]] | Mapping[str, Mapping[str, Any]],
                 *, complete: bool, counts: Mapping[str, Any] | None = None,
                 sources: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Replace ``month``'s records in the index and update the manifest, both atomically.

    The index is written before the manifest, so a manifest never counts patches the index
    lacks. ``complete`` tells re-runs whether the month still has work to do. ``records`` may
    be a list of records or ``PatchWriter.finished_records()``'s mapping of id to record.
    ``counts`` are the month's position counts (``positions``, ``candidates``,
    ``dropped_overlap``, ``invalid``) and ``sources`` what the month was made from (files and
    their fingerprint, or Earth Engine date windows). A ``complete`` month's commit records
    the pixels' fingerprint of every patch indexed (:func:`patches_fingerprint`).
    """
    check_month(month)
    if isinstance(records, Mapping):
        records = records.values()
    existing = check_compatible(store, spec)
    month_records = [dict(r) for r in records]
    if any(r["month"] != month for r in month_records):
        raise ConfigError(f"records of other months passed to commit_month({month!r})")
    others = [r for r in read_index(store, missing_ok=True) if r["month"] != month]
    every = others + month_records
    write_index(store, every)
    now = datetime.now(UTC).isoformat(timespec="seconds")
    per_month = dict(existing.get("counts", {}).get("per_month", {}))
    per_month[month] = {**(counts or {}), "patches": len(month_records)}
    all_sources = dict(existing.get("sources", {}))
    all_sources[month] = dict(sources or {})
    fixed = spec.fixed_params()
    # a finished month's patches are the dataset's fingerprint (the rest: as it was)
    pixels = patches_fingerprint(store, sorted(every, key=record_key), spec.bands) \
        if complete else existing.get("pixel_fingerprint")
    manifest = {
        "format": FORMAT, "code_version": code_version(),
        "created": existing.get("created", now), "updated": now,
        "backend": spec.backend,
        "region": spec.region if spec.region is not None else existing.get("region"),
        "grid": fixed["grid"], "bands": fixed["bands"],
        "months": sorted({*existing.get("months", []), month}),
        "label": {"scheme": spec.label_scheme, "classes": dict(spec.classes),
                  "nodata": LABEL_NODATA, "fine_scale": spec.fine_scale},
        "recipe": fixed["recipe"],
        "split": fixed["split"], "min_valid_fraction": spec.min_valid_fraction,
        "counts": {"patches": len(every),
                   "per_split": split_counts(r["split"] for r in every),
                   "per_month": per_month},
        "complete": {**existing.get("complete", {}), month: complete},
        "sources": all_sources,
        **({"pixel_fingerprint": pixels} if pixels else {}),
    }
    write_manifest(store, manifest)
    return manifest


# ---------------------------------------------------------------------- merged datasets
def _link(target: str, link: str) -> None:
    """``link`` -> ``target``, through the one atomic writer (made aside, renamed into place).

    Merges of one root at once (every rank of a distributed run merges) each leave the same
    link, and none sees it missing.
    """
    with atomic_path(link) as made:
        os.symlink(target, made)


def _merge_facts(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """What every part of a merge must share (a model trained on the merge records one of each).

    Returns bands, label classes and scheme, pixel size and patch size, by name.
    """
    label, grid = manifest.get("label") or {}, manifest.get("grid") or {}
    resolution, size = grid.get("resolution"), grid.get("patch_size")
    return {"bands": list(manifest.get("bands") or []),
            "label classes": dict(label.get("classes") or DEFAULT_CLASSES),
            "label scheme": label.get("scheme") or "isa",
            "pixel size (m)": None if resolution is None else float(resolution),
            "patch size (px)": None if size is None else int(size)}


def check_mergeable(parts: Mapping[str, str | os.PathLike[str]],
                    manifests: Mapping[str, Mapping[str, Any]]) -> None:
    """Refuse ``parts`` (name -> root) whose manifests differ in what a merge must share.

    The one owner of that rule: one line naming the first root, a root that differs, and
    their values of everything that differs, raised before anything of the merge is written.
    """
    (first, known), *others = [(n, _merge_facts(m)) for n, m in manifests.items()]
    for name, facts in others:
        differ = [w for w, value in facts.items() if canonical(value) != canonical(known[w])]
        if differ:
            what = " and ".join(differ)
            raise InputDataError(
                f"the datasets to merge hold different {what}: {parts[first]} has "
                f"{' and '.join(str(known[w]) for w in differ)}, {parts[name]} has "
                f"{' and '.join(str(facts[w]) for w in differ)}; train on datasets exported "
                f"with the same {what} (or train on each alone)")


def merge_datasets(parts: Mapping[str, str | os.PathLike[str]],
                   out: str | os.PathLike[str]) -> str:
    """One patch dataset (a local folder) listing the patches of ``parts`` (name -> root).

    What ``isamap-train --data A B ...`` trains on: every part's patches of every split, so
    the validation split holds patches of every part. The merged root links each part's
    folder under its name and prefixes the records' ids and files with it, so each part's
    scenes stay apart (``training.data.scene_key``); the manifest is the first part's, with
    ``merged_from`` naming the parts. The parts must be local and hold the same bands in the
    same order, label classes and scheme, pixel size and patch size
    (:func:`check_mergeable`); a refused merge writes nothing. Returns the merged root.
    """
    root = os.path.abspath(out)
    manifests = {name: read_manifest(path) for name, path in parts.items()}
    check_mergeable(parts, manifests)
    records = []
    for name, path in parts.items():
        for record in read_index(path):
            moved = dict(record, id=f"{name}/{record['id']}")
            for key, value in record.items():
                if key not in ("id", "split") and isinstance(value, str) and value.endswith(".tif"):
                    moved[key] = f"{name}/{value}"
            records.append(moved)
    os.makedirs(root, exist_ok=True)
    for name, path in parts.items():
        link, target = os.path.join(root, name), os.path.abspath(path)
        if not os.path.lexists(link) or (os.path.islink(link) and os.readlink(link) != target):
            _link(target, link)  # new, or a merge moved with its parts (or made elsewhere)
    store = open_store(root)
    write_manifest(store, dict(next(iter(manifests.values())), merged_from=list(parts)))
    write_index(store, records)
    return root
