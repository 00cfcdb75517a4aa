"""The input of one prediction, opened once: probed, checked, sampled and read from one dataset.

:func:`open_input` opens an input stack file (local, VRT or ``gs://``) before the model is
loaded and refuses in a second what would fail hours later: a missing file, a download cut
short (which loses the end of the file, so the first blocks read fine and the last fail), an
unreadable format, or a raster not placed on the Earth (a PNG, a GeoTIFF without CRS or
geotransform). The open dataset then serves every step of the run as an
:class:`InputStack` (a :class:`inference.predict.sources.RasterSource`): the value checks
(:func:`inference.predict.expected_inputs.check_input`), the earlier map's grid, the scene's
statistics, the keep rule's green cut, and the sliding window's reads. Its decimated sample
is read once and shared (:meth:`InputStack.sample`). It is opened with the GDAL options the
sliding window reads with (:data:`inference.predict.raster.INPUT_GDAL_OPTIONS`).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.errors
from rasterio.windows import Window

from contract.stack import FINGERPRINT_TAG
from core.errors import InputDataError
from core.storage import files
from core.storage.gdal_auth import check_read, gdal_env
from inference.predict.raster import INPUT_GDAL_OPTIONS
from inference.predict.sources import RasterSource, content_key, decimated_read, unreadable


class InputStack:
    """A stack file opened once for a whole prediction.

    Reads as the rasterio dataset it wraps (every attribute not defined here is the
    dataset's). ``path`` is the file as the user named it (``input_path``, what messages name
    it by), and what the run's fingerprint and the maps' ``input`` tag record (``identity``).
    """

    def __init__(self, path: str, ds: Any) -> None:
        self.path = self.identity = self.input_path = path
        # what a finished map is matched by: a backend's stack by its content's fingerprint
        # (the same stack under another spelling of its folder, or moved, is not mapped again)
        self.content = content_key(path, ds.tags().get(FINGERPRINT_TAG), ds)
        self._ds = ds
        self.width, self.height, self.count = ds.width, ds.height, ds.count
        self.transform, self.crs, self.descriptions = ds.transform, ds.crs, ds.descriptions
        self.nodatavals = ds.nodatavals
        self._samples: dict[tuple[tuple[int, ...], int], np.ndarray] = {}

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._ds, name)

    def read(self, indexes: Sequence[int], window: Any = None, out_dtype: str = "float32",
             out: np.ndarray | None = None, **options: Any) -> np.ndarray:
        return self._ds.read(list(indexes), window=window, out_dtype=out_dtype, out=out,
                             **options)

    def sample(self, indexes: Sequence[int], max_side: int) -> np.ndarray:
        """A decimated read of ``indexes``, nodata NaN (:func:`decimated_read`), read once.

        Bands of a sample already read at ``max_side`` are taken from it: GDAL decimates each
        band alone, so they are the pixels a read of those bands gives.
        """
        key = (tuple(indexes), max_side)
        for (have, side), sample in self._samples.items():
            if side == max_side and set(key[0]) <= set(have):
                return sample[[have.index(i) for i in key[0]]]  # a copy: callers may change it
        self._samples[key] = decimated_read(self._ds, list(indexes), max_side)
        return self._samples[key].copy()


@contextlib.contextmanager
def open_input(stack: str | RasterSource) -> Iterator[RasterSource]:
    """``stack`` opened (and probed) once for the whole run: an :class:`InputStack`.

    A source object is already open: it is yielded as it is (its owner closes it).

    Raises:
        InputDataError: the file is missing, unreadable, cut short or not georeferenced.
    """
    if not isinstance(stack, str):
        yield stack
        return
    if not files.is_gcs(stack) and not Path(stack).exists():
        raise InputDataError(f"--input {stack} does not exist; give the stack GeoTIFF/VRT")
    with gdal_env(stack, **INPUT_GDAL_OPTIONS), _read_errors(stack), warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        ds = rasterio.open(files.gdal_path(stack))
    try:
        with _read_errors(stack):
            probe(stack, ds)
        yield InputStack(stack, ds)
    finally:
        ds.close()


@contextlib.contextmanager
def _read_errors(stack: str) -> Iterator[None]:
    try:
        yield
    except rasterio.errors.RasterioError as exc:
        check_read(stack, exc)  # credentials or network, not a damaged stack
        raise InputDataError(unreadable(stack, exc)) from None


def probe(stack: str, src: Any) -> None:
    """Refuse an input without georeferencing, or whose first or last pixel cannot be read.

    GDAL's "no geotransform" warning (repeated at every open) is silenced in favour of the
    one line.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        missing = [what for what, absent in (
            ("no CRS", src.crs is None),
            ("no geotransform", src.transform.is_identity and not src.gcps[0]))
            if absent]
        if missing:
            raise InputDataError(
                f"--input {stack} has no georeferencing ({' and '.join(missing)}), so its "
                "pixels cannot be placed on the map; give a georeferenced GeoTIFF stack, e.g. "
                "one written by isamap-export or isamap-map")
        for row, col in ((0, 0), (src.height - 1, src.width - 1)):
            src.read(window=Window(col, row, 1, 1))
