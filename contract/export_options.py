"""What ``isamap-export`` makes and where, checked once: the part both backends read.

The command line is checked and resolved (area, grid, months, bands, every bound) before any
pixel is read or written; the area, the months, the bands and the dataset they make become one
frozen :class:`ExportTarget`, which the Earth Engine export
(:mod:`gee_export.ee.export_command`) and the local one (:mod:`gee_export.local.export_command`)
take beside their own recipe and runtime, instead of a namespace of flags.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from contract import bands as band_registry
from contract.dataset import Backend, DatasetSpec
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
class ExportTarget:
    """What one export makes and where, whichever backend makes it.

    The area (``region``, its ``grid``), the ``months``, the image ``bands``, the ``labels``
    (the Earth Engine label source, or the local label scheme) and the fine label's
    ``fine_scale``; ``out`` is the dataset root, ``seed`` and ``split_block`` its split and
    ``min_valid_fraction`` its patch rule. Each backend takes its recipe and its runtime beside
    it: Earth Engine an ``EERecipe`` and an ``EEDelivery``
    (:mod:`gee_export.ee.export_command`), the local backend a ``LocalRecipe`` and its scenes
    (:mod:`gee_export.local.export_command`).
    """

    region: Region
    grid: Grid
    months: tuple[str, ...]
    bands: tuple[str, ...]
    out: str
    labels: str
    fine_scale: int | None = None
    seed: int = 0
    split_block: int = DEFAULT_BLOCK
    min_valid_fraction: float = 0.9

    def spec(self, backend: Backend, recipe: Mapping[str, Any], classes: Mapping[str, str],
             label_scheme: str) -> DatasetSpec:
        """The dataset a backend's ``recipe`` makes here (what ``out`` must hold, if anything)."""
        return DatasetSpec(self.grid, self.bands, seed=self.seed, block=self.split_block,
                           min_valid_fraction=self.min_valid_fraction,
                           fine_scale=self.fine_scale, backend=backend, region=self.region.name,
                           recipe={**recipe, **band_registry.series_record(self.bands)},
                           classes=classes, label_scheme=label_scheme)
