"""Label rasters onto the grid: class mapping to 0/1/255, then nearest or mode, once.

Classes are mapped in the source's own pixels *before* resampling, so a 10 m grid cell
covering several fine source pixels takes the majority of impervious / pervious (mode),
not the majority of some fine class that happens to dominate. Coarser or equal sources are
put on the grid with nearest neighbour (mode of one pixel is that pixel). The fine label of
the super-resolution model is the same operation onto ``grid.scaled(k)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from gee_export.contract.bands import LABEL_NODATA
from gee_export.contract.grid import Grid, Window
from gee_export.core.errors import ConfigError
from gee_export.local import plausibility
from gee_export.local.scenes import BandRef
from gee_export.local.warp import read_to_grid, source_resolution


@dataclass(frozen=True)
class ClassMapping:
    """Source class value -> stack class (0 pervious, 1 impervious, 255 nodata).

    ``mapping`` lists explicit values; every other valid value becomes ``default`` (None keeps
    it unchanged, for labels that are already 0/1/255). Source nodata is always 255.
    """

    mapping: tuple[tuple[int, int], ...] = field(default=())
    default: int | None = None

    @classmethod
    def from_dict(cls, mapping: Mapping[int, int], default: int | None = 0) -> ClassMapping:
        bad = [v for v in mapping.values() if v not in (0, 1, LABEL_NODATA)]
        if bad or (default is not None and default not in (0, 1, LABEL_NODATA)):
            raise ConfigError(f"label classes must map to 0, 1 or {LABEL_NODATA}, got {bad}")
        return cls(tuple(sorted((int(k), int(v)) for k, v in mapping.items())), default)

    def apply(self, values: np.ndarray) -> np.ndarray:
        """Map an integer array; LABEL_NODATA stays nodata, negatives become nodata."""
        values = np.asarray(values)
        out = values.copy() if self.default is None else np.full(values.shape, self.default)
        for src, dst in self.mapping:
            out[values == src] = dst
        out[(values == LABEL_NODATA) | (values < 0)] = LABEL_NODATA
        if self.default is None:
            out[(out != 0) & (out != 1)] = LABEL_NODATA
        return out.astype(np.int32)


# Presets for common label products (the scheme name is recorded in the manifest).
SCHEMES: dict[str, ClassMapping] = {
    "binary": ClassMapping(),  # already 0 pervious / 1 impervious / 255 nodata
    "worldcover": ClassMapping.from_dict({50: 1, 0: LABEL_NODATA}),  # ESA WorldCover 50 built-up
    "dynamic_world": ClassMapping.from_dict({6: 1}),  # Dynamic World label 6 = built
    "eolearn_lulc": ClassMapping.from_dict({8: 1, 0: LABEL_NODATA}),  # 8 artificial surface
}
# The codes each preset's product defines (nodata 255 aside): a label holding other codes was
# made with another scheme, and mapping it would silently turn it into nodata or "pervious".
SCHEME_CODES: dict[str, frozenset[int]] = {
    "binary": frozenset({0, 1}),
    "worldcover": frozenset({0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 100}),
    "dynamic_world": frozenset(range(9)),
    "eolearn_lulc": frozenset(range(11)),
}


def get_scheme(scheme: str | ClassMapping | Mapping[int, int] | None) -> ClassMapping:
    """A ClassMapping from a preset name, a dict or None (= ``binary``)."""
    if scheme is None:
        return SCHEMES["binary"]
    if isinstance(scheme, ClassMapping):
        return scheme
    if isinstance(scheme, str):
        try:
            return SCHEMES[scheme]
        except KeyError:
            raise ConfigError(f"unknown label scheme {scheme!r}; known: {', '.join(SCHEMES)} "
                              "(--label-scheme; in Python also a {source value: 0|1|255} "
                              "dict)") from None
    return ClassMapping.from_dict(scheme)


def check_codes(ref: BandRef, scheme: str | ClassMapping | Mapping[int, int] | None) -> None:
    """Refuse a label whose codes (a decimated sample) the declared preset does not define.

    Custom mappings (a dict or ClassMapping) are the user's own statement and not checked.
    """
    name = "binary" if scheme is None else scheme
    if not isinstance(name, str):
        return
    plausibility.check_label_codes(plausibility.read_sample(ref), name, SCHEME_CODES,
                                   f"label {ref.path}")


def label_window(ref: BandRef, grid: Grid, window: Window, mapping: ClassMapping,
                 resampling: str | None = None) -> np.ndarray:
    """The mapped label on ``window`` of ``grid`` as uint8 (255 = nodata).

    ``resampling`` None picks mode when the source is finer than the grid, else nearest.
    """
    if resampling is None:
        resampling = "mode" if source_resolution(ref, grid) < 0.75 * grid.resolution else "nearest"
    if resampling not in ("nearest", "mode"):
        raise ConfigError(f"labels are categorical: use nearest or mode, not {resampling!r}")
    out = read_to_grid(ref, grid, window, resampling, prepare=mapping.apply,
                       categorical_nodata=LABEL_NODATA)
    return out.astype(np.uint8)
