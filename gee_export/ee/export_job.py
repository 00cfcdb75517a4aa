"""One month of an Earth Engine export: what it produces, what it did, and its resume state.

:class:`ExportJob` is the month's one value (the dataset's :class:`~contract.dataset.DatasetSpec`
and the month's own facts), :class:`ExportSummary` what a run did, and :func:`open_job` the
month's resume state (the contract's ``MonthProgress``), shared by the three ways of fetching it
(computePixels in this process, batch tasks, a Beam pipeline): finished patches, positions known
to be invalid, the batch task ids and their reported EECU. :func:`write_fetched` is the one rule
deciding which fetched patches enter the dataset.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, TypedDict

import numpy as np

from contract.dataset import DatasetSpec
from contract.patch_writer import MonthProgress, PatchWriter, open_month, valid_mask
from contract.splits import empty_splits, split_counts
from core.errors import ConfigError
from core.months import check_month
from core.storage import Store

DEFAULT_WORKERS = 16
MAX_WORKERS = 40  # Earth Engine allows about 40 concurrent requests per project


@dataclass(frozen=True)
class ExportJob:
    """One month of a dataset to export: the dataset's parameters and the month's own facts.

    The dataset's parameters are its :class:`DatasetSpec` (grid, bands, split, recipe, classes:
    checked against the manifest before anything is fetched), never copied field by field, so
    the export records exactly what the local backend records. The month adds its own:

    Attributes:
        spec: the parameters shared by every month of the dataset.
        month: ``YYYY-MM``.
        sources: facts of this month only (the composite date windows, the export method),
            recorded under ``sources/<month>`` of the manifest.
    """

    spec: DatasetSpec
    month: str
    sources: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_month(self.month)

    def check_fine_label(self, fine_label: Any) -> None:
        """Refuse to start without the fine label image a dataset with ``fine_scale`` needs."""
        if self.spec.fine_scale and fine_label is None:
            raise ConfigError(f"the dataset has fine_scale {self.spec.fine_scale} but no "
                              "fine_label image was given")


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
    per_split: dict[str, int] = field(default_factory=dict)
    written_positions: tuple[tuple[int, int], ...] = field(default=(), repr=False)
    """Where a split came out empty: ``(row, col)`` of every patch of the month (not in to_dict)."""
    unread_positions: tuple[tuple[int, int], ...] = field(default=(), repr=False)
    """Where a split came out empty: the positions dropped at split borders, never fetched, so
    whether they hold data is unknown (not in to_dict; :func:`held_positions`)."""

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        del out["written_positions"], out["unread_positions"]
        return out


class HeldPositions(TypedDict, total=False):
    """:class:`ExportSummary`'s positions, as keyword arguments."""

    written_positions: tuple[tuple[int, int], ...]
    unread_positions: tuple[tuple[int, int], ...]


def held_positions(job: ExportJob, splits: Mapping[tuple[int, int], str],
                   records: Iterable[Mapping[str, Any]]) -> HeldPositions:
    """What the split advice may count after a month of an Earth Engine export.

    Nothing unless a split came out empty. Then ``written_positions``, the month's patches
    (positions that hold data), and ``unread_positions``, the positions its split borders
    dropped: Earth Engine's pixels there were never fetched (reading them would cost requests),
    so the advice counts the written patches alone, a lower bound for another block side,
    and says so (:func:`contract.splits.split_advice`, ``unread``).
    """
    records = list(records)
    if not empty_splits(split_counts(r["split"] for r in records), job.spec.ratios):
        return {}
    return {"written_positions": tuple(sorted((int(r["row"]), int(r["col"])) for r in records)),
            "unread_positions": tuple(p for p in job.spec.grid.iter_patches()
                                      if p not in splits)}


def check_workers(workers: int) -> int:
    if not 1 <= workers <= MAX_WORKERS:
        raise ConfigError(f"--workers must be between 1 and {MAX_WORKERS} (Earth Engine allows "
                          f"about {MAX_WORKERS} concurrent requests per project), got {workers}")
    return workers


def open_job(store: Store, job: ExportJob,
             written_elsewhere: Iterable[Mapping[str, Any]] = ()) -> MonthProgress:
    """The month's resume state: the contract's :class:`~contract.patch_writer.MonthProgress`.

    The same one the local backend uses (compatibility, finished patches, index, manifest and
    the ``state/<month>/`` files such as the batch task ids). ``written_elsewhere``: records
    of patches other processes wrote since the index was last written (the Beam export's index
    shards), so their tags are not read back.
    """
    return open_month(store, job.spec, job.month, sources=job.sources,
                      also_known=written_elsewhere)


def split_figures(job: ExportJob, progress: MonthProgress) -> dict[str, Any]:
    """:class:`ExportSummary`'s ``per_split`` and :func:`held_positions` of the month so far."""
    records = progress.records.values()
    return {"per_split": split_counts(r["split"] for r in records),
            **held_positions(job, progress.splits, records)}


def write_fetched(writer: PatchWriter, job: ExportJob, row: int, col: int, image: np.ndarray,
                  label: np.ndarray, label_fine: np.ndarray | None) -> dict | None:
    """Write a fetched patch with ``writer`` if valid enough; None when it is not.

    The one rule deciding which fetched patches enter the dataset, shared by the threads of
    :func:`export_pixels` and the workers of the Beam export.
    """
    if valid_mask(image, label, job.spec.bands).mean() < job.spec.min_valid_fraction:
        return None
    return writer.write(row, col, image, label, label_fine)
