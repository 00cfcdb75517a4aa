"""The workers' side of a pipeline map (:mod:`inference.mapping.beam_map`): tiles to GeoTIFFs.

Each worker process opens its own Earth Engine session and store from the picklable
:class:`MapTask`, loads the model once (``beam.utils.shared.Shared``: every DoFn instance of
a process uses the same :class:`Predictor`), fetches a bundle's tiles ``threads`` at once under
the per-process request semaphore of :mod:`core.pipeline_options`, predicts each unit (one
batch of the streaming predictor) in one forward pass and writes each tile it does not find
finished (:func:`tile_path`). :class:`Mosaic`, the pipeline's last step, builds the date's two
COGs from every tile and records that the date is done (:data:`MOSAIC_RECORD`).
"""

from __future__ import annotations

import json
import tempfile
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from contract.grid import Grid
from core.errors import ConfigError
from core.pipeline_options import WorkerRequests, require_beam
from core.storage import files
from gee_export.ee.beam_export import SerializedImages, SessionFactory
from inference.cog.maps import OutputInfo
from inference.mapping.tiles import MapTile, fetch_tile, mosaic, predict_tiles, write_tile
from inference.predict.calibration import model_file_patches
from inference.predict.runtime import RuntimeOptions, TilePredictor
from inference.predict.scene import recorded_statistics
from training.data import NormStats
from training.modelfile import LoadedModel, ModelMeta, load_model

METRICS_NAMESPACE = "isamap.map"
MOSAIC_RECORD = "mosaic.json"


@dataclass(frozen=True)
class MapTask:
    """What every worker needs (picklable: sessions, stores and models open on the worker)."""

    sessions: SessionFactory
    images: SerializedImages
    grid: Grid
    bands: tuple[str, ...]
    model_file: str
    options: RuntimeOptions
    isa_class: int
    tiles_dir: str
    threads: int
    scene: NormStats | None = None  # the date's statistics (a scene-normalised model)
    batch_size: int = 1  # the streaming predictor's (a lone tile of a row runs beside a copy)


Unit = tuple[MapTile, ...]  # one batch of the streaming predictor


def tile_path(tiles_dir: str, tile: MapTile) -> str:
    """Where a tile's GeoTIFF goes (local path or gs:// URI)."""
    return f"{tiles_dir.rstrip('/')}/{tile.name}.tif"


#: the models the launching process read, by the file its tasks name: workers in that process
#: (the direct runner's threads) use them; a worker in another process reads its own
LAUNCHED: weakref.WeakValueDictionary[str, LoadedModel] = weakref.WeakValueDictionary()


class Predictor:
    """A worker process's model (weak-referenceable, as ``Shared`` requires).

    ``model``: the model file of a task, or one already read; ``scene``: the date's statistics
    a scene-normalised model maps with; ``check_only``: the predictor is built only to check
    it (int8 before a pipeline starts), so such a model takes the statistics its file records
    instead.
    """

    def __init__(self, model: str | LoadedModel, options: RuntimeOptions, isa_class: int,
                 scene: NormStats | None = None, check_only: bool = False) -> None:
        loaded = model if isinstance(model, LoadedModel) else (
            LAUNCHED.get(model) or load_model(model))
        meta = loaded.meta
        if check_only and meta.norm == "scene":
            scene = recorded_statistics(meta)
        self.scale = int(meta.output_scale)
        patches = int8_patches(meta) if options.precision == "int8" else None
        self.predictor = TilePredictor.for_model(loaded.module, meta, scene, options=options,
                                                 int8_patches=patches, isa_class=isa_class)
        self.lock = threading.Lock()  # one forward pass at a time per process (GPU memory)


def int8_patches(meta: ModelMeta) -> Any:
    """The model file's own training patches, which every worker calibrates int8 on.

    A worker calibrating on its own first tiles would quantize the model its own way, and
    the map would depend on which worker predicted which tile: int8 in a pipeline needs the
    patches every worker reads alike, or it is refused.
    """
    patches = model_file_patches(meta)
    if patches is None:
        raise ConfigError("--precision int8 with --runner calibrates every worker on the model "
                          "file's training patches, which cannot be read here (see the log); "
                          "use --precision bf16, or map without --runner")
    return patches


def make_dofn() -> type:
    """The DoFn that fetches, predicts and writes a bundle's tiles (made on first use)."""
    beam: Any = require_beam()  # an optional extra: untyped here
    from apache_beam.metrics import Metrics  # lazy: Beam is an optional extra
    from apache_beam.utils.shared import Shared

    class PredictTiles(beam.DoFn):
        """Fetch a batch of tiles (``threads`` at once), predict and write each."""

        def __init__(self, task: MapTask) -> None:
            self.task = task
            self.shared = Shared()

        def setup(self) -> None:
            t = self.task
            self.session = t.sessions()
            self.image = t.images.load()[0]
            self.model = self.shared.acquire(
                partial(Predictor, t.model_file, t.options, t.isa_class, t.scene),
                tag=(t.model_file, repr(t.options), t.isa_class, repr(t.scene)))
            self.work = Path(tempfile.mkdtemp(prefix="isamap-tiles-"))
            self.counters = {name: Metrics.counter(METRICS_NAMESPACE, name)
                             for name in ("predicted", "skipped", "retries")}
            self.requests = WorkerRequests(self.session, t.threads, "isamap-tiles",
                                           self.counters["retries"])

        def _fetch(self, tile: MapTile) -> Any:
            with self.requests.gate:
                return fetch_tile(self.session, self.image, self.task.grid, tile,
                                  self.task.bands)

        def process(self, units: Sequence[Unit]):
            t = self.task
            # a unit is predicted whole (its batch), but only its missing tiles are written: a
            # retried bundle or a resumed run finds the others finished
            missing = [[tile for tile in unit if not files.exists(tile_path(t.tiles_dir, tile))]
                       for unit in units]
            futures = [[self.requests.pool.submit(self._fetch, tile) for tile in unit] if todo
                       else [] for unit, todo in zip(units, missing, strict=True)]
            try:
                for unit, todo, fetched in zip(units, missing, futures, strict=True):
                    if not todo:
                        self.counters["skipped"].inc(len(unit))
                        continue
                    data = [future.result() for future in fetched]
                    with self.model.lock:
                        maps = predict_tiles(self.model.predictor, data, unit, t.isa_class,
                                             t.batch_size, bands=t.bands)
                    for tile, (classes, prob) in zip(unit, maps, strict=True):
                        if tile in todo:
                            self._write(tile, classes, prob)
                            yield tile.name
            finally:  # a failed bundle fetches no more: the runner retries it whole
                for future in (f for unit in futures for f in unit):
                    future.cancel()
                self.requests.report_retries()

        def _write(self, tile: MapTile, classes: Any, prob: Any) -> None:
            t = self.task
            target = tile_path(t.tiles_dir, tile)
            if files.is_gcs(target):
                local = write_tile(self.work / f"{tile.name}.tif", classes, prob, t.grid,
                                   tile, self.model.scale)
                files.upload_file(local, target)
                local.unlink()
            else:
                write_tile(target, classes, prob, t.grid, tile, self.model.scale)
            self.counters["predicted"].inc()

        def teardown(self) -> None:
            if getattr(self, "requests", None) is not None:
                self.requests.close()

    return PredictTiles


@dataclass(frozen=True)
class Mosaic:
    """The last step: every tile into the two COGs, then the record that the date is done."""

    tiles: tuple[MapTile, ...]
    tiles_dir: str
    grid: Grid
    out_prefix: str
    info: OutputInfo
    scale: int
    lattice: tuple[tuple[str, str], ...]
    runtime: tuple[tuple[str, str], ...] = ()

    def __call__(self, _predicted: list[str]) -> str:
        with tempfile.TemporaryDirectory(prefix="isamap-mosaic-") as work:
            parts = []
            for tile in self.tiles:
                path = tile_path(self.tiles_dir, tile)
                if files.is_gcs(path):  # GDAL reads local tiles fastest; the VRT names them
                    local = Path(work) / "tiles" / f"{tile.name}.tif"
                    local.parent.mkdir(parents=True, exist_ok=True)
                    store, name = files.store_of(path)
                    store.download_file(name, local)
                    path = str(local)
                parts.append((path, tile))
            mosaic(parts, self.grid, self.out_prefix, self.info, Path(work) / "vrt",
                   lattice=dict(self.lattice), scale=self.scale, runtime=dict(self.runtime))
        store, name = files.store_of(f"{self.tiles_dir.rstrip('/')}/{MOSAIC_RECORD}")
        store.write_bytes(name, json.dumps({"tiles": len(self.tiles),
                                            "lattice": dict(self.lattice),
                                            "class": self.out_prefix.rsplit("/", 1)[-1]
                                            + "_class.tif",
                                            "probability": self.out_prefix.rsplit("/", 1)[-1]
                                            + "_prob.tif"},
                                           sort_keys=True).encode())
        return self.out_prefix
