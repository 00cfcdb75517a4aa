"""The whole-region prediction stack on Earth Engine: a model's input bands for one date.

A map is built from exactly the recipe its model was trained on, so everything starts from the
dataset manifest's ``recipe`` (speckle filter, terrain flattening, orbit pass, cloud mask and
threshold, and the composite windows a cloudy month was widened to). This module

- rebuilds that recipe for a date (:func:`recipe_for_month`): the recorded windows when the
  dataset holds the month, else the month's own window, widened as the export widens it
  (:func:`composite_windows`, which asks Earth Engine through the session);
- builds the image the model reads (:func:`prediction_image`: the recipe's bands on the map's
  grid, no label);
- exports that image as grid-aligned GeoTIFF tiles to Cloud Storage with batch tasks for
  regions too large for interactive requests (:func:`export_prediction_stack`), resumably, and
  writes a VRT over the tiles with the band names and the masked value, which Earth Engine's
  GeoTIFFs do not carry, and the Satellite Embedding's de-quantisation (its tiles hold the
  published integers, :func:`gee_export.ee.embedding.lookup_table`), so the predictor reads
  the stack's values in place through ``/vsigs/``.

Every server call goes through :class:`gee_export.ee.session.EESession` (retries, one
clear authentication error). Task descriptions are sanitised where tasks are built
(:func:`gee_export.ee.session.task_description`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from contract import bands as band_registry
from contract.grid import Grid, Window
from contract.label_schemes import is_landcover
from contract.vrt import Piece, VrtBand, mosaic_vrt
from core.errors import ConfigError, EmptyCompositeError
from core.progress import progress_bar
from core.storage import GcsStore, Store, open_store
from gee_export.ee.embedding import collection as embedding_collection
from gee_export.ee.embedding import is_embedding_band, lookup_table, require_layer
from gee_export.ee.labels import LabelSource, parse_label_source
from gee_export.ee.recipe import (
    FLOAT_NODATA,
    EERecipe,
    build_stack,
    sentinel_composites_of,
    series_window,
)
from gee_export.ee.sentinel1 import S1Recipe, require_scenes, s1_collection
from gee_export.ee.sentinel2 import (
    S2Recipe,
    TimeWindow,
    choose_window,
    clear_count_statistic,
    month_window,
    s2_collection,
)
from gee_export.ee.session import EESession
from gee_export.ee.task_loop import BatchTask, TaskGroup, run_tasks
from gee_export.ee.tasks import DEFAULT_MAX_PENDING, SHARD, tile_task

log = logging.getLogger(__name__)

DEFAULT_TILE_PX = 4096  # 41 km at 10 m; 6 float32 bands = 400 MB per GeoTIFF, one file each


@dataclass(frozen=True)
class DateRecipe:
    """The Earth Engine recipe of one date of a map.

    Attributes:
        recipe: bands (the model's, in its order) and the S1/S2 parameters of the dataset.
        s2_window: the Sentinel-2 window; None until :func:`composite_windows` chose it.
        s1_window: the Sentinel-1 window (the calendar month, or the dataset's record).
    """

    recipe: EERecipe
    s2_window: TimeWindow | None
    s1_window: TimeWindow

    def to_dict(self) -> dict[str, Any]:
        return {**self.recipe.to_dict(),
                "s2_window": self.s2_window.to_dict() if self.s2_window else None,
                "s1_window": self.s1_window.to_dict()}


def recipe_for_month(recipe: Mapping[str, Any], bands: Sequence[str], month: str,
                     sources: Mapping[str, Any] | None = None) -> DateRecipe:
    """The dataset's Earth Engine recipe applied to ``month`` for a model reading ``bands``.

    Args:
        recipe: the manifest's ``recipe`` (``s1``, ``s2``; older manifests: ``per_month``).
        bands: the model's input bands, in order.
        month: ``YYYY-MM`` to map.
        sources: the manifest's ``sources`` (per month: the composite windows it used).

    Raises:
        ConfigError: a band no Earth Engine source provides, or recipe parameters this version
            does not know (a manifest from another isamap version).
    """
    used = {**dict((recipe.get("per_month") or {}).get(month) or {}),
            **dict((sources or {}).get(month) or {})}
    base = {**dict(recipe), **used}
    label = recorded_label(recipe) if band_registry.PRODUCT in bands else None
    for band in bands:
        spec = band_registry.get_band(band)  # UnknownBandError names the known bands
        if spec.sensor not in ("S1", "S2", "embedding", "product") \
                and band not in ("s2_clear_count", "s1_scene_count"):
            raise ConfigError(
                f"the model reads band {band!r}, which the Earth Engine recipe cannot provide "
                f"(it builds Sentinel-1/2 and Satellite Embedding bands only); map with a "
                f"model trained on those bands")
    try:
        s1 = S1Recipe(**dict(base.get("s1") or {}))
        s2 = S2Recipe(**dict(base.get("s2") or {}))
    except TypeError as exc:
        raise ConfigError(f"the dataset's recipe has parameters this isamap does not know "
                          f"({exc}); map with the isamap version that exported it") from None
    s2_window = TimeWindow(**used["s2_window"]) if used.get("s2_window") else None
    s1_window = TimeWindow(**used["s1_window"]) if used.get("s1_window") else month_window(month)
    return DateRecipe(EERecipe(bands=tuple(bands), s1=s1, s2=s2, label=label), s2_window,
                      s1_window)


def recorded_label(recipe: Mapping[str, Any]) -> LabelSource:
    """The land-cover label source a dataset recorded: what ``product`` reads on a map date.

    An Earth Engine dataset records the parsed source (``label``); a local one its scheme
    (``label_scheme``, ``landcover:nlcd``), which is read from the catalogue when Earth
    Engine holds it (an uploaded source needs its asset: ``parse_label_source`` says so).

    Raises:
        ConfigError: the recipe records no land-cover source (a model reading ``product``
            needs the codes it was trained on, from the same source).
    """
    scheme = recipe.get("label_scheme")
    if not recipe.get("label") and isinstance(scheme, str) and is_landcover(scheme):
        return parse_label_source(scheme)
    record = dict(recipe.get("label") or {})
    try:
        label = LabelSource(**record)
    except TypeError:
        label = None
    if label is None or label.kind != "landcover":
        raise ConfigError(f"the model reads the {band_registry.PRODUCT!r} band, and its "
                          "dataset's recipe records no Earth Engine land-cover label source "
                          f"to read it from ({record or 'none'}); map it with --backend local, "
                          "or export its training data with --labels landcover:<source>")
    return label


def composite_windows(session: EESession, geometry: Any, region_name: str,
                      date: DateRecipe) -> DateRecipe:
    """``date`` with its Sentinel-2 window chosen and its Sentinel-1 scenes checked.

    The Sentinel-2 window is widened around a cloudy month exactly as the export widens it; a
    month with no clear observation or no Sentinel-1 pass, a series stack's earlier month
    without a scene of a sensor it reads there (:func:`require_series_scenes`), or without the
    Satellite Embedding's layer of its year (when the bands read it), raises
    :class:`~core.errors.EmptyCompositeError` naming the month (the caller reports
    and skips that date).
    """
    recipe, month = date.recipe, date.s1_window.month
    s2_window = date.s2_window
    if s2_window is None and any(_sensor(b) == "S2" for b in recipe.bands):
        s2_window = choose_window(
            month, region_name, recipe.s2,
            lambda start, end: session.get_info(
                clear_count_statistic(geometry, start, end, recipe.s2),
                f"counting clear Sentinel-2 observations of {month}"))
    if any(_sensor(b) == "S1" for b in recipe.bands):
        w = date.s1_window
        require_scenes(session.get_info(s1_collection(geometry, w.start, w.end, recipe.s1).size(),
                                        f"counting Sentinel-1 scenes of {month}"),
                       month, region_name, recipe.s1)
    require_series_scenes(session, geometry, region_name, recipe, month)
    if any(_sensor(b) == "embedding" for b in recipe.bands):
        year = int(month[:4])
        require_layer(session.get_info(embedding_collection(geometry, year).size(),
                                       f"counting Satellite Embedding images of {year}"),
                      year, region_name)
    return DateRecipe(recipe, s2_window or month_window(month), date.s1_window)


def require_series_scenes(session: EESession, geometry: Any, region_name: str,
                          recipe: EERecipe, month: str) -> None:
    """Each earlier month a series stack of ``month`` reaches holds scenes of its sensors.

    An earlier month (``B4_m2``) is composited over its calendar month, never widened: one
    request answers the fewest Sentinel-2 or Sentinel-1 scenes of any month and sensor the
    bands reach, and only when that is none a second one which (an all-cloud month is
    allowed: its pixels are nodata; a month without a scene would fail server-side mid-run).

    Raises:
        EmptyCompositeError: a month without scenes, named (one line).
    """
    import ee

    reached = sorted(key for key in sentinel_composites_of(recipe.bands) if key[0])
    if not reached:
        return
    windows = [(k, sensor, series_window(month_window(month), k)) for k, sensor in reached]
    counts = ee.List([(
        s2_collection(geometry, w.start, w.end, recipe.s2, ("B2",)) if sensor == "S2"
        else s1_collection(geometry, w.start, w.end, recipe.s1)).size()
        for _, sensor, w in windows])
    what = f"counting the Sentinel-1/2 scenes of the months before {month}"
    if int(session.get_info(counts.reduce(ee.Reducer.min()), what) or 0) > 0:
        return
    each = session.get_info(counts, what)
    if each is None:  # no count of any month: as the fewest's, none
        raise EmptyCompositeError(
            f"no Sentinel-1/2 scene count over region {region_name!r} for "
            f"{', '.join(sorted({w.month for _, _, w in windows}))}, which the series stack of "
            f"{month} reads; choose another month, or a series of fewer months")
    for (k, sensor, w), count in zip(windows, each, strict=True):
        if int(count or 0) <= 0:
            collection = recipe.s2.collection if sensor == "S2" else recipe.s1.collection
            raise EmptyCompositeError(
                f"no Sentinel-{sensor[1]} scene ({collection}) over region {region_name!r} in "
                f"{w.month}, which the series stack of {month} reads ({k} month(s) before it); "
                "choose another month, or a series of fewer months")


def _sensor(band: str) -> str:
    if band == "s2_clear_count":
        return "S2"
    if band == "s1_scene_count":
        return "S1"
    return band_registry.get_band(band).sensor


def prediction_image(grid: Grid, date: DateRecipe, geometry: Any):
    """The model's input bands for one date on ``grid`` (float32, masked = FLOAT_NODATA)."""
    if date.s2_window is None:
        raise ConfigError("choose the Sentinel-2 window first (composite_windows)")
    return build_stack(grid, date.s2_window, date.recipe, geometry, date.s1_window,
                       with_label=False)


@dataclass(frozen=True)
class PredictionStack:
    """Where an exported prediction stack is and how it was made."""

    vrt: str  # gs:// URI of the VRT over the tiles (read through /vsigs/)
    tiles: int
    tasks_started: int
    missing_tiles: int  # tiles Earth Engine skipped as empty (no valid pixel): nodata there
    #: the VRT of the grid with its margin (``margin_vrt``'s pixel (top, left) is the grid's
    #: (0, 0)); None without a margin
    margin_vrt: str | None = None


def stack_tiles(grid: Grid, tile_px: int = DEFAULT_TILE_PX) -> list[Window]:
    """Grid-aligned windows of at most ``tile_px`` (a multiple of 256) covering the grid."""
    if tile_px < SHARD or tile_px % SHARD:
        raise ConfigError(f"stack tiles must be a multiple of {SHARD} px, got {tile_px}")
    return [Window(row_off=r, col_off=c, height=min(tile_px, grid.height - r),
                   width=min(tile_px, grid.width - c))
            for r in range(0, grid.height, tile_px) for c in range(0, grid.width, tile_px)]


def _tile_name(window: Window) -> str:
    return f"tile_{window.row_off:06d}_{window.col_off:06d}"


@dataclass(frozen=True)
class _StackState:
    """The task loop's state of one stack: ``<name>/<key>.json`` beside its tiles."""

    store: Store
    name: str

    def read_state(self, key: str) -> dict[str, Any]:
        rel = f"{self.name}/{key}.json"
        return dict(json.loads(self.store.read_bytes(rel))) if self.store.exists(rel) else {}

    def write_state(self, key: str, value: Any) -> None:
        self.store.write_bytes(f"{self.name}/{key}.json",
                               json.dumps(value, sort_keys=True).encode())


def _write_vrts(store: Store, name: str, windows: Sequence[Window], bands: Sequence[str],
                inner: Grid, grid: Grid, margin: tuple[int, int, int, int]) -> int:
    """Write the stack's VRT over ``inner`` (with a margin, also over the widened ``grid``).

    Built from the tiles present; returns how many tiles Earth Engine skipped (no valid pixel).
    """
    present = [w for w in windows if store.exists(f"{name}/{_tile_name(w)}.tif")]
    missing = len(windows) - len(present)
    if missing:
        log.info("%d of %d stack tiles of %s hold no valid pixel (Earth Engine skipped them); "
                 "they are nodata in the map", missing, len(windows), name)
    # a task's tile holds the embedding's published integers (as float32): the VRT reads
    # them as the embedding's values
    vrt_bands = [VrtBand(i, "float32", FLOAT_NODATA, band,
                         lut=lookup_table(FLOAT_NODATA) if is_embedding_band(band) else None)
                 for i, band in enumerate(bands, 1)]
    top, left = margin[0], margin[1]
    for target, on, (dr, dc) in ((f"{name}.vrt", inner, (top, left)),
                                 (f"{name}_margin.vrt", grid, (0, 0))):
        text = mosaic_vrt(  # pieces past the edges of the grid are clipped by GDAL
            on.width, on.height, on.transform, on.crs, vrt_bands,
            [Piece(f"{name}/{_tile_name(w)}.tif", w.row_off - dr, w.col_off - dc, w.height,
                   w.width) for w in present])
        store.write_bytes(target, text.encode())
        if not any(margin):
            break
    return missing


def export_prediction_stack(
    session: EESession, image: Any, grid: Grid, bands: Sequence[str], out: str | Store,
    name: str, *, tile_px: int = DEFAULT_TILE_PX, max_pending: int = DEFAULT_MAX_PENDING,
    poll_seconds: float = 30.0, sleep: Callable[[float], None] = time.sleep,
    progress: bool = True, margin: tuple[int, int, int, int] = (0, 0, 0, 0),
) -> PredictionStack:
    """Export ``image`` as GeoTIFF tiles under ``out/name/`` and write ``out/name.vrt``.

    Resumable: tiles already in the bucket are not exported again, and task ids are kept in
    ``out/name/tasks.json`` so a re-run follows tasks still running instead of starting them
    twice (their statuses read in one paged listing, as every poll is). The EECU each
    finished task used, as Earth Engine reports it, goes to ``out/name/eecu.json``, and the
    session's ``--max-eecu-hours`` budget (:attr:`EESession.budget`) bounds the tasks started
    (:func:`gee_export.ee.task_loop.run_tasks`). A failed task stops the run with the tile's
    name and Earth Engine's message.

    Args:
        session: the Earth Engine seam.
        image: :func:`prediction_image`'s image.
        grid: the map's grid.
        bands: the image's band names (become the VRT's band descriptions).
        out: a ``gs://bucket/prefix`` (Earth Engine writes only to Cloud Storage).
        name: the stack's name (folder and VRT name), e.g. ``stack_2019-06``.
        tile_px: tile side in pixels.
        max_pending: most tasks pending at once (Earth Engine allows 3,000 per project).
        poll_seconds: wait between status polls.
        sleep: the wait function (tests pass a no-op).
        progress: show a tqdm bar over tiles.
        margin: ``(top, left, bottom, right)`` pixels exported around the grid as well (the
            halo a map's tiles see past the region's edges); the tiles are then named by
            their place on the widened grid, and ``margin_vrt`` covers it.
    """
    store = open_store(out)
    inner, grid = grid, grid.widened(margin)
    if not isinstance(store, GcsStore):
        raise ConfigError("--method tasks exports the stack to Cloud Storage: give --out "
                          "gs://BUCKET/PREFIX (or use --method pixels)")
    windows = stack_tiles(grid, tile_px)
    done = {w for w in windows if store.exists(f"{name}/{_tile_name(w)}.tif")}
    bar = progress_bar(total=len(windows), initial=len(done), desc=f"stack {name} (tasks)",
                       unit="tile", disable=not progress)

    def group(window: Window) -> TaskGroup:
        key = _tile_name(window)
        return TaskGroup(key, (BatchTask(
            key, window.width * window.height,
            lambda: tile_task(image, grid, window, store.bucket_name,  # type: ignore[attr-defined]
                              store.key(f"{name}/{key}"),  # type: ignore[attr-defined]
                              f"isamap {name} {key}"),
            lambda: store.exists(f"{name}/{key}.tif")),))

    budget = session.budget
    try:
        outcome = run_tasks(
            session, [group(w) for w in windows if w not in done], _StackState(store, name),
            on_ready=lambda g: bar.update(1),
            failed=lambda g, state, msg: (
                f"the stack export task of {g.name} ({name}) ended {state}: {msg}. Fix the "
                "cause and run the same command again: finished tiles are kept."),
            max_pending=max_pending, poll_seconds=poll_seconds, sleep=sleep, budget=budget,
            on_wait=lambda n: bar.set_postfix_str(f"{n} tasks running"))
    finally:
        bar.close()
    if outcome.left and budget is not None:
        raise budget.stopped(f"stack {name} has {outcome.left:,} of {len(windows):,} tiles "
                             "left to export")
    missing = _write_vrts(store, name, windows, bands, inner, grid, margin)
    return PredictionStack(store.url(f"{name}.vrt"), len(windows), outcome.started, missing,
                           store.url(f"{name}_margin.vrt") if any(margin) else None)
