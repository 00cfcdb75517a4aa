"""Sentinel-1 GRD monthly composite: despeckled sigma0, averaged in linear power, then dB.

Recipe (per scene, then over the month):
1. ``COPERNICUS/S1_GRD_FLOAT`` (linear power; the dB collection ``COPERNICUS/S1_GRD`` is never
   filtered or averaged: the mean of dB values is the geometric mean of power, biased low),
   IW mode, scenes holding both VV and VH, optional orbit pass.
2. Border-noise mask by ellipsoid incidence angle, 30.63993 < angle < 45.23993 (Hird et al. 2017).
3. Speckle filter on the scene's *native* 10 m pixels (its own projection), so the filter's
   ENL assumptions hold and the only resampling is the later one onto the export grid.
4. Optional radiometric terrain flattening (volume or surface model, layover/shadow masked).
5. Bilinear resampling declared on the filtered scene (applied once, when the grid asks).
6. Temporal mean in linear power, then 10*log10 once; ``s1_scene_count`` counts valid scenes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from contract.composite import DEFAULT_SPECKLE, SpeckleFilter, check_speckle_filter
from core.errors import ConfigError, EmptyCompositeError
from gee_export.ee import speckle as speckle_filters
from gee_export.ee import terrain

S1_COLLECTION = "COPERNICUS/S1_GRD_FLOAT"
ANGLE_MIN = 30.63993
ANGLE_MAX = 45.23993
OrbitPass = Literal["both", "ascending", "descending"]
ORBIT_PASSES: tuple[str, ...] = ("both", "ascending", "descending")


@dataclass(frozen=True)
class S1Recipe:
    """Every parameter of the Sentinel-1 composite (written to the manifest as is).

    Attributes:
        orbit_pass: keep ascending, descending or both passes.
        speckle: speckle filter name (see ``gee_export.ee.speckle``); refined Lee by default.
        enl: equivalent number of looks of IW GRD high resolution (ESA: about 4.4).
        kernel: window of boxcar, Lee and Gamma-MAP (refined Lee is fixed at 7x7).
        sigma_xi: probability mass of the Lee-sigma range.
        terrain_flattening: 'none', 'volume' or 'surface'.
        dem: elevation source for terrain flattening.
        angle_min, angle_max: border-noise mask on the incidence angle (degrees).
    """

    orbit_pass: OrbitPass = "both"
    speckle: SpeckleFilter = DEFAULT_SPECKLE
    enl: float = 4.4
    kernel: int = 7
    sigma_xi: float = 0.9
    terrain_flattening: terrain.TerrainModel = "none"
    dem: str = terrain.DEFAULT_DEM
    angle_min: float = ANGLE_MIN
    angle_max: float = ANGLE_MAX
    collection: str = S1_COLLECTION

    def __post_init__(self) -> None:
        if self.orbit_pass not in ORBIT_PASSES:
            raise ConfigError(f"orbit pass {self.orbit_pass!r}: choose one of {ORBIT_PASSES}")
        check_speckle_filter(self.speckle)
        if self.terrain_flattening not in terrain.TERRAIN_MODELS:
            raise ConfigError(f"terrain flattening {self.terrain_flattening!r}: choose one of "
                              f"{terrain.TERRAIN_MODELS}")
        if self.kernel < 3 or self.kernel % 2 == 0:
            raise ConfigError(f"speckle kernel must be an odd size >= 3, got {self.kernel}")
        if self.enl < 1:
            raise ConfigError(f"ENL must be >= 1, got {self.enl}")
        if self.collection.rstrip("/").endswith("S1_GRD"):
            raise ConfigError("use COPERNICUS/S1_GRD_FLOAT (linear power); filtering or averaging "
                              "the dB collection biases the composite")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def s1_collection(region, start: str, end: str, recipe: S1Recipe,
                  bands: tuple[str, ...] = ("VV", "VH")):
    """Filtered GRD_FLOAT scenes: date, bounds, IW, polarisations, orbit pass."""
    import ee

    col = (ee.ImageCollection(recipe.collection)
           .filterBounds(region)
           .filterDate(start, end)
           .filter(ee.Filter.eq("instrumentMode", "IW")))
    for band in bands:
        col = col.filter(ee.Filter.listContains("transmitterReceiverPolarisation", band))
    if recipe.orbit_pass != "both":
        col = col.filter(ee.Filter.eq("orbitProperties_pass", recipe.orbit_pass.upper()))
    return col


def preprocess_scene(image, recipe: S1Recipe, bands: tuple[str, ...], region):
    """One scene: border-noise mask, speckle filter (native pixels), terrain flattening."""
    import ee

    angle = image.select("angle")
    keep = angle.gt(recipe.angle_min).And(angle.lt(recipe.angle_max))
    native = image.select(bands[0]).projection()
    masked = image.updateMask(keep)
    # reproject pins the filter to the scene's native pixels; resample makes the one later
    # reprojection onto the grid bilinear (it must sit on the pinned image to take effect).
    filtered = ee.Image.cat([
        speckle_filters.apply(masked.select(b), recipe.speckle, region=region, enl=recipe.enl,
                              size=recipe.kernel, xi=recipe.sigma_xi)
        for b in bands
    ]).reproject(native).resample("bilinear")
    flat = terrain.flatten(filtered.addBands(angle), bands, recipe.terrain_flattening, recipe.dem,
                           footprint=image.geometry())
    return ee.Image(flat.copyProperties(image, ["system:time_start"]))


def s1_composite(region, start: str, end: str, recipe: S1Recipe | None = None,
                 bands: tuple[str, ...] = ("VV", "VH")):
    """Monthly composite: ``bands`` in dB (mean taken in linear power) + ``s1_scene_count``."""
    recipe = recipe or S1Recipe()
    scenes = s1_collection(region, start, end, recipe, bands).map(
        lambda img: preprocess_scene(img, recipe, bands, region))
    linear_mean = scenes.select(list(bands)).mean()
    db = linear_mean.log10().multiply(10.0).rename(list(bands))
    count = scenes.select(bands[0]).count().rename("s1_scene_count").toFloat()
    return db.addBands(count).set("s1_collection", recipe.collection)


def require_scenes(count: int, month: str, region_name: str, recipe: S1Recipe) -> int:
    """Fail clearly when the month has no usable Sentinel-1 scene (``count`` from the server)."""
    if int(count or 0) <= 0:
        raise EmptyCompositeError(
            f"no Sentinel-1 IW VV+VH scene ({recipe.collection}, orbit pass "
            f"{recipe.orbit_pass}) over region {region_name!r} in month {month}. Choose another "
            "--month, or --orbit-pass both.")
    return int(count)
