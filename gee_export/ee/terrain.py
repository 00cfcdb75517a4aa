"""Radiometric terrain flattening of Sentinel-1 sigma0.

After Vollrath et al. (2020) and Hoekman & Reiche (2015):

sigma0 (linear power, ellipsoid-referenced) becomes gamma0 = sigma0 / cos(theta_i), which is then
divided by a slope correction factor (SCF) from the DEM: the *volume* model suits vegetated
slopes, the *surface* (direct) model bare ones. Pixels in active layover or shadow carry no
usable signal and are masked. Formulas are expression strings shared with the tests.

Angle conventions: ``theta`` is the ellipsoid incidence angle (the GRD ``angle`` band);
``phi_r`` is the azimuth pointing *towards the sensor* (the aspect of the incidence-angle surface,
which falls towards the near range) minus the terrain aspect, so a slope facing the sensor has
``alpha_r > 0``.
"""

from __future__ import annotations

from typing import Literal

from core.errors import ConfigError

TerrainModel = Literal["none", "volume", "surface"]
TERRAIN_MODELS: tuple[str, ...] = ("none", "volume", "surface")

# Copernicus GLO-30, 2024 release: it replaces COPERNICUS/DEM/GLO30, which the data catalog marks
# deprecated since 2026-07-09 (same DEM band, also an ImageCollection of tiles).
DEFAULT_DEM = "COPERNICUS/DEM/GLO30_2024_1"
_DEMS = {  # id -> (is an ImageCollection, elevation band)
    "COPERNICUS/DEM/GLO30_2024_1": (True, "DEM"),
    "COPERNICUS/DEM/GLO30": (True, "DEM"),  # deprecated; still accepted when asked for
    "USGS/SRTMGL1_003": (False, "elevation"),
    "NASA/NASADEM_HGT/001": (False, "elevation"),
}

# slope of the terrain in the range plane, and in azimuth (radians)
ALPHA_R = "atan(tan(slope) * cos(phi_r))"
ALPHA_AZ = "atan(tan(slope) * sin(phi_r))"
GAMMA0 = "sigma0 / cos(theta)"
VOLUME_SCF = "tan(hp - theta + alpha_r) / tan(hp - theta)"
SURFACE_SCF = "cos(hp - theta) / (cos(alpha_az) * cos(hp - theta + alpha_r))"
# usable where neither active layover (alpha_r >= theta) nor shadow (alpha_r <= -(90 - theta))
NOT_LAYOVER_SHADOW = "(alpha_r < theta) && (alpha_r > -(hp - theta))"


def dem_image(dem: str = DEFAULT_DEM):
    """Elevation image for ``dem``: a known id, or ``<image id>[:band]``.

    Copernicus GLO-30 (both releases) is an ImageCollection of tiles: it is mosaicked and given
    the tiles' projection, because a mosaic has none and slope computed on the default
    1-degree projection would be meaningless.
    """
    import ee

    asset, _, band = dem.partition(":")
    is_collection, default_band = _DEMS.get(asset, (False, ""))
    band = band or default_band
    if is_collection:
        tiles = ee.ImageCollection(asset).select(band)
        return tiles.mosaic().setDefaultProjection(tiles.first().projection())
    image = ee.Image(asset)
    return image.select(band) if band else image.select(0)


def flatten(image, bands: tuple[str, ...], model: TerrainModel, dem: str = DEFAULT_DEM,
            footprint=None, heading_scale: float = 1000.0):
    """Terrain-flattened gamma0 (linear) of ``bands`` with layover/shadow masked.

    ``image`` is one GRD_FLOAT scene with its ``angle`` band; ``footprint`` the scene's own
    geometry (a filtered image may have lost it), over which the look direction is averaged.
    ``model`` 'none' returns the bands unchanged.
    """
    import ee

    if model == "none":
        return image.select(list(bands))
    if model not in TERRAIN_MODELS:
        raise ConfigError(f"unknown terrain model {model!r}; choose one of {TERRAIN_MODELS}")
    rad = ee.Number(3.141592653589793).divide(180)
    theta = image.select("angle").multiply(rad)
    towards_sensor = ee.Terrain.aspect(image.select("angle")).reduceRegion(
        ee.Reducer.mean(), footprint if footprint is not None else image.geometry(),
        heading_scale, bestEffort=True).get("aspect")
    elevation = dem_image(dem)
    slope = ee.Terrain.slope(elevation).multiply(rad)
    aspect = ee.Terrain.aspect(elevation).multiply(rad)
    phi_r = ee.Image.constant(ee.Number(towards_sensor).multiply(rad)).subtract(aspect)
    hp = 3.141592653589793 / 2.0
    alpha_r = ee.Image().expression(ALPHA_R, {"slope": slope, "phi_r": phi_r})
    alpha_az = ee.Image().expression(ALPHA_AZ, {"slope": slope, "phi_r": phi_r})
    geometry = {"theta": theta, "alpha_r": alpha_r, "alpha_az": alpha_az,
                "hp": ee.Image.constant(hp)}
    scf = ee.Image().expression(VOLUME_SCF if model == "volume" else SURFACE_SCF, geometry)
    valid = ee.Image().expression(NOT_LAYOVER_SHADOW, geometry)
    out = []
    for band in bands:
        gamma0 = ee.Image().expression(GAMMA0, {"sigma0": image.select(band), "theta": theta})
        out.append(gamma0.divide(scf).updateMask(valid).rename([band]))
    return ee.Image.cat(out)
