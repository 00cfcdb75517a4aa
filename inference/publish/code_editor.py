"""The Earth Engine Code Editor script that shows a published ISA map.

Users of the Code Editor get a ready-to-paste script: it centres the map on the asset and adds
the class map and the probability as layers with the same palettes as the quick-look PNGs. A
published series (an ImageCollection) gets a small app instead (:func:`series_app_script`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from inference.cog.maps import BAND_IDS, CHANGE_PALETTE, CLASS_PALETTE, PROB_PALETTE, PROB_SCALE


def code_editor_script(asset_id: str, bands: Sequence[str] = tuple(BAND_IDS.values())[:2], *,
                       classes: Sequence[str] = ("pervious", "impervious"),
                       title: str = "isamap ISA map", zoom: int = 11) -> str:
    """JavaScript for https://code.earthengine.google.com showing ``bands`` of ``asset_id``."""
    lines = [
        f"// {title}",
        f"// asset: {asset_id}  bands: {', '.join(bands)}",
        f"var image = ee.Image({json.dumps(asset_id)});",
        f"Map.centerObject(image, {zoom});",
    ]
    if BAND_IDS["class"] in bands:
        palette = list(CLASS_PALETTE[:len(classes)])
        legend = ", ".join(f"{i} {name}" for i, name in enumerate(classes))
        lines += [
            f"// classes: {legend}",
            f"Map.addLayer(image.select({json.dumps(BAND_IDS['class'])}), "
            f"{{min: 0, max: {len(classes) - 1}, palette: {json.dumps(palette)}}}, "
            f"{json.dumps('ISA class')});",
        ]
    if BAND_IDS["probability"] in bands:
        lines += [
            f"// probability is stored x{PROB_SCALE} ({PROB_SCALE} = 1.0)",
            f"Map.addLayer(image.select({json.dumps(BAND_IDS['probability'])})"
            f".divide({PROB_SCALE}), "
            f"{{min: 0, max: 1, palette: {json.dumps(list(PROB_PALETTE))}}}, "
            f"{json.dumps('ISA probability')}, false);",
        ]
    lines.append("print(image);")
    return "\n".join(lines) + "\n"


def series_app_script(collection_id: str, months: Sequence[str], *,
                      classes: Sequence[str] = ("pervious", "impervious"), isa_class: int = 1,
                      zones: dict | None = None, scale: float = 10.0,
                      title: str = "isamap ISA series",
                      areas: Mapping[str, Sequence[tuple[str, float]]] | None = None) -> str:
    """A small Code Editor app over a published ISA series (an ImageCollection).

    A date slider picks the image (by its ``system:time_start``); the class and probability
    layers get a legend; the change layer compares the date with the one before it (0 stable
    pervious, 1 stable impervious, 2 gain, 3 loss, as the change COGs); clicking the map charts
    ISA km² over time for the clicked point's zone.

    Args:
        collection_id: the ImageCollection's asset name.
        months: its dates, ``YYYY-MM``, in order.
        classes: class names of the class band, for the legend.
        isa_class: the class counted as impervious.
        zones: a FeatureCollection in EPSG:4326 with a ``name`` per feature (what
            ``ee.FeatureCollection`` accepts; a bare Feature or projected coordinates are not).
        areas: ISA km² per zone name, ``[(month, km2), ...]``, as the map series computed
            them (``"all"``: the whole region). The chart draws them in the browser, so a
            zone of any size charts at once; a zone without them is reduced on the server
            with an explicit ``maxPixels`` and ``tileScale`` (``ui.Chart.image.series``
            cannot raise its 1e7-pixel default, which a 1,000 km² zone at 10 m exceeds).
        scale: the maps' pixel size in metres (the server-side reduction's scale).
        title: the app's title.
    """
    palette = list(CLASS_PALETTE[:len(classes)])
    change_names = ["stable pervious", "stable impervious", "gain", "loss"]
    zone_js = (f"ee.FeatureCollection({json.dumps(zones, separators=(',', ':'))})"
               if zones is not None
               else "null")
    header = f"""// {title}
// ImageCollection {collection_id}: one image per date, bands {BAND_IDS['class']} and
// {BAND_IDS['probability']} (x{PROB_SCALE}); paste into https://code.earthengine.google.com
// and Run.
var collection = ee.ImageCollection({json.dumps(collection_id)});
var months = {json.dumps(list(months))};
var classNames = {json.dumps(list(classes))};
var classPalette = {json.dumps(palette)};
var probPalette = {json.dumps(list(PROB_PALETTE))};
var changeNames = {json.dumps(change_names)};
var changePalette = {json.dumps(list(CHANGE_PALETTE))};
var isaClass = {isa_class};
var zones = {zone_js};

"""
    return (header + _SERIES_LAYERS + _series_legend(title)
            + _series_chart(areas or {}, scale) + _SERIES_START)


_SERIES_LAYERS = f"""function imageAt(i) {{
  var start = ee.Date(months[i] + '-01');
  return ee.Image(collection.filterDate(start, start.advance(1, 'month')).first());
}}

function changeBetween(a, b) {{
  var isaA = a.select('{BAND_IDS['class']}').eq(isaClass);
  var isaB = b.select('{BAND_IDS['class']}').eq(isaClass);
  return ee.Image(0).where(isaA.and(isaB), 1).where(isaA.not().and(isaB), 2)
      .where(isaA.and(isaB.not()), 3).updateMask(a.mask().and(b.mask()).reduce('min'))
      .rename('{BAND_IDS['change']}');
}}

function show(i) {{
  var image = imageAt(i);
  Map.layers().reset();
  Map.addLayer(image.select('{BAND_IDS['class']}'),
               {{min: 0, max: classNames.length - 1, palette: classPalette}},
               'ISA class ' + months[i]);
  Map.addLayer(image.select('{BAND_IDS['probability']}').divide({PROB_SCALE}),
               {{min: 0, max: 1, palette: probPalette}}, 'ISA probability ' + months[i], false);
  if (i > 0) {{
    Map.addLayer(changeBetween(imageAt(i - 1), image), {{min: 0, max: 3, palette: changePalette}},
                 'ISA change ' + months[i - 1] + ' -> ' + months[i], false);
  }}
  dateLabel.setValue('Date: ' + months[i]);
}}

"""
"""The app's layers of one date: its class, its probability and its change from the last."""


def _series_legend(title: str) -> str:
    """The legend (classes, probability ramp, change codes) and the date slider."""
    return f"""// Legend: classes, probability ramp, change codes.
var legend = ui.Panel({{style: {{position: 'bottom-left', padding: '6px'}}}});
legend.add(ui.Label('{title}', {{fontWeight: 'bold'}}));
function legendRow(color, name) {{
  return ui.Panel([ui.Label('', {{backgroundColor: '#' + color, padding: '8px', margin: '2px'}}),
                   ui.Label(name, {{margin: '4px'}})], ui.Panel.Layout.Flow('horizontal'));
}}
classNames.forEach(function(name, k) {{ legend.add(legendRow(classPalette[k], name)); }});
legend.add(legendRow(probPalette[0], 'probability 0'));
legend.add(legendRow(probPalette[probPalette.length - 1], 'probability 1'));
changeNames.forEach(function(name, k) {{
  legend.add(legendRow(changePalette[k], 'change: ' + name));
}});

// Date slider.
var dateLabel = ui.Label('');
var slider = ui.Slider({{min: 0, max: months.length - 1, step: 1, value: months.length - 1,
                         style: {{stretch: 'horizontal'}}, onChange: show}});
var controls = ui.Panel([dateLabel, slider], null, {{position: 'top-center', width: '320px'}});

"""


def _series_chart(areas: Mapping[str, Sequence[tuple[str, float]]], scale: float) -> str:
    """The chart of ISA km² over time of the clicked zone: the series' areas, or the server's."""
    areas_js = json.dumps({str(z): [[m, round(float(v), 6)] for m, v in rows]
                           for z, rows in areas.items()})
    return f"""// Chart of ISA km² over time for the clicked point's zone: the areas the map series
// computed, drawn here; a zone without them is reduced on the server with explicit limits.
var zoneAreas = {areas_js};
var chartPanel = ui.Panel(null, null, {{position: 'bottom-right', width: '380px'}});
var chartOptions = {{title: 'ISA km² over time', vAxis: {{title: 'km²'}}, lineWidth: 2,
                     pointSize: 4}};
function chartRows(name, rows) {{
  var table = [[{{label: 'date', type: 'date'}}, {{label: 'ISA km²', type: 'number'}}]];
  rows.forEach(function(row) {{
    var ymd = row[0].split('-');
    table.push([new Date(Number(ymd[0]), Number(ymd[1]) - 1, 1), row[1]]);
  }});
  chartOptions.title = 'ISA km² over time: ' + name;
  chartPanel.widgets().reset([ui.Chart(table, 'LineChart', chartOptions)]);
}}
function chartServer(name, region) {{
  var series = collection.map(function(img) {{
    var km2 = img.select('{BAND_IDS['class']}').eq(isaClass).multiply(ee.Image.pixelArea())
        .divide(1e6).reduceRegion({{reducer: ee.Reducer.sum(), geometry: region,
                                   scale: {scale:g}, maxPixels: 1e13, tileScale: 4}});
    return ee.Feature(null, {{date: img.date().format('YYYY-MM'),
                              km2: km2.values().get(0)}});
  }});
  series.evaluate(function(fc) {{
    chartRows(name, fc.features.map(function(f) {{
      return [f.properties.date, f.properties.km2];
    }}));
  }});
}}
Map.onClick(function(coords) {{
  var point = ee.Geometry.Point([coords.lon, coords.lat]);
  if (!zones) {{
    if (zoneAreas.all) {{ chartRows('whole region', zoneAreas.all); }}
    else {{ chartServer('1 km around the click', point.buffer(1000)); }}
    return;
  }}
  zones.filterBounds(point).limit(1).evaluate(function(fc) {{
    if (!fc || fc.features.length === 0) {{
      chartPanel.widgets().reset([ui.Label('No zone here.')]);
      return;
    }}
    var name = String(fc.features[0].properties.name);
    if (zoneAreas[name]) {{ chartRows(name, zoneAreas[name]); }}
    else {{ chartServer(name, ee.Feature(zones.filterBounds(point).first()).geometry()); }}
  }});
}});

"""


_SERIES_START = """Map.add(legend);
Map.add(controls);
Map.add(chartPanel);
Map.centerObject(imageAt(months.length - 1), 10);
show(months.length - 1);
"""
