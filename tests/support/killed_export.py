"""A pixels export that SIGKILLs its own process: the hard kill of test_export's resume test.

Run as ``python -m tests.support.killed_export SPEC.json`` from the repository root. SPEC
names the local stack (StackPaths fields), the dataset root, ``kill_after`` and
``flush_seconds``. The export runs with the same recipe and job as test_export.py's in-process
runs (built by the functions below, which that module imports), against a StackTransport that
sends SIGKILL to its own process when computePixels is called for the ``kill_after``-th time.
No ``finally`` block, atexit hook or flush runs after that: whatever is on disk is what a power
cut or an OOM kill would leave.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from typing import Any

from contract.bands import DEFAULT_IMAGE_BANDS
from contract.dataset import DatasetSpec
from contract.grid import Grid
from contract.stack import StackPaths
from gee_export.ee.export import ExportJob
from gee_export.ee.labels import parse_label_source
from gee_export.ee.recipe import EERecipe, build_fine_label, build_stack
from gee_export.ee.sentinel2 import month_window
from gee_export.ee.session import EESession, RetryPolicy
from testing.fake_server import StackTransport

MONTH = "2019-06"


def build_recipe_images(ee: Any, grid: Grid) -> tuple[Any, Any]:
    """The stack and fine label the export tests ask for (built offline)."""
    region = ee.Geometry.Rectangle([114.2, 30.5, 114.25, 30.55])
    recipe = EERecipe(bands=DEFAULT_IMAGE_BANDS, label=parse_label_source("worldcover"),
                      fine_scale=2)
    window = month_window(MONTH)
    return (build_stack(grid, window, recipe, region),
            build_fine_label(grid, window, recipe, region))


def export_job(grid: Grid, **kw: Any) -> ExportJob:
    spec = DatasetSpec(grid, DEFAULT_IMAGE_BANDS, backend="ee", region="synthetic",
                       recipe={"test": True}, fine_scale=2, min_valid_fraction=0.9, **kw)
    return ExportJob(spec, MONTH)


def session_for(transport: Any, attempts: int = 4, delays: list | None = None) -> EESession:
    sleep = (lambda s: delays.append(s)) if delays is not None else (lambda s: None)
    return EESession(transport=transport, sleep=sleep, seed=0,
                     retry=RetryPolicy(max_attempts=attempts, base_delay=0.5, max_delay=4.0))


def stack_spec(stack: StackPaths) -> dict[str, Any]:
    return {"grid": stack.grid.to_dict(), "bands": list(stack.bands), "month": stack.month,
            "image": stack.image, "label": stack.label, "label_fine": stack.label_fine,
            "fine_scale": stack.fine_scale}


class KillingTransport(StackTransport):
    """Serves the stack until the ``kill_after``-th computePixels call, then SIGKILLs itself."""

    def __init__(self, stack: StackPaths, kill_after: int, **kw: Any) -> None:
        super().__init__(stack, **kw)
        self.kill_after = kill_after
        self._count = 0
        self._count_lock = threading.Lock()

    def compute_pixels(self, request: dict[str, Any], profile: Any = None):
        with self._count_lock:
            self._count += 1
            if self._count >= self.kill_after:
                os.kill(os.getpid(), signal.SIGKILL)
        return super().compute_pixels(request, profile)


def main(argv: list[str]) -> int:
    import ee

    from gee_export.ee.export import export_pixels
    from testing.fake_server import initialize_offline

    with open(argv[0]) as fh:
        spec = json.load(fh)
    s = spec["stack"]
    stack = StackPaths(Grid.from_dict(s["grid"]), tuple(s["bands"]), s["month"], s["image"],
                       s["label"], label_fine=s["label_fine"], fine_scale=s["fine_scale"])
    initialize_offline(ee)
    images = build_recipe_images(ee, stack.grid)
    transport = KillingTransport(stack, spec["kill_after"], recipe=images)
    export_pixels(session_for(transport), images[0], export_job(stack.grid), spec["root"],
                  fine_label=images[1], workers=2, flush_seconds=spec["flush_seconds"],
                  progress=False)
    return 0  # not reached when the kill comes in time; the test checks the signal


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
