"""Impervious-surface labels from global products or a user's asset, mapped to 0/1/255.

``worldcover``: ESA WorldCover built-up (class 50) -> 1 (v100 for 2020 and earlier, v200 after).
``dynamicworld``: Dynamic World ``label`` mode over the composite's period, built (6) -> 1.
``ghsl[:THRESHOLD]``: GHSL built-up surface fraction of the epoch nearest the month >= threshold.
``asset:<id>[:band]``: a user's 0/1 label image (e.g. hand-annotated like WHU-IS); other values
and masked pixels -> 255.
Every label is uint8 named ``label`` with 255 = nodata; stack.py puts it on the grid with mode.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from gee_export.contract.bands import LABEL_NODATA
from gee_export.core.errors import ConfigError

LabelKind = Literal["worldcover", "dynamicworld", "ghsl", "asset"]
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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_label_source(text: str) -> LabelSource:
    """Parse ``worldcover``, ``dynamicworld``, ``ghsl[:0.3]`` or ``asset:<id>[:band]``."""
    text = text.strip()
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
                      "ghsl[:THRESHOLD] or asset:<asset id>[:band]")


def worldcover_id(year: int) -> str:
    """WorldCover version closest in time (the map is used as a static reference)."""
    return WORLDCOVER[2020] if year <= 2020 else WORLDCOVER[2021]


def ghsl_epoch(year: int) -> int:
    """GHSL built-surface epochs are every 5 years from 1975 to 2030."""
    return int(min(2030, max(1975, 5 * round(year / 5))))


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
        epoch = ghsl_epoch(year)
        ghsl = (ee.ImageCollection(GHSL_BUILT).filterDate(f"{epoch}-01-01", f"{epoch + 1}-01-01")
                .first().select("built_surface"))
        built = ghsl.divide(GHSL_CELL_M2).gte(source.threshold)
    elif source.kind == "asset":
        img = ee.Image(source.asset_id)
        img = img.select(source.band) if source.band else img.select(0)
        built = img.remap([0, 1], [0, 1], LABEL_NODATA)
    else:  # pragma: no cover - LabelSource is validated by parse_label_source
        raise ConfigError(f"unknown label kind {source.kind!r}")
    return built.unmask(LABEL_NODATA).toUint8().rename("label")
