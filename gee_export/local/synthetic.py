"""A deterministic SYNTHETIC Sentinel-1/Sentinel-2 scene with a known answer.

The demo and the tests need input scenes without an Earth Engine account or downloads, and
tests need to know what the right output is. This module draws a town (road grid, building
blocks, parks), a river and a lake, vegetation and bare fields on a fine grid (1 m by default),
then simulates what the satellites would record on the 10 m grid:

- Sentinel-2 L2A: per-class reflectance spectra mixed linearly by each pixel's class fractions,
  with sensor noise, clouds and cloud shadows on some dates (flagged in SCL), a no-data swath
  edge on one date; written as uint16 DN = reflectance x 10000 (0 = nodata), one file per band at
  its native 10 or 20 m, plus SCL at 20 m.
- Sentinel-1 GRD: sigma0 per class in linear power, mixed linearly, times gamma-distributed
  speckle with a GRD-like equivalent number of looks (4.4), several dates in the month.
- The label (0 pervious, 1 impervious, 255 unlabelled) at 10 m and at the fine scale.

Files follow the layout of local input scenes (see :func:`generate_scene`) and every file,
folder, tag and README says SYNTHETIC, so nobody mistakes them for observations.

The town's class map is :mod:`gee_export.local.synthetic_town`'s; the per-class spectra and
backscatter, and the files written from them, are here (the tests check the backends against
these constants).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
from affine import Affine
from scipy import ndimage

from contract.bands import LABEL_NODATA
from contract.geotiff import write_geotiff
from contract.grid import Grid
from core.errors import ConfigError
from core.progress import progress_bar
from core.storage import atomic_write
from gee_export.local.synthetic_town import (
    BARE_SOIL,
    BUILDING,
    ISA_CLASSES,
    ROAD,
    VEGETATION,
    WATER,
    class_fractions,
    draw_class_map,
    grow_built_up,
    labels_from,
    mix,
)

__all__ = ["BARE_SOIL", "BUILDING", "CLASS_S1", "CLASS_S2", "DEFAULT_CRS", "DEFAULT_MONTH",
           "DEFAULT_ORIGIN", "ENL", "ISA_CLASSES", "ROAD", "S2_BANDS", "VEGETATION", "WATER",
           "SyntheticScene", "class_fractions", "draw_class_map", "generate_scene",
           "grow_built_up", "labels_from", "mix"]

# ------------------------------------------------------------------------- spectra


S2_BANDS: tuple[str, ...] = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11",
                             "B12")
S2_NATIVE: dict[str, float] = {b: (10.0 if b in ("B02", "B03", "B04", "B08") else 20.0)
                               for b in S2_BANDS}
# Surface reflectance (0-1) per class, in S2_BANDS order: typical library spectra (green
# vegetation red edge and NIR plateau, dark water, flat grey asphalt, brighter roofs, soil
# rising into the SWIR).
CLASS_S2: dict[int, tuple[float, ...]] = {
    ROAD: (0.090, 0.100, 0.110, 0.120, 0.130, 0.135, 0.140, 0.145, 0.170, 0.150),
    BUILDING: (0.140, 0.150, 0.170, 0.185, 0.195, 0.205, 0.215, 0.225, 0.260, 0.220),
    VEGETATION: (0.030, 0.065, 0.040, 0.110, 0.260, 0.330, 0.360, 0.375, 0.200, 0.100),
    WATER: (0.060, 0.070, 0.050, 0.040, 0.030, 0.025, 0.020, 0.020, 0.010, 0.008),
    BARE_SOIL: (0.080, 0.110, 0.150, 0.180, 0.210, 0.225, 0.240, 0.255, 0.320, 0.260),
}
# Sentinel-1 sigma0 in linear power (VV, VH): double bounce makes buildings bright, smooth
# asphalt and water are specular (dark), vegetation scatters volumetrically (high VH/VV).
CLASS_S1: dict[int, tuple[float, float]] = {
    ROAD: (0.020, 0.0030),
    BUILDING: (0.400, 0.0400),
    VEGETATION: (0.080, 0.0200),
    WATER: (0.004, 0.0008),
    BARE_SOIL: (0.040, 0.0060),
}
ENL = 4.4  # equivalent number of looks of Sentinel-1 IW GRDH (ESA product specification)
CLOUD_S2 = 0.45  # bright, spectrally flat cloud top reflectance
SCL_NODATA, SCL_SHADOW, SCL_VEG, SCL_NOT_VEG, SCL_WATER, SCL_CLOUD_MED, SCL_CLOUD_HIGH = (
    0, 3, 4, 5, 6, 8, 9)
SCL_FOR_CLASS = {ROAD: SCL_NOT_VEG, BUILDING: SCL_NOT_VEG, VEGETATION: SCL_VEG,
                 WATER: SCL_WATER, BARE_SOIL: SCL_NOT_VEG}

DEFAULT_CRS = "EPSG:32650"  # UTM 50N, the zone of Wuhan
DEFAULT_ORIGIN = (238_000.0, 3_385_000.0)  # a few km south-west of central Wuhan
DEFAULT_MONTH = "2019-06"  # the month of the CroFuseNet data
TIME = "T103021"
SCENE_FILE = "scene.json"


@dataclass(frozen=True)
class SyntheticScene:
    """Where a generated SYNTHETIC scene is, and what it was made from."""

    root: Path
    grid: Grid
    fine_scale: int
    seed: int
    month: str
    s2_dates: tuple[str, ...]
    s1_dates: tuple[str, ...]
    cloudy_dates: tuple[str, ...]
    s2_files: dict[str, dict[str, Path]]
    s1_files: dict[str, dict[str, Path]]
    label: Path
    label_fine: Path
    readme: Path
    growth: int = 0

    def class_map_fine(self) -> np.ndarray:
        """The noise-free class map on ``grid.scaled(fine_scale)`` (redrawn from the seed)."""
        classes = draw_class_map(self.grid, self.fine_scale, self.seed)
        return grow_built_up(classes, self.grid, self.fine_scale, self.seed, self.growth)[0]

    def class_fractions(self) -> np.ndarray:
        """``(6, H, W)`` float32 share of each class code (index = code) in every 10 m pixel."""
        return class_fractions(self.class_map_fine(), self.fine_scale)


# ------------------------------------------------------------------------- simulation
def _cloud_masks(shape: tuple[int, int], cover: float, rng: np.random.Generator
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cloud core, cloud edge and shadow masks at 20 m from a smooth random field."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma=max(2.0, shape[0] / 25))
    cloud = field > np.quantile(field, 1 - cover)
    core = ndimage.binary_erosion(cloud, iterations=2)
    edge = cloud & ~core
    dy, dx = max(1, shape[0] // 30), max(1, shape[1] // 40)
    shadow = np.zeros_like(cloud)
    shadow[dy:, dx:] = cloud[:-dy, :-dx]
    return core, edge, shadow & ~cloud


def _month_dates(month: str, days: Sequence[int]) -> tuple[str, ...]:
    year, mon = (int(x) for x in month.split("-"))
    return tuple(date(year, mon, d).strftime("%Y%m%d") for d in days)


def generate_scene(out_dir: str | Path, *, seed: int = 0, width: int = 512, height: int = 512,
                   fine_scale: int = 10, month: str = DEFAULT_MONTH, crs: str = DEFAULT_CRS,
                   origin: tuple[float, float] = DEFAULT_ORIGIN,
                   s2_days: Sequence[int] = (3, 13, 18, 28), cloudy: Sequence[int] = (13, 28),
                   s1_days: Sequence[int] = (5, 11, 17, 23, 29), noise: float = 0.004,
                   growth: int = 0, progress: bool = True) -> SyntheticScene:
    """Write a SYNTHETIC scene under ``out_dir`` (skipped when the same scene is already there).

    Layout (the same as local input scenes)::

        S2/S2X_MSIL2A_<YYYYMMDD>T103021_N0000_SYNTHETIC/<product>_<BAND>.tif   uint16 DN, 0 nodata
        S1/S1X_IW_GRDH_1SDV_<YYYYMMDD>T103021_SYNTHETIC/<product>_VV.tif|_VH.tif  linear sigma0
        labels/label.tif, labels/label_x<k>.tif, SYNTHETIC_README.txt, scene.json

    Args:
        out_dir: folder to write into.
        seed: the scene, the noise and the clouds are all drawn from this seed.
        width: 10 m pixels east-west (even, so the 20 m bands tile it).
        height: 10 m pixels north-south (even).
        fine_scale: the fine label is on ``grid.scaled(fine_scale)``.
        month: ``YYYY-MM`` of the acquisitions.
        crs: a projected CRS in metres.
        origin: west and north edges of the scene in ``crs``.
        s2_days: days of the month with a Sentinel-2 acquisition.
        cloudy: which of those days have clouds and shadows.
        s1_days: days of the month with a Sentinel-1 acquisition.
        noise: Sentinel-2 noise, standard deviation in reflectance (plus 2 % of the signal).
        growth: new built-up blocks on open land (:func:`grow_built_up`): the same town at a
            later date, with a known gain of impervious surface.
        progress: a tqdm bar over the steps (class map, labels, each acquisition date); a
            large scene with a fine label takes minutes.
    """
    if width % 2 or height % 2 or width < 32 or height < 32:
        raise ConfigError(f"scene size must be even and at least 32 px, got {width}x{height}")
    if not set(cloudy) <= set(s2_days):
        raise ConfigError(f"cloudy days {list(cloudy)} must be among the S2 days {list(s2_days)}")
    root = Path(out_dir)
    grid = Grid(crs, float(origin[0]), float(origin[1]), width, height, 10.0)
    params = {"seed": seed, "width": width, "height": height, "fine_scale": fine_scale,
              "month": month, "crs": crs, "origin": list(origin), "s2_days": list(s2_days),
              "cloudy": list(cloudy), "s1_days": list(s1_days), "noise": noise, "version": 2}
    if growth:
        params["growth"] = growth
    scene = _scene_paths(root, grid, params)
    marker = root / SCENE_FILE
    if marker.exists() and json.loads(marker.read_text()) == params:
        return scene

    bar = progress_bar(total=2 + len(scene.s2_dates) + len(scene.s1_dates), unit="step",
               desc="synthetic scene", disable=not progress)
    classes = grow_built_up(draw_class_map(grid, fine_scale, seed), grid, fine_scale, seed,
                            growth)[0]
    fractions = class_fractions(classes, fine_scale)
    bar.update()
    label, label_fine = labels_from(classes, grid, fine_scale)
    del classes
    tags = {"SYNTHETIC": "yes", "SYNTHETIC_SEED": seed}
    write_geotiff(scene.label, label, grid.transform, crs, LABEL_NODATA, descriptions=["label"],
                  tags={**tags, "CLASSES": "0 pervious, 1 impervious, 255 unlabelled"})
    fine_grid = grid.scaled(fine_scale)
    write_geotiff(scene.label_fine, label_fine, fine_grid.transform, crs, LABEL_NODATA,
                  descriptions=["label"], tags={**tags, "FINE_SCALE": fine_scale})
    del label_fine
    bar.update()

    rng = np.random.default_rng(seed + 1)
    _write_s2(scene, fractions, rng, noise, tags, bar.update)
    _write_s1(scene, fractions, rng, tags, bar.update)
    bar.close()
    readme = _README.format(seed=seed, month=month, crs=crs, w=width, h=height, k=fine_scale,
                            s2=", ".join(scene.s2_dates), cloudy=", ".join(scene.cloudy_dates),
                            s1=", ".join(scene.s1_dates))
    atomic_write(scene.readme, lambda handle: handle.write(readme.encode("utf-8")))
    marker_text = json.dumps(params, indent=2)  # written last: the scene is complete
    atomic_write(marker, lambda handle: handle.write(marker_text.encode("utf-8")))
    return scene


def _scene_paths(root: Path, grid: Grid, params: dict) -> SyntheticScene:
    s2_dates = _month_dates(params["month"], params["s2_days"])
    cloudy = _month_dates(params["month"], params["cloudy"])
    s1_dates = _month_dates(params["month"], params["s1_days"])
    s2_files, s1_files = {}, {}
    for d in s2_dates:
        product = f"S2X_MSIL2A_{d}{TIME}_N0000_SYNTHETIC"
        s2_files[d] = {b: root / "S2" / product / f"{product}_{b}.tif" for b in (*S2_BANDS, "SCL")}
    for d in s1_dates:
        product = f"S1X_IW_GRDH_1SDV_{d}{TIME}_SYNTHETIC"
        s1_files[d] = {p: root / "S1" / product / f"{product}_{p}.tif" for p in ("VV", "VH")}
    k = params["fine_scale"]
    return SyntheticScene(root, grid, k, params["seed"], params["month"], s2_dates, s1_dates,
                          cloudy, s2_files, s1_files, root / "labels" / "label.tif",
                          root / "labels" / f"label_x{k}.tif", root / "SYNTHETIC_README.txt",
                          params.get("growth", 0))


def _write_s2(scene: SyntheticScene, fractions: np.ndarray, rng: np.random.Generator,
              noise: float, tags: dict, done: Callable[[], object] = lambda: None) -> None:
    grid = scene.grid
    surface = mix(fractions, CLASS_S2)  # (10, H, W) reflectance at 10 m
    h2, w2 = grid.height // 2, grid.width // 2
    frac20 = fractions.reshape(6, h2, 2, w2, 2).mean(axis=(2, 4))
    dominant = frac20.argmax(axis=0)
    clear_scl = np.zeros((h2, w2), dtype=np.uint8)
    for code, value in SCL_FOR_CLASS.items():
        clear_scl[dominant == code] = value
    t20 = Affine(20.0, 0.0, grid.x0, 0.0, -20.0, grid.y0)
    for index, d in enumerate(scene.s2_dates):
        cover = 0.2 if d in scene.cloudy_dates else 0.0
        core, edge, shadow = (_cloud_masks((h2, w2), cover, rng) if cover
                              else (np.zeros((h2, w2), bool),) * 3)
        scl = clear_scl.copy()
        scl[shadow], scl[edge], scl[core] = SCL_SHADOW, SCL_CLOUD_MED, SCL_CLOUD_HIGH
        swath = np.zeros((h2, w2), bool)
        if index == 2:  # one date only partly covered: the orbit's swath edge
            swath[:, int(w2 * 0.9):] = True
            scl[swath] = SCL_NODATA
        gain = 1.0 + rng.normal(0, 0.01)  # residual illumination/atmosphere difference
        date_tags = {**tags, "ACQUISITION_DATE": f"{d[:4]}-{d[4:6]}-{d[6:]}",
                     "PRODUCT_LEVEL": "L2A", "PROCESSING_BASELINE": "00.00",
                     "BOA_ADD_OFFSET": 0, "QUANTIFICATION_VALUE": 10000,
                     "SPACECRAFT": "SYNTHETIC"}
        for b_index, band in enumerate(S2_BANDS):
            refl = surface[b_index] * gain
            refl = refl + rng.normal(0, 1, refl.shape).astype(np.float32) * (noise + 0.02 * refl)
            if S2_NATIVE[band] == 20.0:
                refl = refl.reshape(h2, 2, w2, 2).mean(axis=(1, 3))
                masks, transform = [core | edge, shadow, swath], t20
            else:
                masks = [np.repeat(np.repeat(x, 2, 0), 2, 1) for x in (core | edge, shadow, swath)]
                transform = grid.transform
            cloud_m, shadow_m, swath_m = masks
            refl = np.where(cloud_m, CLOUD_S2 + rng.normal(0, 0.02, refl.shape), refl)
            refl = np.where(shadow_m, refl * 0.35, refl)
            dn = np.clip(np.rint(refl * 10000), 1, 65535).astype(np.uint16)
            dn[swath_m] = 0
            write_geotiff(scene.s2_files[d][band], dn, transform, grid.crs, 0,
                          descriptions=[band], tags={**date_tags, "BAND": band})
        write_geotiff(scene.s2_files[d]["SCL"], scl, t20, grid.crs, 0, descriptions=["SCL"],
                      tags={**date_tags, "BAND": "SCL"})
        done()


def _write_s1(scene: SyntheticScene, fractions: np.ndarray, rng: np.random.Generator,
              tags: dict, done: Callable[[], object] = lambda: None) -> None:
    grid = scene.grid
    mean = mix(fractions, CLASS_S1)  # (2, H, W) linear sigma0
    for d in scene.s1_dates:
        for p_index, pol in enumerate(("VV", "VH")):
            speckle = rng.gamma(ENL, 1.0 / ENL, mean.shape[1:]).astype(np.float32)
            write_geotiff(scene.s1_files[d][pol], mean[p_index] * speckle, grid.transform,
                          grid.crs, float("nan"), descriptions=[pol],
                          tags={**tags, "ACQUISITION_DATE": f"{d[:4]}-{d[4:6]}-{d[6:]}",
                                "SIGMA0_UNIT": "linear", "POLARISATION": pol,
                                "PRODUCT_TYPE": "GRD", "ENL": ENL, "SPACECRAFT": "SYNTHETIC"})
        done()


_README = """SYNTHETIC SCENE - NOT SATELLITE DATA
====================================
Every raster in this folder was drawn by isamap's gee_export.local.synthetic module (seed {seed}) to
exercise the pipeline without an Earth Engine account. It only imitates Sentinel products.

Grid: {w} x {h} pixels of 10 m in {crs}; fine label at 1/{k} of that.
Month: {month}
Sentinel-2 L2A-like dates: {s2} (clouds and shadows on {cloudy}; SCL flags them)
Sentinel-1 GRD-like dates: {s1} (sigma0 in linear power, gamma speckle, ENL 4.4)
Classes drawn: road, building, vegetation, water, bare soil; label 1 = road or building
(impervious), 0 = other, 255 = unlabelled corner.
"""
