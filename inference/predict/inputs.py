"""The input stack of a prediction, checked before any model is loaded or tile predicted.

A missing file, a download cut short (which loses the end of the file, so the first blocks
read fine and the last fail hours later), an unreadable format or a raster that is not placed
on the Earth (a PNG, a GeoTIFF without CRS or geotransform) are refused in a second.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import rasterio
import rasterio.errors
from rasterio.windows import Window

from gee_export.core.errors import InputDataError
from gee_export.core.storage import files
from gee_export.core.storage.gdal_auth import check_read


def probe_input(src_path: str) -> Any:
    """Open the input and read its first and last pixels: its CRS, or a one-line refusal.

    Runs before the model is loaded, so a missing, unreadable or truncated stack (a cut
    download loses the end of the file) is refused in a second, not after hours of tiles.
    A raster without georeferencing is refused here too: its maps could not be placed or
    measured, and GDAL's "no geotransform" warning (repeated at every open) is silenced in
    favour of that one line.
    """
    if not files.is_gcs(src_path) and not Path(src_path).exists():
        raise InputDataError(f"--input {src_path} does not exist; give the stack GeoTIFF/VRT")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            with files.open_raster(src_path) as src:
                missing = [what for what, absent in (
                    ("no CRS", src.crs is None),
                    ("no geotransform", src.transform.is_identity and not src.gcps[0]))
                    if absent]
                if missing:
                    raise InputDataError(
                        f"--input {src_path} has no georeferencing ({' and '.join(missing)}), "
                        "so its pixels cannot be placed on the map; give a georeferenced GeoTIFF "
                        "stack, e.g. one written by isamap-export or isamap-map")
                for row, col in ((0, 0), (src.height - 1, src.width - 1)):
                    src.read(window=Window(col, row, 1, 1))
                return src.crs
    except rasterio.errors.RasterioError as exc:
        check_read(src_path, exc)  # credentials or network, not a damaged stack
        raise InputDataError(unreadable(src_path, exc)) from None


def unreadable(src_path: str, exc: Exception) -> str:
    """The one-line refusal of an input GDAL cannot read (at open or mid-run)."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return (f"--input {src_path} cannot be read ({first}); it is probably truncated or "
            "corrupt: copy or export it again")
