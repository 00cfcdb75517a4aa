"""A month's stack as files: the co-registered rasters a patch dataset is cut from.

"Stack" means one thing in isamap: one month's image bands and label on the dataset grid. The
local backend writes it as GeoTIFFs (described here by :class:`StackPaths`); the Earth Engine
backend builds it as one ``ee.Image`` (:func:`gee_export.ee.recipe.build_stack`) and fetches
its patches directly; inference reads the image file of a stack (its bands only).

A stack is identified by its content, never by file sizes or times: :func:`fingerprint` is the
digest the manifest records per month, so an identical rebuild (after ``stacks/`` was deleted,
say) resumes the dataset and a stack made from other inputs is refused.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import rasterio
from rasterio.crs import CRS

from contract.bands import check_fine_scale
from contract.grid import Grid
from core.digest import combined_digest, file_sha256
from core.errors import ConfigError, InputDataError
from core.jsonsafe import dumps
from core.months import check_month

#: the stack GeoTIFF's tag holding its month (``YYYY-MM``), as both backends write it
MONTH_TAG = "MONTH"
#: the local stack GeoTIFF's tag holding its content's :func:`fingerprint`
FINGERPRINT_TAG = "ISAMAP_FINGERPRINT"


def recorded_month(tags: dict[str, str], key: str = MONTH_TAG) -> str | None:
    """The month a stack's tags record under ``key`` (None: none, or not a ``YYYY-MM``)."""
    month = tags.get(key) or None
    try:
        return check_month(month) if month else None
    except ConfigError:
        return None


def stack_month(given: str | None, recorded: str | None,
                what: str = "the input stack") -> str | None:
    """The month of a stack: ``--month`` where given, else the one it records (its tag).

    The one rule of every command that reads a stack's month (``isamap-predict``,
    ``isamap-fit``): a ``--month`` that contradicts the month the stack records is refused.

    Raises:
        InputDataError: ``given`` names another month than ``recorded``.
    """
    if given is not None and recorded is not None and given != recorded:
        raise InputDataError(f"--month {given}, but {what} is of {recorded} (its {MONTH_TAG} "
                             f"tag); give the stack of {given}, or leave --month out")
    return given if given is not None else recorded


def stack_made_by_isamap(tags: Mapping[str, str]) -> bool:
    """Whether a GeoTIFF's tags are those of a stack a backend of isamap wrote.

    The local backend tags its stack with its content's :data:`FINGERPRINT_TAG`; both
    backends write :data:`MONTH_TAG` and ``BACKEND`` (``local`` or ``ee``). A scene from the
    archives carries neither, so a stack given where scenes are read is told apart by them.
    """
    return FINGERPRINT_TAG in tags or (tags.get("BACKEND") in ("local", "ee")
                                       and recorded_month(dict(tags)) is not None)


@dataclass(frozen=True)
class StackPaths:
    """The co-registered rasters one month of a dataset is cut from (any local or GDAL path).

    Attributes:
        grid: the grid every raster is on (fine rasters on ``grid.scaled(fine_scale)``).
        bands: image band names, in the image file's band order.
        month: ``YYYY-MM``.
        image: float32 image stack, nodata NaN.
        label: uint8 label, nodata ``LABEL_NODATA``.
        label_fine: optional uint8 label on the fine grid.
        fine_scale: integer factor of the fine grid; needed when a fine raster is given.
        image_fine: optional float32 image on the fine grid (a super-resolution target).
        fingerprint: content digest of what the stack was made from, set by the builder
            (the local backend: recipe + source files); None means "digest the files".
    """

    grid: Grid
    bands: tuple[str, ...]
    month: str
    image: str
    label: str
    label_fine: str | None = None
    fine_scale: int | None = None
    image_fine: str | None = None
    fingerprint: str | None = None

    def __post_init__(self) -> None:
        check_month(self.month)
        if not self.bands or len(set(self.bands)) != len(self.bands):
            raise ConfigError(f"bands must be non-empty and unique, got {self.bands}")
        check_fine_scale(self.fine_scale)
        if (self.label_fine or self.image_fine) and self.fine_scale is None:
            raise ConfigError("a fine label or fine image needs fine_scale (e.g. 10)")

    def files(self) -> dict[str, str]:
        """The stack's rasters by role (``image``, ``label``, and the fine ones when present)."""
        return {k: getattr(self, k) for k in ("image", "label", "label_fine", "image_fine")
                if getattr(self, k)}


def fingerprint(stack: StackPaths) -> str:
    """The content digest recorded for the month in the manifest (``sources/<month>``).

    A builder that knows what the stack was made from sets ``stack.fingerprint`` (the local
    backend digests its recipe and source files, which costs far less than reading the stack
    again); for any other stack the rasters' bytes are digested here (a full read of every
    raster). Rasters that are not local files (``/vsigs/...``) are identified by their path.
    """
    if stack.fingerprint:
        return stack.fingerprint
    parts = [dumps(stack.grid.to_dict(), sort_keys=True), ",".join(stack.bands)]
    for role, path in sorted(stack.files().items()):
        parts.append(f"{role}={file_sha256(path) if os.path.exists(path) else 'remote:' + path}")
    return combined_digest(parts)


def _check_raster(path: str, grid: Grid, count: int | None, dtype: str, what: str) -> None:
    try:
        src = rasterio.open(path)
    except rasterio.errors.RasterioIOError as exc:
        raise InputDataError(f"cannot open the {what} {path}: {exc}") from None
    with src:
        problems = []
        if src.crs is None or CRS.from_user_input(grid.crs) != src.crs:
            problems.append(f"CRS {src.crs} instead of {grid.crs}")
        if (src.height, src.width) != grid.shape:
            problems.append(f"size {src.height}x{src.width} instead of {grid.height}x{grid.width}")
        if not src.transform.almost_equals(grid.transform, precision=grid.resolution * 1e-6):
            problems.append(f"transform {tuple(src.transform)[:6]} instead of "
                            f"{tuple(grid.transform)[:6]}")
        if count is not None and src.count != count:
            problems.append(f"{src.count} bands instead of {count}")
        if any(d != dtype for d in src.dtypes):
            problems.append(f"dtype {src.dtypes[0]} instead of {dtype}")
    if problems:
        raise InputDataError(f"the {what} {path} is not on the dataset grid: "
                             + "; ".join(problems) + ". Rebuild the stack on this grid.")


def check_stack(stack: StackPaths) -> None:
    """Refuse a stack whose rasters are not exactly on its grid (with the reason)."""
    _check_raster(stack.image, stack.grid, len(stack.bands), "float32", "image stack")
    with rasterio.open(stack.image) as src:
        names = [d for d in src.descriptions if d]
    if names and tuple(names) != stack.bands:
        raise InputDataError(f"{stack.image} has bands {names}, but the stack says "
                             f"{list(stack.bands)}; pass the bands in the file's order")
    _check_raster(stack.label, stack.grid, 1, "uint8", "label")
    if stack.fine_scale:
        fine = stack.grid.scaled(stack.fine_scale)
        if stack.label_fine:
            _check_raster(stack.label_fine, fine, 1, "uint8", "fine label")
        if stack.image_fine:
            _check_raster(stack.image_fine, fine, None, "float32", "fine image")
