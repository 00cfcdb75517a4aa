"""The one pixel grid every band, label and patch of a dataset lives on.

Co-registration is guaranteed by construction: Earth Engine receives this grid's ``crs`` and
``crs_transform`` for the whole stack, the local backend warps onto ``transform``, and patches
are windows of it. Everything here is pure arithmetic on numbers, so it can be property-tested.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from affine import Affine

from core.errors import GridError

DEFAULT_RESOLUTION = 10.0
DEFAULT_PATCH_SIZE = 128
DEFAULT_STRIDE = 80  # CroFuseNet, section II-B: 128 x 128 blocks cut with a step of 80 px.


@dataclass(frozen=True, kw_only=True)
class Window:
    """A rectangle of pixels: offsets and sizes in grid pixels (row = y down, col = x right).

    Construction is keyword-only (``Window(row_off=, col_off=, height=, width=)``):
    rasterio's ``Window`` takes the same quantities positionally in another order
    (``col_off, row_off, width, height``), so a positional call could silently swap axes.
    :meth:`to_rasterio` converts.
    """

    row_off: int
    col_off: int
    height: int
    width: int

    def __post_init__(self) -> None:
        if self.height < 0 or self.width < 0:
            raise GridError(f"window sizes must be >= 0, got {self.height}x{self.width}")

    @property
    def row_end(self) -> int:
        return self.row_off + self.height

    @property
    def col_end(self) -> int:
        return self.col_off + self.width

    def to_rasterio(self) -> Any:  # a rasterio.windows.Window (imported lazily; untyped)
        """Return the equivalent ``rasterio.windows.Window``."""
        from rasterio.windows import Window as RioWindow

        return RioWindow(self.col_off, self.row_off, self.width, self.height)

    def intersection(self, other: Window) -> Window | None:
        """Return the overlap of two windows, or None when they do not overlap."""
        r0, c0 = max(self.row_off, other.row_off), max(self.col_off, other.col_off)
        r1, c1 = min(self.row_end, other.row_end), min(self.col_end, other.col_end)
        if r1 <= r0 or c1 <= c0:
            return None
        return Window(row_off=r0, col_off=c0, height=r1 - r0, width=c1 - c0)

    def padded(self, halo: int) -> Window:
        """Grow the window by ``halo`` pixels on every side (may leave the grid; clip after)."""
        return Window(row_off=self.row_off - halo, col_off=self.col_off - halo,
                      height=self.height + 2 * halo, width=self.width + 2 * halo)


def utm_epsg(lon: float, lat: float) -> int:
    """EPSG code of the WGS 84 / UTM zone containing a point (regular 6-degree zones)."""
    if not (-180.0 <= lon <= 180.0 and -90.0 <= lat <= 90.0):
        raise GridError(f"({lon}, {lat}) is not a longitude/latitude pair in degrees")
    zone = min(math.floor((lon + 180.0) / 6.0) + 1, 60)
    return (32600 if lat >= 0 else 32700) + zone


UTM_NORTH_LIMIT, UTM_SOUTH_LIMIT = 84.0, -80.0  # UTM's defined latitudes; UPS beyond
UTM_MAX_ZONES = 2  # a box in two neighbouring zones stays within ~3 deg of the chosen meridian


def utm_caveat(lonlat_bounds: tuple[float, float, float, float]) -> str | None:
    """Why the default UTM grid of a lon/lat box is a poor choice, with a CRS to use instead.

    The default CRS is the UTM zone of the box's centre. Beyond UTM's latitudes (84°N, 80°S)
    the polar stereographic systems apply; a box over three or more zones reaches far outside
    the central zone, where scale distortion grows and eastings go negative.
    """
    west, south, east, north = lonlat_bounds
    if north > UTM_NORTH_LIMIT:
        return (f"the area reaches {north:g}°N, north of UTM's {UTM_NORTH_LIMIT:g}°N; pass "
                "--crs EPSG:32661 (UPS North) or EPSG:3413 (polar stereographic)")
    if south < UTM_SOUTH_LIMIT:
        return (f"the area reaches {-south:g}°S, south of UTM's {-UTM_SOUTH_LIMIT:g}°S; pass "
                "--crs EPSG:32761 (UPS South) or EPSG:3031 (Antarctic polar stereographic)")
    zones = utm_epsg(min(east, 179.999), 0.0) - utm_epsg(west, 0.0) + 1
    if zones > UTM_MAX_ZONES:
        centre = utm_epsg((west + east) / 2.0, (south + north) / 2.0)
        return (f"the area spans {zones} UTM zones ({west:g}° to {east:g}°E), so its grid in "
                f"the centre's zone EPSG:{centre} is distorted at the edges (negative "
                "eastings); pass --crs EPSG:6933 (equal-area, metres) or a national projected "
                "CRS, or split the area by UTM zone")
    return None


def patch_id(row: int, col: int) -> str:
    """Return the id of the patch at ``(row, col)`` in patch units."""
    return f"r{row}_c{col}"


@dataclass(frozen=True)
class Grid:
    """A north-up pixel grid: CRS, origin snapped to whole pixels, size, and the patch layout.

    ``x0``/``y0`` are the west and north edges of pixel (0, 0) in CRS units. Patches are
    ``patch_size`` pixels square, placed every ``stride`` pixels from the origin; only patches
    that lie entirely inside the grid exist.
    """

    crs: str
    x0: float
    y0: float
    width: int
    height: int
    resolution: float = DEFAULT_RESOLUTION
    patch_size: int = DEFAULT_PATCH_SIZE
    stride: int = DEFAULT_STRIDE

    def __post_init__(self) -> None:
        if self.resolution <= 0:
            raise GridError(f"resolution must be positive, got {self.resolution}")
        if self.width <= 0 or self.height <= 0:
            raise GridError(f"grid size must be positive, got {self.width}x{self.height}")
        if self.patch_size <= 0 or self.stride <= 0:
            raise GridError(
                f"patch size and stride must be positive, got {self.patch_size}/{self.stride}"
            )
        if self.stride > self.patch_size:
            raise GridError(
                f"stride {self.stride} > patch size {self.patch_size} would leave gaps between "
                "patches; use a stride <= patch size"
            )
        if not self.crs:
            raise GridError("a grid needs a CRS such as 'EPSG:32650'")

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_bounds(
        cls,
        bounds: tuple[float, float, float, float],
        crs: str,
        resolution: float = DEFAULT_RESOLUTION,
        patch_size: int = DEFAULT_PATCH_SIZE,
        stride: int = DEFAULT_STRIDE,
        *,
        inside: bool = False,
        origin: tuple[float, float] = (0.0, 0.0),
    ) -> Grid:
        """Smallest grid aligned to multiples of ``resolution`` that covers ``bounds``.

        Snapping to whole multiples of the pixel size (not just to the bounds) means two
        grids of the same CRS and resolution always share pixel edges, so datasets made for
        neighbouring regions tile without resampling.

        ``inside``: the grid of the pixels whose centres lie within ``bounds`` instead, for
        bounds that are where data are: each edge goes to the nearest pixel edge, so no pixel
        reaches more than half a pixel past them and each is filled (a warp samples a pixel at
        its centre), while a bound a few centimetres inside a pixel edge (a footprint taken to
        degrees and back) costs no row or column.

        ``origin``: the pixel edges are ``origin`` plus multiples of ``resolution`` (another
        grid's lattice, e.g. a model's training grid), the bounds snapped onto it once.
        """
        dx, dy = origin
        west, south, east, north = (bounds[0] - dx, bounds[1] - dy, bounds[2] - dx,
                                    bounds[3] - dy)
        if not (east > west and north > south):
            raise GridError(f"bounds {bounds} are empty; expected (west, south, east, north)")
        if inside:
            x0 = math.ceil(west / resolution - 0.5 - 1e-9) * resolution
            y0 = math.floor(north / resolution + 0.5 + 1e-9) * resolution
            width = max(1, math.floor(east / resolution + 0.5 + 1e-9) - round(x0 / resolution))
            height = max(1, round(y0 / resolution) - math.ceil(south / resolution - 0.5 - 1e-9))
        else:
            x0 = math.floor(west / resolution + 1e-9) * resolution
            y0 = math.ceil(north / resolution - 1e-9) * resolution
            width = max(1, math.ceil((east - x0) / resolution - 1e-9))
            height = max(1, math.ceil((y0 - south) / resolution - 1e-9))
        return cls(crs, float(x0 + dx), float(y0 + dy), width, height, resolution, patch_size,
                   stride)

    @classmethod
    def from_lonlat_bounds(
        cls,
        lonlat_bounds: tuple[float, float, float, float],
        crs: str | None = None,
        resolution: float = DEFAULT_RESOLUTION,
        patch_size: int = DEFAULT_PATCH_SIZE,
        stride: int = DEFAULT_STRIDE,
        *,
        inside: bool = False,
        origin: tuple[float, float] = (0.0, 0.0),
    ) -> Grid:
        """Grid covering a longitude/latitude box, in the UTM zone of its centre by default.

        ``inside``: the grid of the pixels whose centres lie within the box's projection
        (:meth:`from_bounds`), for a box that is where data are (the local scenes' common
        extent). ``origin``: the lattice its pixel edges lie on (:meth:`from_bounds`).
        """
        from pyproj import Transformer

        west, south, east, north = lonlat_bounds
        if crs is None:
            crs = f"EPSG:{utm_epsg((west + east) / 2.0, (south + north) / 2.0)}"
        transformer = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
        projected = transformer.transform_bounds(west, south, east, north, densify_pts=21)
        if not all(math.isfinite(v) for v in projected):
            raise GridError(f"bounds {lonlat_bounds} cannot be projected to {crs}")
        return cls.from_bounds(projected, crs, resolution, patch_size, stride, inside=inside,
                               origin=origin)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Grid:
        """Inverse of :meth:`to_dict` (manifests and model files store grids this way)."""
        fields = ("crs", "x0", "y0", "width", "height", "resolution", "patch_size", "stride")
        missing = [f for f in fields if f not in data]
        if missing:
            raise GridError(f"grid description lacks {missing}; was it written by isamap?")
        return cls(**{f: data[f] for f in fields})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    # ------------------------------------------------------------------ georeference
    @property
    def transform(self) -> Affine:
        return Affine(self.resolution, 0.0, self.x0, 0.0, -self.resolution, self.y0)

    @property
    def crs_transform(self) -> list[float]:
        """Earth Engine's ``crsTransform``.

        Order: [xScale, xShear, xTranslation, yShear, yScale, yTranslation].
        """
        return [self.resolution, 0.0, self.x0, 0.0, -self.resolution, self.y0]

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(west, south, east, north) in CRS units."""
        return (self.x0, self.y0 - self.height * self.resolution,
                self.x0 + self.width * self.resolution, self.y0)

    @property
    def shape(self) -> tuple[int, int]:
        return self.height, self.width

    @property
    def area_km2(self) -> float:
        return self.width * self.height * self.resolution**2 / 1e6

    def window_bounds(self, window: Window) -> tuple[float, float, float, float]:
        """(west, south, east, north) of a window in CRS units."""
        west = self.x0 + window.col_off * self.resolution
        north = self.y0 - window.row_off * self.resolution
        return (west, north - window.height * self.resolution,
                west + window.width * self.resolution, north)

    def window_transform(self, window: Window) -> Affine:
        west, _, _, north = self.window_bounds(window)
        return Affine(self.resolution, 0.0, west, 0.0, -self.resolution, north)

    def full_window(self) -> Window:
        return Window(row_off=0, col_off=0, height=self.height, width=self.width)

    def clip(self, window: Window) -> Window | None:
        """The part of ``window`` inside the grid, or None."""
        return window.intersection(self.full_window())

    def scaled(self, factor: int) -> Grid:
        """The same area at ``factor`` times finer pixels, with the same origin.

        Used for fine-resolution labels (super-resolution model): pixel (r, c) of this grid
        is exactly pixels (r*factor .. r*factor+factor-1, ...) of the scaled grid. Patch size
        and stride scale too, so patch ``r3_c7`` names the same ground in both grids.
        """
        if not isinstance(factor, int) or factor < 1:
            raise GridError(f"scale factor must be a positive integer, got {factor!r}")
        return Grid(self.crs, self.x0, self.y0, self.width * factor, self.height * factor,
                    self.resolution / factor, self.patch_size * factor, self.stride * factor)

    def widened(self, margin: tuple[int, int, int, int]) -> Grid:
        """The grid with ``(top, left, bottom, right)`` more pixels on its own pixel lattice.

        What a map's input covers: the pixels its lattice's tiles reach past the grid
        (:meth:`inference.predict.lattice.Lattice.reach`), so that the tiles at its edges see
        the ground there, as inside a larger map.
        """
        top, left, bottom, right = margin
        res = self.resolution
        return Grid(self.crs, self.x0 - left * res, self.y0 + top * res,
                    self.width + left + right, self.height + top + bottom, res,
                    self.patch_size, self.stride)

    # ------------------------------------------------------------------ patches
    @property
    def patch_rows(self) -> int:
        return _positions(self.height, self.patch_size, self.stride)

    @property
    def patch_cols(self) -> int:
        return _positions(self.width, self.patch_size, self.stride)

    @property
    def patch_count(self) -> int:
        return self.patch_rows * self.patch_cols

    def patch_window(self, row: int, col: int) -> Window:
        if not (0 <= row < self.patch_rows and 0 <= col < self.patch_cols):
            raise GridError(
                f"patch ({row}, {col}) is outside the {self.patch_rows}x{self.patch_cols} "
                "patch layout of this grid"
            )
        return Window(row_off=row * self.stride, col_off=col * self.stride,
                      height=self.patch_size, width=self.patch_size)

    def patch_bounds(self, row: int, col: int) -> tuple[float, float, float, float]:
        return self.window_bounds(self.patch_window(row, col))

    def patch_transform(self, row: int, col: int) -> Affine:
        return self.window_transform(self.patch_window(row, col))

    def iter_patches(self) -> Iterator[tuple[int, int]]:
        """(row, col) of every patch, row-major: the order windowed reads stream best in."""
        for row in range(self.patch_rows):
            for col in range(self.patch_cols):
                yield row, col


def _positions(extent: int, size: int, stride: int) -> int:
    return 0 if extent < size else 1 + (extent - size) // stride


def metre_crs_problem(text: str) -> str | None:
    """Why ``text`` cannot be a grid's CRS, or None when it is a projected CRS in metres.

    The one owner of that rule: the grid's pixels are metres (10 m by default), so a
    geographic CRS (degrees) or one in feet is refused before any work (only the horizontal
    axes are judged: a compound CRS may give heights in feet), as ``--crs``
    (:func:`projected_crs`) and as the CRS of imported patches
    (:func:`gee_export.imported.patches.plan_import`).
    """
    from pyproj import CRS
    from pyproj.exceptions import CRSError

    try:
        crs = CRS.from_user_input(text)
    except CRSError:
        return "is not a CRS pyproj knows"
    # a compound CRS's height (EPSG:26918+6360: feet) is no pixel; its first part is the
    # horizontal CRS (CRS.to_2d is newer than the oldest pyproj isamap supports, 3.4)
    horizontal = crs.sub_crs_list[0] if crs.is_compound else crs
    units = {axis.unit_name for axis in horizontal.axis_info}
    if not horizontal.is_projected or not units <= {"metre", "meter"}:
        return "is not a projected CRS in metres"
    return None


def projected_crs(text: str) -> str:
    """``text`` (a ``--crs`` value) when it names a projected CRS in metres, else a clear error.

    The export, the mapping command and isamap-fit share this check
    (:func:`metre_crs_problem`).
    """
    problem = metre_crs_problem(text)
    if problem == "is not a CRS pyproj knows":
        raise GridError(f"--crs {text!r} {problem}; give e.g. EPSG:32650")
    if problem:
        raise GridError(f"--crs {text} {problem}; the grid's pixels are metres (choose e.g. "
                        "a UTM zone EPSG:326xx/327xx or EPSG:6933)")
    return text
