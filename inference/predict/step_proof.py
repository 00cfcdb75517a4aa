"""What a post-processing step must prove before the map's tag says it ran.

A step that reads another raster onto the map (``--postprocess keep``: a coarse product) can
run to the end and change nothing: the product lies elsewhere, its coordinates are degrees
under a CRS in metres, or its codes are read with another product's table. The map is then
exactly the model's, yet its ``postprocess`` tag names the product: a user reads that the
product's impervious class was kept. So before the first tile, on the decimated sample it
settles on, every such step proves three things, in this order, or the run is refused in one
line naming the first that fails:

1. **footprint**: its raster covers some of the map (:attr:`StepProof.covered` > 0); when it
   covers none, the cause is named: coordinates in another unit than the CRS says
   (:func:`crs_unit_mismatch`), or a footprint elsewhere;
2. **table**: most covered pixels hold codes its table lists (:attr:`StepProof.known` at
   least :data:`KNOWN_MIN`), else the table that lists them is named;
3. **effect**: it decides a nonzero share of the map's pixels (:attr:`StepProof.decided`).

The proof's shares are recorded with the step in the map's tag (:meth:`StepProof.record`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from core.errors import InputDataError

KNOWN_MIN = 0.5  # share of covered pixels whose code the table lists
_DEGREE_LIMITS = (180.0, 90.0)


@dataclass(frozen=True)
class StepProof:
    """What a step showed on the map's sample before the first tile.

    Attributes:
        step: the step as the user asked for it (``--postprocess keep``).
        given: its raster in words (``--keep-product nlcd.tif``).
        covered: share of the map's sampled pixels its raster covers.
        known: share of those whose code its table lists.
        decided: share of the map's sampled pixels it decides.
    """

    step: str
    given: str
    covered: float
    known: float
    decided: float

    def require(self, *, no_cover: tuple[str, str], foreign: tuple[str, str],
                 no_effect: tuple[str, str]) -> None:
        """Refuse the run unless the step proved all three, naming the first failure.

        Each argument is ``(why, what to do)``: ``no_cover`` why nothing is covered (see
        :func:`crs_unit_mismatch`), ``foreign`` what the codes are, ``no_effect`` why the
        step decides no pixel.

        Raises:
            InputDataError: the step would leave the map as it is.
        """
        failed = (no_cover if self.covered <= 0.0 else foreign if self.known < KNOWN_MIN
                  else no_effect if self.decided <= 0.0 else None)
        if failed is not None:
            raise InputDataError(f"{self.step}: {self.given} {failed[0]} (the step would "
                                 f"change nothing, yet its tag would name it); {failed[1]}")

    def record(self) -> dict[str, float]:
        """The shares the map's tag records with the step (4 digits)."""
        return {"covered": round(self.covered, 4), "decided": round(self.decided, 4)}


def crs_unit_mismatch(crs: Any, bounds: tuple[float, float, float, float]) -> str | None:
    """Why a raster's coordinates cannot be in its CRS's unit, or None (then: set its CRS).

    Degrees under a CRS in metres put a whole product within a few hundred metres of the
    projection's origin; metres under a geographic CRS leave the globe.
    """
    if crs is None:
        return None
    west, south, east, north = bounds
    inside = (max(abs(west), abs(east)) <= _DEGREE_LIMITS[0]
              and max(abs(south), abs(north)) <= _DEGREE_LIMITS[1])
    if crs.is_projected and inside and (east - west) < 10.0:
        unit = (crs.linear_units or "metre").rstrip("s")
        return (f"has coordinates {west:.6g}..{east:.6g}, {south:.6g}..{north:.6g}, which are "
                f"degrees of longitude and latitude, but its CRS ({crs.to_string()}) is in "
                f"{unit}s: the CRS tag is wrong")
    if crs.is_geographic and not inside:
        return (f"has coordinates {west:.6g}..{east:.6g}, {south:.6g}..{north:.6g}, which no "
                f"longitude and latitude reach, but its CRS ({crs.to_string()}) is in degrees: "
                "they are metres of a projected CRS, the CRS tag is wrong")
    return None


def fitting_tables(codes: set[int], tables: Mapping[str, set[int]], given: str) -> list[str]:
    """The tables other than ``given`` that list every code of ``codes``."""
    return [name for name, listed in tables.items() if name != given and codes <= listed]
