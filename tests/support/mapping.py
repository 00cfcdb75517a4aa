"""A region mapped through the fake Earth Engine pixel server: stacks, model files, sessions.

Shared by the mapping tests and the killed-run helper: a stack GeoTIFF on a UTM grid served by
:class:`testing.fake_server.StackTransport` (one stack per month for series), a model
file whose ``extra`` records the dataset recipe the way the trainer does, and the region (a
lon/lat box inside the stack) that ``isamap-map`` is asked to map.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from pyproj import Transformer

from contract.grid import Grid
from contract.patches import StackPaths
from contract.regions import Region
from gee_export.ee.session import EESession, RetryPolicy
from testing.fake_server import StackTransport
from tests.support.rasters import BANDS, write_stack
from training.modelfile import ModelMeta, save_model_file

MONTH = "2019-06"
X0, Y0 = 500000.0, 3400000.0  # tests.support.rasters.write_stack's origin (EPSG:32650)


def stack_paths(image: Path, month: str = MONTH) -> StackPaths:
    with rasterio.open(image) as ds:
        grid = Grid(ds.crs.to_string(), ds.transform.c, ds.transform.f, ds.width, ds.height,
                    abs(ds.transform.a), 64, 32)
    return StackPaths(grid, BANDS, month, str(image), str(image.with_name("absent_label.tif")))


def write_month_stack(folder: Path, data: np.ndarray, month: str = MONTH) -> StackPaths:
    return stack_paths(write_stack(folder / f"stack_{month}.tif", data), month)


def inner_region(grid: Grid, margin_px: int = 20, name: str = "testarea") -> Region:
    """A lon/lat box ``margin_px`` inside the grid on every side."""
    to_lonlat = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True)
    west, south, east, north = grid.bounds
    m = margin_px * grid.resolution
    box = to_lonlat.transform_bounds(west + m, south + m, east - m, north - m)
    return Region(name, tuple(round(v, 6) for v in box))


def dataset_record(grid: Grid, months=(MONTH,), backend: str = "ee",
                   bands: tuple[str, ...] = BANDS) -> dict[str, Any]:
    from contract.bands import series_record

    recipe = ({"s1": {"speckle": "boxcar"}, "s2": {"cloud_mask": "scl"}, "per_month": {}}
              if backend == "ee" else {"backend": "local", "speckle": "boxcar"})
    return {"root": "/nowhere", "backend": backend, "months": list(months), "bands": list(bands),
            "grid": grid.to_dict(), "recipe": {**recipe, **series_record(bands)}}


def model_file(path: Path, grid: Grid, name: str = "unet", backend: str = "ee",
               module: str = "", norm: str = "training", stack_bands: tuple[str, ...] = BANDS,
               **kwargs: Any) -> Path:
    """A model saved with the dataset record the trainer writes.

    ``name`` is a built-in model, or one of ``module``'s ``MODELS`` table (e.g.
    ``test-threshold`` of ``tests.support.models``), which the file records so that loading it
    finds the model there. ``norm``: ``scene`` for a model that normalises each map by its
    input's statistics (``isamap-train --norm scene``). Its weights are drawn from a fixed
    seed, so a test's map never depends on which tests ran before it in the same process.
    ``stack_bands``: the model's bands (a series stack's, ``contract.bands.stack_series_bands``);
    a ``bands`` keyword goes to the network's constructor (CroFuseNet's).
    """
    import torch

    from training.models import create_model

    if name == "unet":
        kwargs = {"widths": [4, 8, 8, 16, 16], **kwargs}
    bands = stack_bands
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = create_model(name, len(bands), 2, module=module or None, **kwargs)
    n = len(bands)
    meta = ModelMeta(name, n, 2, tuple(bands), (0.0,) * n, (1.0,) * n, model_kwargs=kwargs,
                     metrics={"test_miou": 0.75}, module=module, norm=norm,
                     extra={"dataset": dataset_record(grid, backend=backend, bands=bands)})
    return save_model_file(path, model, meta)


def encoder_network(weights: Path, entry: Any = None,
                    stack_bands: tuple[str, ...] = BANDS) -> Any:
    """A concat model of ``entry``'s encoder (Presto by default) on the test stacks' six
    bands (or ``stack_bands``: a series stack's), the published weights read from
    ``weights``; its kwargs at ``.kwargs``."""
    import torch

    from training.models import create_model
    from training.models.encoders.fused import MODULE, NAME
    from training.models.encoders.registry import PRESTO, load_encoder

    entry = entry or PRESTO
    bands = stack_bands
    kwargs = {"bands": list(bands), "encoder": entry.name, "encoder_sha256": entry.sha256,
              "input_mean": [0.0] * len(bands), "input_std": [1.0] * len(bands),
              "latlon": [0.0, 0.0], "month": 0, "fusion": "concat", "frozen": True}
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = create_model(NAME, len(bands), 2, module=MODULE, **kwargs)
    model.encoder.load_state_dict(load_encoder(entry, weights).state_dict())
    model.kwargs = kwargs
    return model.eval()


def encoder_model_file(path: Path, grid: Grid, weights: Path, backend: str = "ee",
                       entry: Any = None, stack_bands: tuple[str, ...] = BANDS) -> Path:
    """:func:`encoder_network` saved with the dataset record the trainer writes."""
    from training.models.encoders.fused import MODULE, NAME

    model = encoder_network(weights, entry, stack_bands)
    n = len(stack_bands)
    meta = ModelMeta(NAME, n, 2, tuple(stack_bands), (0.0,) * n, (1.0,) * n,
                     model_kwargs=model.kwargs, module=MODULE,
                     extra={"dataset": dataset_record(grid, backend=backend,
                                                      bands=stack_bands)})
    return save_model_file(path, model, meta)


class SeriesTransport:
    """One stack per month: a request is served by the transport of the month its graph names."""

    def __init__(self, stacks: dict[str, StackPaths], **kw: Any) -> None:
        self.months = {m: StackTransport(stack, **kw) for m, stack in stacks.items()}
        self.info = kw.get("info")
        self.calls = 0

    def _month(self, expression: Any) -> StackTransport:
        import json

        from testing.ee_graph import Graph

        text = json.dumps(Graph(expression).graph)
        months = [m for m in self.months if f"{m}-01" in text]
        assert len(months) == 1, f"request names months {months}"
        return self.months[months[0]]

    def compute_pixels(self, request: dict[str, Any]):
        self.calls += 1
        return self._month(request["expression"]).compute_pixels(request)

    def get_info(self, obj: Any) -> Any:
        return self._month(obj).get_info(obj)


def session_for(transport: Any) -> EESession:
    return EESession(transport=transport, sleep=lambda s: None, seed=0,
                     retry=RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.02))
