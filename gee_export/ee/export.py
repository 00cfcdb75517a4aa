"""Export orchestration, ``pixels`` method: one computePixels request per patch, to the store.

For each patch position of the month that belongs to a split and is not finished yet, a worker
of a bounded thread pool asks Earth Engine (through the session, which retries 429/5xx with
backoff) for the patch's window of the stack — every band and the label in one request — and
writes the patch files with :class:`PatchWriter`. Finished patches carry their index record in
their own tags, so a killed run loses nothing: a re-run lists the finished patches, recovers
their records and fetches only the rest. ``index.jsonl`` and ``manifest.json`` are rewritten
atomically every ``flush_seconds`` and at the end (also when the run fails).

The ``tasks`` method (batch export of tiles) lives in tasks.py and shares the bookkeeping here.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from gee_export.contract.bands import LABEL, LABEL_NODATA
from gee_export.contract.grid import Grid, patch_id
from gee_export.contract.index import (
    FORMAT,
    read_index,
    read_manifest,
    remove_temporaries,
    write_index,
    write_manifest,
)
from gee_export.contract.label_schemes import isa_class_of
from gee_export.contract.patches import DEFAULT_CLASSES, PatchWriter, check_month, valid_mask
from gee_export.contract.splits import (
    DEFAULT_BLOCK,
    DEFAULT_RATIOS,
    assign_splits,
    normalise_ratios,
)
from gee_export.core.ee_session import EESession
from gee_export.core.errors import ConfigError
from gee_export.core.storage import Store, open_store
from gee_export.core.version import code_version
from gee_export.ee.pixels import Limits, assemble, build_request, decode, split_request, to_label

DEFAULT_WORKERS = 16
DEFAULT_LIMITS = Limits()
MAX_WORKERS = 40  # Earth Engine allows about 40 concurrent requests per project


@dataclass(frozen=True)
class ExportJob:
    """What one month's export produces (everything that ends up in the manifest)."""

    grid: Grid
    bands: tuple[str, ...]
    month: str
    region: str
    recipe: Mapping[str, Any] = field(default_factory=dict)
    fine_scale: int | None = None
    min_valid_fraction: float = 0.9
    ratios: tuple[float, float, float] = DEFAULT_RATIOS
    seed: int = 0
    block: int = DEFAULT_BLOCK
    backend: str = "ee"
    classes: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_CLASSES))
    label_scheme: str = "isa"

    def __post_init__(self) -> None:
        check_month(self.month)
        if not 0.0 <= self.min_valid_fraction <= 1.0:
            raise ConfigError(f"min_valid_fraction must be in [0, 1], got "
                              f"{self.min_valid_fraction}")


@dataclass(frozen=True)
class ExportSummary:
    """What one export run did."""

    root: str
    month: str
    method: str
    candidates: int
    written: int
    already_done: int
    invalid: int
    requests: int = 0
    retries: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_workers(workers: int) -> int:
    if not 1 <= workers <= MAX_WORKERS:
        raise ConfigError(f"--workers must be between 1 and {MAX_WORKERS} (Earth Engine allows "
                          f"about {MAX_WORKERS} concurrent requests per project), got {workers}")
    return workers


class Bookkeeper:
    """Index, manifest and resume state of one month of a dataset (shared by both methods)."""

    def __init__(self, store: Store, job: ExportJob) -> None:
        self.store = store
        self.job = job
        self.ratios = normalise_ratios(job.ratios)
        self.splits = assign_splits(job.grid, None, self.ratios, job.seed, job.block)
        remove_temporaries(store, job.month)  # a killed run's half-done index/state writes
        self.existing = read_manifest(store, missing_ok=True)
        self._check_compatible()
        self.writer = PatchWriter(store, job.grid, job.bands, job.month, splits=self.splits,
                                  fine_scale=job.fine_scale, isa_class=isa_class_of(job.classes))
        self.records = {(r["month"], r["id"]): r for r in read_index(store, missing_ok=True)}
        self.done = self.writer.done_ids()
        known = {pid for (m, pid) in self.records if m == job.month}
        for pid in sorted(self.done - known):  # finished after the last flush of a killed run
            self.records[(job.month, pid)] = self.writer.read_record(pid)
        for pid in known - self.done:  # files gone: write them again
            del self.records[(job.month, pid)]
        self.invalid = set(self.read_state("invalid"))

    # ------------------------------------------------------------------ state
    def _state_rel(self, name: str) -> str:
        return f"state/{self.job.month}/{name}.json"

    def read_state(self, name: str) -> Any:
        rel = self._state_rel(name)
        return json.loads(self.store.read_bytes(rel)) if self.store.exists(rel) else []

    def write_state(self, name: str, value: Any) -> None:
        self.store.write_bytes(self._state_rel(name), json.dumps(value, sort_keys=True).encode())

    def _params(self) -> dict[str, Any]:
        return {"grid": self.job.grid.to_dict(), "bands": list(self.job.bands),
                "split": {"method": "blocked", "ratios": list(self.ratios),
                          "seed": self.job.seed, "block": self.job.block},
                "min_valid_fraction": self.job.min_valid_fraction,
                "fine_scale": self.job.fine_scale}

    def _check_compatible(self) -> None:
        if not self.existing:
            return
        old = {"grid": self.existing.get("grid"), "bands": self.existing.get("bands"),
               "split": self.existing.get("split"),
               "min_valid_fraction": self.existing.get("min_valid_fraction"),
               "fine_scale": self.existing.get("label", {}).get("fine_scale")}
        new = self._params()
        differ = [k for k in new if json.dumps(old[k], sort_keys=True)
                  != json.dumps(new[k], sort_keys=True)]
        if differ:
            raise ConfigError(f"{self.store.url()} already holds a dataset made with other "
                              f"{', '.join(differ)}; write to another --out or delete it first")

    # ------------------------------------------------------------------ progress
    def todo(self) -> list[tuple[int, int]]:
        """Positions still to export, row-major."""
        return [(r, c) for (r, c) in sorted(self.splits)
                if patch_id(r, c) not in self.done and patch_id(r, c) not in self.invalid]

    def add(self, record: dict) -> None:
        self.records[(record["month"], record["id"])] = record
        self.done.add(record["id"])

    def flush(self, complete: bool) -> None:
        """Rewrite index, manifest and resume state atomically."""
        job = self.job
        write_index(self.store, self.records.values())
        self.write_state("invalid", sorted(self.invalid))
        now = datetime.now(UTC).isoformat(timespec="seconds")
        ex = self.existing
        month_patches = sum(1 for m, _ in self.records if m == job.month)
        per_split = {"train": 0, "val": 0, "test": 0}
        for rec in self.records.values():
            per_split[rec["split"]] += 1
        per_month = dict(ex.get("counts", {}).get("per_month", {}))
        per_month[job.month] = {"positions": job.grid.patch_count,
                                "candidates": len(self.splits),
                                "dropped_overlap": job.grid.patch_count - len(self.splits),
                                "invalid": len(self.invalid), "patches": month_patches}
        recipes = dict(ex.get("recipe", {}).get("per_month", {}))
        recipes[job.month] = dict(job.recipe)
        params = self._params()
        manifest = {
            "format": FORMAT, "code_version": code_version(),
            "created": ex.get("created", now), "updated": now, "backend": job.backend,
            "region": job.region, "grid": params["grid"], "bands": params["bands"],
            "months": sorted({*ex.get("months", []), job.month}),
            "label": {"scheme": job.label_scheme, "classes": dict(job.classes),
                      "nodata": LABEL_NODATA,
                      "fine_scale": job.fine_scale},
            "recipe": {**dict(job.recipe), "per_month": recipes},
            "split": params["split"], "min_valid_fraction": job.min_valid_fraction,
            "counts": {"patches": len(self.records), "per_split": per_split,
                       "per_month": per_month},
            "complete": {**ex.get("complete", {}), job.month: complete},
        }
        write_manifest(self.store, manifest)
        self.existing = manifest

    def accept(self, row: int, col: int, image: np.ndarray, label: np.ndarray,
               label_fine: np.ndarray | None) -> dict | None:
        """Write a fetched patch if valid enough; None when not (thread-safe: no state change).

        The caller records the outcome with :meth:`add` or :meth:`mark_invalid` from one thread.
        """
        if valid_mask(image, label).mean() < self.job.min_valid_fraction:
            return None
        return self.writer.write(row, col, image, label, label_fine)

    def mark_invalid(self, row: int, col: int) -> None:
        """Remember a patch below ``min_valid_fraction`` so a re-run does not fetch it again."""
        self.invalid.add(patch_id(row, col))


def fetch_patch(session: EESession, image: Any, fine_label: Any, job: ExportJob, row: int,
                col: int, limits: Limits = DEFAULT_LIMITS
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, int]:
    """Image ``(C, P, P)``, label ``(P, P)`` and optional fine label of one patch.

    Returns the arrays and the number of computePixels requests made.
    """
    names = (*job.bands, LABEL)
    window = job.grid.patch_window(row, col)
    subs = split_request(window, names, limits)
    parts = [(s, decode(session.compute_pixels(build_request(image, job.grid, s)), s))
             for s in subs]
    stack = assemble(window, names, parts)
    fine = None
    requests = len(subs)
    if job.fine_scale:
        fgrid = job.grid.scaled(job.fine_scale)
        fwindow = fgrid.patch_window(row, col)
        fsubs = split_request(fwindow, (LABEL,), limits)
        fparts = [(s, decode(session.compute_pixels(build_request(fine_label, fgrid, s)), s))
                  for s in fsubs]
        fine = to_label(assemble(fwindow, (LABEL,), fparts)[0])
        requests += len(fsubs)
    return stack[:-1], to_label(stack[-1]), fine, requests


def export_pixels(session: EESession, image: Any, job: ExportJob, out: str | Store, *,
                  fine_label: Any = None, workers: int = DEFAULT_WORKERS,
                  limits: Limits = DEFAULT_LIMITS, flush_seconds: float = 30.0,
                  progress: bool = True,
                  on_patch: Callable[[str], None] | None = None) -> ExportSummary:
    """Export one month with computePixels (see module docstring); resumable.

    Args:
        session: the Earth Engine seam (its transport may serve a local stack in tests).
        image: the stack of stack.build_stack (bands then ``label``).
        job: grid, bands, month and dataset parameters.
        out: dataset root, local directory or gs:// URL.
        fine_label: stack.build_fine_label's image when ``job.fine_scale`` is set.
        workers: concurrent requests (1..40).
        limits: request limits (tests shrink them to exercise splitting).
        flush_seconds: index/manifest rewrite period while running.
        progress: show a tqdm bar (patches, rate, ETA).
        on_patch: called with each finished patch id (progress hooks, tests).
    """
    started = time.monotonic()
    check_workers(workers)
    if job.fine_scale and fine_label is None:
        raise ConfigError("job.fine_scale is set but no fine_label image was given")
    store = open_store(out)
    book = Bookkeeper(store, job)
    todo = book.todo()
    already = len(book.done & {patch_id(r, c) for r, c in book.splits})
    retries0 = session.retries
    counters = {"written": 0, "requests": 0}
    if not todo and book.existing.get("complete", {}).get(job.month):
        return ExportSummary(store.url(), job.month, "pixels", len(book.splits), 0, already,
                             len(book.invalid), 0, 0, time.monotonic() - started)

    def work(row: int, col: int) -> tuple[dict | None, int, tuple[int, int]]:
        img, lab, fine, n = fetch_patch(session, image, fine_label, job, row, col, limits)
        return book.accept(row, col, img, lab, fine), n, (row, col)

    bar = tqdm(total=len(book.splits), initial=len(book.splits) - len(todo),
               desc=f"patches {job.month}", unit="patch", disable=not progress)
    error: BaseException | None = None
    last_flush = time.monotonic()
    queue = iter(todo)
    pending: set[Future] = set()
    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            def refill() -> None:
                while error is None and len(pending) < 2 * workers:
                    nxt = next(queue, None)
                    if nxt is None:
                        return
                    pending.add(pool.submit(work, *nxt))

            refill()
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    pending.discard(fut)
                    try:
                        record, n, position = fut.result()
                    except BaseException as exc:  # keep the first failure, finish the rest
                        error = error or exc
                        continue
                    counters["requests"] += n
                    if record is None:
                        book.mark_invalid(*position)
                    else:
                        book.add(record)
                        counters["written"] += 1
                        if on_patch:
                            on_patch(record["id"])
                    bar.update(1)
                if error is not None:
                    for fut in pending:
                        fut.cancel()
                if time.monotonic() - last_flush > flush_seconds:
                    book.flush(complete=False)
                    last_flush = time.monotonic()
                refill()
    finally:
        bar.close()
        book.flush(complete=error is None)
    if error is not None:
        raise error
    return ExportSummary(store.url(), job.month, "pixels", len(book.splits),
                         counters["written"], already, len(book.invalid), counters["requests"],
                         session.retries - retries0, time.monotonic() - started)
