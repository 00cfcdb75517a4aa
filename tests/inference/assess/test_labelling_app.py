"""The labelling app carries every point, one button per class, and exports the labels."""

from __future__ import annotations

import json
import re

from inference.assess.labelling_app import labelling_app_script


def test_app_has_the_points_one_button_per_class_and_both_exports():
    points = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [114.25, 30.5 + i]},
         "properties": {"id": f"p{i}", "stratum": "impervious"}} for i in range(3)]}
    classes = ("pervious", "impervious", "water")
    js = labelling_app_script(points, classes, pixel_size=10, asset_id="users/me/ref")
    embedded = json.loads(re.search(r"var pointList = (\{.*\})\.features;", js).group(1))
    assert [f["geometry"]["coordinates"] for f in embedded["features"]] == \
        [[114.25, 30.5], [114.25, 31.5], [114.25, 32.5]]
    assert all("stratum" not in f["properties"] for f in embedded["features"])  # unbiased
    assert json.loads(re.search(r"var classNames = (\[.*\]);", js).group(1)) == list(classes)
    # the class buttons are made by one loop over classNames: one button per class
    assert js.count("classNames.forEach(function(name, code)") == 1
    assert "panel.add(ui.Button({label: name" in js
    assert js.count("ui.Button(") == 5  # the class button, no data, Back, Next, Export
    assert "label(NO_DATA)" in js and "'nodata'" in js  # a point nobody can label
    assert "Export.table.toDrive" in js and "fileFormat: 'CSV'" in js
    assert "Export.table.toAsset" in js and '"users/me/ref"' in js
    # a second sitting: the app resumes from the asset's labels and replaces the asset
    assert "overwrite: true" in js and "ee.FeatureCollection(assetId)" in js
    assert "labels[pair[0]] = pair[1]" in js and "+ '_' +\n" in js  # Drive: one file a sitting
    assert "Map.setOptions('SATELLITE')" in js
    assert js.count("{") == js.count("}") and js.count("(") == js.count(")")


def test_app_is_valid_javascript(tmp_path):
    """Parsed by node when the machine has it (the Code Editor runs ES5 JavaScript)."""
    import shutil
    import subprocess

    import pytest

    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the syntax check needs it")
    points = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [1.0, 2.0]},
         "properties": {"id": "p1"}}]}
    script = tmp_path / "app.js"
    script.write_text(labelling_app_script(points, ("a", "b"), pixel_size=10))
    done = subprocess.run([node, "--check", str(script)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
