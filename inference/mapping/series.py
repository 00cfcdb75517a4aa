"""Products of a map series: change between consecutive dates, ISA km² per zone over time.

Given the per-date predictions of :func:`inference.mapping.dates.map_dates`, this writes

- a change COG for every pair of consecutive mapped dates (0 stable pervious, 1 stable
  impervious, 2 gain, 3 loss, 255 nodata; :func:`inference.predict.stats.change_map`) and its
  quick-look;
- ``series_area.csv`` (zone, date, ISA km², valid km², ...), ``series_change.csv`` (zone, from,
  to, stable, gain, loss, net km²) and ``series.json`` holding both and the skipped dates;
- ``series_area.png``: ISA km² over time, one line per zone.

With ``temporal_consistency`` the class maps are first made consistent over the dates by its
rule (``monotone``, :mod:`inference.predict.change.consistency`: built-up surface does not
return to pervious; ``stretches``, :mod:`inference.predict.change.stretches`: one class where
the bands did not change), written to ``<out>/consistent/``, and the change maps and both
tables are made from them; the change COGs' tags and the change table's
``temporal_consistency`` column say whether a rule was applied, ``series.json`` and the
consistent maps' tags which.

Change is decided by one of four rules, named in the change COGs' tags and ``series.json``
(``change_rule``): ``spectral`` (both dates' stacks decide whether a pixel changed, the
probabilities which way: :mod:`inference.predict.change.spectral`; the scene's fit of each pair
is recorded), ``encoder`` (the model's encoder features of both stacks, cut where they flag the
bands' share: :mod:`inference.predict.change.encoder`; ``encoder_fits``), ``margin`` (both
probabilities with a margin) and, with margin 0 or temporal consistency, the class maps
differenced.

A change map is redone only when one of its two class maps changed (the class COGs' run
hashes and runtimes are recorded in its tags) or its rule, threshold or margin did, so
re-running a finished series rewrites nothing. Change and consistent maps made before the
runtime was part of a map's identity record bare run hashes: the first rerun redoes them once.
A bare hash is not accepted as matching, since a date mapped again at another runtime keeps its
run hash: the map would be kept beside class maps it was not made from.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from core.errors import InputDataError
from core.storage import atomic_write, files, open_store
from core.storage.gdal_auth import gdal_env
from inference.cog import maps
from inference.mapping.series_area import SeriesAreaRow, area_rows_of, empty_zones, plot_area
from inference.predict import stats
from inference.predict.change import arrays as change_rules
from inference.predict.change import consistency as consistency_rule
from inference.predict.change import stretches
from inference.predict.change.arrays import DEFAULT_SPECTRAL_THRESHOLD
from inference.predict.change.consistency import TemporalRule
from inference.predict.change.encoder import STACK_RULES, EncoderModel, fits_key, stack_rule
from inference.predict.change.spectral import SpectralStacks, StackRule, spectral_stacks
from inference.predict.workflow import warn_empty_zones

log = logging.getLogger(__name__)

NO_PAIR = "the series has no pair of dates to compare"


@dataclass(frozen=True)
class SeriesChangeRow:
    """ISA change of one zone between two consecutive dates (km²)."""

    zone: str
    date_from: str
    date_to: str
    stable_isa_km2: float | None  # None: no valid pixel in the zone (its area rows: no data)
    gain_km2: float | None
    loss_km2: float | None
    net_change_km2: float | None
    valid_km2: float
    temporal_consistency: bool = False
    #: each date's ISA km² as its area table counts it (inference.predict.stats.impervious)
    isa_from_km2: float | None = None
    isa_to_km2: float | None = None


@dataclass(frozen=True)
class ChangeProduct:
    """One change COG and its quick-look; ``fit``: the spectral rule's fit (as recorded)."""

    date_from: str
    date_to: str
    cog: str
    png: Path
    fit: dict[str, Any] | None = None


@dataclass(frozen=True)
class SeriesOutputs:
    """Every series product (paths), for the summary, STAC and publication."""

    dates: tuple[str, ...]
    skipped: dict[str, str]
    changes: tuple[ChangeProduct, ...]
    area_csv: Path
    change_csv: Path | None  # None: one mapped date, no pair of dates to compare
    json: Path
    plot: Path
    area_rows: tuple[SeriesAreaRow, ...]
    change_rows: tuple[SeriesChangeRow, ...]

    def table(self) -> str:
        """The per-zone tables as text (what the command prints)."""
        if len(self.dates) < 2:
            return (stats.write_table(self.area_rows) + f"\n\nno ISA change: {NO_PAIR} "
                    f"(one mapped date, {self.dates[0] if self.dates else 'none'})")
        return (stats.write_table(self.area_rows) + "\n\nISA change between consecutive dates\n"
                + stats.write_table(self.change_rows))


def _run_hash(path: str) -> str:
    """The map's run and runtime (a date mapped again at another runtime redoes its changes)."""
    with files.open_raster(path) as ds:
        return maps.map_identity(ds.tags())


def change_product(class_a: str, class_b: str, out: str, png: Path, *, isa_class: int,
                   date_from: str, date_to: str, consistent: bool = False,
                   margin: float = 0.0, probs: tuple[str, str] | None = None,
                   spectral: StackRule | None = None) -> ChangeProduct:
    """The change COG from ``class_a`` to ``class_b`` at ``out`` (skipped when up to date).

    With ``spectral`` (the two dates' stacks, checked), change is decided by that stack rule
    (spectral or encoder) on the probability COGs ``probs``; else with ``margin`` > 0 on
    ``probs`` with that margin (:func:`inference.predict.change.arrays.margin_change`); else on the
    class maps. A COG whose
    tags name another rule, threshold or margin, or other class maps, is redone.
    """
    want = {"from_run": _run_hash(class_a), "to_run": _run_hash(class_b),
            "temporal_consistency": "applied" if consistent else "not applied",
            "impervious": stats.IMPERVIOUS_TAG}  # a map made before one definition is redone
    # why a doubted date was mapped, read from its own maps (the consistent ones carry none)
    noted = maps.recorded_notes(*zip((date_from, date_to), probs or (class_a, class_b),
                                     strict=True))
    if noted:
        want["input_notes"] = json.dumps(noted)
    if spectral is not None:
        want.update(change_rule=spectral.rule_text,
                    spectral_threshold=f"{spectral.threshold:g}")
    else:
        want.update(change_margin=f"{margin:g}",
                    change_rule=change_rules.RULE if margin > 0 and probs
                    else "class maps differenced")
    current, tags = False, {}
    if files.exists(out):
        with files.open_raster(out) as ds:
            tags = ds.tags()
        current = all(tags.get(k) == v for k, v in want.items()) and all(want.values()) \
            and tags.get("input_notes", "") == want.get("input_notes", "")  # none left stale
    if not current:  # as the dates say theirs: a redone map can take minutes
        log.info("change %s to %s: %s", date_from, date_to,
                 f"redone ({_why_redone(tags, want, date_from, date_to)})" if tags else "mapping")
        if spectral is not None and probs is not None:
            spectral = spectral.fitted()
        rule = spectral if probs is not None else None  # a stack rule, else the margin's
        by_probs = probs is not None and (rule is not None or margin > 0)
        stats.change_map(*(probs if by_probs and probs else (class_a, class_b)), out,
                         isa_class=isa_class, tags=want, spectral=rule,
                         margin=margin if by_probs and rule is None else None,
                         classes=(class_a, class_b) if by_probs else None, work_dir=png.parent)
    if not current or not png.exists():
        with gdal_env(out):
            maps.quicklook(files.gdal_path(out), png, "change", when=f"{date_from} to {date_to}")
    fit = None
    if spectral is not None:  # what made the map: this run's fit, or the one it recorded
        fit = spectral.fit.to_dict() if spectral.fit else json.loads(tags[spectral.fit_tag])
    return ChangeProduct(date_from, date_to, out, png, fit)


_WHY_REDONE = {"from_run": "the class map of {a} changed", "to_run": "the class map of {b} changed",
               "temporal_consistency": "temporal consistency {new}, was {old}",
               "impervious": "it was made before one definition of impervious",
               "change_rule": "the change rule changed", "input_notes": "the dates' notes changed",
               "spectral_threshold": "--spectral-threshold {new}, was {old}",
               "change_margin": "--change-margin {new}, was {old}"}


def _why_redone(tags: Mapping[str, str], want: Mapping[str, str], a: str, b: str) -> str:
    """Why a change COG with ``tags`` is redone where it should have ``want``."""
    why = [_WHY_REDONE[k].format(a=a, b=b, new=v, old=tags.get(k, "none"))
           for k, v in {"input_notes": "", **want}.items() if tags.get(k, "") != v]
    return "; ".join(why) or "a class map records no run"


def series_products(mapped: Sequence[tuple[str, Any]], skipped: dict[str, str], out: str,
                    local: Path, zones: str | None, *, isa_class: int = 1,
                    zones_name: str | None = None, crs: Any = None,
                    temporal_consistency: TemporalRule | None = None, change_margin: float = 0.0,
                    change_rule: str = "margin", encoder: EncoderModel | None = None,
                    stacks: Mapping[str, str | None] | None = None, bands: Sequence[str] = (),
                    spectral_threshold: float = DEFAULT_SPECTRAL_THRESHOLD) -> SeriesOutputs:
    """Change maps, per-zone tables and the area plot of a series.

    Args:
        mapped: ``(month, inference.predict.workflow.Outputs)`` of every mapped date, ascending.
        skipped: month -> reason, for dates without data.
        out: COG root (local or gs://); change COGs go to ``<out>/change/``.
        local: folder of PNGs and tables.
        zones: GeoJSON of the zones (None: the whole map).
        zones_name: the zones' property that names them (None: ``stats.zone_name``'s default).
        isa_class: index of the impervious class.
        crs: the maps' CRS (zones are reprojected to it).
        temporal_consistency: make the class maps consistent over the dates first by this
            rule (the module docstring; ``stretches`` reads each date's stack).
        change_margin: with ``change_rule`` ``margin``: decide change on both dates'
            probabilities with this margin (0: the class maps differenced; not with
            ``temporal_consistency``, which works on classes).
        change_rule: ``spectral`` (each date's stack in ``stacks`` decides whether a pixel
            changed), ``encoder`` (``encoder``'s features of them decide:
            :mod:`inference.predict.change.encoder`) or ``margin``.
        encoder: the encoder rule's network and its model file's statistics.
        spectral_threshold: the spectral rule's threshold (robust z-score, > 0).
        stacks: month -> the stack the date was predicted from (the spectral rule).
        bands: the model's bands (read from the stacks by name).

    Raises:
        InputDataError: with a stack rule, a date has no stack, or one without a band or off grid.
    """
    local.mkdir(parents=True, exist_ok=True)
    zone_list = stats.load_zones(zones, crs, zones_name) if mapped else []
    class_maps = {m: o.prediction.class_path for m, o in mapped}
    prob_maps = {m: o.prediction.prob_path for m, o in mapped}
    class_maps, consistency = _series_class_maps(
        class_maps, prob_maps, out, local / "consistent", isa_class, temporal_consistency,
        lambda a, b: _pair_stacks(a, b, stacks or {}, bands, prob_maps[a], spectral_threshold,
                                  "--temporal-consistency monotone"))
    area_rows = area_rows_of(mapped, class_maps, zone_list, isa_class,
                             bool(temporal_consistency), out)
    warn_empty_zones(empty_zones(area_rows))  # once per zone for all dates, not per date
    spectral = change_rule in STACK_RULES and not temporal_consistency
    changes, change_rows = [], []
    for a, b in itertools.pairwise(class_maps):
        name = f"isa_change_{a}_{b}"
        rule = stack_rule(change_rule, _pair_stacks(a, b, stacks or {}, bands, prob_maps[a],
                                                    spectral_threshold),
                          encoder, (prob_maps[a], prob_maps[b])) if spectral else None
        product = change_product(class_maps[a], class_maps[b],
                                 f"{out.rstrip('/')}/change/{name}.tif",
                                 local / "change" / f"{name}.png", isa_class=isa_class,
                                 date_from=a, date_to=b, consistent=bool(temporal_consistency),
                                 margin=change_margin, probs=(prob_maps[a], prob_maps[b]),
                                 spectral=rule)
        changes.append(product)
        change_rows += _change_rows(product, zone_list, (class_maps[a], class_maps[b]),
                                    isa_class, bool(temporal_consistency))
    area_csv = local / "series_area.csv"
    stats.write_table(area_rows, None, area_csv)
    change_csv = _change_table(change_rows, local / "series_change.csv", len(mapped))
    record = {"dates": [m for m, _ in mapped], "skipped": skipped,
              "area": [asdict(r) for r in area_rows],
              "change": [asdict(r) for r in change_rows],
              # relative to --out: the record travels with the maps
              "change_maps": {f"{c.date_from}/{c.date_to}":
                              c.cog.removeprefix(out.rstrip("/") + "/") for c in changes},
              "temporal_consistency": consistency,
              **({"change_rule": change_rule, "spectral_threshold": spectral_threshold,
                  fits_key(change_rule): {f"{c.date_from}/{c.date_to}": c.fit for c in changes}}
                 if spectral else {"change_rule": "margin", "change_margin": change_margin})}
    json_path = local / "series.json"
    drawn = _area_drawn(json_path, [asdict(r) for r in area_rows], local / "series_area.png")
    atomic_write(json_path, lambda fh: fh.write(json.dumps(record, indent=1).encode()))
    plot = drawn or plot_area(area_rows, local / "series_area.png")
    return SeriesOutputs(tuple(m for m, _ in mapped), dict(skipped), tuple(changes), area_csv,
                         change_csv, json_path, plot, tuple(area_rows), tuple(change_rows))


def _area_drawn(record: Path, area: list[dict[str, Any]], png: Path) -> Path | None:
    """``png`` where it already draws ``area``, else None: a resumed series redraws no chart.

    It does where the series' earlier record holds the same area rows and the picture is there.
    """
    if not (png.is_file() and record.is_file()):
        return None
    try:
        earlier = json.loads(record.read_text()).get("area")
    except (OSError, ValueError):
        return None
    return png if earlier == json.loads(json.dumps(area)) else None


def _series_class_maps(class_maps: dict[str, str], prob_maps: Mapping[str, str], out: str,
                       work: Path, isa_class: int, rule: TemporalRule | None,
                       pair: Callable[[str, str], SpectralStacks]
                       ) -> tuple[dict[str, str], dict[str, Any]]:
    """The class maps the series counts (each date's own, or made consistent by ``rule``).

    Returns them and what ``series.json`` says of the rule; consistent maps an earlier run left
    and this run does not write are removed (:func:`_remove_stale_consistent`). ``work``:
    where the unfinished consistent maps are written (the local product folder's
    ``consistent/``, which the next run cleans of a killed run's; not the current folder).
    """
    consistency: dict[str, Any] = {"applied": bool(rule)}
    if rule:
        class_maps, applied = _consistent_maps(class_maps, out, work, isa_class, prob_maps,
                                               rule, pair)
        consistency.update(applied)
    _remove_stale_consistent(out, set(class_maps.values()) if rule else set())
    return class_maps, consistency


def _remove_stale_consistent(out: str, written: set[str]) -> None:
    """Remove the consistent class maps under ``<out>/consistent/`` that this run did not write.

    A consistent map is made by a rule over the whole series: one an earlier run left (with
    ``--temporal-consistency``, or over other dates) looks current beside this run's maps and
    tables and is not. Each one removed is said in the log.
    """
    folder = f"{out.rstrip('/')}/consistent"
    if not files.is_gcs(folder) and not Path(folder).is_dir():
        return
    store = open_store(folder)
    for name in store.list():
        path = f"{folder}/{name}"
        if "/" not in name and name.endswith("_class.tif") and path not in written:
            store.delete(name)
            log.info("removed %s: a consistent map of an earlier run (this run writes %s)", path,
                     "consistent maps of its own dates" if written
                     else "none: no --temporal-consistency")
    if not written and not files.is_gcs(folder):
        with contextlib.suppress(OSError):  # the folder, once empty
            Path(folder).rmdir()


def _change_table(rows: Sequence[SeriesChangeRow], path: Path, dates: int) -> Path | None:
    """``series_change.csv`` of ``rows``; None and no file where ``dates`` make no pair.

    A table an earlier run of more dates left is removed, with a log line: it described
    change this run does not map.
    """
    if dates >= 2:
        stats.write_table(rows, None, path)
        return path
    if path.exists():
        path.unlink()
        log.info("removed %s: an earlier run's change table (%s)", path, NO_PAIR)
    return None


def _change_rows(product: ChangeProduct, zone_list: list, classes: tuple[str, str],
                 isa_class: int, consistent: bool) -> list[SeriesChangeRow]:
    """The change table's rows of one pair: each zone's stable, gained and lost ISA."""
    return [SeriesChangeRow(row.zone, product.date_from, product.date_to, row.stable_isa_km2,
                            row.gain_km2, row.loss_km2, row.net_change_km2, row.valid_km2,
                            consistent, row.isa_from_km2, row.isa_to_km2)
            for row in stats.change_area(product.cog, zone_list, classes, isa_class)]


def _consistent_maps(class_maps: Mapping[str, str], out: str, work: Path, isa_class: int,
                     prob_maps: Mapping[str, str], rule: TemporalRule,
                     pair: Callable[[str, str], SpectralStacks]
                     ) -> tuple[dict[str, str], dict[str, Any]]:
    """The class maps made consistent over the dates by ``rule``, and what ``series.json`` says.

    The consistent maps are written under ``<out>/consistent/``; ``pair(a, b)``: the stacks of
    two consecutive dates, checked (the stretches rule reads them).
    """
    consistent = {m: f"{out.rstrip('/')}/consistent/isa_{m}_class.tif" for m in class_maps}
    if rule == "monotone":
        relabelled = consistency_rule.apply_to_maps(list(class_maps.values()),
                                                    list(consistent.values()), isa_class,
                                                    work_dir=work)
        record = {"rule": consistency_rule.RULE, "assumption": consistency_rule.ASSUMPTION}
    else:
        pairs = [pair(a, b) for a, b in itertools.pairwise(class_maps)]
        relabelled = stretches.apply_to_maps(list(class_maps.values()), list(prob_maps.values()),
                                             pairs, list(consistent.values()), isa_class,
                                             work_dir=work)
        record = stretches.describe(list(class_maps), next(iter(consistent.values())),
                                    pairs[0].threshold if pairs else None)
    return consistent, {**record,
                        "class_maps": {m: p.removeprefix(out.rstrip("/") + "/")
                                       for m, p in consistent.items()},
                        "pixels_relabelled": {m: relabelled[p] for m, p in consistent.items()}}


def _pair_stacks(a: str, b: str, stacks: Mapping[str, str | None], bands: Sequence[str],
                 prob: str, threshold: float, other: str = "--change-rule margin"
                 ) -> SpectralStacks:
    """The stacks of dates ``a`` and ``b``, checked against the probability map ``prob``'s grid.

    ``other``: what to choose instead when a stack is missing.
    """
    missing = [m for m in (a, b) if not stacks.get(m)]
    if missing:
        raise InputDataError(f"the spectral magnitude is read from each date's stack, and the "
                             f"run kept none for {', '.join(missing)}; choose {other}")
    with files.open_raster(prob) as ds:
        grid = (ds.height, ds.width), ds.transform, ds.crs
    return spectral_stacks(str(stacks[a]), str(stacks[b]), bands, *grid, threshold=threshold,
                           names=(f"the {a} stack", f"the {b} stack"))
