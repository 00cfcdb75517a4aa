"""A series is mapped at one runtime: ``auto`` is settled once and held for every date.

``--precision auto`` (and ``--channels-last auto``) measure on the first batch, and the
measurement (or the machine-wide autotune cache) may pick differently from one date to the
next: two dates computed with different arithmetic differ where nothing changed on the
ground, and that shows up as change. So the runtime ``auto`` settles at the first date that is
mapped is held for every later date (:attr:`inference.predict.runtime.RuntimeOptions.held`),
and a series resumed or extended in the same ``--out`` takes the runtime its dates already
record (a date's interrupted strips, else a date's COG tags, else ``map.json``'s ``runtime``:
the most recent evidence first). A date of the series computed at another runtime is mapped
again at the held one. A runtime an earlier isamap recorded with ``cudnn-bench`` is held
without it (this one never benchmarks inference), so its dates are mapped again too
(:func:`engine.choice.unbenchmarked`). Explicit options
are used as given (and a date of another runtime is mapped again, as for any map).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import rasterio.errors

from core.storage import files
from engine import choice as engine_choice
from engine.choice_value import Choice
from engine.devices import layout_flag, resolve_device
from engine.setting import Setting
from inference.predict import runtime_record
from inference.predict.raster import work_path
from inference.predict.runtime import RuntimeOptions

log = logging.getLogger(__name__)


def leaves_auto(options: RuntimeOptions) -> bool:
    """Whether the options leave precision or layout to ``auto`` (int8 is never measured)."""
    return options.precision != "int8" and "auto" in (
        options.precision, layout_flag(options.channels_last))


def recorded(out: str, product_dir: Path, prefixes: Mapping[str, str]) -> Choice | None:
    """The runtime the series in ``out`` already records (None: none of its dates has one).

    The most recent evidence wins: a date's interrupted strips (a run was killed mapping it),
    else a date's class COG, each in date order, else ``map.json`` (written at a run's end
    only, so a later run killed midway may have left dates at another runtime than it says).
    """
    dates = [prefixes[month] for month in sorted(prefixes)]
    for find in (strips_runtime, cog_runtime):
        for prefix in dates:
            if (choice := find(prefix)) is not None:
                return choice
    record = product_dir / "map.json"
    if record.is_file():
        try:
            label = json.loads(record.read_text()).get("runtime", {}).get("runtime", "")
        except (OSError, ValueError, AttributeError):
            label = ""
        if (setting := Setting.from_label(label)) is not None:
            return engine_choice.unbenchmarked(Choice(setting, "checkpoint"))
    return None


def check_held(held: Choice, options: RuntimeOptions, out: str) -> None:
    """Refuse, before any work, a runtime the series holds that this device cannot run.

    A held runtime is checked as an explicit one is (a series mapped at fp16 on a GPU, rerun
    on a CPU; at int8 on a CPU with int8 units, rerun on one without): mapping on at another
    runtime would mix two in one series, and it would fail at the first batch.
    """
    if options.precision != "auto":
        return  # the precision is the explicit one, checked as such
    runtime_record.check_runs_here(
        held, resolve_device(options.device),
        f"the series in {out} was mapped",
        f"map it on a device that runs {held.precision}, or give --precision and "
        "--channels-last to map every date again at a runtime this one runs",
        whose=" (its dates record it)")


def cog_runtime(prefix: str) -> Choice | None:
    """The runtime a date's class COG records (None: none)."""
    setting = Setting.from_label(_tags(f"{prefix}_class.tif").get("runtime", ""))
    return None if setting is None else engine_choice.unbenchmarked(Choice(setting, "checkpoint"))


def strips_runtime(prefix: str) -> Choice | None:
    """The runtime a date's interrupted strips record (None: no strip, or no record)."""
    work = work_path(None, prefix)
    found = runtime_record.recorded(work) if any(work.glob("strip_*.tif")) else None
    return None if found is None else engine_choice.unbenchmarked(found)


def settled(options: RuntimeOptions, prefix: str, held: Choice | None) -> Choice | None:
    """What to hold for the dates after one mapped at ``prefix`` (None: nothing to hold)."""
    if held is not None or not leaves_auto(options):
        return held
    choice = cog_runtime(prefix) or strips_runtime(prefix)  # the class COG's, or its strips'
    if choice is not None:
        log.info("the series is mapped at runtime %s (auto, settled once for every date)",
                 choice.label)
    return choice


def series_tags(prefixes: Iterable[str]) -> dict[str, str]:
    """The runtime the series' first mapped date records (``map.json``'s ``runtime``)."""
    for prefix in prefixes:
        tags = _tags(f"{prefix}_class.tif")
        if "runtime" in tags:
            return {k: v for k, v in tags.items() if k in ("runtime", "runtime_source")}
    return {}


def _tags(path: str) -> dict[str, Any]:
    if not files.exists(path):
        return {}
    try:
        with files.open_raster(path) as ds:
            return dict(ds.tags())
    except rasterio.errors.RasterioError:  # a damaged date records nothing (mapped again)
        return {}
