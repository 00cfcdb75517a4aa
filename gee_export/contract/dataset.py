"""What a patch dataset is made with, and committing a month of patches to its index/manifest.

Both producers of patch datasets use this: :func:`gee_export.contract.patches.patch_stack` (local
stacks)
and the Earth Engine export (patches fetched one by one and written with ``PatchWriter``). A
:class:`DatasetSpec` holds every parameter that must be the same for all months of a dataset
(grid, bands, split, valid-fraction threshold, fine scale); :func:`commit_month` merges one
month's records into ``index.jsonl`` and ``manifest.json``, refusing to mix datasets made with
different parameters in one folder.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from gee_export.contract.bands import LABEL_NODATA
from gee_export.contract.grid import Grid
from gee_export.contract.index import FORMAT, read_index, read_manifest, write_index, write_manifest
from gee_export.contract.label_schemes import DEFAULT_CLASSES_ISA
from gee_export.contract.splits import (
    DEFAULT_BLOCK,
    DEFAULT_RATIOS,
    SPLITS,
    Split,
    assign_splits,
    normalise_ratios,
)
from gee_export.core.errors import ConfigError
from gee_export.core.storage import Store
from gee_export.core.version import code_version

Backend = Literal["ee", "local", "synthetic"]
BACKENDS: tuple[str, ...] = ("ee", "local", "synthetic")
FINE_SCALES = (2, 4, 5, 8, 10)
DEFAULT_CLASSES: Mapping[str, str] = DEFAULT_CLASSES_ISA
_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


def check_month(month: str) -> str:
    """Return ``month`` if it is ``YYYY-MM``, else raise :class:`ConfigError`."""
    if not isinstance(month, str) or not _MONTH.match(month):
        raise ConfigError(f"month {month!r} is not 'YYYY-MM' (e.g. '2019-06')")
    return month


def check_fine_scale(scale: int | None) -> int | None:
    """Return ``scale`` if it is None or a supported fine-label factor."""
    if scale is not None and scale not in FINE_SCALES:
        raise ConfigError(f"fine scale must be one of {FINE_SCALES}, got {scale!r}")
    return scale


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
        recipe: every composite parameter (collections, dates, cloud threshold, speckle...).
        classes: label value -> class name.
        label_scheme: ``isa`` (binary) or ``landcover`` (the seven classes of
            :mod:`gee_export.contract.label_schemes`), the manifest's ``label.scheme``.
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
        }


def _fixed_params_of(manifest: Mapping[str, Any]) -> dict[str, Any]:
    return {"grid": manifest.get("grid"), "bands": manifest.get("bands"),
            "split": manifest.get("split"),
            "min_valid_fraction": manifest.get("min_valid_fraction"),
            "fine_scale": manifest.get("label", {}).get("fine_scale"),
            "classes": manifest.get("label", {}).get("classes")}


def check_compatible(store: Store, spec: DatasetSpec) -> dict:
    """The existing manifest of ``store`` (or {}); refuse one made with other parameters."""
    existing = read_manifest(store, missing_ok=True)
    if not existing:
        return {}
    old, new = _fixed_params_of(existing), spec.fixed_params()
    differ = [k for k in new if json.dumps(old[k], sort_keys=True)
              != json.dumps(new[k], sort_keys=True)]
    if differ:
        raise ConfigError(
            f"{store.url()} already holds a dataset made with other {', '.join(differ)} "
            f"({'; '.join(f'{k}: {old[k]} there, {new[k]} now' for k in differ)}); "
            "write to another folder or delete it first"
        )
    return existing


def commit_month(store: Store, spec: DatasetSpec, month: str,
                 records: Iterable[Mapping] | Mapping[str, Mapping],
                 *, complete: bool, counts: Mapping[str, Any] | None = None,
                 sources: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Replace ``month``'s records in the index and update the manifest, both atomically.

    The index is written before the manifest, so a manifest never counts patches the index
    lacks. ``complete`` tells re-runs whether the month still has work to do. ``records`` may
    be a list of records or ``PatchWriter.finished_records()``'s mapping of id to record.
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
    per_split = dict.fromkeys(SPLITS, 0)
    for rec in every:
        per_split[rec["split"]] += 1
    per_month = dict(existing.get("counts", {}).get("per_month", {}))
    per_month[month] = {**(counts or {}), "patches": len(month_records)}
    all_sources = dict(existing.get("sources", {}))
    if sources:
        all_sources[month] = dict(sources)
    fixed = spec.fixed_params()
    manifest = {
        "format": FORMAT, "code_version": code_version(),
        "created": existing.get("created", now), "updated": now,
        "backend": spec.backend,
        "region": spec.region if spec.region is not None else existing.get("region"),
        "grid": fixed["grid"], "bands": fixed["bands"],
        "months": sorted({*existing.get("months", []), month}),
        "label": {"scheme": spec.label_scheme, "classes": dict(spec.classes),
                  "nodata": LABEL_NODATA,
                  "fine_scale": spec.fine_scale},
        "recipe": dict(spec.recipe) or existing.get("recipe", {}),
        "split": fixed["split"], "min_valid_fraction": spec.min_valid_fraction,
        "counts": {"patches": len(every), "per_split": per_split, "per_month": per_month},
        "complete": {**existing.get("complete", {}), month: complete},
        "sources": all_sources,
    }
    write_manifest(store, manifest)
    return manifest
