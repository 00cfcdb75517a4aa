"""Impervious-surface labels from global products or a user's asset, mapped to 0/1/255.

``worldcover``: ESA WorldCover built-up (class 50) -> 1 (v100 for 2020 and earlier, v200 after).
``dynamicworld``: Dynamic World ``label`` mode over the composite's period, built (6) -> 1.
``ghsl[:THRESHOLD]``: GHSL built-up surface fraction of the epoch nearest the month >= threshold.
``asset:<id>[:band]``: a user's 0/1 label image (e.g. hand-annotated like WHU-IS); other values
and masked pixels -> 255.
``landcover:<source>[:<asset id>[:band]]``: the seven land-cover classes of the imperfect-label
paper, remapped (``ee.Image.remap``) with the table of
:mod:`contract.label_schemes` that the local backend uses too. ``worldcover``,
``dynamicworld`` and ``nlcd`` come from the catalogue (NLCD: the ImageCollections
``USGS/NLCD_RELEASES/2019_REL/NLCD``, epochs 2001-2019, and ``2021_REL/NLCD``, 2021; the
conterminous US; the epoch nearest the month's year); ``fromglc10``, ``eolearn_lulc`` and
``chesapeake`` are not in it and need the asset id of an uploaded copy (an uploaded NLCD,
e.g. Alaska's, is given the same way).
Every label is uint8 named ``label`` with 255 = nodata; stack.py puts it on the grid with mode
(which, onto a grid finer than the label, takes the one label pixel under each fine pixel:
nearest up-sampling).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from contract.bands import LABEL_NODATA
from contract.label_schemes import (
    DEFAULT_CLASSES_ISA,
    LANDCOVER_SCHEME,
    SCHEME_PREFIX,
    get_landcover_scheme,
)
from core.errors import ConfigError

LabelKind = Literal["worldcover", "dynamicworld", "ghsl", "asset", "landcover"]
CATALOGUE_LANDCOVER = ("worldcover", "dynamicworld", "nlcd")  # sources Earth Engine holds
NLCD_RELEASES = {"2019_REL": (2001, 2004, 2006, 2008, 2011, 2013, 2016, 2019),
                 "2021_REL": (2021,)}
"""NLCD epochs per release in the catalogue: ImageCollections ``USGS/NLCD_RELEASES/<release>/NLCD``
of one image per epoch (``system:time_start`` on 1 January of its year, band ``landcover``)."""
WORLDCOVER = {2020: "ESA/WorldCover/v100", 2021: "ESA/WorldCover/v200"}
DYNAMIC_WORLD = "GOOGLE/DYNAMICWORLD/V1"
GHSL_BUILT = "JRC/GHSL/P2023A/GHS_BUILT_S"
GHSL_CELL_M2 = 100.0 * 100.0  # GHS_BUILT_S: m^2 built per 100 m cell


@dataclass(frozen=True)
class LabelSource:
    """A parsed ``--labels`` value."""

    kind: LabelKind
    asset_id: str = ""
    band: str = ""
    threshold: float = 0.5
    scheme: str = ""  # the land-cover source of kind "landcover"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def classes(self) -> dict[str, str]:
        """The manifest's ``label.classes`` for labels from this source."""
        if self.kind == "landcover":
            return get_landcover_scheme(self.scheme).manifest_classes()
        return dict(DEFAULT_CLASSES_ISA)

    @property
    def is_composite(self) -> bool:
        """A composite computed on the grid (Dynamic World's mode), not one fixed image."""
        return self.kind == "dynamicworld" or (
            self.kind == "landcover" and self.scheme == "dynamicworld" and not self.asset_id)

    @property
    def label_scheme(self) -> str:
        """The manifest's ``label.scheme``: ``landcover`` or ``isa``."""
        return LANDCOVER_SCHEME if self.kind == "landcover" else "isa"


def parse_label_source(text: str) -> LabelSource:
    """Parse a ``--labels`` value of the Earth Engine backend.

    ``worldcover``, ``dynamicworld``, ``ghsl[:0.3]``, ``asset:<id>[:band]`` or
    ``landcover:<source>[:<asset id>[:band]]``.
    """
    text = text.strip()
    if text.startswith(SCHEME_PREFIX):
        source, _, rest = text[len(SCHEME_PREFIX):].partition(":")
        get_landcover_scheme(source)  # validates the source name
        asset_id, _, band = rest.partition(":")
        if not asset_id and source not in CATALOGUE_LANDCOVER:
            raise ConfigError(f"--labels {text!r}: {source} is not in the Earth Engine "
                              f"catalogue; upload it and give its asset, e.g. "
                              f"landcover:{source}:projects/my-project/assets/{source}[:band]")
        return LabelSource("landcover", asset_id=asset_id, band=band, scheme=source)
    if text in ("worldcover", "dynamicworld"):
        return LabelSource(text)  # type: ignore[arg-type]
    if text == "ghsl" or text.startswith("ghsl:"):
        value = text.partition(":")[2] or "0.5"
        try:
            threshold = float(value)
        except ValueError:
            threshold = -1.0
        if not 0.0 < threshold <= 1.0:
            raise ConfigError(f"--labels {text!r}: the GHSL threshold must be a built-up "
                              "fraction in (0, 1], e.g. ghsl:0.3")
        return LabelSource("ghsl", threshold=threshold)
    if text.startswith("asset:"):
        rest = text[len("asset:"):]
        asset_id, _, band = rest.partition(":")
        if not asset_id:
            raise ConfigError("--labels asset: needs an asset id, e.g. "
                              "asset:projects/my-project/assets/whu_is_labels[:band]")
        return LabelSource("asset", asset_id=asset_id, band=band)
    raise ConfigError(f"unknown label source {text!r}; use worldcover, dynamicworld, "
                      "ghsl[:THRESHOLD], asset:<asset id>[:band] or "
                      "landcover:<source>[:<asset id>[:band]]")


def worldcover_id(year: int) -> str:
    """WorldCover version closest in time (the map is used as a static reference)."""
    return WORLDCOVER[2020] if year <= 2020 else WORLDCOVER[2021]


def nlcd_epoch(year: int) -> int:
    """The NLCD epoch nearest ``year`` (the later one on a tie: closer to Sentinel-2)."""
    epochs = [epoch for release in NLCD_RELEASES.values() for epoch in release]
    return min(epochs, key=lambda epoch: (abs(epoch - year), -epoch))


def nlcd_landcover(year: int):
    """NLCD's ``landcover`` band of the epoch nearest ``year`` (codes 11..95)."""
    import ee

    epoch = nlcd_epoch(year)
    release = next(r for r, epochs in NLCD_RELEASES.items() if epoch in epochs)
    return (ee.ImageCollection(f"USGS/NLCD_RELEASES/{release}/NLCD")
            .filterDate(f"{epoch}-01-01", f"{epoch + 1}-01-01").first().select("landcover"))


def ghsl_epoch(year: int) -> int:
    """GHSL built-surface epochs are every 5 years from 1975 to 2030."""
    return int(min(2030, max(1975, 5 * round(year / 5))))


def ghsl_image_id(year: int) -> str:
    """The GHSL built-surface image of the epoch nearest ``year``, by its catalogue id.

    The catalogue documents the epochs' image ids (``JRC/GHSL/P2023A/GHS_BUILT_S/2020``), not
    their dates, so the image is named rather than found with a date filter.
    """
    return f"{GHSL_BUILT}/{ghsl_epoch(year)}"


def label_image(source: LabelSource, region, start: str, end: str, year: int):
    """The label for the composite period ``start``..``end`` of ``year``: uint8 0/1, 255 nodata.

    ``year`` is the composite month's year (a widened window may start the year before).
    """
    import ee

    if source.kind == "worldcover":
        lc = ee.ImageCollection(worldcover_id(year)).first().select("Map")
        built = lc.eq(50)
    elif source.kind == "dynamicworld":
        dw = (ee.ImageCollection(DYNAMIC_WORLD).filterBounds(region).filterDate(start, end)
              .select("label"))
        built = dw.reduce(ee.Reducer.mode()).eq(6)
    elif source.kind == "ghsl":
        ghsl = ee.Image(ghsl_image_id(year)).select("built_surface")
        built = ghsl.divide(GHSL_CELL_M2).gte(source.threshold)
    elif source.kind == "asset":
        img = ee.Image(source.asset_id)
        img = img.select(source.band) if source.band else img.select(0)
        built = img.remap([0, 1], [0, 1], LABEL_NODATA)
    elif source.kind == "landcover":
        return landcover_image(source, region, start, end, year)
    else:  # pragma: no cover - LabelSource is validated by parse_label_source
        raise ConfigError(f"unknown label kind {source.kind!r}")
    return built.unmask(LABEL_NODATA).toUint8().rename("label")


def landcover_image(source: LabelSource, region, start: str, end: str, year: int):
    """The seven-class label: the source's codes remapped by the contract's table.

    Codes the table ignores (wetland, tundra, no data) and codes it does not list become 255,
    as do masked pixels.
    """
    scheme = get_landcover_scheme(source.scheme)
    frm, to = scheme.remap_lists()
    codes = landcover_codes(source, region, start, end, year)
    return codes.remap(frm, to, LABEL_NODATA).unmask(LABEL_NODATA).toUint8().rename("label")


def landcover_codes(source: LabelSource, region, start: str, end: str, year: int):
    """The land-cover source's own codes (NLCD 11..95...), masked where it has no data.

    What :func:`landcover_image` remaps into the seven classes, and what the ``product``
    band holds (``gee_export.ee.recipe.product_on_grid``).
    """
    import ee

    scheme = get_landcover_scheme(source.scheme)
    if source.asset_id:
        img = ee.Image(source.asset_id)
        codes = img.select(source.band) if source.band else img.select(0)
    elif scheme.source == "worldcover":
        codes = ee.ImageCollection(worldcover_id(year)).first().select("Map")
    elif scheme.source == "dynamicworld":
        codes = (ee.ImageCollection(DYNAMIC_WORLD).filterBounds(region).filterDate(start, end)
                 .select("label").reduce(ee.Reducer.mode()))
    elif scheme.source == "nlcd":
        codes = nlcd_landcover(year)
    else:  # pragma: no cover - parse_label_source asks for an asset
        raise ConfigError(f"landcover:{scheme.source} needs an asset id")
    return codes
