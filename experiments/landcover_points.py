"""The land-cover experiment's maps scored on a stratified random sample of points.

The papers judge a map and the products it competes with on the same reference points
(``isamap-assess``, docs/accuracy.md), not on every pixel. Here the 1 m land cover is the
reference at every point, so the points can be scored beside the pixels: the difference
between the two figures is the sampling error of a design of a few hundred points.

One design per setting, shared by the setting's models and products so their estimates are
paired: the strata are the classes of the setting's coarse product (NLCD; the confusion product
on the NAIP tiles) on the held-out pixels that are scored, and the points are drawn by
:func:`inference.assess.design.draw_array` (at least ``per_stratum`` points per stratum, or all
its pixels, ``per_stratum`` x strata in all, the rest in proportion to the strata's pixels;
a fixed seed). Every map is estimated by :func:`inference.assess.estimators.stratified_estimates`:
for the product the strata are its own classes (Olofsson et al. 2014), for a model the general
form (Stehman 2014), in which the strata need not be the map's classes, so both estimates are
unbiased on the same points. A stratum of a single pixel is left out of the population (it
cannot give a variance); the design records how many pixels that leaves out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from contract.label_schemes import LANDCOVER_CLASSES
from core.errors import ConfigError
from inference.assess.design import ArraySample, draw_array
from inference.assess.estimators import AreaAccuracy, stratified_estimates

K = len(LANDCOVER_CLASSES)


class HeldOut(Protocol):
    """What the design reads of a scene (``experiments.landcover.Scene``)."""

    truth: np.ndarray
    products: dict

    @property
    def scored(self) -> np.ndarray: ...


def scored_values(scenes: Sequence[HeldOut], maps: Sequence[np.ndarray]) -> np.ndarray:
    """The maps' values on the scenes' scored pixels, scene after scene in reading order."""
    return np.concatenate([np.asarray(m)[s.scored] for s, m in zip(scenes, maps, strict=True)])


@dataclass(frozen=True)
class PointSample:
    """A setting's points: where they are among its scored pixels, and their reference class."""

    product: str  # the product whose classes are the strata
    sample: ArraySample
    reference: np.ndarray  # the 1 m land cover at each point
    left_out: int  # pixels of single-pixel strata, outside the population

    @property
    def n(self) -> int:
        return int(self.sample.index.size)

    def values(self, scenes: Sequence[HeldOut], maps: Sequence[np.ndarray]) -> np.ndarray:
        """A map's classes at the points (``maps``: one per scene, as the scenes)."""
        return scored_values(scenes, maps)[self.sample.index].astype(np.int64)

    def estimate(self, predicted: Sequence[int] | np.ndarray) -> AreaAccuracy:
        """OA, UA, PA, F1 of a map from its classes at the points, with 95 % intervals."""
        predicted = np.asarray(predicted, dtype=np.int64)
        if predicted.shape != (self.n,):
            raise ConfigError(f"{predicted.size} map values for a design of {self.n} points: "
                              "the map was read at other points (a run record from other "
                              "data?); remove the output folder's runs/ and run again")
        return stratified_estimates(self.sample.stratum, self.sample.pixels, predicted,
                                    self.reference, LANDCOVER_CLASSES)

    def record(self) -> dict:
        """The design as JSON: enough to say how the points were drawn."""
        s = self.sample
        return {"strata": self.product, "n": self.n, "seed": s.seed,
                "minimum_per_stratum": s.minimum,
                "stratum_pixels": {c: p for c, p in zip(LANDCOVER_CLASSES, s.pixels,
                                                        strict=True) if p},
                "allocation": {c: a for c, a in zip(LANDCOVER_CLASSES, s.allocation,
                                                    strict=True) if a},
                "left_out_pixels": self.left_out,
                "design": "stratified random sampling of the held-out pixels, strata = the "
                          "product's classes (Olofsson et al. 2014)"}


def draw_points(scenes: Sequence[HeldOut], product: str, per_stratum: int,
                seed: int) -> PointSample:
    """The setting's design (module docstring): strata from ``product`` on the scored pixels."""
    if per_stratum < 2:
        raise ConfigError(f"points per stratum must be at least 2 (a variance), got "
                          f"{per_stratum}")
    strata = scored_values(scenes, [s.products[product] for s in scenes]).astype(np.int64)
    counts = np.bincount(strata[strata < K], minlength=K)
    single = counts[np.minimum(strata, K - 1)] == 1
    strata = np.where(single, -1, strata)
    sample = draw_array(strata, K, per_stratum * int((counts >= 2).sum()), seed, per_stratum)
    reference = scored_values(scenes, [s.truth for s in scenes])[sample.index]
    return PointSample(product, sample, reference.astype(np.int64), int(single.sum()))


def estimates(points: PointSample, scenes: Sequence[HeldOut],
              products: Sequence[str], arms: Mapping[str, Sequence[Sequence[int]]]
              ) -> tuple[dict[str, AreaAccuracy], dict[str, list[AreaAccuracy]]]:
    """Every product's estimate and every arm's per-seed estimates on the same points.

    ``arms``: per arm, one sequence of classes at the points per seed (what a run records).
    """
    prods = {p: points.estimate(points.values(scenes, [s.products[p] for s in scenes]))
             for p in products}
    return prods, {a: [points.estimate(v) for v in seeds] for a, seeds in arms.items()}
