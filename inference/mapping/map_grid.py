"""The grid a region is mapped on: its projected CRS at the model's resolution.

By default the UTM zone of the region's centre (``--crs`` names another, e.g. ``EPSG:6933``
for an area over several zones); on the model's training lattice when that CRS is the
training grid's, so the map's pixels are the training pixels.
"""

from __future__ import annotations

import logging

from contract.grid import Grid, projected_crs, utm_caveat, utm_epsg
from contract.regions import Region
from core.errors import ConfigError

log = logging.getLogger(__name__)


def region_grid(region: Region, resolution: float, dataset_grid: Grid | None = None,
                crs: str | None = None) -> tuple[Grid, str | None]:
    """The map's grid in ``crs`` (default: the region's UTM zone) at ``resolution``.

    The grid sits on the dataset's pixel lattice when its CRS is the training grid's. A region
    that is where the scenes are (``region.covered``) gets the whole pixels inside it.

    Returns the grid and, when the region lies in another CRS than the training grid, a
    sentence saying so (the inputs are then composited in the map's own CRS).
    """
    if crs is None:
        caveat = utm_caveat(region.bbox)
        lon, lat = region.centroid
        if abs(lat) > 84:
            raise ConfigError(f"region {region.name!r} is centred above 84° latitude, outside "
                              f"the UTM zones: {caveat}")
        if caveat:
            log.warning("region %r: %s", region.name, caveat)
        crs = f"EPSG:{utm_epsg(lon, lat)}"
    else:
        crs = projected_crs(crs)
    lattice = dataset_grid if dataset_grid is not None and dataset_grid.crs == crs else None
    if lattice is not None:  # snapped once, onto the lattice (snapped twice, on multiples of
        # the resolution first, it could take a row or column more, or a pixel centre past
        # the scenes, where the lattice's origin is not such a multiple)
        grid = Grid.from_lonlat_bounds(region.bbox, crs, lattice.resolution, lattice.patch_size,
                                       lattice.stride, inside=region.covered,
                                       origin=(lattice.x0, lattice.y0))
    else:
        grid = Grid.from_lonlat_bounds(region.bbox, crs, resolution, inside=region.covered)
    note = None
    if dataset_grid is not None and lattice is None:
        note = (f"region {region.name!r} is mapped in {crs}, not the model's training CRS "
                f"{dataset_grid.crs}; its inputs are composited and mapped in {crs} at "
                f"{resolution:g} m (the recipe does not depend on the CRS)")
    return grid, note

