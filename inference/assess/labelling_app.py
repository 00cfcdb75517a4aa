"""The Code Editor app that walks a sample's points over the satellite basemap for labelling.

Paste it into https://code.earthengine.google.com and Run: the map shows one point at a time
(its pixel outlined) on high-resolution imagery; one button per class records the interpreter's
answer and moves on, and "no data" records a point that cannot be labelled (cloud, a gap in
the imagery) as ``nodata``; Back and Next walk the points; Export starts a task that writes
the labelled points (``id``, ``lon``, ``lat``, ``strata_id``, ``design_id``, ``reference``,
``reference_code``: -1 not labelled, -2 no data) as a FeatureCollection: to Drive as a CSV
named after the sitting's start, and to a table asset when one is named. ``isamap-assess
score`` reads that CSV as it is, with or without ``--design``; its ``strata_id`` (the digest
of the strata that drew the sample, the same on every point) tells the scorer which strata
weight the points wherever the file is, and its ``design_id`` which design's points they are.
Labelling may take several sittings: the app starts by reading the labels already in that
asset and exports with ``overwrite: true``, so each sitting's export holds every label so far
and replaces the last. The points carry only their ids and positions (and the two digests),
in the design's random order: the map's class of a point is not shown, so the interpreter is
not led by it; the points travel inside the script (no upload needed). A point carries one id,
its own: the two digests are the same on every point of a sample, so the script holds them once
and the export sets them on every row (a 6,000-point app is 1.5 MB, not 2.2).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from inference.cog.maps import CLASS_PALETTE


def labelling_app_script(points: dict, classes: Sequence[str], *, pixel_size: float,
                         asset_id: str | None = None) -> str:
    """JavaScript of the labelling app for ``points`` (a GeoJSON FeatureCollection with ids).

    Each point keeps its id; the sample's ``strata_id`` and ``design_id``, where its file has
    them, are held once and written by the export beside every label (the file then tells the
    scorer the strata that drew it and which design's points they are).

    Raises:
        ValueError: points of one sample whose ``strata_id`` or ``design_id`` differ.
    """
    features = points["features"]
    compact = {"type": "FeatureCollection",
               "features": [{"type": "Feature", "geometry": f["geometry"],
                             "properties": {"id": f["properties"]["id"]}} for f in features]}
    shared = {key: _shared(features, key) for key in ("strata_id", "design_id")}
    palette = [f"#{CLASS_PALETTE[i % len(CLASS_PALETTE)]}" for i in range(len(classes))]
    header = f"""// isamap reference labelling
// {len(compact['features'])} points; one button per class; Export writes the labels.
// Paste into https://code.earthengine.google.com and Run.
var points = ee.FeatureCollection({json.dumps(compact)});
var pointList = {json.dumps(compact)}.features;
var classNames = {json.dumps(list(classes))};
var classColors = {json.dumps(palette)};
var pixelSize = {pixel_size:g};  // metres: the map's pixel, outlined around each point
var assetId = {json.dumps(asset_id)};  // a table asset to export to (null: Drive only)
var sampleIds = {json.dumps({k: v for k, v in shared.items() if v})};  // every point's: on each row
var NO_DATA = -2;  // the code of a point that cannot be labelled (exported as 'nodata')
var labels = {{}};
var current = 0;
var sitting = new Date().toISOString().slice(0, 16).replace(/[^0-9]/g, '');

"""
    return header + _APP_WALK + _app_export() + _app_panel()


def _shared(features: Sequence[dict], key: str) -> str | None:
    """The ``key`` every point of a sample carries (a digest of its design), None if none does."""
    values = {f["properties"].get(key) or None for f in features}
    if len(values) > 1:
        raise ValueError(f"the points carry {len(values)} different {key}s: one sample's "
                         "points share theirs")
    return values.pop() if values else None


_APP_WALK = """Map.setOptions('SATELLITE');
var status = ui.Label('');
var answer = ui.Label('');

function pixelOutline(feature) {
  var point = ee.Geometry.Point(feature.geometry.coordinates);
  return point.buffer(pixelSize / 2).bounds();
}

function show(i) {
  current = Math.max(0, Math.min(pointList.length - 1, i));
  var feature = pointList[current];
  var id = feature.properties.id;
  Map.layers().reset();
  Map.addLayer(ee.FeatureCollection([ee.Feature(pixelOutline(feature))]).style(
      {color: 'ffff00', fillColor: '00000000', width: 2}), {}, 'pixel ' + id);
  Map.setCenter(feature.geometry.coordinates[0], feature.geometry.coordinates[1], 19);
  var done = Object.keys(labels).length;
  status.setValue('Point ' + (current + 1) + ' of ' + pointList.length + ' (' + id + '), ' +
                  done + ' labelled');
  answer.setValue(labels[id] === undefined ? 'not labelled' : 'labelled: ' +
                  (labels[id] === NO_DATA ? 'no data' : classNames[labels[id]]));
}

function label(code) {
  labels[pointList[current].properties.id] = code;
  show(current + 1);
}

function labelledCollection() {
  return points.map(function(f) {
    var code = ee.Number(ee.Dictionary(labels).get(f.get('id'), -1));
    var xy = f.geometry().coordinates();
    return f.set(sampleIds).set({reference_code: code, lon: xy.get(0), lat: xy.get(1),
                  reference: ee.Algorithms.If(code.gte(0), ee.List(classNames).get(code),
                                              ee.Algorithms.If(code.eq(NO_DATA), 'nodata',
                                                               ''))});
  });
}

"""
"""The map of one point at a time, and the labels recorded as the buttons are pressed."""


def _app_export() -> str:
    """The export of every label so far: to Drive, and to the table asset when named."""
    return """function exportLabels() {
  var table = labelledCollection();
  Export.table.toDrive({collection: table, description: "isamap_reference" + '_' +
                        sitting, fileFormat: 'CSV',
                        selectors: ['id', 'lon', 'lat', 'strata_id', 'design_id',
                                   'reference', 'reference_code']});
  if (assetId) {  // every label so far: it replaces the previous sitting's asset
    Export.table.toAsset({collection: table, description: "isamap_reference_asset",
                          assetId: assetId, overwrite: true});
  }
  print('Export tasks created: run them from the Tasks tab.',
        Object.keys(labels).length + ' of ' + pointList.length + ' points labelled');
}

"""


def _app_panel() -> str:
    """The panel of buttons, and a later sitting resumed from the asset's labels."""
    return """var panel = ui.Panel({style: {position: 'top-left', width: '260px'}});
panel.add(ui.Label("isamap reference labelling", {fontWeight: 'bold'}));
panel.add(status);
panel.add(answer);
classNames.forEach(function(name, code) {
  panel.add(ui.Button({label: name, style: {color: classColors[code], stretch: 'horizontal'},
                       onClick: function() { label(code); }}));
});
panel.add(ui.Button({label: 'no data (cloud, gap)', style: {stretch: 'horizontal'},
                     onClick: function() { label(NO_DATA); }}));
panel.add(ui.Panel([ui.Button('Back', function() { show(current - 1); }),
                    ui.Button('Next', function() { show(current + 1); })],
                   ui.Panel.Layout.Flow('horizontal')));
panel.add(ui.Button('Export labels', exportLabels));
Map.add(panel);
show(0);
if (assetId) {  // a later sitting: resume from the labels the last one exported
  ee.FeatureCollection(assetId).filter(ee.Filter.neq('reference_code', -1))
      .reduceColumns(ee.Reducer.toList(2), ['id', 'reference_code'])
      .evaluate(function(result, error) {
        if (error || !result) { return; }  // the first sitting: no asset yet
        result.list.forEach(function(pair) { labels[pair[0]] = pair[1]; });
        show(current);
      });
}
"""
