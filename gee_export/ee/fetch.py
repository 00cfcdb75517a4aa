"""A window of the recipe's stack fetched with computePixels: split, halved, reassembled.

:func:`fetch_window` asks the session for any window of a grid (beyond the grid's edges too) and
returns it as ``(bands, height, width)`` float32; requests beyond the service limits are split
(:mod:`gee_export.ee.pixels`), and one the service cannot compute is asked again as two halves.
:func:`fetch_patch` is one patch of an export (image, label, fine label), and
:func:`planned_requests` what it costs when nothing is halved: the plan's figure.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from contract.bands import LABEL
from contract.grid import Grid, Window
from core.errors import EarthEngineError
from gee_export.ee.export_job import ExportJob
from gee_export.ee.pixels import (
    Limits,
    SubRequest,
    assemble,
    build_request,
    decode,
    split_request,
    to_label,
)
from gee_export.ee.session import EESession

log = logging.getLogger(__name__)

DEFAULT_LIMITS = Limits()


def fetch_patch(session: EESession, image: Any, fine_label: Any, job: ExportJob, row: int,
                col: int, limits: Limits = DEFAULT_LIMITS
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, int]:
    """Image ``(C, P, P)``, label ``(P, P)`` and optional fine label of one patch.

    Returns the arrays and the number of computePixels requests made.
    """
    spec = job.spec
    names = (*spec.bands, LABEL)
    stack, requests = fetch_window(session, image, spec.grid, spec.grid.patch_window(row, col),
                                   names, limits)
    fine = None
    if spec.fine_scale:
        fgrid = spec.grid.scaled(spec.fine_scale)
        fine_stack, n = fetch_window(session, fine_label, fgrid, fgrid.patch_window(row, col),
                                     (LABEL,), limits)
        fine = to_label(fine_stack[0])
        requests += n
    return stack[:-1], to_label(stack[-1]), fine, requests


TOO_BIG_MARKERS = ("user memory limit exceeded", "computation timed out")
"""Earth Engine's answers to a request too large to compute: half the window may pass."""

MIN_HALVED_PX = 256
"""A window this small a side is not halved further: its failure is reported."""


def fetch_window(session: EESession, image: Any, grid: Grid, window: Window,
                 bands: tuple[str, ...], limits: Limits = DEFAULT_LIMITS
                 ) -> tuple[np.ndarray, int]:
    """``(bands, height, width)`` float32 of any window of ``grid`` (nodata NaN), and requests.

    The window may reach beyond the grid (a tile's halo at the region's edge): Earth Engine
    returns those pixels masked, which arrive as NaN. Requests that would exceed the service
    limits are split and reassembled (see :mod:`gee_export.ee.pixels`); one the service
    cannot compute ("User memory limit exceeded", "Computation timed out") is asked again as
    two halves, down to :data:`MIN_HALVED_PX`, before the error is reported.
    """
    parts: list[tuple[SubRequest, np.ndarray]] = []
    requests = 0
    for sub in split_request(window, bands, limits):
        requests += _fetch_halving(session, image, grid, sub, parts)
    return assemble(window, bands, parts), requests


def _fetch_halving(session: EESession, image: Any, grid: Grid, sub: SubRequest,
                   parts: list[tuple[SubRequest, np.ndarray]]) -> int:
    """Fetch ``sub`` into ``parts`` (halves when it is too big to compute); returns requests."""
    try:
        parts.append((sub, decode(session.compute_pixels(build_request(image, grid, sub)),
                                  sub)))
        return 1
    except EarthEngineError as exc:
        w = sub.window
        if (not any(m in str(exc).lower() for m in TOO_BIG_MARKERS)
                or max(w.height, w.width) <= MIN_HALVED_PX):
            raise
        if w.width >= w.height:
            half = w.width // 2
            halves = (Window(row_off=w.row_off, col_off=w.col_off, height=w.height, width=half),
                      Window(row_off=w.row_off, col_off=w.col_off + half, height=w.height,
                             width=w.width - half))
        else:
            half = w.height // 2
            halves = (Window(row_off=w.row_off, col_off=w.col_off, height=half, width=w.width),
                      Window(row_off=w.row_off + half, col_off=w.col_off,
                             height=w.height - half, width=w.width))
        log.info("a %d x %d px request was too large to compute (%s); asking for halves",
                 w.width, w.height, str(exc).splitlines()[0][:120])
        return 1 + sum(_fetch_halving(session, image, grid, SubRequest(h, sub.bands), parts)
                       for h in halves)


def planned_requests(job: ExportJob, limits: Limits = DEFAULT_LIMITS) -> int:
    """Requests (computePixels) of one patch when nothing is halved: the plan's figure."""
    spec = job.spec
    n = len(split_request(spec.grid.patch_window(0, 0), (*spec.bands, LABEL), limits))
    if spec.fine_scale:
        fine = spec.grid.scaled(spec.fine_scale)
        n += len(split_request(fine.patch_window(0, 0), (LABEL,), limits))
    return n
