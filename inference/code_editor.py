"""The Earth Engine Code Editor script that shows a published ISA map.

Users of the Code Editor get a ready-to-paste script: it centres the map on the asset and adds
the class map and the probability as layers with the same palettes as the quick-look PNGs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from inference.cog import BAND_IDS, CLASS_PALETTE, PROB_PALETTE


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
            "// probability is stored x250 (250 = 1.0)",
            f"Map.addLayer(image.select({json.dumps(BAND_IDS['probability'])}).divide(250), "
            f"{{min: 0, max: 1, palette: {json.dumps(list(PROB_PALETTE))}}}, "
            f"{json.dumps('ISA probability')}, false);",
        ]
    lines.append("print(image);")
    return "\n".join(lines) + "\n"
