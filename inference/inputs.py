"""The input stack of a prediction, checked before any model is loaded or tile predicted.

A missing file, a download cut short (which loses the end of the file, so the first blocks
read fine and the last fail hours later) or an unreadable format are refused in a second.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import rasterio
import rasterio.errors
from rasterio.windows import Window

from gee_export.core.errors import InputDataError
from gee_export.core.storage import files


def probe_input(src_path: str) -> Any:
    """Open the input and read its first and last pixels: its CRS, or a one-line refusal.

    Runs before the model is loaded, so a missing, unreadable or truncated stack (a cut
    download loses the end of the file) is refused in a second, not after hours of tiles.
    """
    if not files.is_gcs(src_path) and not Path(src_path).exists():
        raise InputDataError(f"--input {src_path} does not exist; give the stack GeoTIFF/VRT")
    try:
        with rasterio.open(files.gdal_path(src_path)) as src:
            for row, col in ((0, 0), (src.height - 1, src.width - 1)):
                src.read(window=Window(col, row, 1, 1))
            return src.crs
    except rasterio.errors.RasterioError as exc:
        raise InputDataError(unreadable(src_path, exc)) from None


def unreadable(src_path: str, exc: Exception) -> str:
    """The one-line refusal of an input GDAL cannot read (at open or mid-run)."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return (f"--input {src_path} cannot be read ({first}); it is probably truncated or "
            "corrupt: copy or export it again")
