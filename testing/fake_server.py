"""An Earth Engine transport that serves a real local stack instead of the service.

Requests are answered the way the service answers them: computePixels decodes the request's
serialized expression, checks it is an ``Image.select`` of the request's band ids over the
recipe (the very image the test built, when given) reprojected onto the requested pixel lattice,
then reads the requested grid (crsCode, affineTransform, dimensions) and returns a NUMPY_NDARRAY
structured array cut out of the local backend's stack GeoTIFFs with rasterio; which label file
(coarse or fine) answers is decided by the expression's reprojection, not by the request's
resolution, so a request built from the wrong image cannot be served. Export tasks read the tile's
grid from the task's serialized expression (reproject + clipToBoundsAndScale) and write the
GeoTIFF into the Cloud Storage emulator bucket named in the task's config, in the data types
the expression gives its bands (the embedding's 8-bit integers unless the image is cast, and a
task of incompatible types FAILED as Earth Engine fails it). Faults (429, 500,
timeouts) can be injected per call, or at one request window (:attr:`StackTransport.fail_at`);
a project's metered compute (``account``: :class:`testing.fake_quota.EecuAccount`) refuses
requests past a daily EECU-time quota and answers in restricted mode past a monthly allowance,
as the service documents, and sets the ``batchEecuUsageSeconds`` finished tasks report;
a fixed service ``latency`` can be simulated (benchmarks), or a project quota shared with other
load (``quota``: :class:`testing.fake_quota.SharedQuota`, a moving cap of concurrent
requests with 429 above it, heavy-tailed latency, 5xx and time-outs). ``getInfo`` of an
``Image.reduceRegion`` (a scene-normalised model's band statistics) is computed from the stack
as the service computes it (:mod:`testing.fake_reduce`). Every other ``getInfo`` is answered
by an ``info`` callable when one is given (the counts a mapping run asks for before its first
request: clear Sentinel-2 observations, Sentinel-1 scenes).

Requests may ask for any window on the stack's pixel lattice, also beyond the stack's edges
(that part arrives as nodata, as Earth Engine returns masked pixels outside the data), so a
mapping run can tile a region any way it likes.

:class:`StackSessions` opens such a session on each worker of a Beam pipeline (a picklable
factory), and :func:`initialize_offline` initialises earthengine-api with the algorithm list
shipped in its wheel, so graphs build and serialize with no network.
"""

from __future__ import annotations

import itertools
import json
import os
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import rasterio
from rasterio.windows import Window as RioWindow

from contract.geotiff import write_geotiff
from contract.stack import StackPaths
from gee_export.ee.embedding import LARGEST, MASKED, SCALE, is_embedding_band
from gee_export.ee.recipe import FLOAT_NODATA
from gee_export.ee.session import EESession, RetryPolicy
from testing.ee_graph import Graph, constant, encode
from testing.fake_points import PointTransport
from testing.fake_profiles import ProfileBook, is_profiles_request
from testing.fake_quota import EecuAccount, HttpError, SharedQuota
from testing.fake_reduce import reduce_region

__all__ = ["HttpError", "PointTransport", "StackSessions", "StackTransport",
           "initialize_offline", "quantise", "request_origin"]


def quantise(values: np.ndarray) -> np.ndarray:
    """int8 of native values in [-1, 1] (NaN: masked), as the published files hold them.

    The Satellite Embedding's own encoding, which the library only reads
    (:func:`gee_export.ee.embedding.dequantise`).
    """
    v = np.asarray(values, np.float64)
    finite = np.isfinite(v)
    known = np.where(finite, v, 0.0)
    q = np.clip(np.rint(np.sign(known) * np.sqrt(np.abs(known)) * SCALE), -LARGEST, LARGEST)
    return np.where(finite, q, MASKED).astype(np.int8)


def initialize_offline(ee: Any) -> Any:
    """Initialise ``ee`` from the wheel's algorithms.json: graphs build, no server is called.

    Any real server call then fails; serve pixels with :class:`StackTransport` instead. It
    patches the client for the rest of the process (its cloud API resource is never
    installed again), so it is for scripts, benchmarks and worker processes: tests take the
    ``ee_offline`` fixture, which later tests can initialise over.
    """
    from ee import apitestcase

    ee.Reset()
    ee.data._install_cloud_api_resource = lambda: None
    ee.data.getAlgorithms = apitestcase.GetAlgorithms
    ee.Initialize(None, "", project="offline")
    return ee


def request_origin(west: float, north: float) -> str:
    """The key of :attr:`StackTransport.fail_at`: a request window's top-left corner."""
    return f"{west:.3f},{north:.3f}"


class StackTransport:
    def __init__(self, stack: StackPaths, faults: list[BaseException] | None = None,
                 fail_every: int = 0, fault: BaseException | None = None,
                 gcs_client=None, task_bands: tuple[str, ...] | None = None,
                 task_error: str | None = None, recipe: tuple[Any, Any] | None = None,
                 fail_at: Mapping[str, Sequence[int]] | None = None,
                 latency: float = 0.0, info: Callable[[str], Any] | None = None,
                 quota: SharedQuota | None = None, task_eecu_s: float | None = None,
                 account: EecuAccount | None = None) -> None:
        self.stack = stack
        self.task_eecu_s = task_eecu_s  # batchEecuUsageSeconds each finished task reports
        # the project's metered compute: daily quota, monthly allowance, tasks' reported EECU
        self.account = account
        self.profiles = ProfileBook()  # profiled requests' ids and costs, getProfiles answers
        # a project quota shared with other load (fake_quota): 429 above a moving cap,
        # heavy-tailed latency, occasional 5xx and time-outs
        self.quota = quota
        # request origin -> HTTP statuses its first requests fail with, in order (503 is
        # retried, 400 is not); the origin is request_origin() of the window's corner
        self.fail_at = {k: list(v) for k, v in (fail_at or {}).items()}
        self.latency = latency  # seconds every call waits, like a round trip to the service
        # answers getInfo from the serialized expression (JSON text); None: getInfo refused
        self.info = info
        # (image, fine label) of the recipe: each request's expression must select from one
        self.recipe = recipe
        self._expected: dict[tuple[bool, tuple[str, ...]], dict[str, Any]] = {}
        self.task_error = task_error  # tasks end FAILED with this message when set
        # band names of the image that export tasks write (the recipe's bands, then label)
        self.task_bands = task_bands or (*stack.bands, "label")
        self.faults = list(faults or [])
        self.fail_every = fail_every  # every Nth call fails with ``fault`` (0: never)
        self.fault = fault
        self.calls = 0
        self.served: list[tuple[str, tuple[str, ...]]] = []  # (grid key, bands) served
        self.reductions: list[dict[str, Any]] = []  # reduceRegion requests answered
        self.tasks: dict[str, dict[str, Any]] = {}
        self.gcs_client = gcs_client
        self._lock = threading.Lock()
        self._ids = itertools.count(1)

    # ------------------------------------------------------------------ faults
    def _maybe_fail(self) -> None:
        if self.latency:
            time.sleep(self.latency)
        with self._lock:
            self.calls += 1
            if self.faults:
                raise self.faults.pop(0)
            if self.fail_every and self.calls % self.fail_every == 0 and self.fault is not None:
                raise self.fault

    # ------------------------------------------------------------------ reading the stack
    @staticmethod
    def _read(src: Any, transform: list[float], width: int, height: int,
              indexes: list[int]) -> np.ndarray:
        t = src.transform
        assert abs(transform[0] - t.a) < 1e-9, "request at another resolution than the stack"
        col = (transform[2] - t.c) / t.a
        row = (t.f - transform[5]) / -t.e
        assert abs(col - round(col)) < 1e-6 and abs(row - round(row)) < 1e-6, "off-lattice"
        col, row = round(col), round(row)
        window = RioWindow(col, row, width, height)
        if min(col, row) >= 0 and col + width <= src.width and row + height <= src.height:
            # inside the file: a plain read (a boundless one goes through a VRT, ~10x slower)
            return src.read(indexes, window=window, out_dtype="float32")
        return src.read(indexes, window=window, boundless=True, fill_value=src.nodata,
                        out_dtype="float32")

    def _pixels(self, bands: list[str], crs: str, transform: list[float], width: int,
                height: int, fine: bool) -> dict[str, np.ndarray]:
        out = {}
        # band by band (a few copies at most) from one open file: its decompressed blocks
        # stay in GDAL's cache for the next band rather than being read again
        with rasterio.open(self.stack.image) as src:
            assert src.crs.to_string() == crs, f"request CRS {crs} != stack CRS {src.crs}"
            names = list(src.descriptions)
            for b in (b for b in bands if b != "label"):
                arr = self._read(src, transform, width, height, [names.index(b) + 1])[0]
                arr[~np.isfinite(arr)] = FLOAT_NODATA
                out[b] = arr
        if "label" in bands:
            path = self.stack.label_fine if fine else self.stack.label
            assert path is not None  # the stack was made with the label asked for
            with rasterio.open(path) as src:
                out["label"] = self._read(src, transform, width, height, [1])[0]
        return out

    # ------------------------------------------------------------------ reading the request
    def _check_expression(self, request: dict[str, Any], crs: str,
                          transform: list[float]) -> bool:
        """Assert the request's expression is the recipe on the requested lattice.

        Returns whether it is the fine-label image (its reprojection is at the fine scale).
        """
        expression = request.get("expression")
        assert expression is not None, "computePixels request without an expression"
        graph = Graph(expression)
        top = graph.resolve(graph.values[graph.graph["result"]])["functionInvocationValue"]
        assert top["functionName"] == "Image.select", top["functionName"]
        assert constant(top["arguments"]["bandSelectors"]) == list(request["bandIds"]), \
            "the expression selects other bands than the request's bandIds"
        lattices = set()
        for call in graph.calls():
            if call["functionName"] != "Image.reproject" or "crsTransform" not in call[
                    "arguments"]:
                continue
            args = graph.resolve(call["arguments"])
            rp_crs = args["crs"]["functionInvocationValue"]["arguments"]["crs"]["constantValue"]
            lattices.add((rp_crs, tuple(constant(args["crsTransform"]))))
        assert len(lattices) == 1, f"expected one grid reprojection, found {lattices}"
        ((rp_crs, t),) = lattices
        assert rp_crs == crs, f"expression reprojected to {rp_crs}, request asks {crs}"
        assert (t[0], t[1], t[3], t[4]) == (transform[0], transform[1], transform[3],
                                            transform[4]), \
            f"expression on a {t[0]} m lattice, request on {transform[0]} m"
        col, row = (transform[2] - t[2]) / t[0], (transform[5] - t[5]) / t[4]
        assert abs(col - round(col)) < 1e-6 and abs(row - round(row)) < 1e-6, \
            "request window off the expression's pixel lattice"
        fine = abs(t[0] - self.stack.grid.resolution) > 1e-9
        if self.recipe is not None:
            key = (fine, tuple(request["bandIds"]))
            with self._lock:
                if key not in self._expected:
                    self._expected[key] = encode(self.recipe[int(fine)].select(list(key[1])))
            assert graph.graph == self._expected[key], "the expression is not the recipe's image"
        return fine

    # ------------------------------------------------------------------ Transport protocol
    def compute_pixels(self, request: dict[str, Any],
                       profile: Callable[[str], None] | None = None) -> np.ndarray:
        if self.quota is not None:
            return self.quota.serve(lambda: self._compute_pixels(request, profile))
        return self._compute_pixels(request, profile)

    def _compute_pixels(self, request: dict[str, Any],
                        profile: Callable[[str], None] | None = None) -> np.ndarray:
        self._maybe_fail()
        if self.latency:
            time.sleep(self.latency)
        assert request["fileFormat"] == "NUMPY_NDARRAY"
        grid = request["grid"]
        a = grid["affineTransform"]
        origin = request_origin(a["translateX"], a["translateY"])
        with self._lock:
            statuses = self.fail_at.get(origin)
            status = statuses.pop(0) if statuses else None
        if status is not None:
            raise HttpError(status, "injected failure")  # no digits: classify reads the text
        transform = [a["scaleX"], a["shearX"], a["translateX"], a["shearY"], a["scaleY"],
                     a["translateY"]]
        width, height = grid["dimensions"]["width"], grid["dimensions"]["height"]
        bands = list(request["bandIds"])
        fine = self._check_expression(request, grid["crsCode"], transform)
        account = self.account if self.account is not None else EecuAccount()
        eecu_s = account.compute(width * height)  # the default account meters, refuses nothing
        # the Satellite Embedding's bands as the recipe asks them: the published 8-bit
        # integers of the native values the stack holds (gee_export.ee.embedding)
        out = np.zeros((height, width), dtype=[(b, "<i1" if is_embedding_band(b) else "<f4")
                                               for b in bands])
        # every band from one open file (and the label's): not one opening a band
        read = self._pixels(bands, grid["crsCode"], transform, width, height, fine)
        for b in bands:
            values = read.pop(b)
            out[b] = quantise(np.where(values == FLOAT_NODATA, np.nan, values)) \
                if is_embedding_band(b) else values
        with self._lock:
            self.served.append((f"{transform[2]},{transform[5]},{transform[0]}", tuple(bands)))
        if profile is not None:  # the answer's profile header, as the client hands it on
            profile(self.profiles.add(eecu_s, width * height))
        return out

    def get_info(self, obj: Any) -> Any:
        graph = encode(obj)
        root = graph["values"][graph["result"]].get("functionInvocationValue", {})
        if is_profiles_request(graph):
            return self.profiles.read(graph)
        if root.get("functionName") == "Image.reduceRegion":
            self._maybe_fail()
            answer, record = reduce_region(graph, self.stack.image,
                                           None if self.recipe is None else self.recipe[0])
            with self._lock:
                self.reductions.append(record)
            return answer
        if self.info is None:
            raise AssertionError("the export must not call getInfo")
        self._maybe_fail()
        return self.info(json.dumps(graph, sort_keys=True))

    def start_task(self, task: Any) -> str:
        self._maybe_fail()
        graph = Graph(task.config["expression"])
        clip = graph.resolve(graph.values[graph.graph["result"]])["functionInvocationValue"]
        assert clip["functionName"] == "Image.clipToBoundsAndScale"
        rect = clip["arguments"]["geometry"]["functionInvocationValue"]["arguments"]
        _, _, width, height = rect["coordinates"]["constantValue"]  # pixel box from 0,0
        rp = clip["arguments"]["input"]["functionInvocationValue"]["arguments"]
        transform = rp["crsTransform"]["constantValue"]
        crs = rp["crs"]["functionInvocationValue"]["arguments"]["crs"]["constantValue"]
        fine = abs(transform[0] - self.stack.grid.resolution) > 1e-9
        bands = ["label"] if fine else list(self.task_bands)
        opts = task.config["fileExportOptions"]
        dest = opts["cloudStorageDestination"]
        dims = opts["geoTiffOptions"]["tileDimensions"]
        assert dims["width"] % 256 == 0 and dims["width"] >= width
        eecu = (self.account.compute(width * height, requests=0) if self.account is not None
                else self.task_eecu_s)
        # the exported image's data types, as the recipe gives them: the embedding's bands
        # 8-bit integers, every other band float32, unless the whole image is cast
        image = rp["image"]  # the top call alone: resolving the whole graph took seconds
        while isinstance(image, dict) and "valueReference" in image:
            image = graph.values[image["valueReference"]]
        exported = image.get("functionInvocationValue", {})
        cast = exported.get("functionName") == "Image.toFloat"
        embedded = [b for b in bands if is_embedding_band(b)]
        mixed = bool(embedded) and len(embedded) < len(bands) and not cast
        error = self.task_error or (MIXED_TYPES if mixed else "")
        if error:
            task_id = f"T{next(self._ids)}"
            self.tasks[task_id] = {"id": task_id, "state": "FAILED", "error_message": error}
            return task_id
        data = self._pixels(bands, crs, transform, width, height, fine)
        for b in embedded:  # the published integers of the native values, -128 masked
            data[b] = quantise(np.where(data[b] == FLOAT_NODATA, np.nan, data[b]))
        arr = np.stack([data[b] for b in bands]).astype(
            np.int8 if embedded and not cast and not mixed else np.float32)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "tile.tif")
            write_geotiff(path, arr, rasterio.Affine(*transform), crs, None)
            bucket = self.gcs_client.bucket(dest["bucket"])
            bucket.blob(dest["filenamePrefix"] + ".tif").upload_from_filename(path)
        task_id = f"T{next(self._ids)}"
        self.tasks[task_id] = {"id": task_id, "state": "COMPLETED",
                               "description": task.config["description"], "bands": bands}
        if eecu is not None:
            self.tasks[task_id]["eecu_seconds"] = eecu
        return task_id

    def task_status(self, task_ids: list[str]) -> list[dict[str, Any]]:
        self._maybe_fail()
        return [self.tasks.get(t, {"id": t, "state": "UNKNOWN"}) for t in task_ids]


MIXED_TYPES = ("Exported bands must have compatible data types; found inconsistent types: "
               "Int8 and Float32.")
"""How Earth Engine fails a GeoTIFF export task whose bands have incompatible data types."""


@dataclass(frozen=True)
class StackSessions:
    """Opens, on each worker of a Beam pipeline, a session served by a :class:`StackTransport`.

    The picklable stand-in for ``beam_export.EarthEngineProject`` in tests and benchmarks:
    each worker gets its own transport over the same local stack. As the real factory
    initialises earthengine-api in a worker process of its own (Dataflow, the DirectRunner's
    ``multi_processing`` mode), this one initialises it offline there
    (:func:`initialize_offline`); a process where it is already initialised keeps its client.

    Attributes:
        stack: the local stack that answers computePixels.
        recipe: serialized (image, fine label) that every request must select from, or None.
        fail_at: request origin "x,y" -> HTTP statuses of its first requests (per worker).
        latency: seconds each computePixels call takes.
        attempts: the session's retry budget; retries wait nothing (tests stay fast).
    """

    stack: StackPaths
    recipe: tuple[str, str | None] | None = None
    fail_at: Mapping[str, Sequence[int]] = field(default_factory=dict)
    latency: float = 0.0
    attempts: int = 4

    def __call__(self) -> EESession:
        import ee

        if not ee.data.is_initialized():  # a worker process of its own
            initialize_offline(ee)
        recipe = None
        if self.recipe is not None:
            image, fine = self.recipe
            recipe = (ee.Image(ee.deserializer.fromJSON(image)),
                      ee.Image(ee.deserializer.fromJSON(fine)) if fine else None)
        transport = StackTransport(self.stack, recipe=recipe, fail_at=self.fail_at,
                                   latency=self.latency)
        return EESession(transport=transport, sleep=lambda s: None, seed=0,
                         retry=RetryPolicy(max_attempts=self.attempts, base_delay=0.01,
                                           max_delay=0.05))
