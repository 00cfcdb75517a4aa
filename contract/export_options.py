"""What ``isamap-export`` was asked to do, checked once: the one value its steps read.

The command line is checked and resolved (area, grid, months, bands, every bound) before any
pixel is read or written; the result is this frozen value, which the Earth Engine export
(:mod:`gee_export.ee.export_command`) and the local one (:mod:`gee_export.local.export_command`)
take as it is, instead of a namespace of flags. It lives below both backends, so it holds
plain values: each backend builds its own recipe from its fields.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from contract import bands as band_registry
from contract.composite import SpeckleFilter
from contract.grid import Grid
from contract.regions import Region
from contract.splits import DEFAULT_BLOCK
from core.commands import check_range
from core.errors import ConfigError

SERIES_MONTHS_RANGE = f"1 to {band_registry.MAX_MONTHS_BEFORE + 1}"
"""What ``--series-months`` takes (its help): the month alone, up to every month a band reaches."""


def check_series_months(months: int) -> None:
    """``--series-months N`` of ``isamap-export`` and ``isamap-fit``: 1 to 24, as typed."""
    check_range("--series-months", months, 1, band_registry.MAX_MONTHS_BEFORE + 1,
                "a series stack holds the month and up to "
                f"{band_registry.MAX_MONTHS_BEFORE} months before it")


def series_stack_bands(bands: Sequence[str], months: int) -> tuple[str, ...]:
    """``--bands`` with ``--series-months``: the bands of the series stack a backend makes.

    Earlier months are asked for by ``--series-months`` alone, so every band of a month is
    repeated for the same months (one rule); ``B4_m1`` among ``bands`` is refused.
    """
    earlier = [b for b in bands if band_registry.get_band(b).months_before]
    if earlier:
        raise ConfigError(f"--bands {earlier[0]}: ask for earlier months with --series-months "
                          f"N (every band of the month, N-1 months back), e.g. --bands "
                          f"{band_registry.get_band(earlier[0]).base} --series-months "
                          f"{band_registry.series_months(earlier)}")
    return band_registry.stack_series_bands(bands, months)


@dataclass(frozen=True)
class ExportOptions:
    """One export, both backends (fields of the other backend keep their defaults).

    The area (``region``, its ``grid``), the ``months`` and ``bands``, the dataset root
    ``out``, the ``backend`` (``ee`` or ``local``) and ``labels`` (the Earth Engine label
    source, or the local label scheme) say what is made; ``fine_scale``, ``seed``,
    ``split_block`` and ``min_valid_fraction`` are the dataset's lattice, split and patch
    rule; ``progress`` shows bars. ``speckle`` serves both recipes. How Earth Engine computes
    and delivers: ``project``, ``method`` (``pixels`` or ``tasks``), ``workers``,
    ``patches_per_tile``, ``max_pending``, ``max_eecu_hours``, and its recipe
    ``terrain_flattening``, ``dem``, ``orbit_pass``, ``cloud_mask``, ``cloud_threshold``,
    ``s2_max_widen_days``. The local scenes and how to read them: ``scenes``, ``allow_l1c``,
    ``s1_unit``, ``boa_add_offset``, ``trust_band_names``, ``scl_masked``, ``scene_date``,
    ``s2_band_names``, ``allow_implausible``.
    """

    region: Region
    grid: Grid
    months: tuple[str, ...]
    bands: tuple[str, ...]
    out: str
    backend: Literal["ee", "local"]
    labels: str
    fine_scale: int | None = None
    seed: int = 0
    split_block: int = DEFAULT_BLOCK
    min_valid_fraction: float = 0.9
    progress: bool = True
    speckle: SpeckleFilter = "refined_lee"
    project: str | None = None
    method: Literal["pixels", "tasks"] = "pixels"
    workers: int = 16
    patches_per_tile: int = 50
    max_pending: int = 2500
    max_eecu_hours: float | None = None
    terrain_flattening: str = "none"
    dem: str = ""
    orbit_pass: str = "both"
    cloud_mask: str = "cloudscoreplus"
    cloud_threshold: float = 0.60
    s2_max_widen_days: int = 15
    scenes: str | None = None
    allow_l1c: bool = False
    s1_unit: str | None = None
    boa_add_offset: float | None = None
    trust_band_names: bool | None = None
    scl_masked: tuple[int, ...] | None = None
    scene_date: str | None = None
    s2_band_names: tuple[str, ...] | None = None
    allow_implausible: bool | None = None
