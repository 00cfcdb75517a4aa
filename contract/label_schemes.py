"""Land-cover label sources mapped to the seven classes of the imperfect-label paper (2.2).

The paper learns a fine land-cover map from a coarser product and keeps seven classes:
cropland, woodland (forest and shrubland merged: their difference is a height the imagery
cannot show), grassland, water, impervious, bare land and snow/ice. Wetland is dropped (it
changes with the season and a single date cannot see it), tundra too (almost absent in the
paper's China); those pixels are *ignored* in training (label nodata, 255), not guessed.

One table per source, each listing **every code the product defines** with its name and
target class (``None`` = ignored on purpose). Codes a table does not list (a product
version with new classes, garbage) become nodata as well, so nothing is ever mapped by
accident. Both backends read these tables: the Earth Engine backend as the two lists of
``ee.Image.remap`` (``remap_lists``), the local backend as a lookup table (``lookup_table``).
Before mapping, the local backend refuses a raster holding a code its table does not list
(``gee_export.local.labels.SCHEME_CODES``): such a label was most likely made with another
scheme, and mapping it would silently erase it to nodata.

Sources and their decisions (see docs/landcover.md):

- ``worldcover``: ESA WorldCover v100/v200 ``Map``. Tree cover and shrubland -> woodland;
  herbaceous wetland and mangroves (a wetland forest) -> ignored; moss and lichen (the
  tundra of WorldCover) -> ignored.
- ``dynamicworld``: Dynamic World V1 ``label``. Trees and shrub & scrub -> woodland;
  flooded vegetation (wetland) -> ignored.
- ``fromglc10``: FROM-GLC10 (the paper's own training labels), codes 10..100.
- ``eolearn_lulc``: the same ten classes numbered 1..10 in another order, as in the
  eo-learn example land-use raster (FROM-GLC-style codes with artificial surface = 8).
- ``chesapeake``: Chesapeake Conservancy / CVPR 2019 land cover (NAIP 1 m). Low vegetation
  and fields -> grassland (the product does not separate crops from lawns and pasture);
  impervious other and roads -> impervious.
- ``nlcd``: USGS National Land Cover Database (30 m, conterminous US and Alaska). Developed
  open space (lawns, under 20 % impervious) -> grassland; developed low, medium and high
  intensity -> impervious; forest, dwarf scrub and shrub/scrub -> woodland; grassland, sedge,
  pasture/hay -> grassland; cultivated crops -> cropland; woody and emergent herbaceous
  wetlands -> ignored; Alaska's lichens and moss (tundra) -> ignored. Its developed classes
  are also shares of impervious surface (:data:`NLCD_IMPERVIOUS`).

A scheme's ``impervious`` table gives the expected impervious fraction of the codes that
are shares of impervious surface rather than one class (NLCD's developed intensities; no
other source has any). It is what the coarse product becomes as network input
(:meth:`LabelScheme.input_tables`: the seven classes one-hot plus that fraction, the
``product`` band of ``contract.bands``) and the soft label of label
super-resolution.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from contract.bands import LABEL_NODATA, PRODUCT
from core.errors import ConfigError

LANDCOVER_CLASSES: tuple[str, ...] = ("cropland", "woodland", "grassland", "water",
                                      "impervious", "bare_land", "snow_ice")
LANDCOVER_SCHEME = "landcover"  # the manifest's label.scheme of datasets in these classes
SCHEME_PREFIX = "landcover:"  # ``--labels landcover:<source>``
IGNORED = LABEL_NODATA
DEFAULT_CLASSES_ISA: Mapping[str, str] = {"0": "pervious", "1": "impervious"}
#: class names that say a class is not impervious surface: the binary scheme's other class and
#: the land-cover classes but one (``--isa-class`` naming one of them is refused)
NOT_IMPERVIOUS: frozenset[str] = frozenset(
    {DEFAULT_CLASSES_ISA["0"], *(c for c in LANDCOVER_CLASSES if c != "impervious")})
#: NLCD's developed classes as impervious fractions: the middle of each class's defined range
#: (open space under 20 %, low 20-49 %, medium 50-79 %, high intensity 80-100 % impervious)
NLCD_IMPERVIOUS: Mapping[int, float] = {21: 0.10, 22: 0.35, 23: 0.65, 24: 0.90}
#: the channels a product band becomes as network input: its classes one-hot, then the
#: expected impervious fraction of its code (:meth:`LabelScheme.input_tables`)
PRODUCT_CHANNELS: tuple[str, ...] = (*LANDCOVER_CLASSES, "impervious_fraction")


@dataclass(frozen=True)
class SourceClass:
    """One code of a label product and what it becomes.

    Attributes:
        code: the value in the product's raster.
        name: the product's name for it.
        target: a class of ``LANDCOVER_CLASSES``, or None when ignored on purpose.
    """

    code: int
    name: str
    target: str | None

    def __post_init__(self) -> None:
        if self.target is not None and self.target not in LANDCOVER_CLASSES:
            raise ConfigError(f"{self.name}: {self.target!r} is not one of {LANDCOVER_CLASSES}")


@dataclass(frozen=True)
class LabelScheme:
    """A land-cover product's codes mapped to the seven classes.

    Attributes:
        source: short name used in ``--labels landcover:<source>``.
        product: what the codes come from (collection / band / version).
        codes: every code the product defines.
        impervious: ``(code, fraction)`` of the codes that are shares of impervious surface
            (NLCD's developed classes), the expected fraction in 0..1; empty for the others.
    """

    source: str
    product: str
    codes: tuple[SourceClass, ...]
    impervious: tuple[tuple[int, float], ...] = ()

    def __post_init__(self) -> None:
        values = [c.code for c in self.codes]
        if len(set(values)) != len(values):
            raise ConfigError(f"{self.source}: a code is listed twice")
        if any(not 0 <= v < LABEL_NODATA for v in values):
            raise ConfigError(f"{self.source}: codes must be in 0..254")
        if any(c not in values or not 0.0 <= f <= 1.0 for c, f in self.impervious):
            raise ConfigError(f"{self.source}: impervious fractions must be in 0..1, of "
                              "listed codes")

    @property
    def name(self) -> str:
        """The scheme's ``--labels`` name."""
        return SCHEME_PREFIX + self.source

    @property
    def classes(self) -> tuple[str, ...]:
        return LANDCOVER_CLASSES

    def mapping(self) -> dict[int, int]:
        """Source code -> class index (``IGNORED`` = 255 for ignored codes)."""
        return {c.code: IGNORED if c.target is None else LANDCOVER_CLASSES.index(c.target)
                for c in self.codes}

    def lookup_table(self) -> np.ndarray:
        """uint8 table of 256 entries: ``table[code]`` is the class; unlisted codes -> 255."""
        table = np.full(256, IGNORED, dtype=np.uint8)
        for code, target in self.mapping().items():
            table[code] = target
        return table

    def apply(self, values: np.ndarray) -> np.ndarray:
        """Map a raster of source codes (any integer dtype); out-of-table values -> 255."""
        values = np.asarray(values)
        inside = (values >= 0) & (values < 256)
        return np.where(inside, self.lookup_table()[np.where(inside, values, 255).astype(
            np.int64)], IGNORED).astype(np.uint8)

    def remap_lists(self) -> tuple[list[int], list[int]]:
        """``(from, to)`` for ``ee.Image.remap(from, to, 255)``: every listed code."""
        pairs = sorted(self.mapping().items())
        return [a for a, _ in pairs], [b for _, b in pairs]

    def manifest_classes(self) -> dict[str, str]:
        """``label.classes`` of the manifest: ``{"0": "cropland", ...}``."""
        return {str(i): n for i, n in enumerate(LANDCOVER_CLASSES)}

    def input_tables(self) -> tuple[np.ndarray, np.ndarray]:
        """What each code 0..255 of the product becomes as network input.

        Returns ``(classes, fractions)``: int64 class index of every code (255 for ignored
        and unlisted codes, which get no one-hot channel), and float32 expected impervious
        fraction (0 for codes that are not shares of impervious surface). The product's
        :data:`PRODUCT_CHANNELS` are ``classes == k`` for each class ``k``, then the fraction.
        """
        fractions = np.zeros(256, np.float32)
        for code, share in self.impervious:
            fractions[code] = share
        return self.lookup_table().astype(np.int64), fractions


def _scheme(source: str, product: str, *codes: tuple[int, str, str | None],
            impervious: Mapping[int, float] | None = None) -> LabelScheme:
    return LabelScheme(source, product, tuple(SourceClass(*c) for c in codes),
                       tuple(sorted((impervious or {}).items())))


SCHEMES: dict[str, LabelScheme] = {s.source: s for s in (
    _scheme("worldcover", "ESA/WorldCover v100 (2020) and v200 (2021), band Map",
            (0, "no data", None), (10, "tree cover", "woodland"), (20, "shrubland", "woodland"),
            (30, "grassland", "grassland"), (40, "cropland", "cropland"),
            (50, "built-up", "impervious"), (60, "bare / sparse vegetation", "bare_land"),
            (70, "snow and ice", "snow_ice"), (80, "permanent water bodies", "water"),
            (90, "herbaceous wetland", None), (95, "mangroves", None),
            (100, "moss and lichen", None)),
    _scheme("dynamicworld", "GOOGLE/DYNAMICWORLD/V1, band label",
            (0, "water", "water"), (1, "trees", "woodland"), (2, "grass", "grassland"),
            (3, "flooded vegetation", None), (4, "crops", "cropland"),
            (5, "shrub and scrub", "woodland"), (6, "built", "impervious"),
            (7, "bare", "bare_land"), (8, "snow and ice", "snow_ice")),
    _scheme("fromglc10", "FROM-GLC10 (Gong et al. 2019), 2017, codes 10..100",
            (0, "no data", None), (10, "cropland", "cropland"), (20, "forest", "woodland"),
            (30, "grassland", "grassland"), (40, "shrubland", "woodland"),
            (50, "wetland", None), (60, "water", "water"), (70, "tundra", None),
            (80, "impervious surface", "impervious"), (90, "bare land", "bare_land"),
            (100, "snow/ice", "snow_ice")),
    _scheme("eolearn_lulc", "eo-learn example LULC raster (FROM-GLC-style codes 1..10)",
            (0, "no data", None), (1, "cultivated land", "cropland"), (2, "forest", "woodland"),
            (3, "grassland", "grassland"), (4, "shrubland", "woodland"), (5, "water", "water"),
            (6, "wetland", None), (7, "tundra", None), (8, "artificial surface", "impervious"),
            (9, "bare land", "bare_land"), (10, "snow and ice", "snow_ice")),
    _scheme("chesapeake", "Chesapeake Conservancy / CVPR 2019 land cover (lc, 1 m NAIP)",
            (0, "no data (GeoBench)", None), (1, "water", "water"),
            (2, "tree canopy / forest", "woodland"), (3, "low vegetation / field", "grassland"),
            (4, "barren land", "bare_land"), (5, "impervious (other)", "impervious"),
            (6, "impervious (road)", "impervious"), (15, "no data", None)),
    _scheme("nlcd", "USGS NLCD (2001-2021 editions), class codes 11..95",
            (0, "no data", None), (11, "open water", "water"),
            (12, "perennial ice/snow", "snow_ice"), (21, "developed, open space", "grassland"),
            (22, "developed, low intensity", "impervious"),
            (23, "developed, medium intensity", "impervious"),
            (24, "developed, high intensity", "impervious"), (31, "barren land", "bare_land"),
            (41, "deciduous forest", "woodland"), (42, "evergreen forest", "woodland"),
            (43, "mixed forest", "woodland"), (51, "dwarf scrub", "woodland"),
            (52, "shrub/scrub", "woodland"), (71, "grassland/herbaceous", "grassland"),
            (72, "sedge/herbaceous", "grassland"), (73, "lichens (tundra)", None),
            (74, "moss", None),
            (81, "pasture/hay", "grassland"), (82, "cultivated crops", "cropland"),
            (90, "woody wetlands", None), (95, "emergent herbaceous wetlands", None),
            impervious=NLCD_IMPERVIOUS),
)}


def get_landcover_scheme(name: str) -> LabelScheme:
    """A scheme by source name (``chesapeake``) or ``--labels`` name (``landcover:chesapeake``)."""
    source = name[len(SCHEME_PREFIX):] if name.startswith(SCHEME_PREFIX) else name
    try:
        return SCHEMES[source]
    except KeyError:
        raise ConfigError(f"unknown land-cover label source {source!r}; use "
                          f"{', '.join(SCHEME_PREFIX + s for s in SCHEMES)}") from None


def is_landcover(name: str | None) -> bool:
    """Whether a ``--labels`` value asks for the seven land-cover classes."""
    return bool(name) and str(name).startswith(SCHEME_PREFIX)


def check_product_band(bands: Sequence[str], labels: str | None) -> None:
    """Refuse the ``product`` band unless the labels come from a land-cover source.

    The band holds the label source's own codes, which only a ``landcover:<source>`` table
    turns into network input; one check for both backends, before any work.
    """
    if PRODUCT in bands and not is_landcover(labels):
        raise ConfigError(f"the {PRODUCT!r} band is the land-cover label source's own codes: "
                          f"give --labels landcover:<source> (e.g. landcover:nlcd), or leave "
                          f"{PRODUCT!r} out of --bands (labels now: {labels or 'none'})")


def landcover_source(recipe: Mapping[str, object] | None) -> str | None:
    """The land-cover label source a dataset was exported with (``nlcd``), or None.

    Read from the manifest's ``recipe`` as each backend records it: the local backend's
    ``label_scheme`` (``landcover:nlcd``), the Earth Engine backend's ``label`` (``kind``
    ``landcover``, ``scheme`` ``nlcd``). It names the table that turns the dataset's
    ``product`` band into network input.
    """
    recipe = recipe or {}
    scheme = recipe.get("label_scheme")
    if isinstance(scheme, str) and is_landcover(scheme):
        return get_landcover_scheme(scheme).source
    label = recipe.get("label")
    if isinstance(label, Mapping) and label.get("kind") == "landcover":
        return get_landcover_scheme(str(label.get("scheme"))).source
    return None


def isa_class_of(classes: Mapping[str, str]) -> int:
    """The label value of the class named ``impervious`` (1 for the binary ISA scheme)."""
    for value, name in classes.items():
        if name == "impervious":
            return int(value)
    return 1
