"""Label rasters onto the grid: class mapping (lookup table), then nearest or mode, once.

Classes are mapped in the source's own pixels *before* resampling, so a 10 m grid cell
covering several fine source pixels takes the majority of impervious / pervious (mode),
not the majority of some fine class that happens to dominate. Coarser or equal sources are
put on the grid with nearest neighbour (mode of one pixel is that pixel). The fine label of
the super-resolution model is the same operation onto ``grid.scaled(k)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS

from contract.bands import LABEL_NODATA
from contract.grid import Grid, Window
from contract.label_schemes import (
    LANDCOVER_SCHEME,
    LabelScheme,
    get_landcover_scheme,
    is_landcover,
)
from contract.label_schemes import SCHEMES as LANDCOVER_SCHEMES
from core.errors import ConfigError, InputDataError
from gee_export.local import plausibility
from gee_export.local.scenes import BandRef
from gee_export.local.warp import read_to_grid, source_resolution

ISA_CLASSES: tuple[str, ...] = ("pervious", "impervious")


@dataclass(frozen=True)
class ClassMapping:
    """Source class value -> stack class (a class index, or 255 nodata), by lookup table.

    ``mapping`` lists explicit values; every other valid value becomes ``default`` (None keeps
    it unchanged, for labels that are already class indices). Source nodata (255, negative
    values) is always 255. ``classes`` names the stack classes (the manifest's
    ``label.classes``): the binary ISA pair by default, the seven land-cover classes for the
    ``landcover:<source>`` schemes of :mod:`contract.label_schemes`.
    """

    mapping: tuple[tuple[int, int], ...] = field(default=())
    default: int | None = None
    classes: tuple[str, ...] = ISA_CLASSES
    scheme: str = "isa"

    @classmethod
    def from_dict(cls, mapping: Mapping[int, int], default: int | None = 0,
                  classes: tuple[str, ...] = ISA_CLASSES, scheme: str = "isa") -> ClassMapping:
        allowed = (*range(len(classes)), LABEL_NODATA)
        bad = [v for v in mapping.values() if v not in allowed]
        if bad or (default is not None and default not in allowed):
            raise ConfigError(f"label classes must map to 0..{len(classes) - 1} or "
                              f"{LABEL_NODATA}, got {bad or [default]}")
        return cls(tuple(sorted((int(k), int(v)) for k, v in mapping.items())), default,
                   tuple(classes), scheme)

    @classmethod
    def from_scheme(cls, scheme: LabelScheme) -> ClassMapping:
        """The contract's table of a land-cover source; unlisted codes become nodata."""
        return cls.from_dict(scheme.mapping(), LABEL_NODATA, scheme.classes, LANDCOVER_SCHEME)

    def lookup_table(self) -> np.ndarray:
        """int32 table of 256 entries for source values 0..255 (identity where kept as is)."""
        table = (np.arange(256, dtype=np.int32) if self.default is None
                 else np.full(256, self.default, dtype=np.int32))
        for src, dst in self.mapping:
            if 0 <= src < 256:
                table[src] = dst
        if LABEL_NODATA not in dict(self.mapping):  # 255 is nodata unless a map names it
            table[LABEL_NODATA] = LABEL_NODATA     # (--label-map 0=0,255=1: a 0/255 mask)
        table[table >= len(self.classes)] = LABEL_NODATA  # kept values that are no class
        return table

    def apply(self, values: np.ndarray) -> np.ndarray:
        """Map an integer array; LABEL_NODATA stays nodata, negatives become nodata."""
        values = np.asarray(values)
        inside = (values >= 0) & (values < 256)
        out = self.lookup_table()[np.where(inside, values, 0).astype(np.int64)]
        beyond = values >= 256
        if beyond.any():  # codes past the table: explicit entries, else the default
            far = np.full(values.shape, LABEL_NODATA if self.default is None else self.default,
                          dtype=np.int32)
            for src, dst in self.mapping:
                if src >= 256:
                    far[values == src] = dst
            out = np.where(beyond, far, out)
        out[values < 0] = LABEL_NODATA
        return out.astype(np.int32)

    def manifest_classes(self) -> dict[str, str]:
        """``label.classes`` of the manifest."""
        return {str(i): name for i, name in enumerate(self.classes)}


# Presets for common label products (the scheme name is recorded in the manifest); the
# seven-class land-cover tables live in the contract, shared with the Earth Engine backend.
SCHEMES: dict[str, ClassMapping] = {
    "binary": ClassMapping(),  # already 0 pervious / 1 impervious / 255 nodata
    "worldcover": ClassMapping.from_dict({50: 1, 0: LABEL_NODATA}),  # ESA WorldCover 50 built-up
    "dynamic_world": ClassMapping.from_dict({6: 1}),  # Dynamic World label 6 = built
    "eolearn_lulc": ClassMapping.from_dict({8: 1, 0: LABEL_NODATA}),  # 8 artificial surface
    **{s.name: ClassMapping.from_scheme(s) for s in LANDCOVER_SCHEMES.values()},
}
ALIASES = {"dynamicworld": "dynamic_world"}  # the Earth Engine backend's --labels spelling
# The codes each preset's product defines (nodata 255 aside): a label holding other codes was
# made with another scheme, and mapping it would silently turn it into nodata or "pervious".
# The land-cover tables list every code of their product, so they say it themselves.
SCHEME_CODES: dict[str, frozenset[int]] = {
    "binary": frozenset({0, 1}),
    "worldcover": frozenset({0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 100}),
    "dynamic_world": frozenset(range(9)),
    "eolearn_lulc": frozenset(range(11)),
    **{s.name: frozenset(c.code for c in s.codes) for s in LANDCOVER_SCHEMES.values()},
}


MAP_PREFIX = "map:"  # ``--label-map 7=1,0=255,*=0`` is the scheme ``map:7=1,0=255,*=0``


def parse_label_map(spec: str) -> tuple[dict[int, int], int | None]:
    """``"7=1,0=255,10=255,*=0"`` -> ({7: 1, 0: 255, 10: 255}, 0); no ``*`` -> default None.

    Each entry is ``CODE=CLASS`` (CLASS 0 pervious, 1 impervious, 255 ignored); ``*=CLASS``
    gives every other code. Without ``*``, a code the map does not list is refused when the
    label is read (:func:`check_codes`), so no code is mapped by accident.
    """
    text = spec[len(MAP_PREFIX):] if spec.startswith(MAP_PREFIX) else spec
    mapping: dict[int, int] = {}
    default: int | None = None
    for item in filter(None, (part.strip() for part in text.split(","))):
        code, sep, target = item.partition("=")
        try:
            value = int(target)
            if code.strip() == "*":
                default = value
            else:
                mapping[int(code)] = value
        except ValueError:
            sep = ""
        if not sep:
            raise ConfigError(f"--label-map entry {item!r} is not CODE=CLASS; write e.g. "
                              "--label-map 7=1,0=255,10=255,*=0 (class 0 pervious, 1 "
                              "impervious, 255 ignored; * = every other code)")
    if not mapping and default is None:
        raise ConfigError("--label-map is empty; write e.g. --label-map 7=1,0=255,*=0")
    return mapping, default


def label_map_scheme(spec: str) -> str:
    """The scheme name recorded for ``--label-map SPEC`` (checked, normalised)."""
    mapping, default = parse_label_map(spec)
    ClassMapping.from_dict(mapping, LABEL_NODATA if default is None else default)  # checks
    items = [f"{k}={v}" for k, v in sorted(mapping.items())]
    return MAP_PREFIX + ",".join(items + ([f"*={default}"] if default is not None else []))


def get_scheme(scheme: str | ClassMapping | Mapping[int, int] | None) -> ClassMapping:
    """A ClassMapping from a preset name, a ``map:`` spec, a dict or None (= ``binary``)."""
    if scheme is None:
        return SCHEMES["binary"]
    if isinstance(scheme, ClassMapping):
        return scheme
    if isinstance(scheme, str):
        if is_landcover(scheme):
            return ClassMapping.from_scheme(get_landcover_scheme(scheme))
        if scheme.startswith(MAP_PREFIX):
            mapping, default = parse_label_map(scheme)
            return ClassMapping.from_dict(mapping, LABEL_NODATA if default is None else default)
        try:
            return SCHEMES[ALIASES.get(scheme, scheme)]
        except KeyError:
            raise ConfigError(f"unknown label scheme {scheme!r}; known: {', '.join(SCHEMES)} "
                              "(--label-scheme), or --label-map CODE=CLASS,...; in Python "
                              "also a {source value: 0|1|255} dict") from None
    return ClassMapping.from_dict(scheme)


def scheme_codes(name: str) -> frozenset[int] | None:
    """The codes a named scheme defines (None: any code, a ``map:`` with ``*``)."""
    if name.startswith(MAP_PREFIX):
        mapping, default = parse_label_map(name)
        return None if default is not None else frozenset(mapping)
    return SCHEME_CODES.get(ALIASES.get(name, name))


def impervious_codes(name: str) -> frozenset[int]:
    """The codes a named scheme defines that it reads as its ``impervious`` class."""
    mapping, codes = get_scheme(name), scheme_codes(name) or frozenset()
    ordered = sorted(codes)
    classes = mapping.apply(np.array(ordered, dtype=np.int64))
    target = mapping.classes.index("impervious")
    return frozenset(c for c, k in zip(ordered, classes, strict=True) if k == target)


def check_codes(ref: BandRef, scheme: str | ClassMapping | Mapping[int, int] | None) -> None:
    """Refuse a label whose codes or class balance (a decimated sample) the scheme contradicts.

    A preset or ``map:`` scheme must list every code of the label; a label that holds only
    0 and 1 is binary and refused under any other preset; a scheme that ignores nearly all
    of a label was not made for it (:func:`gee_export.local.plausibility.check_label_balance`).
    Custom mappings given in Python (a dict or ClassMapping) are the caller's own statement
    and not checked.
    """
    name = "binary" if scheme is None else scheme
    if not isinstance(name, str):
        return
    name = ALIASES.get(name, name)
    sample = plausibility.read_sample(ref)
    what = f"label {ref.path}"
    if name == "binary":
        check_binary_coding(ref, sample, what)
    codes = scheme_codes(name)
    if codes is not None:
        known = {**SCHEME_CODES, name: codes}
        plausibility.check_label_codes(sample, name, known, what,
                                       impervious={n: impervious_codes(n) for n in known})
    binary = None if name.startswith(MAP_PREFIX) else SCHEME_CODES["binary"]
    plausibility.check_label_balance(sample, get_scheme(name).apply, name, binary, what)


def categorical_resampling(ref: BandRef, grid: Grid) -> str:
    """How a categorical source goes onto ``grid``: mode from a finer source, else nearest."""
    return "mode" if source_resolution(ref, grid) < 0.75 * grid.resolution else "nearest"


def product_window(ref: BandRef, grid: Grid, window: Window) -> np.ndarray:
    """The label source's own codes on ``window`` of ``grid``: the ``product`` band.

    float32 codes, NaN where the source has nodata or no coverage; put on the grid as the
    label is (mode from a finer source, else nearest), but not mapped to classes.
    """
    out = read_to_grid(ref, grid, window, categorical_resampling(ref, grid),
                       categorical_nodata=LABEL_NODATA)
    return np.where(out == LABEL_NODATA, np.nan, out).astype(np.float32)


def label_window(ref: BandRef, grid: Grid, window: Window, mapping: ClassMapping) -> np.ndarray:
    """The mapped label on ``window`` of ``grid`` as uint8 (255 = nodata).

    Mode when the source is finer than the grid, else nearest (labels are categorical).
    """
    out = read_to_grid(ref, grid, window, categorical_resampling(ref, grid),
                       prepare=mapping.apply, categorical_nodata=LABEL_NODATA)
    return out.astype(np.uint8)


#: a label code must cover at least this share of the sample to count as present
PRESENT_SHARE = 0.001


def check_binary_coding(ref: BandRef, sample: np.ndarray, what: str) -> None:
    """Refuse a binary label written so that a class vanishes: a 0/255 mask, a nodata tag of 0/1.

    A mask saved as 0 and 255 reads as pervious and nodata (255 is isamap's nodata), so its
    dataset holds no impervious pixel; a file tagged nodata=0 (or 1) hides every pixel of that
    class. Both gave a dataset that trains nothing, exit 0. A file tagged nodata=255 says
    what its 255 means and is read as it says. ``sample`` is read with the file's nodata tag
    (:func:`gee_export.local.plausibility.read_sample`).
    """
    with rasterio.open(ref.path) as src:
        tag = src.nodatavals[ref.index - 1]
        if tag is not None:  # the pixels the tag hides, too
            step = max(1, -(-max(src.width, src.height) // plausibility.SAMPLE_SIDE))
            sample = src.read(ref.index, out_shape=(max(1, src.height // step),
                                                    max(1, src.width // step)))
    finite = np.asarray(sample, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if not finite.size:
        return
    share = {c: float((finite == c).mean()) for c in (0, 1, LABEL_NODATA)}
    if tag is not None and tag in (0, 1) and share[int(tag)] > PRESENT_SHARE:
        raise InputDataError(
            f"{what} is tagged nodata={tag:g}, which hides its {100 * share[int(tag)]:.1f} % "
            f"{('pervious', 'impervious')[int(tag)]} pixels (code {int(tag)} of the binary "
            "scheme); remove the tag (rio edit-info --unset-nodata FILE) or set it to 255 "
            "(rio edit-info --nodata 255 FILE), then export again")
    mask = share[0] > PRESENT_SHARE and share[LABEL_NODATA] > PRESENT_SHARE
    if tag != LABEL_NODATA and mask and share[1] <= PRESENT_SHARE \
            and share[0] + share[LABEL_NODATA] > 0.999:  # a tag of 255 says what 255 is
        raise InputDataError(
            f"{what} holds only the codes 0 and 255 ({100 * share[LABEL_NODATA]:.1f} % 255), as "
            "a mask saved as 0/255 does: the binary scheme reads 255 as nodata, so no pixel "
            "would be impervious. If 255 marks impervious surface, pass --label-map 0=0,255=1; "
            "if it marks pixels without a label, the area holds no impervious surface to learn")


#: a label whose pixel edges sit more than this share of a pixel off the grid's is refused
MAX_GRID_SHIFT = 0.1


def _shift(t: Affine, crs: CRS | None, lattice: tuple[CRS, float, float, float]
           ) -> tuple[float, float] | None:
    """How far (east, north) the pixel edges of transform ``t`` lie from a lattice's nearest.

    ``lattice`` is (CRS, west edge, north edge, pixel size); measured in the finer pixel. None
    where the two cannot share edges: another CRS, a rotation, sizes that are no whole multiple
    of each other (such a source is warped anyway).
    """
    lattice_crs, x0, y0, res = lattice
    if crs is None or crs != lattice_crs or t.b != 0 or t.d != 0 or t.a <= 0 or t.e >= 0:
        return None
    shifts = []
    for px, offset in ((t.a, t.c - x0), (-t.e, t.f - y0)):
        step = min(px, res)
        ratio = max(px, res) / step
        if abs(ratio - round(ratio)) > 1e-6:
            return None
        whole = offset / step
        shifts.append((whole - round(whole)) * step)
    return shifts[0], shifts[1]


def _aligned(shift: tuple[float, float] | None, step: float) -> bool:
    return shift is None or max(abs(s) for s in shift) <= MAX_GRID_SHIFT * step


def check_labels_on_grid(label: BandRef | None, fine: BandRef | None, grid: Grid,
                         fine_scale: int | None, imagery: Sequence[BandRef]) -> None:
    """:func:`check_on_grid` of a stack's label and fine label (on the grid at its scale)."""
    if label is not None:
        check_on_grid(label, grid, imagery)
    if fine is not None and fine_scale and fine != label:
        check_on_grid(fine, grid.scaled(fine_scale), imagery)


def check_on_grid(ref: BandRef, grid: Grid, imagery: Sequence[BandRef] = ()) -> None:
    """Refuse a label whose pixel edges fall between the grid's and the imagery's (half a pixel).

    Nearest or mode onto the grid then gives each grid pixel its neighbour's class over part
    of its width, without a word. Checked from the files' transforms: a label on the grid, off
    by whole pixels, or on the pixels of a scene in ``imagery`` (a label made with its scenes,
    all warped alike) passes, as does one the grid cannot share edges with (:func:`_shift`).
    """
    with rasterio.open(ref.path) as src:
        crs, t = src.crs, src.transform
    shift = _shift(t, crs, (CRS.from_user_input(grid.crs), grid.x0, grid.y0, grid.resolution))
    if shift is None or _aligned(shift, min(t.a, -t.e, grid.resolution)):
        return
    for band in imagery:
        with rasterio.open(band.path) as src:
            s = src.transform
            if _aligned(_shift(t, crs, (src.crs, s.c, s.f, s.a)), min(t.a, s.a)):
                return
    east, north = shift
    west, south, east_edge, north_edge = grid.bounds
    raise InputDataError(
        f"label {ref.path} is off the grid and the scenes' pixels: its pixel edges lie "
        f"{east:+g} m east and {north:+g} m north of the grid's ({t.a:g} m label pixels, "
        f"{grid.resolution:g} m grid), so every grid pixel would take part of a neighbour's "
        "class; if the label's georeference is wrong (pixel centre given as corner), correct "
        "its transform, else re-grid it: rio warp LABEL OUT --bounds "
        f"{west:.12g} {south:.12g} {east_edge:.12g} {north_edge:.12g} --res "
        f"{grid.resolution:g} --resampling mode, then export again")
