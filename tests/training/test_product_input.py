"""The coarse product as an input band, end to end on the local backend with real GeoTIFFs.

A synthetic scene whose label raster holds NLCD codes on 30 m cells is exported with the
``product`` band (``isamap-export --bands ...,product --labels landcover:nlcd``), trained with
``hrnet-coarse`` (the paper's recipe, its noisy-sample filter, the product as input) and its
stack predicted (``isamap-predict``) and its scenes mapped (``isamap-map --backend local``).
The network's first convolution sees the bands and then exactly the product
channels of the experiment (``experiments.chesapeake_nlcd.product_channels``) on the same
codes; everything that cannot work is refused with one line before any work.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
import torch

from contract.label_schemes import SCHEMES
from experiments.chesapeake_nlcd import ChesapeakePatch, merge_into_fine_classes, product_channels
from tests.support.nlcd import CODES, nlcd_scene

# the exported datasets (the module fixture) are made once, on one worker
pytestmark = pytest.mark.xdist_group("product_input")

SMALL = json.dumps({"width": 4, "stem_width": 8, "stage1_width": 8, "modules": [1, 1, 1],
                    "blocks": 1})


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A scene with a 30 m NLCD label, exported with and without the product band."""
    from cli.export import main

    tmp = tmp_path_factory.mktemp("product")
    scene, cells = nlcd_scene(tmp / "scene")
    root = tmp / "ds"
    common = ["--backend", "local", "--scenes", str(scene.root), "--months", "2019-06",
              "--patch-size", "32", "--stride", "32", "--split-block", "1", "--seed", "1",
              "--min-valid-fraction", "0", "--no-progress", "-q"]
    assert main([*common, "--labels", "landcover:nlcd", "--bands", "B2,B3,B4,B8,product",
                 "--out", str(root)]) == 0
    plain = tmp / "plain"
    assert main([*common, "--labels", "landcover:nlcd", "--bands", "B2,B3,B4,B8",
                 "--out", str(plain)]) == 0
    return root, plain, cells, tmp


def scene_label(tmp):
    """The scene's label raster: the NLCD codes the stack's product band was read from."""
    (label,) = [p for p in (tmp / "scene").rglob("*.tif") if "label" in p.name]
    return label


def _bbox(root) -> str:
    """The dataset's grid as ``--bbox`` in degrees."""
    from pyproj import Transformer

    from contract.grid import Grid

    grid = Grid.from_dict(json.loads((root / "manifest.json").read_text())["grid"])
    to_ll = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True)
    return ",".join(f"{v:.6f}" for v in to_ll.transform_bounds(*grid.bounds))


@pytest.mark.slow
def test_the_stack_holds_the_label_sources_own_codes_nearest_upsampled(exported):
    root, _, cells, _ = exported
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["bands"] == ["B2", "B3", "B4", "B8", "product"]
    (stack,) = (root / "stacks").glob("stack_*_image.tif")
    with rasterio.open(stack) as src:
        assert src.descriptions[-1] == "product"
        product = src.read(5)
    expected = np.kron(cells, np.ones((3, 3), np.uint8))[:96, :96]
    np.testing.assert_array_equal(product, expected.astype(np.float32))


@pytest.mark.slow
def test_hrnet_coarse_reads_the_product_as_the_experiments_channels_and_predicts(exported,
                                                                                 capsys):
    from cli.map import main as map_main
    from cli.predict import predict_main as predict
    from cli.train import train_main as train
    from training.data import NormStats, PatchDataset
    from training.modelfile import load_model_file

    root, _, _, tmp = exported
    run = tmp / "run"
    assert train(["--data", str(root), "--out", str(run), "--model", "hrnet-coarse",
                  "--model-kwargs", SMALL, "--max-iterations", "1", "--batch-size", "2",
                  "--workers", "0", "--no-progress", "--device", "cpu", "-q",
                  "--filter-noisy", "0.01"]) == 0  # one step learns too little for 20 %
    assert (run / "noisy_patches.json").exists()
    model, meta = load_model_file(run / "model.pt", flag="model file")
    assert meta.model_kwargs["product_scheme"] == "nlcd"
    assert (meta.norm_mean[-1], meta.norm_std[-1]) == (0.0, 1.0)  # codes reach the network
    data = PatchDataset(root, "train", meta.bands,
                        NormStats(tuple(meta.bands), tuple(meta.norm_mean), tuple(meta.norm_std)),
                        None)
    item = data[0]
    seen = []
    model.stem.conv1.register_forward_pre_hook(lambda _, args: seen.append(args[0]))
    with torch.no_grad():
        model.eval()(item["image"][None])
    codes = data.read_raw(0)[0][-1].astype(np.int64)
    nlcd = SCHEMES["nlcd"].apply(codes)
    patch = ChesapeakePatch("p", np.zeros((4, 32, 32)), nlcd,
                            merge_into_fine_classes(nlcd), codes.astype(np.uint8))
    np.testing.assert_array_equal(seen[0][0, 4:].numpy(), product_channels(patch))
    np.testing.assert_array_equal(seen[0][0, :4].numpy(), item["image"][:4].numpy())

    (stack,) = (root / "stacks").glob("stack_*_image.tif")
    out = tmp / "map"
    assert predict(["--model", str(run / "model.pt"), "--input", str(stack), "--out",
                    str(out / "map"), "--tile", "64", "--overlap", "16", "--device", "cpu",
                    "-q"]) == 0
    with rasterio.open(out / "map_class.tif") as src:
        assert src.shape == (96, 96) and set(np.unique(src.read(1))) <= {*range(7), 255}
    # the keep rule reads the product the network was given: the stack's own band, with the
    # model's table, decides as the label raster it was exported from does
    kept = {}
    for name, extra in (("band", []), ("raster", ["--keep-product", str(scene_label(tmp)),
                                                  "--keep-table", "nlcd"])):
        assert predict(["--model", str(run / "model.pt"), "--input", str(stack), "--out",
                        str(out / name), "--tile", "64", "--overlap", "16", "--device", "cpu",
                        "-q", "--postprocess", "keep", *extra]) == 0
        with rasterio.open(out / f"{name}_class.tif") as src:
            kept[name] = (src.read(1), json.loads(src.tags()["postprocess"]))
    np.testing.assert_array_equal(kept["band"][0], kept["raster"][0])
    assert kept["band"][1]["band"] == 5 and kept["band"][1]["table"] == "nlcd"
    assert kept["band"][1]["green_cut"] == kept["raster"][1]["green_cut"]
    assert "band" not in kept["raster"][1]
    capsys.readouterr()
    assert map_main(["--model", str(run / "model.pt"), "--backend", "local", "--scenes",
                     str(tmp / "scene"), "--months", "2019-06", "--bbox", _bbox(root), "--out",
                     str(tmp / "maps"), "--tile", "64", "--overlap", "16", "-q"]) == 0
    (made,) = (tmp / "maps").rglob("stack_2019-06_image.tif")
    with rasterio.open(made) as src:
        assert src.descriptions[-1] == "product"  # the map's stack, read from the scenes
        codes = src.read(5)
    assert set(np.unique(codes[np.isfinite(codes)])) == set(CODES)
    assert list((tmp / "maps").rglob("isa_2019-06_class.tif"))
    capsys.readouterr()

    _, plain, _, _ = exported
    (without,) = (plain / "stacks").glob("stack_*_image.tif")
    refused = tmp / "refused"
    assert predict(["--model", str(run / "model.pt"), "--input", str(without), "--out",
                    str(refused / "map"), "--device", "cpu", "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "product" in err[0], err
    assert not refused.exists()


def test_hrnet_coarse_filters_noisy_samples_unless_told_otherwise():
    from training.config import TrainConfig, with_recipe_filter

    assert with_recipe_filter(TrainConfig.of(model="hrnet-coarse")).data.filter_noisy == 0.2
    assert with_recipe_filter(TrainConfig.of(model="hrnet-coarse", filter_noisy=0.5)
                              ).data.filter_noisy == 0.5
    assert with_recipe_filter(TrainConfig.of(model="hrnet")).data.filter_noisy is None


def test_what_cannot_read_the_product_is_refused_before_any_work(exported, tmp_path, capsys):
    from cli.export import main as export
    from cli.train import train_main as train

    root, plain, _, tmp = exported
    assert train(["--data", str(root), "--out", str(tmp_path / "u"), "--model", "unet",
                  "--no-progress", "-q"]) == 2
    assert "cannot read the 'product' band" in capsys.readouterr().err
    assert train(["--data", str(plain), "--out", str(tmp_path / "h"), "--model",
                  "hrnet-coarse", "--no-progress", "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--bands B2,B3,B4,B8,product" in err[0], err
    # without -q too: its noisy-sample filter's preliminary run was announced first (a walk)
    assert train(["--data", str(plain), "--out", str(tmp_path / "h"), "--model",
                  "hrnet-coarse", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--bands B2,B3,B4,B8,product" in err[0], err
    assert export(["--backend", "local", "--scenes", str(tmp / "scene"), "--bands",
                   "B2,product", "--out", str(tmp_path / "x"), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--labels landcover:<source>" in err[0], err
    assert not any(tmp_path.iterdir())


def test_the_product_band_is_never_normalised_blurred_or_range_checked():
    """Codes reach the network as they are: identity statistics (training split, scene or map
    input alike), no blur, and no 1st-99th percentile range for the input check to compare."""
    from training.augmentation import Augment
    from training.band_ranges import band_ranges
    from training.data import band_stats

    rng = np.random.default_rng(0)
    image = np.stack([rng.normal(0.1, 0.02, (16, 16)),
                      rng.choice(CODES, size=(16, 16))]).astype(np.float32)
    stats = band_stats([image], ("B2", "product"))
    assert stats.mean[1] == 0.0 and stats.std[1] == 1.0 and stats.std[0] != 1.0
    assert set(band_ranges(lambda i: image, 1, ("B2", "product"))) == {"B2"}
    blurred, _ = Augment(vflip=0.0, rotate=False, blur=1.0)(image, [], rng, codes=(1,))
    np.testing.assert_array_equal(blurred[1], image[1])
    assert not np.array_equal(blurred[0], image[0])
