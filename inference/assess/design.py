"""A stratified random sample of pixel centres from a class or change COG, reproducible by seed.

The strata are the raster's classes. The number of points comes from ``n`` or from a target
standard error (Olofsson et al. 2014, eq. 13, :mod:`inference.assess.estimators`); it is allocated
with a minimum per stratum and the rest in proportion to area, or, for a sample sized for one
class's area (the gain of a change map), in proportion to ``W_h S_h`` (the Neyman allocation
that eq. 13 assumes), which gives a rare class and the strata that hide its omissions the
points its area's standard error needs. Within a stratum every pixel has
the same chance: the ``n_h`` ranks are drawn among the stratum's ``N_h`` pixels with the seed,
then found in one pass over the raster's blocks, so a design needs no more memory than a block
and the same map, sizes and seed always give the same points.

The allocation and the draw (:func:`allocation`,
:func:`inference.assess.estimators.draw_ranks`) are pure functions shared by the raster design
(:func:`draw`), the design of an array already in memory (:func:`draw_array`, for maps scored
where they are computed) and the evaluation's point sample
(:func:`inference.assess.estimators.sample_points`): one random draw, several ways to find the
drawn ranks' pixels.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import rasterio
from rasterio.warp import transform as warp_transform

from core.errors import ConfigError, InputDataError
from core.parsers import SEED_RULE, is_seed
from core.shareable import shareable_path
from core.storage import files
from inference.assess.estimators import (
    Numbers,
    allocate,
    area_sd,
    draw_ranks,
    sample_size_area,
    sample_size_oa,
)
from inference.assess.strata import Strata, read_strata

log = logging.getLogger(__name__)

DEFAULT_MINIMUM = 50  # points per stratum (Olofsson et al. 2014 suggest 50-100)
DEFAULT_UA = 0.8  # expected user's accuracy of a stratum when none is given


@dataclass(frozen=True)
class SampleSize:
    """How many points, and why (recorded in the design)."""

    n: int
    rule: Literal["given", "oa", "area"]
    target_se: float | None = None
    target_class: str | None = None
    expected_ua: tuple[float, ...] = ()


@dataclass(frozen=True)
class Design:
    """A drawn sample: points at pixel centres with their strata, and what drew them."""

    strata: Strata
    size: SampleSize
    allocation: tuple[int, ...]
    minimum: int
    seed: int
    stratum: np.ndarray  # (n,) stratum code of each point
    x: np.ndarray  # map CRS, pixel centre
    y: np.ndarray
    lon: np.ndarray
    lat: np.ndarray

    @property
    def inclusion(self) -> np.ndarray:
        """Each point's inclusion probability ``n_h / N_h`` (one pixel's chance of being drawn)."""
        rate = np.asarray(self.allocation, np.float64) / np.maximum(self.strata.pixels, 1)
        return rate[self.stratum]

    @property
    def order(self) -> np.ndarray:
        """The order the points are shown to the interpreter: a permutation drawn from the seed.

        The points are drawn stratum by stratum; listed so, their position would tell the
        interpreter the map's class. Files and the labelling app list them in this order.
        """
        return np.random.default_rng([self.seed, self.stratum.size]).permutation(
            self.stratum.size)

    def allocation_rule(self) -> str:
        return "neyman" if self.size.rule == "area" else "proportional"

    def record(self) -> dict:
        """The design as JSON (``sample.json``): enough to score the sample and to redraw it.

        The strata raster is named by its file name: the record is shared with the people who
        label the sample (:mod:`core.shareable`).
        """
        return {"strata_raster": shareable_path(self.strata.path), "crs": self.strata.crs,
                "resolution": self.strata.resolution, "classes": list(self.strata.classes),
                "strata_pixels": list(self.strata.pixels),
                "strata_km2": list(self.strata.area_km2), "n": int(self.stratum.size),
                "allocation": dict(zip(self.strata.classes, self.allocation, strict=True)),
                "allocation_rule": self.allocation_rule(),
                "minimum_per_stratum": self.minimum, "seed": self.seed,
                "sample_size": {"rule": self.size.rule, "n": self.size.n,
                                "target_se": self.size.target_se,
                                "target_class": self.size.target_class,
                                "expected_ua": list(self.size.expected_ua)},
                "design": "stratified random sampling of pixel centres (Olofsson et al. 2014)"}


def sample_size(strata: Strata, *, n: int | None = None, target_se: float | None = None,
                target_class: str | None = None,
                expected_ua: tuple[float, ...] | None = None) -> SampleSize:
    """``n`` as given, or from a target SE of overall accuracy (or of ``target_class``'s area).

    For a class's area ``target_se`` is in km² (converted to a proportion of the map's area).
    """
    if (n is None) == (target_se is None):
        raise ConfigError("give exactly one of --n N or --target-se S")
    if n is not None:
        if n < 2:
            raise ConfigError(f"--n must be at least 2, got {n}")
        if target_class is not None:
            raise ConfigError(f"--target-class {target_class} sizes the sample with --target-se "
                              "(in km²); with --n N give no --target-class")
        return SampleSize(n, "given")
    assert target_se is not None
    if not target_se > 0 or (target_class is None and target_se >= 0.5):
        raise ConfigError(f"--target-se {target_se:g}: " + (
            "give a positive standard error" if not target_se > 0 else
            "the standard error of overall accuracy is a fraction below 0.5 (0.01 for one "
            "percentage point)"))
    ua = tuple(expected_ua or (DEFAULT_UA,) * len(strata.classes))
    if len(ua) != len(strata.classes):
        raise ConfigError(f"--expected-ua needs {len(strata.classes)} values, one per stratum "
                          f"{list(strata.classes)}, got {len(ua)}")
    if target_class is None:
        return SampleSize(sample_size_oa(strata.weights, ua, target_se), "oa", target_se,
                          None, ua)
    if target_class not in strata.classes:
        raise ConfigError(f"--target-class {target_class!r} is not one of {list(strata.classes)}")
    total = float(sum(strata.area_km2))
    n = sample_size_area(strata.weights, ua, strata.classes.index(target_class),
                         target_se / total)
    return SampleSize(n, "area", target_se, target_class, ua)


def allocation(n: int, weights: Numbers, pixels: Sequence[int] | np.ndarray,
               minimum: int = DEFAULT_MINIMUM) -> tuple[int, ...]:
    """Points per stratum: at least ``minimum`` (or all its pixels), the rest by ``weights``."""
    if minimum < 2:
        raise ConfigError(f"--min-per-stratum must be at least 2 (a variance), got {minimum}")
    alloc = allocate(n, weights, minimum, pixels)
    if sum(alloc) > n:
        log.warning("%d points asked, %d drawn: every stratum gets at least %d (or all its "
                    "pixels)", n, sum(alloc), minimum)
    elif sum(alloc) < n:
        log.warning("%d points asked, %d drawn: the strata hold no more pixels, so every one "
                    "is drawn", n, sum(alloc))
    return alloc


def allocation_weights(strata: Strata, size: SampleSize) -> np.ndarray:
    """Area for a proportional allocation; ``W_h S_h`` for a sample sized for a class's area."""
    if size.rule == "area" and size.target_class is not None:
        target = strata.classes.index(size.target_class)
        return strata.weights * area_sd(strata.weights, size.expected_ua, target)
    return np.asarray(strata.area_km2, dtype=np.float64)


def draw(strata: Strata, size: SampleSize, seed: int,
         minimum: int = DEFAULT_MINIMUM) -> Design:
    """Draw the sample's points (see module docstring)."""
    alloc = allocation(size.n, allocation_weights(strata, size), strata.pixels, minimum)
    ranks = draw_ranks(strata.pixels, alloc, seed)
    seen = np.zeros(len(strata.classes), dtype=np.int64)
    rows, cols, codes = [], [], []
    with rasterio.open(files.gdal_path(strata.path)) as ds:
        transform, crs = ds.transform, ds.crs
        for _, window in ds.block_windows(1):
            data = ds.read(1, window=window).ravel()
            for code, want in enumerate(ranks):
                pos = np.flatnonzero(data == code)
                if not pos.size or not want.size:
                    continue
                lo, hi = np.searchsorted(want, [seen[code], seen[code] + pos.size])
                picked = pos[want[lo:hi] - seen[code]]
                seen[code] += pos.size
                rows.append(window.row_off + picked // int(window.width))
                cols.append(window.col_off + picked % int(window.width))
                codes.append(np.full(picked.size, code))
    row, col = np.concatenate(rows), np.concatenate(cols)
    stratum = np.concatenate(codes)
    order = np.lexsort((col, row, stratum))
    row, col, stratum = row[order], col[order], stratum[order]
    x, y = rasterio.transform.xy(transform, row, col, offset="center")
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    lon, lat = warp_transform(crs, "EPSG:4326", x.tolist(), y.tolist())
    return Design(strata, size, alloc, minimum, seed, stratum, x, y,
                  np.asarray(lon), np.asarray(lat))


def design_sample(raster: str, *, n: int | None = None, target_se: float | None = None,
                  target_class: str | None = None, expected_ua: tuple[float, ...] | None = None,
                  seed: int = 0, minimum: int = DEFAULT_MINIMUM) -> Design:
    """Read ``raster``'s strata, size the sample and draw it; a seed numpy refuses goes first."""
    if not is_seed(seed):
        raise ConfigError(f"--seed {SEED_RULE}, got {seed}; the same seed draws the same points")
    strata = read_strata(raster)
    size = sample_size(strata, n=n, target_se=target_se, target_class=target_class,
                       expected_ua=expected_ua)
    return draw(strata, size, seed, minimum)


@dataclass(frozen=True)
class ArraySample:
    """Points drawn from an array of strata codes: flat positions and what drew them."""

    index: np.ndarray  # (n,) flat positions (reading order), by stratum then position
    stratum: np.ndarray  # (n,) stratum code of each point
    pixels: tuple[int, ...]  # N_h: the population of each stratum
    allocation: tuple[int, ...]
    minimum: int
    seed: int


def draw_array(strata: np.ndarray, num_strata: int, n: int, seed: int,
               minimum: int = DEFAULT_MINIMUM) -> ArraySample:
    """A stratified random sample of the pixels of ``strata`` with a code below ``num_strata``.

    Any other value (nodata) is outside the population. Strata are weighted by their pixels
    (an array's pixels are of one size). The allocation and the ranks are those of
    :func:`draw`, so a raster read in one block, or in strips of full rows, gives the same
    points from the same codes, ``n``, ``minimum`` and seed.
    """
    flat = np.asarray(strata).ravel()
    if num_strata < 1:
        raise ConfigError(f"a design needs at least one stratum, got {num_strata}")
    pixels = np.bincount(flat[(flat >= 0) & (flat < num_strata)].astype(np.int64),
                         minlength=num_strata)
    if pixels.sum() == 0:
        raise InputDataError("the strata array has no pixel to sample")
    alloc = allocation(n, pixels, pixels, minimum)
    ranks = draw_ranks(pixels, alloc, seed)
    index = [np.flatnonzero(flat == code)[want] for code, want in enumerate(ranks)]
    stratum = np.concatenate([np.full(i.size, code) for code, i in enumerate(index)])
    return ArraySample(np.concatenate(index), stratum, tuple(int(v) for v in pixels), alloc,
                       minimum, seed)
