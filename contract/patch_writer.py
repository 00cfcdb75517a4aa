"""Writing single patches, and where one month of a dataset stands (the one resume logic).

A patch is finished when its image file exists: the label files are written first and the image
last, each atomically, and the image carries its own index record in a tag. A re-run therefore
lists the month's folder, skips finished patches and can rebuild index entries that a killed run
never got to write. Positions found below the valid-fraction threshold are remembered in
``state/<month>/invalid.json``, so no backend reads or fetches them twice.

Both backends resume through :func:`open_month` and commit through
:meth:`MonthProgress.commit` (which calls :func:`contract.dataset.commit_month`):
the local backend cuts a stack file (:func:`contract.patches.patch_stack`), the Earth
Engine export writes patches fetched one by one (:mod:`gee_export.ee.export`). Format:
docs/data-contract.md; behaviour: docs/patches.md.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from rasterio.crs import CRS
from rasterio.io import MemoryFile

from contract.bands import LABEL_NODATA, check_fine_scale, find_band, own_month
from contract.dataset import (
    DatasetSpec,
    check_compatible,
    commit_month,
    read_index,
    remove_temporaries,
)
from contract.geotiff import encode_geotiff
from contract.grid import Grid, patch_id
from contract.label_schemes import isa_class_of
from contract.splits import Split, assign_splits
from core.errors import ConfigError, GridError, InputDataError
from core.months import check_month
from core.storage import LocalStore, Store, open_store
from core.version import code_version

_IMAGE_NAME = re.compile(r"^(r\d+_c\d+)\.tif$")
RECORD_TAG = "ISAMAP_INDEX_RECORD"


def patch_rel_paths(month: str, pid: str, fine_scale: int | None = None) -> dict[str, str]:
    """Store-relative paths of a patch's files (data contract)."""
    base = f"patches/{month}/{pid}"
    paths = {"image": f"{base}.tif", "label": f"{base}_label.tif"}
    if fine_scale:
        paths["label_fine"] = f"{base}_label_x{fine_scale}.tif"
        paths["image_fine"] = f"{base}_image_x{fine_scale}.tif"
    return paths


def valid_mask(image: np.ndarray, label: np.ndarray,
               bands: Sequence[str] | None = None) -> np.ndarray:
    """Pixels where every image band is finite and the label is not nodata.

    ``bands`` (the image's band names): of a series stack only the month's own bands are
    judged; an earlier month may be nodata where it was cloudy (a model reading the series
    masks a missing month), and the label is the month's own.
    """
    if bands is not None:
        image = image[list(own_month(bands))]
    mask: np.ndarray = np.isfinite(image).all(axis=0) & (label != LABEL_NODATA)
    return mask


def isa_fraction(label: np.ndarray, isa_class: int = 1) -> float:
    """Share of labelled pixels that are impervious (0 when nothing is labelled)."""
    labelled = label != LABEL_NODATA
    n = int(labelled.sum())
    return float((label[labelled] == isa_class).sum()) / n if n else 0.0


class PatchWriter:
    """Writes the files and the index record of single patches of one month.

    Args:
        store: dataset root (a :class:`Store`, a local directory or a gs:// URL).
        grid: the dataset grid.
        bands: image band names, in array order.
        month: ``YYYY-MM``.
        splits: split of every position; positions missing from it (dropped because they
            overlap another split) are refused. Defaults to :func:`assign_splits` with defaults.
        fine_scale: factor of the fine grid when fine labels/images are written.
        image_fine_bands: band names of the fine image (default: ``bands``).
        isa_class: label value counted in ``isa_fraction``.
        compress: GeoTIFF compression of the patch files.
        clean_up: delete the temporaries a killed writer left in the month's folder. Writers
            running beside others (the workers of a Beam export) pass False, since another
            writer's temporary may be in flight; the process that launches them cleans up once.
    """

    def __init__(self, store: Store | str, grid: Grid, bands: Sequence[str], month: str, *,
                 splits: Mapping[tuple[int, int], Split] | None = None,
                 fine_scale: int | None = None, image_fine_bands: Sequence[str] | None = None,
                 isa_class: int = 1, compress: str = "deflate", clean_up: bool = True):
        self.store = open_store(store)
        self.grid = grid
        self.bands = tuple(bands)
        self.month = check_month(month)
        self.splits = dict(splits) if splits is not None else assign_splits(grid)
        self.fine_scale = check_fine_scale(fine_scale)
        self.image_fine_bands = tuple(image_fine_bands or self.bands)
        self.isa_class = isa_class
        self.compress = compress
        self.crs = CRS.from_user_input(grid.crs)
        self.fine_grid = grid.scaled(fine_scale) if fine_scale else None
        if clean_up and isinstance(self.store, LocalStore):
            self.store.remove_temporaries(f"patches/{self.month}")

    # ------------------------------------------------------------------ resume support
    def done_ids(self) -> set[str]:
        """Ids of the finished patches of this month (their image file exists)."""
        names = self.store.list(f"patches/{self.month}/")
        found = (_IMAGE_NAME.match(n.rsplit("/", 1)[-1]) for n in names)
        return {m.group(1) for m in found if m}

    def read_record(self, pid: str) -> dict[str, Any]:
        """The index record stored in a finished patch's image tags."""
        rel = patch_rel_paths(self.month, pid)["image"]
        with MemoryFile(self.store.read_bytes(rel)) as mem, mem.open() as src:
            text = src.tags().get(RECORD_TAG)
        if not text:
            raise InputDataError(f"{self.store.url(rel)} has no {RECORD_TAG} tag; delete it and "
                                 "run again so it is rewritten")
        record: dict[str, Any] = json.loads(text)
        return record

    def finished_records(
        self, known: Iterable[Mapping[str, Any]] = ()
    ) -> dict[str, dict[str, Any]]:
        """Records of every finished patch of the month, by id.

        ``known`` are index records (any month); finished patches missing from them (written
        after the last index update of a killed run) are read back from their image tags, and
        known records whose files have disappeared are left out, so they get written again.
        """
        done = self.done_ids()
        mine = {r["id"]: dict(r) for r in known if r["month"] == self.month and r["id"] in done}
        for pid in sorted(done - set(mine)):
            mine[pid] = self.read_record(pid)
        return mine

    # ------------------------------------------------------------------ writing
    @staticmethod
    def _check(name: str, array: Any, count: int | None, size: int, dtype: str) -> Any:
        if array is None:
            return None
        array = np.asarray(array)
        want = (size, size) if count is None else (count, size, size)
        if array.shape != want:
            raise InputDataError(f"{name} has shape {array.shape}, expected {want}")
        if array.dtype != np.dtype(dtype):
            raise InputDataError(f"{name} has dtype {array.dtype}, expected {dtype}")
        return array

    def record(self, row: int, col: int, image: np.ndarray,
               label: np.ndarray) -> dict[str, Any]:
        """The index record of a patch, without writing anything."""
        pid = patch_id(row, col)
        split = self.splits.get((row, col))
        if split is None:
            raise GridError(
                f"patch {pid} belongs to no split (it overlaps patches of another split and is "
                "dropped to avoid leakage); skip it"
            )
        paths = patch_rel_paths(self.month, pid, self.fine_scale)
        rec: dict[str, Any] = {
            "id": pid, "month": self.month, "row": row, "col": col,
            "bounds": list(self.grid.patch_bounds(row, col)),
            "valid_fraction": round(float(valid_mask(image, label, self.bands).mean()), 6),
            "isa_fraction": round(isa_fraction(label, self.isa_class), 6),
            "split": split, "image": paths["image"], "label": paths["label"],
        }
        return rec

    def write(self, row: int, col: int, image: np.ndarray, label: np.ndarray,
              label_fine: np.ndarray | None = None,
              image_fine: np.ndarray | None = None) -> dict[str, Any]:
        """Write one patch (labels first, image last, each atomically); return its record."""
        size = self.grid.patch_size
        image = self._check("image", image, len(self.bands), size, "float32")
        label = self._check("label", label, None, size, "uint8")
        if (label_fine is not None or image_fine is not None) and self.fine_grid is None:
            raise ConfigError("fine arrays given but the writer has no fine_scale")
        fsize = self.fine_grid.patch_size if self.fine_grid else 0
        label_fine = self._check("label_fine", label_fine, None, fsize, "uint8")
        image_fine = self._check("image_fine", image_fine, len(self.image_fine_bands), fsize,
                                 "float32")
        rec = self.record(row, col, image, label)
        paths = patch_rel_paths(self.month, rec["id"], self.fine_scale)
        common = {"ISAMAP_PATCH_ID": rec["id"], "ISAMAP_MONTH": self.month,
                  "ISAMAP_SPLIT": rec["split"], "ISAMAP_CODE_VERSION": code_version()}
        transform = self.grid.patch_transform(row, col)
        self.store.write_bytes(paths["label"], encode_geotiff(
            label, transform, self.crs, LABEL_NODATA, descriptions=["label"], tags=common,
            compress=self.compress))
        if self.fine_grid is not None:
            ftransform = self.fine_grid.patch_transform(row, col)
            if label_fine is not None:
                rec["label_fine"] = paths["label_fine"]
                self.store.write_bytes(paths["label_fine"], encode_geotiff(
                    label_fine, ftransform, self.crs, LABEL_NODATA, descriptions=["label"],
                    tags={**common, "ISAMAP_FINE_SCALE": self.fine_scale},
                    compress=self.compress))
            if image_fine is not None:
                rec["image_fine"] = paths["image_fine"]
                self.store.write_bytes(paths["image_fine"], encode_geotiff(
                    image_fine, ftransform, self.crs, math.nan,
                    descriptions=list(self.image_fine_bands),
                    tags={**common, "ISAMAP_FINE_SCALE": self.fine_scale},
                    compress=self.compress))
        band_tags = [{"unit": spec.unit} if (spec := find_band(b)) else {} for b in self.bands]
        self.store.write_bytes(paths["image"], encode_geotiff(
            image, transform, self.crs, math.nan, descriptions=list(self.bands),
            tags={**common, RECORD_TAG: json.dumps(rec, sort_keys=True)},
            band_tags=band_tags, compress=self.compress))
        return rec


# ---------------------------------------------------------------------- resume state
@dataclass
class MonthProgress:
    """Where one month of a dataset stands; every backend resumes and commits through it.

    Attributes:
        store: the dataset root.
        spec: the dataset's shared parameters.
        month: ``YYYY-MM``.
        writer: the month's :class:`PatchWriter`.
        splits: split of every kept position (the same every month).
        existing: the manifest as it was when the run started ({} for a new dataset).
        records: finished patches by id (index records).
        invalid: ids of positions found below ``min_valid_fraction`` (never fetched again).
        sources: what the month is made from, recorded in the manifest's ``sources``.
    """

    store: Store
    spec: DatasetSpec
    month: str
    writer: PatchWriter
    splits: dict[tuple[int, int], Split]
    existing: dict[str, Any]
    records: dict[str, dict[str, Any]]
    invalid: set[str]
    sources: dict[str, Any] = field(default_factory=dict)
    indexed: set[str] = field(default_factory=set)

    @property
    def up_to_date(self) -> bool:
        """The month was completed and every indexed patch is still there (nothing to do)."""
        return bool(self.existing.get("complete", {}).get(self.month)) and \
            self.indexed == set(self.records)

    @property
    def dropped(self) -> int:
        """Positions dropped by the split because they overlap another split."""
        return self.spec.grid.patch_count - len(self.splits)

    def todo(self) -> list[tuple[int, int]]:
        """Positions still to write, row-major (not finished, not known to be invalid)."""
        return [(r, c) for (r, c) in sorted(self.splits)
                if patch_id(r, c) not in self.records and patch_id(r, c) not in self.invalid]

    def add(self, record: Mapping[str, Any]) -> None:
        """Count a written patch (call from one thread)."""
        self.records[record["id"]] = dict(record)

    def mark_invalid(self, row: int, col: int) -> None:
        """Remember a position below ``min_valid_fraction`` so a re-run skips it."""
        self.invalid.add(patch_id(row, col))

    # state files: small JSON documents under state/<month>/ (resume facts, not data)
    def _state_rel(self, name: str) -> str:
        return f"state/{self.month}/{name}.json"

    def read_state(self, name: str, default: Any = None) -> Any:
        rel = self._state_rel(name)
        return json.loads(self.store.read_bytes(rel)) if self.store.exists(rel) else default

    def write_state(self, name: str, value: Any) -> None:
        self.store.write_bytes(self._state_rel(name),
                               json.dumps(value, sort_keys=True).encode("utf-8"))

    def counts(self) -> dict[str, int]:
        return {"positions": self.spec.grid.patch_count, "candidates": len(self.splits),
                "dropped_overlap": self.dropped, "invalid": len(self.invalid)}

    def commit(self, complete: bool) -> dict[str, Any]:
        """Write the resume state, then the index and manifest (through ``commit_month``)."""
        self.write_state("invalid", sorted(self.invalid))
        manifest = commit_month(self.store, self.spec, self.month, self.records,
                                complete=complete, counts=self.counts(), sources=self.sources)
        self.existing = manifest
        self.indexed = set(self.records)
        return manifest


def open_month(store: Store | str, spec: DatasetSpec, month: str, *,
               sources: Mapping[str, Any] | None = None,
               image_fine_bands: Sequence[str] | None = None,
               compress: str = "deflate",
               also_known: Iterable[Mapping[str, Any]] = ()) -> MonthProgress:
    """Check ``spec`` against the dataset, clean a killed run's leftovers, find what is done.

    Refuses (:class:`ConfigError`) a dataset made with other parameters, or a month cut from
    other inputs (``sources["fingerprint"]``), before anything is written. Hold the output's
    lock (:func:`core.lock.hold_output`) while calling it: it deletes temporaries.
    ``also_known`` are records of finished patches that the index does not list yet (a Beam
    export's index shards): like indexed ones, their tags need not be read back.
    """
    store = open_store(store)
    check_month(month)
    sources = dict(sources or {})
    existing = check_compatible(store, spec, month=month, fingerprint=sources.get("fingerprint"))
    remove_temporaries(store, month)
    splits = spec.splits()
    writer = PatchWriter(store, spec.grid, spec.bands, month, splits=splits,
                         fine_scale=spec.fine_scale, image_fine_bands=image_fine_bands,
                         isa_class=isa_class_of(spec.classes), compress=compress)
    known = read_index(store, missing_ok=True)
    records = writer.finished_records([*known, *also_known])
    progress = MonthProgress(store, spec, month, writer, splits, existing, records, set(),
                             sources, {r["id"] for r in known if r["month"] == month})
    progress.invalid = set(progress.read_state("invalid", [])) - set(records)
    return progress
