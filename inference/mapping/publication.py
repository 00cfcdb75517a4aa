"""What ``isamap-map --publish`` publishes: the series as an ImageCollection, and its app.

Settled before anything is mapped (:func:`series_target`): the collection's name
``<publish>/isa_<region>`` (refused at once when Earth Engine would refuse it), every date's
image properties (model, bands, classes, month, code version, recipe, metrics) and the zones the
app embeds (in EPSG:4326, a name each, made to fit the app's requests:
:mod:`inference.publish.app_zones`). Once the dates are mapped, :meth:`SeriesTarget.request`
adds their COGs and the areas the series computed, and
:func:`inference.publish.collection.publish_series` publishes it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from contract.grid import Grid
from contract.publishing import PublishOptions
from core.version import code_version
from inference.mapping.request import MapExtent, MapOutputs, MapPublication, ModelDataset
from inference.mapping.series import SeriesOutputs
from inference.predict import stats
from inference.publish.app_zones import AppZones, app_zones
from inference.publish.asset_manifest import asset_name, check_asset_name
from inference.publish.collection import SeriesRequest
from inference.publish.properties import asset_properties
from training.modelfile import ModelMeta


@dataclass(frozen=True)
class SeriesTarget:
    """The collection a map series goes into, settled before the first date is mapped."""

    collection: str
    properties: Mapping[str, Mapping[str, Any]]  # month -> the image's properties
    options: PublishOptions
    classes: tuple[str, ...]
    isa_class: int
    zones: AppZones | None  # None: no --zones (the app charts the whole region)
    scale: float

    def request(self, cogs: Mapping[str, tuple[str, str]],
                series: SeriesOutputs | None = None) -> SeriesRequest:
        """The publication of ``cogs`` (month -> class and probability COGs).

        ``series``: the mapped series, whose per-zone areas the app charts (None: a dry run,
        whose app reduces the zones on the server).
        """
        areas: dict[str, list[tuple[str, float]]] = {}
        for row in series.area_rows if series else ():
            areas.setdefault(row.zone, []).append((row.date, row.isa_km2))
        return SeriesRequest(self.collection, cogs, self.properties, self.options,
                             classes=self.classes, isa_class=self.isa_class,
                             zones=self.zones.zones if self.zones else None, scale=self.scale,
                             areas=areas or None)


def map_recipe(dataset: ModelDataset) -> dict[str, Any]:
    """The recipe the maps record (STAC, asset properties): the dataset's, without months.

    What is the training month's own (``per_month``, the scene dates ``s1_dates`` and
    ``s2_dates``) is left out: a map of another date listed them beside its own inputs.
    """
    return {k: v for k, v in dict(dataset.recipe).items()
            if k != "per_month" and not k.endswith("_dates")}


def series_target(publication: MapPublication, extent: MapExtent, outputs: MapOutputs,
                  meta: ModelMeta, dataset: ModelDataset, grid: Grid,
                  isa_class: int) -> SeriesTarget:
    """Where and what ``publication`` publishes of the maps of ``extent``, checked.

    ``outputs``: the map's zones, which the app embeds.
    """
    embedded = app_zones(zones_geojson(outputs.zones, outputs.zones_name))
    collection = check_asset_name(asset_name(
        f"{publication.parent.rstrip('/')}/isa_{extent.region.name}",
        publication.options.project), "the collection")
    classes = tuple(meta.class_names)
    properties = {m: asset_properties(model=meta.name, bands=meta.bands, classes=classes,
                                      month=m, code_version=code_version(),
                                      recipe=map_recipe(dataset), metrics=dict(meta.metrics))
                  for m in extent.dates}
    return SeriesTarget(collection, properties, publication.options, classes, isa_class,
                        embedded, grid.resolution)


def zones_geojson(zones: str | None, name_field: str | None = None) -> dict | None:
    """The zones as the app embeds them: a FeatureCollection in EPSG:4326, a name each.

    Reprojected from whatever CRS the file names (Earth Engine reads GeoJSON coordinates as
    longitude/latitude) and always a collection (``ee.FeatureCollection`` refuses a Feature).
    """
    if zones is None:
        return None
    return {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"name": zone.name}, "geometry": zone.geometry}
        for zone in stats.load_zones(zones, "EPSG:4326", name_field)]}
