"""An Earth Engine transport that serves a real local stack instead of the service.

Requests are answered the way the service answers them: computePixels decodes the request's
serialized expression, checks it is an ``Image.select`` of the request's band ids over the
recipe (the very image the test built, when given) reprojected onto the requested pixel lattice,
then reads the requested grid (crsCode, affineTransform, dimensions) and returns a NUMPY_NDARRAY
structured array cut out of the local backend's stack GeoTIFFs with rasterio; which label file
(coarse or fine) answers is decided by the expression's reprojection, not by the request's
resolution, so a request built from the wrong image cannot be served. Export tasks read the tile's
grid from the task's serialized expression (reproject + clipToBoundsAndScale) and write the
GeoTIFF into the Cloud Storage emulator bucket named in the task's config. Faults (429, 500,
timeouts) can be injected per call.
"""

from __future__ import annotations

import itertools
import os
import tempfile
import threading
from typing import Any

import numpy as np
import rasterio
from rasterio.windows import Window as RioWindow

from gee_export.contract.geotiff import write_geotiff
from gee_export.contract.stack import StackPaths
from gee_export.ee.recipe import FLOAT_NODATA


class HttpError(Exception):
    """Shaped like googleapiclient's HttpError: ``resp.status`` carries the code."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"<HttpError {status} {message}>")
        self.resp = type("Resp", (), {"status": status})()


class StackTransport:
    def __init__(self, stack: StackPaths, faults: list[BaseException] | None = None,
                 fail_every: int = 0, fault: BaseException | None = None,
                 gcs_client=None, task_bands: tuple[str, ...] | None = None,
                 task_error: str | None = None, recipe: tuple[Any, Any] | None = None) -> None:
        self.stack = stack
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
        self.tasks: dict[str, dict[str, Any]] = {}
        self.gcs_client = gcs_client
        self._lock = threading.Lock()
        self._ids = itertools.count(1)

    # ------------------------------------------------------------------ faults
    def _maybe_fail(self) -> None:
        with self._lock:
            self.calls += 1
            if self.faults:
                raise self.faults.pop(0)
            if self.fail_every and self.calls % self.fail_every == 0 and self.fault is not None:
                raise self.fault

    # ------------------------------------------------------------------ reading the stack
    def _read(self, path: str, transform: list[float], width: int, height: int,
              indexes: list[int]) -> np.ndarray:
        with rasterio.open(path) as src:
            t = src.transform
            assert abs(transform[0] - t.a) < 1e-9, "request at another resolution than the stack"
            col = (transform[2] - t.c) / t.a
            row = (t.f - transform[5]) / -t.e
            assert abs(col - round(col)) < 1e-6 and abs(row - round(row)) < 1e-6, "off-lattice"
            return src.read(indexes, window=RioWindow(round(col), round(row), width, height),
                            boundless=True, fill_value=src.nodata, out_dtype="float32")

    def _pixels(self, bands: list[str], crs: str, transform: list[float], width: int,
                height: int, fine: bool) -> dict[str, np.ndarray]:
        with rasterio.open(self.stack.image) as src:
            assert src.crs.to_string() == crs, f"request CRS {crs} != stack CRS {src.crs}"
            names = list(src.descriptions)
        out = {}
        image_bands = [b for b in bands if b != "label"]
        if image_bands:
            data = self._read(self.stack.image, transform, width, height,
                              [names.index(b) + 1 for b in image_bands])
            for b, arr in zip(image_bands, data, strict=True):
                out[b] = np.where(np.isfinite(arr), arr, FLOAT_NODATA).astype(np.float32)
        if "label" in bands:
            path = self.stack.label_fine if fine else self.stack.label
            out["label"] = self._read(path, transform, width, height, [1])[0]
        return out

    # ------------------------------------------------------------------ reading the request
    def _check_expression(self, request: dict[str, Any], crs: str,
                          transform: list[float]) -> bool:
        """Assert the request's expression is the recipe on the requested lattice.

        Returns whether it is the fine-label image (its reprojection is at the fine scale).
        """
        from gee_export.ee.serialized import Graph, constant, encode

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
    def compute_pixels(self, request: dict[str, Any]) -> np.ndarray:
        self._maybe_fail()
        assert request["fileFormat"] == "NUMPY_NDARRAY"
        grid = request["grid"]
        a = grid["affineTransform"]
        transform = [a["scaleX"], a["shearX"], a["translateX"], a["shearY"], a["scaleY"],
                     a["translateY"]]
        width, height = grid["dimensions"]["width"], grid["dimensions"]["height"]
        bands = list(request["bandIds"])
        fine = self._check_expression(request, grid["crsCode"], transform)
        data = self._pixels(bands, grid["crsCode"], transform, width, height, fine)
        out = np.zeros((height, width), dtype=[(b, "<f4") for b in bands])
        for b in bands:
            out[b] = data[b]
        with self._lock:
            self.served.append((f"{transform[2]},{transform[5]},{transform[0]}", tuple(bands)))
        return out

    def get_info(self, obj: Any) -> Any:
        raise AssertionError("the export must not call getInfo")

    def start_task(self, task: Any) -> str:
        self._maybe_fail()
        from gee_export.ee.serialized import Graph

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
        if self.task_error:
            task_id = f"T{next(self._ids)}"
            self.tasks[task_id] = {"id": task_id, "state": "FAILED",
                                   "error_message": self.task_error}
            return task_id
        data = self._pixels(bands, crs, transform, width, height, fine)
        arr = np.stack([data[b] for b in bands]).astype(np.float32)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "tile.tif")
            write_geotiff(path, arr, rasterio.Affine(*transform), crs, None)
            bucket = self.gcs_client.bucket(dest["bucket"])
            bucket.blob(dest["filenamePrefix"] + ".tif").upload_from_filename(path)
        task_id = f"T{next(self._ids)}"
        self.tasks[task_id] = {"id": task_id, "state": "COMPLETED",
                               "description": task.config["description"], "bands": bands}
        return task_id

    def task_status(self, task_ids: list[str]) -> list[dict[str, Any]]:
        self._maybe_fail()
        return [self.tasks.get(t, {"id": t, "state": "UNKNOWN"}) for t in task_ids]
