"""``isamap-fit`` as a new user walked it: local scenes of Level-1C or with a label raster,
several ``--input`` stacks, polygons for points, a ``--month`` the stack contradicts, ``-q``.

On a 64 px SYNTHETIC scene (real GeoTIFFs, composited by the local backend) and stacks
written with rasterio: the fit's local backend takes ``--allow-l1c`` as the export does
(its refusal advised a flag isamap-fit lacked) and never reads the scenes' label (the points
are the labels; a label of other codes was refused, with advice naming a flag isamap-fit
lacks); a refused run leaves no ``--out`` behind; an ``--input`` without the first one's
earlier months is named, with fitting's advice; a polygon, the month contradicting the
stack's tag and ``-q`` are answered as the rest of isamap answers them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio

from cli.fit import main
from gee_export.local.synthetic import generate_scene
from tests.cli.test_fit import _stack, labelled_pixels, write_points
from training.modelfile import read_model_file

BANDS = "B2,B3,B4,B8,VV,VH"


#: the module-scoped fixtures below are built once: their tests run on one worker
pytestmark = pytest.mark.xdist_group("cli.test_fit_walk")


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """A 64 px synthetic scene (its labels/label.tif holds 0/1/255) and points on it."""
    root = tmp_path_factory.mktemp("walk")
    s = generate_scene(root / "scene", width=64, height=64, fine_scale=2, progress=False)
    lon, lat, codes, _ = labelled_pixels(s.label, 100, seed=1)
    return s, write_points(root / "points.csv", lon, lat, codes)


def _local(scenes: Path, points: Path, out: Path, *extra: str) -> list[str]:
    return ["--points", str(points), "--backend", "local", "--scenes", str(scenes),
            "--month", "2019-06", "--bands", BANDS, "--block", "100", "--out", str(out),
            "--no-progress", *extra]


@pytest.mark.slow
def test_level_1c_scenes_fit_with_allow_l1c_and_a_refusal_leaves_no_out(scene, tmp_path,
                                                                        capsys):
    """The refusal advised --allow-l1c, which isamap-fit lacked (argparse: unrecognized
    arguments), and left an empty --out folder behind."""
    s, points = scene
    root = tmp_path / "scene"
    shutil.copytree(s.root, root)
    for files in s.s2_files.values():  # a B10 band: the L1C band set
        b02 = Path(str(files["B02"]).replace(str(s.root), str(root)))
        shutil.copy(b02, b02.with_name(b02.name.replace("_B02", "_B10")))
    out = tmp_path / "fit"
    assert main(_local(root, points, out, "-q")) == 2
    assert "pass --allow-l1c" in capsys.readouterr().err
    assert not out.exists()  # a refused run leaves no new folder
    nested = tmp_path / "new" / "deeper" / "fit"
    assert main(_local(root, points, nested, "-q")) == 2
    assert not (tmp_path / "new").exists()  # nor the new folders above it
    assert main(_local(root, points, out, "--allow-l1c", "-q")) == 0
    captured = capsys.readouterr()
    assert "continuing because of --allow-l1c" in captured.err
    assert "model: " in captured.out  # -q quiets the log; the result is still printed
    meta, _ = read_model_file(out / "model.pt")
    assert meta.extra["dataset"]["recipe"]["allow_l1c"] is True  # as the export records it
    stack = str(next((out / "stack").glob("*_image.tif")))
    for where in (["--input", stack], ["--backend", "ee", "--month", "2019-06"]):
        assert main(["--points", str(points), *where, "--allow-l1c", "--out",
                     str(tmp_path / "no")]) == 2
        assert "drop --allow-l1c" in capsys.readouterr().err


@pytest.mark.slow
def test_the_scenes_label_is_never_read(scene, tmp_path, capsys):
    """A label raster of other codes was refused ("state what the codes mean with
    --label-map", a flag isamap-fit lacks); without one, two warnings said none was found."""
    s, points = scene
    root = tmp_path / "scene"
    shutil.copytree(s.root, root)
    with rasterio.open(root / "labels" / "label.tif", "r+") as ds:  # Dynamic World's codes
        ds.write(np.where(ds.read(1) == 1, 7, 2).astype("uint8"), 1)
    assert main(_local(root, points, tmp_path / "a")) == 0
    assert "label" not in capsys.readouterr().err
    shutil.rmtree(root / "labels")
    assert main(_local(root, points, tmp_path / "b")) == 0
    assert "no label raster" not in capsys.readouterr().err


@pytest.mark.parametrize(("feature", "said"), [
    ({"geometry": None}, "feature 2 (id gone) has no geometry; give each feature a Point"),
    ({}, "feature 2 (id gone) has no geometry; give each feature a Point"),
    ({"geometry": {"type": "Point", "coordinates": []}},
     "feature 2 (id gone) is a Point with coordinates [], not [lon, lat]"),
])
def test_a_feature_without_a_position_is_named_without_the_polygons_advice(
        tmp_path, capsys, feature, said):
    """A null geometry was answered "is a None ... Sample points inside the polygons"."""
    stack = _stack(tmp_path / "s.tif", BANDS.split(","))
    points = tmp_path / "points.geojson"
    points.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"reference": "pervious"},
         "geometry": {"type": "Point", "coordinates": [14.55, 45.87]}},
        {"type": "Feature", "properties": {"reference": "impervious", "id": "gone"},
         **feature}]}))
    assert main(["--points", str(points), "--input", str(stack), "--out",
                 str(tmp_path / "fit")]) == 2
    err = capsys.readouterr().err
    assert said in err and "or drop" in err and len(err.strip().splitlines()) == 1
    assert "polygon" not in err.lower() and not (tmp_path / "fit").exists()
