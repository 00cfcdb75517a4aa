"""``isamap-map --backend local --allow-l1c`` on a top-of-atmosphere desert town.

A Level-1C scene over bright ground has no dark pixel: path radiance lifts every band's floor
(most the blue) and the ground is bright. The map refused it as "the +0.1 BOA offset was left
in ... pass --allow-implausible", an option ``isamap-map`` did not have. Now the stack's own
recipe says L1C, so its floor is not judged as an offset: the date maps, and the COGs'
``input_notes`` tag and the summary say the model (trained on L2A) was given L1C. Swapped
bands in the scenes are refused in one line naming ``--allow-implausible``, which
``isamap-map`` now has. The scenes are the project's SYNTHETIC scene, rewritten as L1C
products (top-of-atmosphere: half the contrast, +0.1 ground, path radiance 0.08 in the
blue down to 0.02 in the near infrared).
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import rasterio
from pyproj import Transformer

from cli.map import build_parser, main
from tests.support.mapping import BANDS, dataset_record
from tests.support.refusals import assert_refused
from training.modelfile import ModelMeta, save_model_file
from training.models import create_model

PATH_RADIANCE = {"B02": 800, "B03": 600, "B04": 450, "B08": 200}  # DN (reflectance x 10000)


def _as_l1c_desert(folder):
    """The scene's S2 products as L1C over bright ground (no SCL: L1C has none)."""
    for product in sorted((folder / "S2").iterdir()):
        for path in sorted(product.glob("*.tif")):
            band = path.stem.rsplit("_", 1)[1]
            with rasterio.open(path) as src:
                data, profile, tags = src.read(), src.profile, src.tags()
            path.unlink()
            if band == "SCL":
                continue
            toa = 0.5 * data + 1000 + PATH_RADIANCE.get(band, 100)
            with rasterio.open(path.with_name(path.name.replace("MSIL2A", "MSIL1C")), "w",
                               **profile) as dst:
                dst.write(np.where(data > 0, toa, 0).astype(profile["dtype"]))
                dst.update_tags(**{**tags, "PRODUCT_LEVEL": "L1C"})
        product.rename(product.with_name(product.name.replace("MSIL2A", "MSIL1C")))


def _swap_files(folder, a, b):
    """The contents of bands ``a`` and ``b`` swapped in every S2 product (names kept)."""
    for product in sorted((folder / "S2").iterdir()):
        pa, pb = (next(product.glob(f"*_{band}.tif")) for band in (a, b))
        tmp = pa.with_suffix(".swap")
        pa.rename(tmp)
        pb.rename(pa)
        tmp.rename(pb)


#: the module-scoped fixtures below are built once: their tests run on one worker
pytestmark = pytest.mark.xdist_group("inference.mapping.test_map_l1c")


@pytest.fixture(scope="module")
def town(tmp_path_factory):
    from gee_export.local.synthetic import generate_scene

    root = tmp_path_factory.mktemp("l1c")
    scene = generate_scene(root / "scene", width=96, height=96, progress=False)
    to_ll = Transformer.from_crs(scene.grid.crs, "EPSG:4326", always_xy=True)
    box = ",".join(f"{v:.6f}" for v in to_ll.transform_bounds(*scene.grid.bounds))
    kwargs = {"widths": [4, 8, 8, 16, 16]}
    record = dataset_record(scene.grid, backend="local")
    record["recipe"] = {**record["recipe"], "scene_date": "2019-06-10"}  # trained on L2A
    meta = ModelMeta("unet", len(BANDS), 2, BANDS, (0.0,) * 6, (1.0,) * 6, model_kwargs=kwargs,
                     extra={"dataset": record})
    model = save_model_file(root / "m.pt", create_model("unet", len(BANDS), 2, **kwargs), meta)
    return {"root": root, "scene": root / "scene", "box": box, "model": model}


def _map(town, scenes, out, *extra):
    return main(["--bbox", town["box"], "--months", "2019-06", "--model", str(town["model"]),
                 "--out", str(out), "--backend", "local", "--scenes", str(scenes), "--tile",
                 "64", "--overlap", "16", "--no-progress", "-q", *extra])


@pytest.mark.slow
def test_an_l1c_desert_town_maps_with_allow_l1c_and_says_so(town, tmp_path, capsys):
    scenes = tmp_path / "desert"
    shutil.copytree(town["scene"], scenes)
    _as_l1c_desert(scenes)
    assert _map(town, scenes, tmp_path / "o", "--allow-l1c") == 0
    out = capsys.readouterr().out
    summary = json.loads(out[out.rfind("\n{") + 1:])
    (cog,) = (tmp_path / "o").rglob("*_class.tif")
    with rasterio.open(cog) as ds:
        notes = json.loads(ds.tags()["input_notes"])
    assert len(notes) == 1 and notes[0].startswith("Level-1C (top-of-atmosphere) input")
    assert [d["input_notes"] for d in summary["dates"].values()] == [notes]


def test_swapped_bands_in_the_scenes_are_refused_naming_an_option_isamap_map_has(
        town, tmp_path, capsys):
    scenes = tmp_path / "swapped"
    shutil.copytree(town["scene"], scenes)
    _swap_files(scenes, "B03", "B08")
    status = _map(town, scenes, tmp_path / "o")
    assert_refused(status, capsys.readouterr().err, build_parser(), "B3 and B8 are swapped",
                   "--allow-implausible")
    assert _map(town, scenes, tmp_path / "a", "--allow-implausible") == 0
    out = capsys.readouterr().out
    summary = json.loads(out[out.rfind("\n{") + 1:])
    (notes,) = [d["input_notes"] for d in summary["dates"].values()]
    assert "B3 and B8 are swapped" in notes[0]
    (record,) = (tmp_path / "a").rglob("map.json")  # the scenes' own doubts, beside them
    (date,) = json.loads(record.read_text())["dates"].values()
    assert any("B3 and B8 are swapped" in n and "(--allow-implausible)" not in n
               for n in date["inputs"]["input_notes"]), date["inputs"]
